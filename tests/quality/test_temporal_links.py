"""Nothing after death, and results after the order they answer, end to end: HL7 v2 and FHIR
feeds go in through `carepool.ingest`, the suite runs on the store (SQLite and PostgreSQL) and on
DuckDB over a Parquet export, and finds exactly the planted records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.quality import actions, service, sources
from carepool.records.models import DiagnosticReport, Encounter, Observation, Patient
from tests.ingest import feeds
from tests.quality.conftest import Feed, Run

AS_OF = datetime(2026, 3, 10, tzinfo=UTC)
CHECKS = (
    "observation.before_death",
    "encounter.before_death",
    "report.before_death",
    "report.result_after_order",
)

# A hospital patient who dies on 4 March at 21:30 (PID-29, PID-30 = Y).
_PID = "PID|1||H0042^^^HOSP^MR||李^四||19550101|F" + "|" * 21 + "20260304213000+0800|Y"


def _msh(kind: str, control: str) -> str:
    return f"MSH|^~\\&|HIS|HOSP||CAREPOOL|20260304080000+0800||{kind}|{control}|P|2.5"


def _order(placer: str, when: str) -> str:
    return "\r".join(
        [
            _msh("ORM^O01", f"ORM-{placer}"),
            _PID,
            f"ORC|NW|{placer}^HIS|||||||{when}",
            f"OBR|1|{placer}^HIS||58410-2^CBC panel^LN|R|{when}",
        ]
    )


def _result(control: str, observed: str, *, placer: str = "", visit: str = "") -> str:
    pv1 = f"PV1|1|O|检验科^^^HOSP|||||||内科|||||||||{visit}^^^HOSP" + "|" * 25 + observed
    return "\r".join(
        [
            _msh("ORU^R01", control),
            _PID,
            *([pv1] if visit else []),
            f"OBR|1|{placer}|{control}^LIS|58410-2^CBC panel^LN|||{observed}"
            + "|" * 15
            + f"{observed}|||F",  # OBR-7 observed, OBR-22 reported, OBR-25 final
            "OBX|1|NM|718-7^Hemoglobin^LN||135|g/L|115-165|N|||F",
            "OBX|2|NM|26464-8^Leukocytes^LN||6.1|10*9/L|4-10|N|||F",
        ]
    )


HOSPITAL = feeds.hl7_file(
    _order("PL0001", "20260304090000+0800"),
    _order("PL0002", "20260304120000+0800"),
    # Before the death, after its order PL0001: passes everything.
    _result("L1", "20260304100000+0800", placer="PL0001"),
    # Before its own order PL0002 (12:00), though after the earliest CBC order (09:00): only
    # the link to PL0002 shows it.
    _result("L2", "20260304110000+0800", placer="PL0002"),
    # Ten and a half hours after the death (a post-mortem sample): inside the window.
    _result("L3", "20260305080000+0800"),
    # Two and a half days after the death, in a visit that starts then: fails.
    _result("L4", "20260307100000+0800", visit="V9"),
)


def _clinic_bundle() -> bytes:
    """The clinic's patient died at noon on 1 March; a result three days later, and a report
    observed before the ServiceRequest it is based on."""
    bundle = feeds.fhir_bundle_dict()
    entries: list[dict[str, Any]] = bundle["entry"]
    patient = entries[0]["resource"]
    patient["deceasedDateTime"] = "2026-03-01T12:00:00+08:00"
    subject = {"reference": entries[0]["fullUrl"]}
    late = json.loads(json.dumps(entries[2]))
    late["fullUrl"] = "urn:uuid:0a0a0a0a-0000-0000-0000-0000000000d1"
    late["resource"].update(
        id="0a0a0a0a-0000-0000-0000-0000000000d1", effectiveDateTime="2026-03-04T08:00:00+08:00"
    )
    late["resource"].pop("encounter")
    order = {
        "fullUrl": "urn:uuid:0a0a0a0a-0000-0000-0000-0000000000e1",
        "resource": {
            "resourceType": "ServiceRequest",
            "id": "0a0a0a0a-0000-0000-0000-0000000000e1",
            "status": "completed",
            "intent": "order",
            "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
            "subject": subject,
            "authoredOn": "2026-03-01T07:00:00+08:00",
        },
        "request": {"method": "POST", "url": "ServiceRequest"},
    }
    report = next(e for e in entries if e["resource"]["resourceType"] == "DiagnosticReport")
    report["resource"]["basedOn"] = [{"reference": order["fullUrl"]}]
    report["resource"]["effectiveDateTime"] = "2026-03-01T06:30:00+08:00"
    bundle["entry"] = [*entries[:5], late, order]  # the invalid entry left out
    return json.dumps(bundle, ensure_ascii=False).encode()


def _results(session: Session, run_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (r.check_id, r.institution_id): service.result_to_dict(r)
        for r in service.get_results(session, run_id=run_id)
        if r.check_id in CHECKS
    }


def test_records_after_death_and_results_before_their_order_are_found(
    feed: Feed, run_quality: Run, members: sessionmaker[Session], db_url: str, tmp_path: Path
) -> None:
    feed(HOSPITAL, source="hosp")
    feed(_clinic_bundle(), source="clinic", name="bundle.json")
    run = run_quality(as_of=AS_OF)
    with members() as s:
        by = _results(s, run.id)
        assert not [k for k, r in by.items() if r["error"]]

        def ids(model: Any, *where: Any) -> list[str]:
            return sorted(s.scalars(select(model.id).where(*where)))

        hosp_late = ids(
            Observation,
            Observation.institution_id == "hosp",
            Observation.effective_at > datetime(2026, 3, 6, tzinfo=UTC),
        )
        clinic_late = ids(
            Observation,
            Observation.institution_id == "clinic",
            Observation.effective_at > datetime(2026, 3, 2, tzinfo=UTC),
        )
        assert len(hosp_late) == 2 and len(clinic_late) == 1
        got = by[("observation.before_death", "hosp")]
        # L1, L2 and L3 (in the window) pass; L4's two results fail.
        assert (got["failing"], got["denominator"], sorted(got["sample"])) == (2, 8, hosp_late)
        got = by[("observation.before_death", "clinic")]
        assert (got["failing"], got["denominator"], got["sample"]) == (1, 5, clinic_late)
        assert not by[("observation.before_death", "*")]["passed"]

        (visit,) = ids(Encounter, Encounter.local_id == "V9")
        got = by[("encounter.before_death", "hosp")]
        assert (got["failing"], got["denominator"], got["sample"]) == (1, 1, [visit])

        (l4,) = ids(DiagnosticReport, DiagnosticReport.local_id == "L4")
        got = by[("report.before_death", "hosp")]
        assert (got["failing"], got["denominator"], got["sample"]) == (1, 4, [l4])

        # Exact links: L2 precedes PL0002; the clinic's report precedes its ServiceRequest.
        (l2,) = ids(DiagnosticReport, DiagnosticReport.local_id == "L2")
        got = by[("report.result_after_order", "hosp")]
        assert (got["failing"], got["denominator"], got["sample"]) == (1, 4, [l2])
        clinic_report = s.scalars(
            select(DiagnosticReport).where(DiagnosticReport.institution_id == "clinic")
        ).one()
        assert clinic_report.order_id is not None
        got = by[("report.result_after_order", "clinic")]
        assert (got["failing"], got["sample"]) == (1, [clinic_report.id])

        died = s.scalars(select(Patient).where(Patient.deceased_at.is_not(None))).all()
        assert sorted(p.deceased_at for p in died) == [  # type: ignore[type-var]
            datetime(2026, 3, 1, 4, tzinfo=UTC),
            datetime(2026, 3, 4, 13, 30, tzinfo=UTC),
        ]

    # The same on DuckDB over a Parquet export of the store.
    counts = actions.export_parquet(db_url, tmp_path / "pq")
    assert counts["patient"] >= 2
    on_duckdb = run_quality(
        as_of=AS_OF, tables=sources.read_parquet(tmp_path / "pq"), backend="duckdb"
    )
    with members() as s:
        again = _results(s, on_duckdb.id)
    strip = ("seconds",)
    assert {k: {f: v for f, v in r.items() if f not in strip} for k, r in again.items()} == {
        k: {f: v for f, v in r.items() if f not in strip} for k, r in by.items()
    }


def test_a_wider_window_lets_a_late_autopsy_through(
    feed: Feed, run_quality: Run, members: sessionmaker[Session]
) -> None:
    from carepool.quality.checks import REGISTRY
    from carepool.quality.config import parse_config

    feed(HOSPITAL, source="hosp")
    config = parse_config({"params": {"after_death_hours": 72}}, set(REGISTRY))
    run = run_quality(as_of=AS_OF, config=config)
    with members() as s:
        by = _results(s, run.id)
    assert by[("observation.before_death", "hosp")]["failing"] == 0
    assert by[("report.before_death", "hosp")]["passed"]
