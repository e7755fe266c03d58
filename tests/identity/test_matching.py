"""The pure matching core: national ids, name keys, features, the splink model and its guard."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import date

import pytest

from carepool.identity import matching
from carepool.identity.normalise import (
    PatientFacts,
    address_key,
    features,
    name_keys,
    national_id_birth_date,
    national_id_sex,
    normalise_national_id,
    phone_key,
)
from tests.identity.feeds import national_id
from tests.identity.synthetic import people

VALID = national_id("11010519491231002")  # the standard's own example: 11010519491231002X


def test_national_id_check_digit_and_date() -> None:
    assert VALID == "11010519491231002X"
    assert normalise_national_id(VALID) == VALID
    assert normalise_national_id(VALID.lower()) == VALID
    assert normalise_national_id("１１０１０５１９４９１２３１００２Ｘ") == VALID  # full-width
    assert normalise_national_id(VALID[:-1] + "1") is None  # wrong check character
    assert normalise_national_id("110105194913310029") is None  # month 13
    assert normalise_national_id("11010519491231") is None
    assert normalise_national_id("") is None and normalise_national_id(None) is None
    # a first-generation 15-digit id becomes its 18-character form
    assert normalise_national_id("110105491231002") == VALID
    assert national_id_birth_date(VALID) == date(1949, 12, 31)
    assert national_id_sex(VALID) == "female"


def test_names_in_characters_and_pinyin_meet() -> None:
    han = name_keys("张三", "张", "三")
    assert han.han == "张三" and han.key == "zhangsan" and han.rev == "sanzhang"
    assert name_keys("Zhang San").key == "zhangsan"
    assert name_keys("SAN ZHANG", "ZHANG", "SAN").key == "zhangsan"
    assert name_keys("San Zhang").rev == "zhangsan"  # Western order, caught by the swap level
    assert name_keys("单雄信").key == "shanxiongxin"  # 单 read as a surname, not dan
    assert name_keys("曾国藩").key == "zengguofan"
    assert name_keys("欧阳修").rev == "xiuouyang"  # compound surname
    assert name_keys("吕布").key == name_keys("Lü Bu").key == "lubu"
    assert name_keys("").key is None


def test_phones_addresses_and_features() -> None:
    assert phone_key("+86 138-0013-8000") == "13800138000"
    assert phone_key("0086 13800138000") == "13800138000"
    assert phone_key("12345") is None
    assert address_key("幸福路1号") == "xingfulu1hao"
    facts = PatientFacts("p1", "hosp", name="李四", national_id=VALID, phone="")
    row = features(facts)
    assert row["dob"] == "19491231" and row["sex"] == "female"  # from the national id
    assert row["nid"] == VALID and row["phone"] is None


def test_thresholds_and_options_are_checked() -> None:
    with pytest.raises(matching.TrainingError):
        matching.Thresholds(auto_link=0.5, review=0.9)
    with pytest.raises(matching.TrainingError):
        matching.ModelOptions(training="magic")


def _rows(*facts: PatientFacts) -> list[dict[str, object]]:
    return [features(f) for f in facts]


def test_same_person_links_namesakes_do_not_and_the_guard_holds() -> None:
    born = date(1990, 3, 7)
    rows = _rows(
        PatientFacts("a", "hosp", "张三", "张", "三", "male", born, VALID, "13800138000"),
        PatientFacts("b", "clinic", "Zhang San", "", "", "male", born, None, "13800138001"),
        # a namesake: other birth date and phone
        PatientFacts(
            "c", "clinic", "张三", "张", "三", "male", date(1975, 6, 1), None, "13911112222"
        ),
        # twins: another given name, same birth date, phone and address
        PatientFacts(
            "d", "hosp", "王大明", "王", "大明", "male", born, None, "13700000000", "幸福路1号"
        ),
        PatientFacts(
            "e", "clinic", "王小明", "王", "小明", "male", born, None, "13700000000", "幸福路1号"
        ),
    )
    result = matching.link(rows, thresholds=matching.Thresholds(review=0.5))
    pairs = {(p.a, p.b): p for p in result.pairs}
    assert set(pairs) == {("a", "b"), ("d", "e")}
    same = pairs[("a", "b")]
    assert same.probability >= 0.99 and matching.guard(same) is None
    assert same.level("name").level == "same pinyin"
    assert same.level("phone").level == "one digit off"
    twins = pairs[("d", "e")]
    assert twins.probability >= 0.99  # one syllable apart, same birth date, phone, address
    assert twins.level("name").level == "similar pinyin"
    assert matching.guard(twins) == "the names only look alike and no identifier agrees"
    assert result.model["training"] == "priors"
    weights = {lv["level"]: lv["weight"] for lv in result.model["fields"]["nid"]}
    assert weights["same national id"] == pytest.approx(19.9, abs=0.1)


def test_conflicting_national_ids_are_never_linked_automatically() -> None:
    born = date(1949, 12, 31)
    other = national_id("11010519491231003")
    rows = _rows(
        PatientFacts(
            "a", "hosp", "李四", "李", "四", "female", born, VALID, "13900000000", "人民路9号"
        ),
        PatientFacts(
            "b", "clinic", "李四", "李", "四", "female", born, other, "13900000000", "人民路9号"
        ),
    )
    (pair,) = matching.link(rows, thresholds=matching.Thresholds(review=0.01)).pairs
    assert pair.level("nid").level == "different national ids"
    assert matching.guard(pair) == "the national ids differ"


def test_u_sampling_on_a_synthetic_consortium() -> None:
    """Sampled u replaces the priors; linkage stays precise on namesake-heavy data.

    (On small data random pairs hold many true matches, which inflate u; hence sampling starts
    at `min_training_records`, here lowered to keep the test quick.)"""
    facts, truth = people(1500, seed=3)
    rows = [features(f) for f in facts]
    thresholds = matching.Thresholds()
    options = matching.ModelOptions(min_training_records=1000, u_max_pairs=5e5)
    first = matching.link(rows, thresholds=thresholds, options=options)
    second = matching.link(rows, thresholds=thresholds, options=options)
    assert first.model["training"] == "u"
    assert first.model == second.model  # seeded: reproducible
    sex_u = {lv["level"]: lv["u"] for lv in first.model["fields"]["sex"]}
    assert sex_u["same"] != 0.5 and 0.3 < sex_u["same"] < 0.7
    groups: dict[int, list[str]] = defaultdict(list)
    for f, person in zip(facts, truth, strict=True):
        groups[person].append(f.patient_id)
    true_pairs = {p for ids in groups.values() for p in itertools.combinations(sorted(ids), 2)}
    institution = {f.patient_id: f.institution_id for f in facts}
    linked = {
        (p.a, p.b)
        for p in first.pairs
        if p.probability >= thresholds.auto_link
        and matching.guard(p) is None
        and institution[p.a] != institution[p.b]
    }
    assert linked and linked <= true_pairs  # no false link
    assert len(linked) >= 0.85 * len(true_pairs)
    nid = {lv["level"]: lv["u"] for lv in first.model["fields"]["nid"]}
    assert nid["same national id"] == 1e-6  # fixed: never sampled
