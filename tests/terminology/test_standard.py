"""One standard, checked: LOINC codes against the shipped table, analyte equivalence, units for
every analyte, ranked suggestions (pure: no database)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from carepool.records.schemas import Coding
from carepool.terminology import service as terminology_service
from carepool.terminology.resolver import (
    FLAG_UNKNOWN_LOINC,
    FLAG_UNMAPPED_CODE,
    FLAG_UNMAPPED_UNIT,
    MapLayer,
    StandardValue,
    Terminology,
)
from carepool.terminology.seed import is_loinc_code, load_seed
from carepool.terminology.suggest import suggest
from tests.terminology.labelled import CIEL_TRUTH, labelled_set

LOINC = "http://loinc.org"
ROOT = Path(__file__).resolve().parents[2]
SEED_DIR = ROOT / "src" / "carepool" / "terminology" / "seed"
NOT_IN_TABLE = "77777-1"  # a well-formed LOINC code (right check digit) carepool does not ship


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_loinc_table", ROOT / "tools" / "build_loinc_table.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _std(
    code: str,
    value: float | None = 1.0,
    unit: str | None = None,
    *,
    text: str = "",
    t: Terminology | None = None,
    system: str = LOINC,
) -> StandardValue:
    return (t or Terminology()).standardise(
        "m", [Coding(system, code, text)], value=value, unit=unit
    )


# -- the LOINC table ------------------------------------------------------------------------------


def test_the_shipped_loinc_table_is_what_the_tool_makes_from_the_seed() -> None:
    tool = _tool()
    seed = yaml.safe_load((SEED_DIR / "analytes.yaml").read_text("utf-8"))
    shipped = (SEED_DIR / "loinc.tsv").read_text("utf-8")
    assert tool.render(seed) == shipped
    assert tool.render(seed) == tool.render(seed)  # deterministic


def test_the_loinc_table_keeps_the_licence_notice() -> None:
    shipped = (SEED_DIR / "loinc.tsv").read_text("utf-8")
    notice = "This material contains content from LOINC (http://loinc.org)."
    assert shipped.startswith(f"# {notice}")
    assert "http://loinc.org/license" in shipped.splitlines()[0]
    short = (SEED_DIR / "LOINC_short_license.txt").read_text("utf-8")
    assert notice in short and "Regenstrief Institute" in short
    assert notice.removesuffix(".") in (SEED_DIR / "analytes.yaml").read_text("utf-8")


def test_the_table_covers_the_seed_and_each_code_checks() -> None:
    seed = load_seed()
    assert set(seed.equivalents) <= set(seed.loinc)
    assert all(is_loinc_code(code) for code in seed.loinc)
    assert NOT_IN_TABLE not in seed.loinc and is_loinc_code(NOT_IN_TABLE)
    # the ferritin that arrives in three units, and the common lab panel, are in it
    for code in ("2276-4", "1988-5", "2324-2", "5902-2", "6301-6", "3016-3"):
        assert seed.loinc[code].scale == "Qn", code
    assert seed.loinc["2345-7"].system == "Ser/Plas" and seed.loinc["2339-0"].system == "Bld"


def test_the_tool_refuses_a_code_with_a_wrong_check_digit() -> None:
    tool = _tool()
    bad = {"analytes": [{"loinc": "718-8", "display": "Hemoglobin [Mass/volume] in Blood"}]}
    with pytest.raises(tool.TableError, match="718-8"):
        tool.render(bad)
    unreadable = {"analytes": [{"loinc": "718-7", "display": "Hemoglobin, whatever"}]}
    with pytest.raises(tool.TableError, match="parts"):
        tool.render(unreadable)


# -- LOINC codes are checked ----------------------------------------------------------------------


def test_a_code_of_the_table_is_trusted() -> None:
    std = _std("2345-7", 90, "mg/dL")
    assert (std.loinc, std.flags, std.unmapped) == ("14749-6", [], [])


def test_a_well_formed_code_not_in_the_table_is_flagged_and_queued_not_trusted() -> None:
    std = _std(NOT_IN_TABLE, 5.0, "mmol/L")
    assert std.loinc is None
    assert FLAG_UNKNOWN_LOINC in std.flags and FLAG_UNMAPPED_CODE in std.flags
    assert [(u.kind, u.system, u.term) for u in std.unmapped] == [("code", LOINC, NOT_IN_TABLE)]
    assert NOT_IN_TABLE in std.note


@pytest.mark.parametrize("code", ["718-8", "5088AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "26464", "x-1"])
def test_a_malformed_loinc_code_is_flagged_and_queued(code: str) -> None:
    for system in (LOINC, "LN", "urn:oid:2.16.840.1.113883.6.1"):
        std = _std(code, system=system)
        assert std.loinc is None, (code, system)
        assert FLAG_UNKNOWN_LOINC in std.flags
        assert [(u.system, u.term) for u in std.unmapped] == [(system, code)]


def test_an_unknown_code_with_a_known_name_is_filed_by_name_and_still_flagged() -> None:
    # OpenMRS/CIEL concept 5088 sent under the LOINC system (the Synthea HIV bundles)
    std = _std("5088AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 37.2, "C", text="Temperature")
    assert (std.loinc, std.value, std.unit) == ("8310-5", 37.2, "Cel")
    assert std.flags == [FLAG_UNKNOWN_LOINC]
    assert [u.term for u in std.unmapped] == ["5088AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]


def test_a_stewards_map_of_the_unknown_code_settles_it() -> None:
    layer = MapLayer(version=1, by_code={(LOINC, NOT_IN_TABLE): "2276-4"})
    t = Terminology(maps={("code", "*"): layer})
    std = _std(NOT_IN_TABLE, 100, "ng/mL", t=t)
    assert (std.loinc, std.value, std.unit, std.flags, std.unmapped) == (
        "2276-4",
        100.0,
        "ug/L",
        [],
        [],
    )


# -- analyte equivalence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "members", "outside"),
    [
        ("2345-7", {"2339-0", "14749-6", "15074-8"}, {"14771-0", "1558-6"}),  # glucose, not fasting
        ("14682-9", {"2160-0", "59826-8", "38483-4"}, {"14933-6"}),  # creatinine
        ("2951-2", {"2947-0"}, {"2823-3"}),  # sodium
        ("2823-3", {"6298-4"}, {"2951-2"}),  # potassium
        ("3094-0", {"22664-7", "3091-6", "14937-7", "59570-2", "6299-2"}, {"14682-9"}),  # BUN
        ("26464-8", {"6690-2", "804-5"}, {"26453-1"}),  # WBC and its older codes
        ("777-3", {"26515-7", "778-1"}, {"28542-9"}),  # PLT
        ("789-8", {"26453-1", "790-6"}, {"26464-8"}),  # RBC
        ("718-7", {"20509-6", "59260-0"}, {"4548-4", "28539-5"}),  # Hb, not HbA1c or MCH
    ],
)
def test_one_component_in_blood_serum_or_plasma_is_one_group(
    code: str, members: set[str], outside: set[str]
) -> None:
    group = terminology_service.equivalent_codes(code)
    assert isinstance(group, frozenset)
    assert code in group and members <= group
    assert not (outside & group)
    for member in members:  # the relation is symmetric
        assert terminology_service.equivalent_codes(member) == group


def test_a_code_outside_the_table_is_a_group_of_its_own() -> None:
    assert terminology_service.equivalent_codes(NOT_IN_TABLE) == frozenset({NOT_IN_TABLE})


def test_a_result_keeps_its_own_specimen() -> None:
    blood, serum = _std("2339-0", 90, "mg/dL"), _std("2345-7", 90, "mg/dL")
    assert (blood.loinc, serum.loinc) == ("15074-8", "14749-6")
    assert blood.value == serum.value == pytest.approx(4.996, abs=1e-3)


# -- units ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [(100, "ng/mL", 100.0), (100, "ug/L", 100.0), (100, "μg/l", 100.0), (224.7, "pmol/L", 100.0)],
)
def test_ferritin_in_three_units_is_filed_in_one(value: float, unit: str, expected: float) -> None:
    std = _std("2276-4", value, unit)
    assert (std.unit, std.flags) == ("ug/L", [])
    assert std.value == pytest.approx(expected, rel=1e-3)


def test_every_analyte_of_the_table_with_a_unit_is_converted() -> None:
    seed = load_seed()
    t = Terminology()
    for code, term in sorted(seed.loinc.items()):
        if not term.unit or term.scale != "Qn":
            continue
        filed = seed.analytes[seed.equivalents[code][0]]
        std = t.standardise("m", [Coding(LOINC, code)], value=1.0, unit=term.unit)
        assert FLAG_UNMAPPED_UNIT not in std.flags, (code, term.unit, std.note)
        if "implausible" not in std.flags:  # 1 of the unit can be outside the plausible range
            assert std.unit == filed.unit and std.value is not None, (code, std.note)


@pytest.mark.parametrize(
    ("code", "value", "unit", "expected", "filed_unit"),
    [
        ("14749-6", 5.5, "mmol/l", 5.5, "mmol/L"),
        ("26464-8", 6.2, "10*9/L", 6.2, "10*9/L"),
        ("26464-8", 6.2, "10^9/L", 6.2, "10*9/L"),
        ("26464-8", 6.2, "10E9/L", 6.2, "10*9/L"),
        ("26464-8", 6.2, "x10^9/L", 6.2, "10*9/L"),
        ("26464-8", 6.2, "10*9/l", 6.2, "10*9/L"),
        ("26464-8", 6.2, "G/L", 6.2, "10*9/L"),
        ("718-7", 135, "g/l", 135.0, "g/L"),
        ("718-7", 135, "g.l-1", 135.0, "g/L"),
        ("14682-9", 80, "μmol/L", 80.0, "umol/L"),
        ("14682-9", 80, "µmol/l", 80.0, "umol/L"),
        ("14682-9", 80, "umol/L", 80.0, "umol/L"),
        ("8310-5", 37.0, "C", 37.0, "Cel"),
    ],
)
def test_odd_spellings_are_normalised(
    code: str, value: float, unit: str, expected: float, filed_unit: str
) -> None:
    std = _std(code, value, unit)
    assert (std.value, std.unit, std.flags, std.unmapped) == (expected, filed_unit, [], [])


@pytest.mark.parametrize("unit", ["mmol/LL", "毫克每升", "g/l-1", "mg/dLx"])
def test_an_unknown_unit_spelling_is_flagged_and_queued(unit: str) -> None:
    std = _std("14749-6", 5.0, unit)
    assert std.value is None and FLAG_UNMAPPED_UNIT in std.flags
    assert [(u.kind, u.display) for u in std.unmapped] == [("unit", unit)]


def test_a_mapped_unit_spelling_converts() -> None:
    layer = MapLayer(version=1, by_name={"毫克每升": "mg/L"})
    t = Terminology(maps={("unit", "*"): layer})
    std = _std("1988-5", 8.0, "毫克每升", t=t)
    assert (std.value, std.unit, std.flags) == (8.0, "mg/L", [])


# -- suggestions ----------------------------------------------------------------------------------


def _accuracy(items: list[tuple[str, str]]) -> tuple[float, float]:
    top1 = top3 = 0
    for term, truth in items:
        got = [terminology_service.filed_code(s.target) for s in suggest(term, limit=3)]
        top1 += got[:1] == [terminology_service.filed_code(truth)]
        top3 += terminology_service.filed_code(truth) in got
    return top1 / len(items), top3 / len(items)


def test_the_top_suggestion_is_right_for_most_of_the_labelled_set() -> None:
    items = labelled_set()
    assert len(items) > 300 and len({i.source for i in items}) == 3
    for source in ("his", "english", "generated"):
        part = [(i.term, i.loinc) for i in items if i.source == source]
        top1, top3 = _accuracy(part)
        assert top1 >= 0.85 and top3 >= 0.95, (source, top1, top3)
    top1, top3 = _accuracy([(i.term, i.loinc) for i in items])
    assert top1 >= 0.9 and top3 >= 0.97, (top1, top3)


@pytest.mark.parametrize(
    ("term", "truth"),
    [
        ("快速血糖(全血)", "15074-8"),  # the specimen decides between two glucose codes
        ("葡萄糖(血清)", "14749-6"),
        ("中性粒细胞%", "26511-6"),  # percent or count
        ("中性粒细胞绝对值#", "26499-4"),
        ("BUN", "3094-0"),  # an equivalent's own name: its molar mass differs from urea's
    ],
)
def test_suggestions_read_specimen_and_property(term: str, truth: str) -> None:
    assert suggest(term, limit=1)[0].target == truth


def test_ciel_names_of_the_synthea_bundles_are_flagged_and_suggested(shared_dir: Path) -> None:
    t = Terminology()
    names: dict[str, str] = {}
    for path in sorted((shared_dir / "data" / "synthea-fhir-bundles-localcodes").glob("*.json")):
        for entry in json.loads(path.read_text("utf-8"))["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] != "Observation":
                continue
            for c in resource["code"]["coding"]:
                std = t.standardise("m", [Coding(c["system"], c["code"], c.get("display", ""))])
                assert FLAG_UNKNOWN_LOINC in std.flags, c  # CIEL ids under the LOINC system
                assert c["code"] in {u.term for u in std.unmapped}
                concept = c["code"].rstrip("A")
                if concept in CIEL_TRUTH and c.get("display"):
                    names[c["display"]] = CIEL_TRUTH[concept]
    assert len(names) >= 5
    right = [n for n, truth in names.items() if suggest(n, limit=1)[0].target == truth]
    # every concept with a meaningful name; 5085 is called "LOINC Code" in these files
    assert set(names) - set(right) <= {"LOINC Code"}, right
