"""Every check, pure, on small in-memory tables (Ibis memtables on DuckDB): a clean consortium
passes every check with rows to look at, and one planted defect per check fails exactly that
check, naming the planted record in its sample."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest

from carepool.quality import checks, evaluate, sources
from carepool.quality.checks import AnalyteRange, Params

NOW = datetime(2026, 3, 10, tzinfo=UTC)
T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
# pC1 dies half an hour before the clean data's results: inside the post-mortem window.
DIED = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
RECEIVED = datetime(2026, 3, 1, 13, tzinfo=UTC)
RECENT = datetime(2026, 3, 9, 12, tzinfo=UTC)

Rows = dict[str, list[dict[str, Any]]]


def _obs(id: str, member: str, patient: str, **kw: Any) -> dict[str, Any]:
    row = {
        "id": id,
        "member": member,
        "patient_id": patient,
        "status": "final",
        "loinc_code": "718-7",
        "original_code": "HGB",
        "value": 135.0,
        "unit": "g/L",
        "ref_low": 120.0,
        "ref_high": 160.0,
        "value_type": "quantity",
        "original_value": "13.5",
        "original_unit": "g/dL",
        "original_number": 13.5,
        "interpretation": "N",
        "effective_at": T0,
        "issued_at": datetime(2026, 3, 1, 12, tzinfo=UTC),
        "flags": [],
    }
    row.update(kw)
    return row


def clean() -> Rows:
    """Three members, one patient each (pC1 died on the day of its results); every check has
    rows and none fails."""
    patients = [
        ("pA1", "A", "male", date(1980, 1, 1), "N1"),
        ("pB1", "B", "female", date(1990, 5, 5), "N2"),
        ("pC1", "C", "male", date(1970, 1, 1), "N3"),
    ]
    rows: Rows = {k: [] for k in sources.SCHEMAS}
    for pid, member, sex, born, nid in patients:
        rows["patient"].append(
            {
                "id": pid,
                "member": member,
                "sex": sex,
                "birth_date": born,
                "name_present": True,
                "dedup_key": f"id:{nid}",
                "deceased_at": DIED if pid == "pC1" else None,
            }
        )
        eid = f"e{pid[1:]}"
        rows["encounter"].append(
            {
                "id": eid,
                "member": member,
                "patient_id": pid,
                "start_at": datetime(2026, 3, 1, 8, tzinfo=UTC),
                "end_at": datetime(2026, 3, 3, tzinfo=UTC),
                "department_text": "内科",
                "department_code": "03",
                "flags": [],
            }
        )
        oid = f"o{pid[1:]}"
        rows["observation"].append(_obs(oid, member, pid, encounter_id=eid))
        rows["provenance"].append(
            {
                "record_type": "observation",
                "record_id": oid,
                "member": member,
                "feed": "hl7v2",
                "received_at": RECEIVED,
            }
        )
        rows["provenance"].append(
            {
                "record_type": "patient",
                "record_id": pid,
                "member": member,
                "feed": "hl7v2",
                "received_at": RECENT,
            }
        )
    rows["observation"] += [
        _obs(
            "wA1",
            "A",
            "pA1",
            report_id="rA1",
            loinc_code="26464-8",
            original_code="WBC",
            value=6.2,
            unit="10*9/L",
            ref_low=4.0,
            ref_high=10.0,
            original_value="6.2",
            original_unit="10*9/L",
            original_number=6.2,
            interpretation="",
        ),
        _obs(
            "psaA1",
            "A",
            "pA1",
            loinc_code="2857-1",
            original_code="PSA",
            value=1.0,
            unit="ug/L",
            ref_low=None,
            ref_high=4.0,
            original_value="1.0",
            original_unit="ug/L",
            original_number=1.0,
            interpretation="",
        ),
    ]
    rows["report"].append(
        {
            "id": "rA1",
            "member": "A",
            "patient_id": "pA1",
            "loinc_code": "58410-2",
            "original_code": "CBC",
            "effective_at": T0,
            "issued_at": datetime(2026, 3, 1, 12, tzinfo=UTC),
            "flags": [],
        }
    )
    rows["report"].append(
        {
            "id": "rC1",
            "member": "C",
            "patient_id": "pC1",
            "loinc_code": "58410-2",
            "original_code": "CBC",
            "effective_at": T0,
            "issued_at": datetime(2026, 3, 1, 12, tzinfo=UTC),
            "flags": [],
        }
    )
    rows["order"].append(
        {
            "id": "ordA1",
            "member": "A",
            "patient_id": "pA1",
            "loinc_code": "58410-2",
            "original_code": "CBC",
            "ordered_at": datetime(2026, 3, 1, 8, 30, tzinfo=UTC),
        }
    )
    rows["feed_schedule"].append({"member": "A", "feed": "hl7v2", "every_minutes": 1440})
    rows["feed_schedule"].append({"member": "B", "feed": "*", "every_minutes": 1440})
    return rows


def params(**kw: Any) -> Params:
    base: dict[str, Any] = {
        "now": NOW,
        "analytes": (
            AnalyteRange("718-7", "g/L", 10.0, 260.0),
            AnalyteRange("26464-8", "10*9/L", 0.05, 1000.0),
        ),
        "valid_units": frozenset({"g/L", "10*9/L", "ug/L"}),
    }
    base.update(kw)
    return Params(**base)


def _first(rows: Rows, table: str, id: str) -> dict[str, Any]:
    return next(r for r in rows[table] if r.get("id") == id)


# Each defect edits the clean rows (and maybe the parameters) and returns the record id it planted.
Defect = Callable[[Rows, dict[str, Any]], str]


def _set(table: str, id: str, **values: Any) -> Defect:
    def plant(rows: Rows, _kw: dict[str, Any]) -> str:
        _first(rows, table, id).update(values)
        return id

    return plant


def _add(table: str, row: dict[str, Any]) -> Defect:
    def plant(rows: Rows, _kw: dict[str, Any]) -> str:
        rows[table].append(row)
        return str(row["id"])

    return plant


def _stub_patient(rows: Rows, _kw: dict[str, Any]) -> str:
    rows["patient"].append({"id": "pStub", "member": "A", "stub": True})
    rows["encounter"].append(
        {
            "id": "eStub",
            "member": "A",
            "patient_id": "pStub",
            "start_at": T0,
            "department_text": "内科",
            "department_code": "03",
        }
    )
    return "eStub"


def _duplicate_observation(rows: Rows, _kw: dict[str, Any]) -> str:
    twin = copy.deepcopy(_first(rows, "observation", "oA1"))
    twin["id"] = "oA1z"
    rows["observation"].append(twin)
    rows["provenance"].append(
        {
            "record_type": "observation",
            "record_id": "oA1z",
            "member": "A",
            "feed": "hl7v2",
            "received_at": RECEIVED,
        }
    )
    return "oA1z"


def _duplicate_patient(rows: Rows, _kw: dict[str, Any]) -> str:
    twin = copy.deepcopy(_first(rows, "patient", "pB1"))
    twin["id"] = "pB1z"
    rows["patient"].append(twin)
    return "pB1z"


def _late_arrival(rows: Rows, _kw: dict[str, Any]) -> str:
    for p in rows["provenance"]:
        if p["record_id"] == "oB1":
            p["received_at"] = datetime(2026, 3, 5, tzinfo=UTC)
    return "oB1"


def _late_feed(rows: Rows, _kw: dict[str, Any]) -> str:
    rows["feed_schedule"].append({"member": "B", "feed": "fhir", "every_minutes": 60})
    return "B/fhir"


def _stale_member(rows: Rows, kw: dict[str, Any]) -> str:
    kw["members"] = ("D",)
    return "D"


def _other_unit(rows: Rows, _kw: dict[str, Any]) -> str:
    _first(rows, "observation", "oC1").update(unit="g/dL", value=13.5, ref_low=12.0, ref_high=16.0)
    return "oC1"


DEFECTS: dict[str, Defect] = {
    "observation.loinc_format": _set("observation", "oB1", loinc_code="718-8"),
    "observation.ucum_unit": _set("observation", "oB1", unit="gm"),
    "observation.references_resolve": _set("observation", "oB1", patient_id="nobody"),
    "encounter.references_resolve": _stub_patient,
    "observation.interpretation_agrees": _set("observation", "oB1", interpretation="H"),
    "observation.value_matches_original": _set("observation", "wA1", value=62.0),
    "patient.required_fields": _set("patient", "pC1", sex="unknown"),
    "observation.required_fields": _set("observation", "oC1", effective_at=None),
    "observation.unit_present": _set("observation", "oC1", original_unit=""),
    "encounter.required_fields": _set("encounter", "eB1", department_text=""),
    "observation.code_mapped": _set("observation", "oB1", loinc_code=None),
    "observation.unit_mapped": _set(
        "observation", "oB1", original_unit="克每升", flags=["unmapped-unit"], value=None
    ),
    "encounter.department_mapped": _set("encounter", "eC1", department_code=None),
    "observation.value_plausible": _set("observation", "oB1", value=None, flags=["implausible"]),
    "observation.unit_plausible": _other_unit,
    "observation.sex_plausible": _add(
        "observation",
        _obs("psaB1", "B", "pB1", loinc_code="2857-1", unit="ug/L", value=1.0, ref_high=4.0),
    ),
    "patient.birth_date_plausible": _set("patient", "pB1", birth_date=date(2030, 1, 1)),
    "encounter.discharge_after_admission": _set(
        "encounter", "eA1", end_at=datetime(2026, 2, 28, tzinfo=UTC)
    ),
    "observation.after_birth": _set(
        "observation", "oB1", effective_at=datetime(1985, 1, 1, tzinfo=UTC)
    ),
    "encounter.after_birth": _set("encounter", "eC1", start_at=datetime(1960, 1, 1, tzinfo=UTC)),
    "observation.before_death": _set(
        "observation", "oC1", effective_at=datetime(2026, 3, 2, 9, tzinfo=UTC)
    ),
    "encounter.before_death": _set(
        "encounter", "eC1", start_at=datetime(2026, 3, 2, 12, tzinfo=UTC)
    ),
    "report.before_death": _set("report", "rC1", effective_at=datetime(2026, 3, 4, tzinfo=UTC)),
    "report.result_after_order": _set(
        "report", "rA1", effective_at=datetime(2026, 3, 1, 7, tzinfo=UTC)
    ),
    "observation.issued_after_effective": _set(
        "observation", "oA1", issued_at=datetime(2026, 3, 1, 8, tzinfo=UTC)
    ),
    "observation.not_in_future": _set(
        "observation", "oA1", effective_at=datetime(2026, 4, 1, tzinfo=UTC)
    ),
    "observation.duplicates": _duplicate_observation,
    "patient.duplicates": _duplicate_patient,
    "observation.feed_lag": _late_arrival,
    "feed.late": _late_feed,
    "member.stale": _stale_member,
    "observation.unit_consensus": _other_unit,
    "observation.range_consensus": _set("observation", "oC1", ref_low=12.0, ref_high=16.0),
    "observation.value_consensus": _set("observation", "oC1", value=13.0),
}


def _run(check: checks.Check, rows: Rows, kw: dict[str, Any]) -> evaluate.CheckResult:
    results = evaluate.run_check(check, sources.memtables(rows), params(**kw))
    total = results[-1]
    assert total.member == "*" and not total.error, total.error
    return total


def test_every_check_has_a_planted_defect() -> None:
    assert set(DEFECTS) == set(checks.REGISTRY)


@pytest.mark.parametrize("check_id", sorted(checks.REGISTRY))
def test_clean_data_passes(check_id: str) -> None:
    result = _run(checks.REGISTRY[check_id], clean(), {})
    assert result.denominator > 0, "the clean data must give the check rows to look at"
    assert result.failing == 0, result.sample
    assert result.passed


@pytest.mark.parametrize("check_id", sorted(checks.REGISTRY))
def test_planted_defect_fails(check_id: str) -> None:
    rows, kw = clean(), {}
    planted = DEFECTS[check_id](rows, kw)
    result = _run(checks.REGISTRY[check_id], rows, kw)
    assert result.failing >= 1
    assert planted in result.sample
    assert not result.passed


def test_results_are_per_member_with_a_consortium_total() -> None:
    rows, kw = clean(), {}
    DEFECTS["observation.code_mapped"](rows, kw)
    results = evaluate.run_check(
        checks.REGISTRY["observation.code_mapped"], sources.memtables(rows), params()
    )
    by_member = {r.member: (r.failing, r.denominator) for r in results}
    assert by_member == {"A": (0, 3), "B": (1, 1), "C": (0, 1), "*": (1, 5)}
    only_b = evaluate.run_check(
        checks.REGISTRY["observation.code_mapped"], sources.memtables(rows), params(), member="B"
    )
    assert [(r.member, r.failing) for r in only_b] == [("B", 1), ("*", 1)]


def test_threshold_decides_pass_and_a_broken_check_is_an_error_result() -> None:
    rows, kw = clean(), {}
    DEFECTS["observation.code_mapped"](rows, kw)
    check = checks.REGISTRY["observation.code_mapped"]
    lenient = evaluate.run_check(check, sources.memtables(rows), params(), threshold=25.0)[-1]
    assert lenient.percent == pytest.approx(20.0) and lenient.passed

    def broken(tables: checks.Tables, p: Params) -> Any:
        raise RuntimeError("boom")

    bad = checks.Check("x.broken", check.category, "", "x", 0, check.severity, "", broken)
    (result,) = evaluate.run_check(bad, sources.memtables(rows), params())
    assert "boom" in result.error and not result.passed


def test_loinc_check_digit_in_sql_agrees_with_terminology() -> None:
    from carepool.terminology.seed import is_loinc_code

    codes = ["718-7", "718-8", "26464-8", "2857-1", "1-8", "12345678-1", "abc-1", "99999-9"]
    rows = clean()
    rows["observation"] = [_obs(f"x{i}", "A", "pA1", loinc_code=c) for i, c in enumerate(codes)]
    result = _run(checks.REGISTRY["observation.loinc_format"], rows, {})
    bad = {codes[int(s[1:])] for s in result.sample}
    assert bad == {c for c in codes if not is_loinc_code(c)}


def test_the_check_descriptions_follow_dqd(shared_dir: Any) -> None:
    """Our categories are DQD's Kahn categories (plus timeliness and consistency)."""
    import csv

    path = shared_dir / "data" / "ohdsi-dqd" / "OMOP_CDMv5.4_Check_Descriptions.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with path.open(encoding="utf-8") as f:
        dqd = list(csv.DictReader(f))
    kahn = {row["kahnCategory"].lower() for row in dqd}
    severities = {row["severity"] for row in dqd}
    ours = {c.category.value for c in checks.all_checks()}
    assert ours - kahn == {"timeliness", "consistency"}
    assert {c.severity.value for c in checks.all_checks()} <= severities
    subcats = {row["kahnSubcategory"].lower() for row in dqd if row["kahnSubcategory"]}
    for c in checks.all_checks():
        if c.category.value in {"conformance", "plausibility"}:
            assert c.subcategory in subcats | {"uniqueness"}, c.id


def test_every_check_is_described() -> None:
    for c in checks.all_checks():
        assert len(c.description) > 20 and c.target and c.subcategory, c.id
        assert 0 <= c.threshold <= 100
        assert c.id.split(".")[0] in {
            "observation",
            "patient",
            "encounter",
            "report",
            "feed",
            "member",
        }


def test_after_death_window_is_a_parameter() -> None:
    """oC1 is observed half an hour after pC1's death: a post-mortem sample by default, a
    defect once the window is narrower than that."""
    check = checks.REGISTRY["observation.before_death"]
    default = _run(check, clean(), {})
    assert (default.failing, default.denominator) == (0, 1)
    narrow = _run(check, clean(), {"after_death_hours": 0.25})
    assert (narrow.failing, narrow.sample) == (1, ["oC1"])
    # A patient marked deceased without a date is not counted.
    rows = clean()
    _first(rows, "patient", "pC1")["deceased_at"] = None
    assert _run(check, rows, {}).denominator == 0


def _ordered(rows: Rows, id: str, placer: str, hour: int, minute: int = 0) -> None:
    rows["order"].append(
        {
            "id": id,
            "member": "A",
            "patient_id": "pA1",
            "loinc_code": "58410-2",
            "original_code": "CBC",
            "placer_number": placer,
            "ordered_at": datetime(2026, 3, 1, hour, minute, tzinfo=UTC),
        }
    )


def _reported(rows: Rows, id: str, hour: int, minute: int = 0, **link: str) -> None:
    rows["report"].append(
        {
            "id": id,
            "member": "A",
            "patient_id": "pA1",
            "loinc_code": "58410-2",
            "original_code": "CBC",
            "effective_at": datetime(2026, 3, 1, hour, minute, tzinfo=UTC),
            **link,
        }
    )


def test_result_after_order_uses_the_linked_order_before_the_approximation() -> None:
    """Orders of the same CBC at 08:30 (ordA1, no number), 10:00 (PL2) and 12:00 (PL3). The
    approximation compares every CBC report with 08:30; a linked report with its own order."""
    rows = clean()
    _first(rows, "order", "ordA1")["placer_number"] = "PL1"
    _ordered(rows, "ordA2", "PL2", 10)
    _ordered(rows, "ordA3", "PL3", 12)
    _reported(rows, "rById", 9, 30, order_id="ordA2")  # before its order: fails
    _reported(rows, "rByNumber", 11, placer_number="PL3")  # before its order: fails
    _reported(rows, "rIdWins", 11, order_id="ordA2", placer_number="PL3")  # 11:00 > 10:00
    _reported(rows, "rNumberOk", 10, 30, placer_number="PL2")
    _reported(rows, "rUnlinked", 9, 30)  # approximate: after 08:30, passes
    _reported(rows, "rUnknownNumber", 9, placer_number="PL9")  # no such number: approximate
    _reported(rows, "rEarly", 8)  # approximate: before every CBC order, fails
    result = _run(checks.REGISTRY["report.result_after_order"], rows, {})
    assert sorted(result.sample) == ["rById", "rByNumber", "rEarly"]
    assert result.denominator == 8  # rA1 and the seven above; rC1 has no order to compare with


def test_result_after_order_without_a_linked_order_time_falls_back() -> None:
    """A report linked to an order that has no time (or was never received) is compared like
    an unlinked one."""
    rows = clean()
    rows["order"].append({"id": "ordNoTime", "member": "A", "patient_id": "pA1"})
    _reported(rows, "rNoTime", 8, order_id="ordNoTime")
    _reported(rows, "rMissing", 8, order_id="ord-never-received")
    result = _run(checks.REGISTRY["report.result_after_order"], rows, {})
    assert sorted(result.sample) == ["rMissing", "rNoTime"]
