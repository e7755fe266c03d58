"""FHIR Slot search and Appointment create/search/read, valid R4 and access-checked."""

from __future__ import annotations

from fastapi.testclient import TestClient
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.slot import Slot

from tests.booking.conftest import at, pid

Headers = dict[str, dict[str, str]]
FHIR = {"Content-Type": "application/fhir+json"}


def _slots(client: TestClient, h: dict[str, str], **params: str) -> dict:
    response = client.get("/fhir/Slot", params={"service-type": "ct-head", **params}, headers=h)
    assert response.status_code == 200, response.text
    Bundle.model_validate(response.json())
    return response.json()


def test_slot_search_is_valid_r4_and_honours_start(client: TestClient, pool: Headers) -> None:
    bundle = _slots(client, pool["clinic_doctor"], start="ge" + at(2, 9), status="free", _count="3")
    entries = [e["resource"] for e in bundle["entry"]]
    assert len(entries) == 3
    for e in entries:
        Slot.model_validate(e)
    assert entries[0]["start"] == "2026-12-02T01:00:00+00:00"  # 09:00 local: open since 08:00
    assert entries[0]["schedule"]["reference"] == "Schedule/hosp-ct1"
    assert any(link["relation"] == "next" for link in bundle["link"])


def test_slot_search_needs_one_service(client: TestClient, pool: Headers) -> None:
    response = client.get("/fhir/Slot", headers=pool["admin"])
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_create_appointment_from_slot_then_search_and_read(
    client: TestClient, pool: Headers
) -> None:
    slot = _slots(client, pool["clinic_doctor"], _count="1")["entry"][0]["resource"]
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "participant": [
            {
                "actor": {"reference": f"Patient/{pid('p5', 'clinic')}", "display": "张三"},
                "status": "accepted",
            }
        ],
    }
    created = client.post(
        "/fhir/Appointment",
        json=body,
        headers={**pool["clinic_doctor"], **FHIR, "If-None-Exist": "k1"},
    )
    assert created.status_code == 201, created.text
    appt = Appointment.model_validate(created.json())
    assert appt.status == "booked" and appt.start.isoformat() == slot["start"]
    again = client.post(
        "/fhir/Appointment",
        json=body,
        headers={**pool["clinic_doctor"], **FHIR, "If-None-Exist": "k1"},
    )
    assert again.status_code == 200 and again.json()["id"] == appt.id

    taken = client.post("/fhir/Appointment", json=body, headers={**pool["hosp_doctor"], **FHIR})
    assert taken.status_code == 409
    assert taken.json()["resourceType"] == "OperationOutcome"

    found = client.get(
        "/fhir/Appointment",
        params={"patient": f"Patient/{pid('p5', 'clinic')}"},
        headers=pool["clinic_doctor"],
    ).json()
    assert found["total"] == 1 and found["entry"][0]["resource"]["id"] == appt.id
    read = client.get(f"/fhir/Appointment/{appt.id}", headers=pool["clinic_doctor"])
    assert read.status_code == 200
    refs = {p["actor"]["reference"] for p in read.json()["participant"]}
    assert refs == {
        f"Patient/{pid('p5', 'clinic')}",
        "Device/hosp-ct1",
        "PractitionerRole/hosp-tech1",
    }

    # The booked time is no longer offered.
    first = _slots(client, pool["clinic_doctor"], _count="1")["entry"][0]["resource"]
    assert first["start"] > slot["start"]
    assert client.get(f"/fhir/Slot/{slot['id']}", headers=pool["admin"]).status_code == 404


def test_pending_appointment_is_a_hold(client: TestClient, pool: Headers) -> None:
    slot = _slots(client, pool["clinic_doctor"], _count="1")["entry"][0]["resource"]
    body = {
        "resourceType": "Appointment",
        "status": "pending",
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "participant": [{"actor": {"reference": f"Patient/{pid('p7')}"}, "status": "accepted"}],
    }
    created = client.post("/fhir/Appointment", json=body, headers={**pool["clinic_doctor"], **FHIR})
    assert created.status_code == 201 and created.json()["status"] == "pending"


def test_invalid_appointment_is_outcome_naming_field(client: TestClient, pool: Headers) -> None:
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "participant": [{"actor": {"reference": "Patient/x"}, "status": "accepted"}],
    }
    response = client.post(
        "/fhir/Appointment", json=body, headers={**pool["clinic_doctor"], **FHIR}
    )
    assert response.status_code == 422
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][1]["expression"] == ["Appointment.slot"]


def test_other_member_sees_no_appointments(client: TestClient, pool: Headers, tokens) -> None:  # type: ignore[no-untyped-def]
    slot = _slots(client, pool["clinic_doctor"], _count="1")["entry"][0]["resource"]
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "participant": [{"actor": {"reference": f"Patient/{pid('p8')}"}, "status": "accepted"}],
    }
    appt = client.post(
        "/fhir/Appointment", json=body, headers={**pool["clinic_doctor"], **FHIR}
    ).json()
    viewer_elsewhere = tokens.headers("member_admin", "clinic")
    assert (
        client.get(f"/fhir/Appointment/{appt['id']}", headers=viewer_elsewhere).status_code == 200
    )  # same member
    nurse_hosp = tokens.headers("bed_manager", "hosp")
    assert (
        client.get(f"/fhir/Appointment/{appt['id']}", headers=nurse_hosp).status_code == 200
    )  # performing member
    meta = client.get("/fhir/metadata").json()
    types = {r["type"]: r for r in meta["rest"][0]["resource"]}
    assert {"code": "create"} in types["Appointment"]["interaction"]
