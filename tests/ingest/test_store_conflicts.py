"""A patient is never confused with another: a record that exists under one patient and arrives
under another is a conflict, rejected and dead-lettered with both patients named, never moved
(HL7 v2 and FHIR, SQLite and PostgreSQL, through a run and the HTTP API)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.ingest.models import DeadLetter
from carepool.records.models import DiagnosticReport, Observation, Patient
from tests.conftest import Tokens
from tests.ingest import feeds
from tests.ingest.conftest import Ingest


def _oru(control: str, pid: str, name: str, results: list[tuple[str, str, str]]) -> str:
    """An ORU^R01 for patient `pid`; each result is (placer number, test code, value)."""
    segments = [
        f"MSH|^~\\&|LIS|TOWNSHIP||CAREPOOL|20260301083000+0800||ORU^R01|{control}|P|2.5.1",
        f"PID|1||{pid}^^^TOWNSHIP^MR||{name}||19900307|M",
    ]
    for i, (placer, code, value) in enumerate(results, start=1):
        segments += [
            f"OBR|{i}|{placer}||CBC^血常规^L|||20260301080000+0800|||||||||||||||"
            "20260301083000+0800|||F",
            f"OBX|1|NM|{code}^{code}^L||{value}|g/L|120-160|N|||F",
        ]
    return "\r".join(segments)


FIRST = _oru("M1", "T0001", "张^三", [("PL77", "HGB", "135")])
# A later message reuses placer number PL77 for another patient, and has a result of its own.
SECOND = _oru("M2", "T0002", "李^四", [("PL77", "HGB", "99"), ("PL78", "HGB", "141")])


def test_a_reused_placer_number_is_a_conflict_and_moves_nothing(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    first = ingest(feeds.hl7_file(FIRST), "m1.hl7", source="clinic")
    assert (first.stored, first.rejected) == (3, 0)
    with members() as s:
        report = s.scalars(select(DiagnosticReport)).one()
        owner, report_id = report.patient_id, report.id
        hgb = s.scalars(select(Observation)).one()
        hgb_id, hgb_hash = hgb.id, hgb.content_hash

    second = ingest(feeds.hl7_file(SECOND), "m2.hl7", source="clinic")
    assert second.status == "succeeded" and second.balanced
    # the conflicting report and its observation are rejected; the patient and the other
    # result of the message are stored
    assert second.rejected == 2 and second.updated == 0
    assert second.by_kind["report"] == {"stored": 1, "rejected": 1, "conflicts": 1}
    assert second.by_kind["observation"] == {"stored": 1, "rejected": 1, "conflicts": 1}
    assert second.by_kind["patient"] == {"stored": 1}
    with members() as s:
        report = s.get(DiagnosticReport, report_id)
        assert report is not None and report.patient_id == owner
        hgb = s.get(Observation, hgb_id)
        assert hgb is not None and (hgb.patient_id, hgb.content_hash) == (owner, hgb_hash)
        assert hgb.original_value == "135"
        second_patient = s.scalars(select(Patient).where(Patient.local_id == "T0002")).one()
        theirs = s.scalars(
            select(Observation).where(Observation.patient_id == second_patient.id)
        ).all()
        assert [o.original_value for o in theirs] == ["141"]
        letter = s.scalars(select(DeadLetter)).one()
        assert letter.rejected == 2 and b"T0002" in letter.raw and b"PL77" in letter.raw
        reason = letter.reason
    assert reason.count("patient conflict") == 2
    assert "the report hl7v2:TOWNSHIP|PL77 belongs to patient TOWNSHIP|T0001" in reason
    assert f"({owner})" in reason and "names patient TOWNSHIP|T0002" in reason
    assert f"({second_patient.id})" in reason


def test_the_same_message_again_is_still_a_conflict_and_the_first_still_a_duplicate(
    ingest: Ingest,
) -> None:
    ingest(feeds.hl7_file(FIRST), "m1.hl7", source="clinic")
    ingest(feeds.hl7_file(SECOND), "m2.hl7", source="clinic")
    again = ingest(feeds.hl7_file(FIRST, SECOND), "both.hl7", source="clinic")
    assert again.stored == 0 and again.rejected == 2 and again.balanced
    assert again.duplicates == again.received - 2


def _ndjson(*resources: dict[str, object]) -> bytes:
    return "\n".join(json.dumps(r) for r in resources).encode()


def _patient(pid: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": pid, "name": [{"text": pid}], "gender": "male"}


def _observation(oid: str, pid: str, value: float) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-03-01T08:00:00+08:00",
        "valueQuantity": {"value": value, "unit": "g/L"},
    }


def test_a_fhir_resource_whose_subject_changes_is_a_conflict(
    client: TestClient, tokens: Tokens, members: sessionmaker[Session]
) -> None:
    admin = tokens.admin()

    def post(data: bytes) -> dict[str, object]:
        response = client.post(
            "/api/v1/ingest",
            params={"source": "hosp", "filename": "export.ndjson"},
            content=data,
            headers=admin,
        )
        assert response.status_code == 201, response.text
        body: dict[str, object] = response.json()
        return body

    post(_ndjson(_patient("p1"), _patient("p2"), _observation("o1", "p1", 135)))
    moved = post(_ndjson(_observation("o1", "p2", 99), _observation("o2", "p2", 120)))
    assert (moved["stored"], moved["rejected"], moved["updated"]) == (1, 1, 0)
    with members() as s:
        rows = {o.local_id: o for o in s.scalars(select(Observation))}
        p1 = s.scalars(select(Patient).where(Patient.local_id == "p1")).one()
        assert rows["o1"].patient_id == p1.id and rows["o1"].original_number == 135
        assert rows["o2"].patient_id != p1.id
    letters = client.get("/api/v1/ingest/dead-letters", headers=admin).json()["items"]
    assert len(letters) == 1
    reason = letters[0]["reason"]
    assert "the observation" in reason and "|o1 belongs to patient" in reason
    assert "|p1 (" in reason and "names patient" in reason and "|p2 (" in reason
