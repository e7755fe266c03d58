"""Record linkage against a generated population with known truth (issue 12).

    PYTHONPATH=src python benchmarks/linkage.py --records 50000 [--records 20000 ...]

Persons with Chinese or Latin names are registered at 1-3 of 25 members, each record perturbed
as members do: pinyin instead of characters, surname and given name swapped, a typo, a day/month
swap or one wrong digit in the birth date, a missing birth date, national id or phone, a typo in
the phone, passports of other countries. Twins (same birth date, phone and address, another
given name) and namesakes (the few most common names) are in it on purpose. The matcher runs
as a link run does (splink on DuckDB, then the run's decisions, `actions._plan`); the table
gives precision, recall and F1 of the automatic links over record pairs, the review queue and
the time, plus the time to score one record on arrival with the Python scorer.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from carepool.identity import actions, matching
from carepool.identity.normalise import PatientFacts, features, national_id_check_char

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国文辉力斌宇浩凯"
LATIN_FAMILY = ["Smith", "Nguyen", "Garcia", "Muller", "Kim", "Ivanov", "Silva", "Khan", "Sato"]
LATIN_GIVEN = ["John", "Anna", "Maria", "Peter", "Aisha", "Minh", "Olga", "Luis", "Yuki", "Omar"]
MEMBERS = [f"m{i:02d}" for i in range(25)]


def _nid(rng: random.Random, born: date, male: bool) -> str:
    seq = rng.randrange(0, 100) * 10 + (
        rng.choice((1, 3, 5, 7, 9)) if male else rng.choice((0, 2, 4, 6, 8))
    )
    first17 = f"{rng.randrange(110000, 660000)}{born:%Y%m%d}{seq:03d}"
    return first17 + national_id_check_char(first17)


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text
    i = rng.randrange(len(text) - 1)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def population(n_records: int, seed: int = 7) -> tuple[list[PatientFacts], dict[str, int]]:
    """Records and, for each, the person it truly belongs to."""
    rng = random.Random(seed)
    facts: list[PatientFacts] = []
    truth: dict[str, int] = {}
    person = 0
    while len(facts) < n_records:
        person += 1
        latin = rng.random() < 0.1
        male = rng.random() < 0.5
        born = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 33000))
        if latin:
            family, given = rng.choice(LATIN_FAMILY), rng.choice(LATIN_GIVEN)
        elif rng.random() < 0.05:  # namesakes: the most common names
            family, given = "王", "伟"
        else:
            family = rng.choice(SURNAMES)
            given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
        phone = f"1{rng.randrange(30, 90)}{rng.randrange(10**8):08d}"
        address = f"{rng.choice(SURNAMES)}{rng.choice(GIVEN)}路{rng.randrange(1, 300)}号"
        nid = None if latin else _nid(rng, born, male)
        passport = (
            (f"passport-{rng.choice(('GBR', 'USA', 'VNM'))}", f"P{rng.randrange(10**8)}")
            if latin
            else None
        )
        people = [(family, given, born, male)]
        if rng.random() < 0.02 and not latin:  # twins: same birth date, phone and address
            people.append((family, rng.choice(GIVEN) + given[-1:], born, rng.random() < 0.5))
        for k, (fam, giv, dob, is_male) in enumerate(people):
            pid_person = person * 10 + k
            twin_nid = nid if k == 0 else (_nid(rng, dob, is_male) if nid else None)
            for member in rng.sample(MEMBERS, rng.choice((1, 2, 2, 3))):
                name, f_, g_ = fam + giv, fam, giv
                if latin:
                    name, f_, g_ = f"{giv} {fam}", fam, giv
                    if rng.random() < 0.15:
                        g_ = _typo(rng, g_)
                        name = f"{g_} {fam}"
                elif rng.random() < 0.3:  # pinyin, as a clinic writes it
                    from pypinyin import lazy_pinyin

                    f_, g_ = "".join(lazy_pinyin(fam)).title(), "".join(lazy_pinyin(giv))
                    name = f"{f_} {g_}" if rng.random() < 0.8 else f"{g_} {f_}"
                    f_ = g_ = ""
                record_dob: date | None = dob
                roll = rng.random()
                if roll < 0.05:
                    record_dob = None
                elif roll < 0.09 and dob.day <= 12 and dob.day != dob.month:
                    record_dob = date(dob.year, dob.day, dob.month)
                elif roll < 0.12:
                    record_dob = dob + timedelta(days=rng.choice((-1, 1)))
                record_phone = (
                    phone
                    if rng.random() > 0.1
                    else (_typo(rng, phone) if rng.random() < 0.5 else "")
                )
                record_nid = twin_nid if rng.random() < 0.6 else None
                idents = (passport,) if passport and rng.random() < 0.7 else ()
                pid = f"p{len(facts):08d}"
                facts.append(
                    PatientFacts(
                        patient_id=pid,
                        institution_id=member,
                        name=name,
                        family=f_,
                        given=g_,
                        sex="male" if is_male else "female",
                        birth_date=record_dob,
                        national_id=record_nid,
                        phone=record_phone,
                        address=address if rng.random() < 0.7 else "",
                        identifiers=idents,
                    )
                )
                truth[pid] = pid_person
    return facts[:n_records], truth


def _pairs(groups: dict[Any, list[str]]) -> Iterator[tuple[str, str]]:
    for members in groups.values():
        members = sorted(members)
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                yield a, b


def run(n: int) -> dict[str, Any]:
    facts, truth = population(n)
    t0 = time.perf_counter()
    rows = [features(f) for f in facts]
    t1 = time.perf_counter()
    thresholds = matching.Thresholds()
    result = matching.link(rows, thresholds=thresholds)
    t2 = time.perf_counter()
    institution_of = {f.patient_id: f.institution_id for f in facts}
    plan, groups = actions._plan(
        result.pairs,
        thresholds=thresholds,
        institution_of=institution_of,
        person_of={p: p for p in institution_of},
        members={p: [p] for p in institution_of},
        exclusions=set(),
    )
    t3 = time.perf_counter()
    found: dict[str, list[str]] = {}
    for p in institution_of:
        found.setdefault(groups.find(p), []).append(p)
    true: dict[int, list[str]] = {}
    for p, who in truth.items():
        true.setdefault(who, []).append(p)
    linked = set(_pairs(found))
    actual = set(_pairs(true))
    tp = len(linked & actual)
    precision = tp / len(linked) if linked else 1.0
    recall = tp / len(actual) if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    # One record on arrival: score it against its blocking candidates (here: the true
    # partners and 50 others, about what an indexed lookup returns for a common name).
    by_id = {r["unique_id"]: r for r in rows}
    sample = rows[:: max(1, len(rows) // 200)]
    t4 = time.perf_counter()
    for r in sample:
        for other in rows[:50]:
            matching.score(r, other)
    arrival_ms = (time.perf_counter() - t4) / len(sample) * 1000
    del by_id
    return {
        "records": n,
        "persons": len(true),
        "true_pairs": len(actual),
        "auto_pairs": len(linked),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "review": len(plan.review),
        "features_s": t1 - t0,
        "splink_s": t2 - t1,
        "plan_s": t3 - t2,
        "total_s": t3 - t0,
        "arrival_score_ms": arrival_ms,
        "training": result.model.get("training"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append", default=None)
    args = parser.parse_args()
    print(
        "| records | persons | true pairs | auto pairs | precision | recall | F1 | review | "
        "features s | splink s | decide s | total s | score on arrival ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.records or [20000]:
        r = run(n)
        print(
            f"| {r['records']} | {r['persons']} | {r['true_pairs']} | {r['auto_pairs']} | "
            f"{r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['review']} | "
            f"{r['features_s']:.1f} | {r['splink_s']:.1f} | {r['plan_s']:.1f} | "
            f"{r['total_s']:.1f} | {r['arrival_score_ms']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
