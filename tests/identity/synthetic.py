"""Synthetic patients of a consortium for the matcher: people recorded at several members with
the defects real feeds have (pinyin instead of characters, swapped name order, a digit off in a
phone or birth date, no national id), and many namesakes (a few surnames, common given names).
Deterministic for a seed; the truth says which records are one person.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from pypinyin import lazy_pinyin

from carepool.identity.normalise import PatientFacts, national_id_check_char

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国红"
STREETS = ("幸福路", "人民路", "建设路", "解放路", "中山路", "和平街", "新华街", "东风路")
VILLAGES = ("柳村", "桃园村", "石桥镇", "县城", "河西乡", "东山村")
MEMBERS = ("hosp", "branch", "clinic-a", "clinic-b", "clinic-c")


def _digit_off(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text))
    return text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1 :]


def people(n: int, seed: int = 7) -> tuple[list[PatientFacts], list[int]]:
    """Records of `n` people (1 to 3 records each) and, per record, the index of its person."""
    rng = random.Random(seed)
    facts: list[PatientFacts] = []
    truth: list[int] = []
    for person in range(n):
        family = rng.choice(SURNAMES)
        given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
        sex = rng.choice(("male", "female"))
        born = date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 80))
        phone = "1" + rng.choice("3589") + "".join(rng.choice("0123456789") for _ in range(9))
        address = f"{rng.choice(STREETS)}{rng.randrange(1, 200)}号{rng.choice(VILLAGES)}"
        region = rng.choice(("110101", "330106", "330522", "510104"))
        seq = f"{rng.randrange(1000):03d}"
        seq = seq[:2] + str((int(seq[2]) // 2) * 2 + (1 if sex == "male" else 0))
        first17 = region + born.strftime("%Y%m%d") + seq
        nid = first17 + national_id_check_char(first17)
        copies = rng.choices((1, 2, 3), weights=(5, 4, 1))[0]
        for member in rng.sample(MEMBERS, copies):
            pinyin = rng.random() < 0.3
            name_family, name_given = family, given
            if pinyin:
                name_family = lazy_pinyin(family)[0].title()
                name_given = "".join(lazy_pinyin(given)).title()
            name = f"{name_family}{name_given}" if not pinyin else f"{name_family} {name_given}"
            if pinyin and rng.random() < 0.2:
                name = f"{name_given} {name_family}"  # written in the Western order
                name_family = name_given = ""
            rec_phone = phone if rng.random() > 0.15 else _digit_off(phone, rng)
            rec_born = born
            if rng.random() < 0.05:
                rec_born = born + timedelta(days=rng.choice((-1, 1)))
            facts.append(
                PatientFacts(
                    patient_id=f"p{len(facts):07d}",
                    institution_id=member,
                    name=name,
                    family=name_family,
                    given=name_given,
                    sex=sex,
                    birth_date=rec_born,
                    national_id=nid if rng.random() < 0.4 else None,
                    phone=rec_phone if rng.random() < 0.9 else "",
                    address=address if rng.random() < 0.7 else "",
                )
            )
            truth.append(person)
    return facts, truth
