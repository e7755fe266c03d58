"""Standardisation as a pure function: names, codes and units to LOINC and UCUM; suggestions."""

from __future__ import annotations

import pytest

from carepool.records.schemas import Coding
from carepool.terminology.resolver import GLOBAL, MapLayer, Terminology
from carepool.terminology.suggest import suggest

T = Terminology()


@pytest.mark.parametrize(
    "name", ["血红蛋白", "Hb", "HGB", "hgb", "Hemoglobin", "Haemoglobin", "血色素"]
)
def test_local_names_of_hemoglobin_map_to_718_7(name: str) -> None:
    result = T.resolve_code("clinic", [Coding("urn:local", "X1", name)])
    assert result.loinc == "718-7"
    assert result.original == Coding("urn:local", "X1", name)


def test_a_local_code_that_is_itself_a_name_maps() -> None:
    assert T.resolve_code("clinic", [Coding("urn:local", "WBC", "")]).loinc == "26464-8"


def test_method_specific_loinc_codes_fold_into_the_analytes_code() -> None:
    assert T.resolve_code("m", [Coding("http://loinc.org", "789-8")]).loinc == "26453-1"
    assert T.resolve_code("m", [Coding("LN", "6690-2")]).loinc == "26464-8"
    assert T.resolve_code("m", [Coding("LN", "2345-7")]).loinc == "14749-6"


def test_a_loinc_system_with_an_invalid_code_is_a_local_code() -> None:
    result = T.resolve_code("m", [Coding("http://loinc.org", "5089AAAAAAAA", "Weight")])
    assert result.loinc == "29463-7" and result.via == "seed"
    assert T.resolve_code("m", [Coding("http://loinc.org", "718-8")]).loinc is None  # bad check


def test_member_map_beats_consortium_map_beats_seed() -> None:
    maps = {
        ("code", GLOBAL): MapLayer(version=3, by_code={("urn:lab", "A1"): "2345-7"}),
        ("code", "clinic"): MapLayer(
            version=1, by_code={("urn:lab", "A1"): "718-7"}, by_name={"hb": None}
        ),
    }
    t = Terminology(maps=maps)
    assert t.resolve_code("clinic", [Coding("urn:lab", "A1")]).loinc == "718-7"
    assert t.resolve_code("hosp", [Coding("urn:lab", "A1")]).loinc == "14749-6"
    # an explicit "not mapped" hides the seed's name for that member only
    assert t.resolve_code("clinic", [Coding(text="Hb")]).loinc is None
    assert t.resolve_code("hosp", [Coding(text="Hb")]).loinc == "718-7"
    assert t.versions() == {"seed": t.seed.version, "code:*": "3", "code:clinic": "1"}


def test_standardise_converts_into_the_analytes_unit() -> None:
    std = T.standardise(
        "m", [Coding(text="血红蛋白")], value=13.5, unit="g/dl", ref_low=12, ref_high=16
    )
    assert (std.loinc, std.value, std.unit, std.ref_low, std.ref_high, std.flags) == (
        "718-7",
        135.0,
        "g/L",
        120.0,
        160.0,
        [],
    )
    creatinine = T.standardise("m", [Coding("LN", "2160-0")], value=1.0, unit="mg/dL")
    assert creatinine.loinc == "14682-9" and creatinine.unit == "umol/L"
    assert creatinine.value == pytest.approx(88.4017, rel=1e-5)
    urea = T.standardise("m", [Coding(text="BUN")], value=14, unit="mg/dL")
    assert urea.loinc == "22664-7" and urea.value == pytest.approx(4.9975, rel=1e-4)


def test_an_implausible_value_is_flagged_not_converted() -> None:
    std = T.standardise("m", [Coding("LN", "718-7")], value=12.5, unit="g/mL")
    assert (std.value, std.unit, std.flags) == (None, None, ["implausible"])
    assert "12500 g/L" in std.note and "10-260" in std.note


def test_unknown_and_incompatible_units_leave_the_value_unfiled() -> None:
    odd = T.standardise("m", [Coding("LN", "718-7")], value=13, unit="furlongs")
    assert odd.flags == ["unmapped-unit"] and odd.value is None
    assert [(u.kind, u.term) for u in odd.unmapped] == [("unit", "furlongs")]
    wrong = T.standardise("m", [Coding("LN", "26464-8")], value=13, unit="mmol/L")
    assert wrong.flags == ["unmapped-unit"] and "cannot be converted" in wrong.note
    hb_molar = T.standardise("m", [Coding("LN", "718-7")], value=8.5, unit="mmol/L")
    assert hb_molar.value == pytest.approx(136.97, rel=1e-3)  # Hb in mmol/L is a real practice
    missing = T.standardise("m", [Coding("LN", "718-7")], value=13, unit=None)
    assert missing.flags == ["unmapped-unit"] and "no unit" in missing.note


def test_an_unmapped_code_keeps_its_value_and_is_queued() -> None:
    std = T.standardise("m", [Coding("urn:lab", "Q9", "神秘指标")], value=1.5, unit="mmol/L")
    assert (std.loinc, std.value, std.unit, std.flags) == (None, 1.5, "mmol/L", ["unmapped-code"])
    assert [(u.kind, u.system, u.term, u.display) for u in std.unmapped] == [
        ("code", "urn:lab", "Q9", "神秘指标")
    ]


def test_departments_from_the_code_list_the_seed_and_the_members_catalogue() -> None:
    t = Terminology(member_departments={"hosp": {"心内": "03.04", "ccu": "28"}})
    assert t.resolve_department("hosp", "心血管内科专业") == "03.04"  # the code list's name
    assert t.resolve_department("hosp", "心内科") == "03.04"  # the seed
    assert t.resolve_department("hosp", "CCU") == "28"  # the member's own department
    assert t.resolve_department("clinic", "CCU") is None
    assert t.resolve_department("hosp", "Cardiology") == "03.04"


@pytest.mark.parametrize(
    ("term", "kind", "best"),
    [
        ("血红蛋白浓度", "code", "718-7"),
        ("xuehongdanbai", "code", "718-7"),
        ("Haemoglobin", "code", "718-7"),
        ("Glucose fasting", "code", "14771-0"),
        ("白细胞数", "code", "26464-8"),
        ("TEMPERATURE", "code", "8310-5"),
        ("g/dl", "unit", "g/dL"),
        ("心血管", "department", "03.04"),
    ],
)
def test_suggestions_rank_the_right_target_first(term: str, kind: str, best: str) -> None:
    found = suggest(term, kind)
    assert found and found[0].target == best
    assert [s.score for s in found] == sorted((s.score for s in found), reverse=True)
