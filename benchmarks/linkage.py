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
            other = rng.choice([g for g in GIVEN if g != given[0]])
            people.append((family, other + given[-1:], born, rng.random() < 0.5))
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
                elif roll < 0.12:  # one digit of the day keyed wrong
                    day = dob.day - 1 if dob.day % 10 == 9 or dob.day >= 28 else dob.day + 1
                    record_dob = date(dob.year, dob.month, max(day, 1))
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


def arrival(n: int, probes: int = 20) -> dict[str, Any]:
    """Link `probes` new records one at a time on a SQLite index of `n` records (what the
    ingest run calls after each batch): the time of `do_link_records` per record."""
    import tempfile

    from sqlalchemy import insert
    from sqlalchemy.orm import sessionmaker

    from carepool.core import migrate
    from carepool.core.auth import Principal
    from carepool.core.db import make_engine
    from carepool.core.time import utcnow
    from carepool.identity.models import LinkSource, Person, PersonLink, RecordFacts
    from carepool.identity.normalise import FEATURE_COLUMNS, facts_hash
    from carepool.records.models import Patient

    facts, _truth = population(n + probes)
    base, new = facts[:n], facts[n:]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/linkage.db"
        migrate.upgrade(url)
        engine = make_engine(url)
        factory = sessionmaker(engine)
        now = utcnow()
        t0 = time.perf_counter()
        with factory() as session, session.begin():
            for i in range(0, len(facts), 20000):
                chunk = facts[i : i + 20000]
                session.execute(
                    insert(Patient),
                    [
                        {
                            "id": f.patient_id,
                            "natural_key": f"{f.institution_id}|{f.patient_id}",
                            "institution_id": f.institution_id,
                            "local_id": f.patient_id,
                            "name": f.name,
                            "family": f.family,
                            "given": f.given,
                            "sex": f.sex,
                            "birth_date": f.birth_date,
                            "national_id": f.national_id,
                            "phone": f.phone,
                            "address": f.address,
                            "content_hash": f.patient_id,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for f in chunk
                    ],
                )
            for i in range(0, len(base), 20000):
                chunk = base[i : i + 20000]
                rows = [features(f) for f in chunk]
                session.execute(
                    insert(Person),
                    [
                        {"id": f"psn-{f.patient_id}", "created_at": now, "updated_at": now}
                        for f in chunk
                    ],
                )
                session.execute(
                    insert(PersonLink),
                    [
                        {
                            "patient_id": f.patient_id,
                            "person_id": f"psn-{f.patient_id}",
                            "institution_id": f.institution_id,
                            "source": LinkSource.NEW,
                            "linked_by": "bench",
                            "linked_at": now,
                        }
                        for f in chunk
                    ],
                )
                session.execute(
                    insert(RecordFacts),
                    [
                        {
                            "patient_id": r["unique_id"],
                            **{c: r[c] for c in FEATURE_COLUMNS[1:]},
                            "facts_hash": facts_hash(r),
                            "evaluated_at": now,
                        }
                        for r in rows
                    ],
                )
        load = time.perf_counter() - t0
        system = Principal.system_actor("bench")
        times = []
        linked = 0
        for f in new:
            t1 = time.perf_counter()
            out = actions.do_link_records(factory, actor=system, record_ids=[f.patient_id])
            times.append(time.perf_counter() - t1)
            linked += len(out["linked"])
        engine.dispose()
    times.sort()
    return {
        "records": n,
        "load_s": load,
        "median_ms": times[len(times) // 2] * 1000,
        "max_ms": times[-1] * 1000,
        "linked": linked,
        "probes": len(new),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append", default=None)
    parser.add_argument(
        "--arrival",
        type=int,
        action="append",
        default=None,
        help="index size(s) for the on-arrival timing (SQLite): do_link_records of one record",
    )
    args = parser.parse_args()
    if args.arrival:
        print("| index records | load s | records linked on arrival | median ms | max ms |")
        print("|---:|---:|---:|---:|---:|")
        for n in args.arrival:
            r = arrival(n)
            print(
                f"| {r['records']} | {r['load_s']:.0f} | {r['linked']} of {r['probes']} | "
                f"{r['median_ms']:.1f} | {r['max_ms']:.1f} |",
                flush=True,
            )
        if not args.records:
            return
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
