"""Bookings name a registered patient, and a patient's own time is theirs (decision 0013).

Through the HTTP API on SQLite and PostgreSQL (on PostgreSQL appointments both through the
booking function and the ORM path): unknown references are refused naming the field and the
value; a walk-in registered at a clinic books a CT at the county hospital, a later feed of the
clinic for that MRN updates the same record, and the county side reads the person's results
through `$everything`; one patient cannot be on two scanners, in two beds, or in a clash made by
a reschedule, unless the service's policy allows it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from carepool.booking import _fast
from carepool.core.audit import AuditRecord
from carepool.core.time import FakeClock
from carepool.records.models import Patient
from tests.booking.conftest import at, pid, register_patients
from tests.booking.test_fast_path import _duo_catalog
from tests.conftest import Tokens

Headers = dict[str, dict[str, str]]


@pytest.fixture(params=["fast", "orm"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, db_url: str) -> str:
    """On PostgreSQL, each test once through the booking function and once through the ORM."""
    if request.param == "fast" and not db_url.startswith("postgresql"):
        pytest.skip("the booking function exists on PostgreSQL only")
    monkeypatch.setattr(_fast, "ENABLED", request.param == "fast")
    return str(request.param)


@pytest.fixture()
def scanners(
    client: TestClient, tokens: Tokens, clock: FakeClock, sessions: sessionmaker[Session]
) -> Headers:
    """Three CT scanners and four technicians at `hosp`; patients at `hosp` and `clinic`."""
    admin = tokens.admin()
    doc = _duo_catalog()
    response = client.post("/api/v1/catalog/import", json=doc, headers=admin)
    assert response.status_code == 200, response.text
    register_patients(sessions, ["hosp", "clinic"])
    return {
        "admin": admin,
        "clinic_doctor": tokens.headers("clinician", "clinic"),
        "hosp_doctor": tokens.headers("clinician", "hosp"),
    }


def _book(
    client: TestClient, h: dict[str, str], start: str, patient: str, service: str = "ct-head"
) -> Any:
    body = {"service_id": service, "institution_id": "hosp", "start": start, "patient_ref": patient}
    return client.post("/api/v1/appointments", json=body, headers=h)


def test_an_unknown_patient_cannot_book_a_ct(
    client: TestClient, scanners: Headers, path: str
) -> None:
    refused = _book(client, scanners["clinic_doctor"], at(2, 9), "no-such-patient-!!")
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert "'no-such-patient-!!'" in problem["detail"]
    (error,) = problem["errors"]
    assert error["location"] == "body:patient_ref"
    assert "'no-such-patient-!!'" in error["message"]
    listed = client.get("/api/v1/appointments", headers=scanners["admin"]).json()
    assert listed["total"] == 0


def test_a_patient_of_another_member_is_refused_unless_linked(
    client: TestClient, scanners: Headers, path: str
) -> None:
    hosp_only = client.post(
        "/api/v1/patients",
        json={"local_id": "H-77", "name": "李四"},
        headers=scanners["hosp_doctor"],
    )
    assert hosp_only.status_code == 201, hosp_only.text
    ref = hosp_only.json()["reference"]
    # The clinic does not know this patient: the same 422 as for an unknown one (no leak).
    refused = _book(client, scanners["clinic_doctor"], at(2, 9), ref)
    assert refused.status_code == 422 and refused.json()["errors"][0]["location"].endswith(
        "patient_ref"
    )
    # The hospital's own doctor may; a clinic patient linked to a hospital record, the clinic too.
    assert _book(client, scanners["hosp_doctor"], at(2, 9), ref).status_code == 201
    linked = _book(client, scanners["clinic_doctor"], at(2, 10), f"Patient/{pid('p2', 'hosp')}")
    assert linked.status_code == 201, linked.text


def test_a_walk_in_books_a_ct_and_the_county_reads_their_results(
    client: TestClient, scanners: Headers, sessions: sessionmaker[Session], path: str
) -> None:
    clinic = scanners["clinic_doctor"]
    walk_in = {"local_id": "W0001", "name": "王五", "sex": "male", "birth_date": "1960-05-04"}
    registered = client.post("/api/v1/patients", json=walk_in, headers=clinic)
    assert registered.status_code == 201, registered.text
    patient = registered.json()
    assert patient["institution_id"] == "clinic" and patient["system"] == "clinic"
    again = client.post("/api/v1/patients", json=walk_in, headers=clinic)
    assert again.status_code == 200 and again.json()["id"] == patient["id"]
    elsewhere = client.post(
        "/api/v1/patients", json={**walk_in, "institution_id": "hosp"}, headers=clinic
    )
    assert elsewhere.status_code == 403  # a clinic registers its own patients only

    booked = _book(client, clinic, at(2, 9), patient["reference"])
    assert booked.status_code == 201, booked.text
    appointment = booked.json()
    assert appointment["patient_id"] == patient["id"]
    assert appointment["patient"] == {"reference": f"Patient/{patient['id']}"}
    fhir = client.get(f"/fhir/Appointment/{appointment['id']}", headers=clinic).json()
    actors = {p["actor"]["reference"] for p in fhir["participant"]}
    assert f"Patient/{patient['id']}" in actors

    # The clinic's feed later sends a result for the same MRN: the same record, not a second.
    oru = "\r".join(
        [
            "MSH|^~\\&|LIS|clinic||CAREPOOL|20261201083000+0800||ORU^R01|M1|P|2.5.1",
            "PID|1||W0001^^^clinic^MR||王^五||19600504|M",
            "OBR|1|O1|L1|GLU^葡萄糖^L|||20261201080000+0800",
            "OBX|1|NM|GLU^葡萄糖^L||5.4|mmol/L|3.9-6.1|N|||F",
        ]
    )
    fed = client.post(
        "/api/v1/ingest",
        params={"source": "clinic", "format": "hl7v2"},
        content=oru.encode(),
        headers=scanners["admin"],
    )
    assert fed.status_code == 201, fed.text
    with sessions() as s:
        records = s.scalar(
            select(func.count()).select_from(Patient).where(Patient.local_id == "W0001")
        )
        audits = s.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.entity_id == patient["id"], AuditRecord.detail == "register")
        )
    assert records == 1 and audits == 1

    # From the booking, the county side (a consortium administrator) reaches the results.
    everything = client.get(
        f"/fhir/{appointment['patient']['reference']}/$everything", headers=scanners["admin"]
    )
    assert everything.status_code == 200, everything.text
    kinds = [e["resource"]["resourceType"] for e in everything.json()["entry"]]
    assert "Patient" in kinds and "Observation" in kinds


def test_one_patient_is_not_on_two_scanners_at_once(
    client: TestClient, scanners: Headers, path: str
) -> None:
    doctor = scanners["clinic_doctor"]
    first = _book(client, doctor, at(2, 9), pid("p1"))
    assert first.status_code == 201, first.text
    # Scanners 2 and 3 are free, but the patient is not: 409 naming the other booking.
    clash = _book(client, doctor, at(2, 9, 5), pid("p1"))
    assert clash.status_code == 409, clash.text
    problem = clash.json()
    assert problem["type"].endswith("/patient-busy")
    assert problem["other"]["id"] == first.json()["id"]
    assert problem["other"]["kind"] == "appointment"
    assert first.json()["id"] in problem["detail"]
    # The same person's record at the clinic shares their time line (one person, two records).
    assert _book(client, doctor, at(2, 9), pid("p1", "clinic")).status_code == 409
    # Another patient takes scanner 2 at that time; the first, after cancelling, books again.
    assert _book(client, doctor, at(2, 9), pid("p2")).status_code == 201
    cancel = client.post(
        f"/api/v1/appointments/{first.json()['id']}/cancel", json={"reason": "x"}, headers=doctor
    )
    assert cancel.status_code == 200
    assert _book(client, doctor, at(2, 9, 5), pid("p1")).status_code == 201


def test_a_service_whose_policy_allows_it_overlaps_the_patients_time(
    client: TestClient, scanners: Headers, path: str
) -> None:
    doctor = scanners["clinic_doctor"]
    assert _book(client, doctor, at(2, 9), pid("p3")).status_code == 201
    assert _book(client, doctor, at(2, 9), pid("p3"), "ct-duo").status_code == 409
    policy = {"allow_patient_overlap": True}
    put = client.put(
        "/api/v1/services/ct-duo/booking-policy", json=policy, headers=scanners["admin"]
    )
    assert put.status_code == 200, put.text
    assert put.json()["allow_patient_overlap"] is True
    assert _book(client, doctor, at(2, 9), pid("p3"), "ct-duo").status_code == 201


def test_a_lapsed_hold_gives_the_patients_time_back(
    client: TestClient, scanners: Headers, clock: FakeClock, path: str
) -> None:
    doctor = scanners["clinic_doctor"]
    body = {"service_id": "ct-head", "institution_id": "hosp", "start": at(2, 9)}
    held = client.post(
        "/api/v1/appointments",
        json={**body, "patient_ref": pid("p4"), "hold": True},
        headers=doctor,
    )
    assert held.status_code == 201, held.text
    assert _book(client, doctor, at(2, 9), pid("p4")).status_code == 409  # held: still theirs
    clock.advance(timedelta(minutes=11))  # the hold (10 min) ran out
    again = _book(client, doctor, at(2, 9), pid("p4"))
    assert again.status_code == 201, again.text
    old = client.get(f"/api/v1/appointments/{held.json()['id']}", headers=doctor).json()
    assert old["status"] == "cancelled" and old["cancel_reason"] == "hold expired"


def test_a_reschedule_into_the_patients_other_booking_is_refused(
    client: TestClient, scanners: Headers, path: str
) -> None:
    doctor = scanners["clinic_doctor"]
    first = _book(client, doctor, at(2, 9), pid("p5")).json()
    second = _book(client, doctor, at(2, 10), pid("p5")).json()
    moved = client.post(
        f"/api/v1/appointments/{second['id']}/reschedule",
        json={"start": at(2, 9, 5)},
        headers=doctor,
    )
    assert moved.status_code == 409, moved.text
    assert moved.json()["other"]["id"] == first["id"]
    kept = client.get(f"/api/v1/appointments/{second['id']}", headers=doctor).json()
    assert kept["start"] == "2026-12-02T02:00:00+00:00"  # 10:00 local, as before
    ok = client.post(
        f"/api/v1/appointments/{second['id']}/reschedule", json={"start": at(2, 11)}, headers=doctor
    )
    assert ok.status_code == 200, ok.text


def test_a_patient_is_not_in_two_beds_nor_at_an_exam_elsewhere_during_a_stay(
    client: TestClient, wards: Headers
) -> None:
    from tests.booking.test_inpatient import _admit, _do, _request

    h = wards["bed_manager"]
    stay = _admit(client, h, "hosp-r2-1", patient="p6")
    second = _request(client, h, patient="p6")
    refused = _do(client, h, second["id"], "admit", bed_id="hosp-r2-2")
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"].endswith("/patient-busy")
    assert refused.json()["other"]["id"] == stay["id"]
    assert refused.json()["other"]["kind"] == "admission"
    # Discharged, the patient may lie in a bed again.
    assert _do(client, h, stay["id"], "discharge").status_code == 200
    assert _do(client, h, second["id"], "admit", bed_id="hosp-r2-2").status_code == 200


def test_the_cli_registers_a_walk_in(db_url: str, sessions: sessionmaker[Session]) -> None:
    from typer.testing import CliRunner

    from carepool.cli import app
    from carepool.core.auth import Principal
    from tests.factories import small_catalog

    with sessions() as s, s.begin():
        from carepool.catalog.actions import do_import_catalog

        do_import_catalog(s, actor=Principal.system_actor("test"), raw=small_catalog())
    args = ["patients", "register", "W-9", "--member", "clinic", "--name", "赵六", "--db", db_url]
    first = CliRunner().invoke(app, [*args, "--json"])
    assert first.exit_code == 0, first.output
    assert '"created": true' in first.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "already registered at clinic" in again.output
    unknown = CliRunner().invoke(
        app, ["patients", "register", "W-9", "--member", "nowhere", "--db", db_url]
    )
    assert unknown.exit_code == 1
    with sessions() as s:
        found = s.scalars(select(Patient).where(Patient.local_id == "W-9")).all()
        assert [(p.institution_id, p.name) for p in found] == [("clinic", "赵六")]
