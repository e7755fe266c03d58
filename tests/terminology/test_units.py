"""Unit reading and conversion (pure), and the seed's own consistency."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from carepool.terminology import units
from carepool.terminology.seed import is_loinc_code, load_seed
from carepool.terminology.units import (
    UnitError,
    convert,
    dimension,
    is_ucum,
    to_ucum,
)


@pytest.mark.parametrize(
    ("spelled", "ucum"),
    [
        ("g/dl", "g/dL"),
        ("g/L", "g/L"),
        ("x10^9/L", "10*9/L"),
        ("10^9/L", "10*9/L"),
        ("×10⁹/L", "10*9/L"),
        ("10E12/L", "10*12/L"),
        ("10*3/uL", "10*3/uL"),
        ("K/uL", "10*3/uL"),
        ("tera.l-1", "10*12/L"),
        ("giga.l-1", "10*9/L"),
        ("µmol/L", "umol/L"),
        ("mmHg", "mm[Hg]"),
        ("℃", "Cel"),
        ("beats/minute", "/min"),
        ("{cells}/uL", "{cells}/uL"),
        ("克/升", "g/L"),
        ("毫摩尔/升", "mmol/L"),
    ],
)
def test_local_spellings_become_ucum(spelled: str, ucum: str) -> None:
    seed = load_seed()
    assert to_ucum(spelled, seed.units) == ucum


def test_unreadable_units_are_none() -> None:
    assert to_ucum("blah") is None
    assert to_ucum("") is None and to_ucum(None) is None


@pytest.mark.parametrize(
    ("value", "source", "target", "molar_mass", "expected"),
    [
        (13.5, "g/dL", "g/L", None, 135.0),
        (135.0, "g/L", "g/dL", None, 13.5),
        (6.2, "10*3/uL", "10*9/L", None, 6.2),
        (4.41, "10*6/uL", "10*12/L", None, 4.41),
        (105600, "{cells}/uL", "10*9/L", None, 105.6),
        (0.41, "L/L", "%", None, 41.0),
        (99.0, "mg/dL", "mmol/L", 180.156, 5.4952),  # glucose
        (5.5, "mmol/L", "mg/dL", 180.156, 99.0858),
        (1.0, "mg/dL", "umol/L", 113.12, 88.4017),  # creatinine
        (88.4, "umol/L", "mg/dL", 113.12, 1.0),
        (200.0, "mg/dL", "mmol/L", 386.65, 5.1726),  # cholesterol
        (14.0, "mg/dL", "mmol/L", 28.014, 4.9975),  # urea nitrogen -> urea
        (98.6, "[degF]", "Cel", None, 37.0),
    ],
)
def test_conversions(
    value: float, source: str, target: str, molar_mass: float | None, expected: float
) -> None:
    assert convert(value, source, target, molar_mass) == pytest.approx(expected, rel=1e-4)


def test_incompatible_units_and_missing_molar_mass_raise() -> None:
    with pytest.raises(UnitError, match="molar mass"):
        convert(100, "mg/dL", "mmol/L")
    with pytest.raises(UnitError):
        convert(1, "g/L", "10*9/L")
    with pytest.raises(UnitError):
        convert(1, "nonsense", "g/L")


def test_the_seed_is_consistent() -> None:
    seed = load_seed()
    for code, analyte in seed.analytes.items():
        assert is_loinc_code(code), code
        assert all(is_loinc_code(e) for e in analyte.equivalents), code
        if analyte.unit:
            assert is_ucum(analyte.unit), (code, analyte.unit)
            assert analyte.plausible is not None, code
    for spelled, ucum in seed.units.items():
        assert is_ucum(ucum), (spelled, ucum)
    for name, code in seed.names.items():
        assert code in seed.equivalents, name
    # A synonym must not turn one valid UCUM unit into another (`G/L` is not `g/L`), except
    # where laboratories mean something else by design: K/uL is thousands per microlitre in
    # every blood count, never kelvin per microlitre; mg% is mg/dL; G/L and T/L (spelled so,
    # upper case) are giga and tera per litre in French and Swiss counts, never gauss or tesla.
    deliberate = {"K/uL", "mg%", "G/L", "T/L"}
    for spelled, ucum in seed.units.items():
        if is_ucum(spelled) and spelled not in deliberate:
            assert dimension(spelled) == dimension(ucum), spelled
            assert convert(1.0, spelled, ucum) == pytest.approx(1.0), spelled


def test_seed_molar_masses_agree_with_the_miracum_conversion_table(shared_dir: Path) -> None:
    """conversion.tsv lists LOINC pairs (substance <-> mass) with factors; where both codes are
    one of our analytes, our molar mass must give the same factor within 3 % (theirs are
    rounded). Urea nitrogen is skipped on purpose: the table converts it with urea's molar mass,
    we with that of its two nitrogen atoms."""
    seed = load_seed()
    checked = 0
    path = shared_dir / "data" / "loinc-unit-conversion" / "conversion.tsv"
    with path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            a, b = row["FROM_LOINC"], row["TO_LOINC"]
            if a not in seed.equivalents or b not in seed.equivalents:
                continue
            if seed.equivalents[a][0] != seed.equivalents[b][0]:
                continue
            if seed.equivalents[a][1] != seed.equivalents[b][1]:
                continue
            ours = convert(1.0, row["FROM_UNIT"], row["TO_UNIT"], seed.equivalents[a][1])
            factor = float(row["FACTOR"])
            # a few rows of the table give the factor of the opposite direction (LDL: 0.0259
            # for mmol/L -> mg/dL); the molar mass is what we check
            assert ours == pytest.approx(factor, rel=0.03) or 1 / ours == pytest.approx(
                factor, rel=0.03
            ), row
            checked += 1
    assert checked >= 1


def test_miracum_unit_synonyms_that_are_ucum_read_as_themselves(shared_dir: Path) -> None:
    path = shared_dir / "data" / "loinc-unit-conversion" / "synonyms.tsv"
    read = 0
    with path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            target = row["UCUM"]
            if not is_ucum(target) or "{" in target:
                continue
            got = to_ucum(row["NOT_UCUM"], load_seed().units)
            if got is not None:
                assert convert(1.0, got, target) == pytest.approx(1.0), row
                read += 1
    assert read >= 10


def _questions() -> tuple[object, ...]:
    with pytest.raises(UnitError) as unreadable:
        units.conversion("g/L", "mmHg/")
    with pytest.raises(UnitError) as incompatible:
        units.conversion("g/L", "m")
    return (
        units.conversion("mg/dL", "mmol/L", 180.16),
        units.conversion("Cel", "[degF]"),
        units.is_ucum("g/dL"),
        units.is_ucum("mmHg/"),
        dimension("g/L"),
        to_ucum("×10⁹/L"),
        str(unreadable.value),
        str(incompatible.value),
    )


def test_a_new_process_answers_from_the_remembered_answers_without_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ucum.json"
    monkeypatch.setenv("CAREPOOL_UCUM_CACHE", str(path))
    monkeypatch.setattr(units, "_answers_path", units._answers_path)
    monkeypatch.setattr(units, "_answers", None)
    units.conversion.cache_clear()
    units._parse.cache_clear()
    asked = _questions()
    assert path.exists()
    assert asked[0].scale == pytest.approx(1 / 18.016)  # type: ignore[attr-defined]
    assert asked[2:6] == (True, False, "[mass] / [length] ** 3", "10*9/L")
    # As a new process: nothing in memory, and the registry must not be built.
    monkeypatch.setattr(units, "_answers", None)
    units.conversion.cache_clear()
    units._parse.cache_clear()
    monkeypatch.setattr(units, "_ureg", lambda: pytest.fail("the UCUM registry was built"))
    assert _questions() == asked
    units.conversion.cache_clear()


def test_answers_stay_in_memory_when_the_cache_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAREPOOL_UCUM_CACHE", "off")
    monkeypatch.setattr(units, "_answers_path", units._answers_path)
    monkeypatch.setattr(units, "_answers", None)
    units.conversion.cache_clear()
    assert units.conversion("g/dL", "g/L").scale == pytest.approx(10.0)
    assert units._answers_path is None
    assert any(key.startswith("conversion:") for key in units._answers or {})
    units.conversion.cache_clear()
