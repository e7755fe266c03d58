"""Lab and exam orders through the HTTP API: routing (nearest with capacity, or picked),
tracking to completion with a result link, invalid transitions, access, FHIR ServiceRequest."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.servicerequest import ServiceRequest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.booking.orders.service import haversine_km
from carepool.core.audit import AuditRecord
from carepool.core.events import OutboxEvent
from tests.booking.conftest import at, pid

Headers = dict[str, dict[str, str]]


def _order(client: TestClient, h: dict[str, str], service: str = "ct-head", **extra: Any) -> Any:
    body: dict[str, Any] = {
        "service_id": service,
        "patient_ref": pid("p-ord-1"),
        "patient_name": "Liu Yang",
        "indication": "fall, head injury",
    }
    body.update(extra)
    return client.post("/api/v1/orders", json=body, headers=h)


def _close(client: TestClient, admin: dict[str, str], resource: str, start: str, end: str) -> str:
    """Close a resource for a while (a calendar exception); returns its id."""
    xid = f"{resource}-closed-{start[:10]}"
    response = client.post(
        "/api/v1/calendar-exceptions",
        json={
            "id": xid,
            "resource_id": resource,
            "kind": "closure",
            "start": start,
            "end": end,
            "reason": "test",
        },
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return xid


def _events(sessions: sessionmaker[Session], entity_id: str) -> list[str]:
    with sessions() as s:
        rows = s.scalars(
            select(OutboxEvent).where(OutboxEvent.entity_id == entity_id).order_by(OutboxEvent.id)
        )
        return [e.type for e in rows]


def test_haversine_known_distances() -> None:
    assert haversine_km(30.2, 120.2, 30.2, 120.2) == 0
    # One tenth of a degree of latitude is about 11.1 km anywhere.
    assert haversine_km(30.1, 120.2, 30.2, 120.2) == pytest.approx(11.12, abs=0.01)
    # Beijing - Shanghai, about 1068 km great-circle.
    assert haversine_km(39.9042, 116.4074, 31.2304, 121.4737) == pytest.approx(1068, abs=3)


def test_routed_to_the_nearest_member_with_capacity(
    client: TestClient, flows: Headers, sessions: sessionmaker[Session]
) -> None:
    clinic = flows["clinic_doctor"]
    # A blood count: the township centre (6 km) beats the county hospital (11 km).
    cbc = _order(client, clinic, "cbc")
    assert cbc.status_code == 201, cbc.text
    body = cbc.json()
    assert body["status"] == "routed" and body["performing_institution_id"] == "town"
    assert body["distance_km"] == pytest.approx(5.9, abs=0.1)
    assert body["routing_note"].startswith("nearest with capacity")
    assert _events(sessions, body["id"]) == ["booking.order.placed", "booking.order.routed"]

    # The township analyser is closed until Thursday: a stat order (one day ahead) goes to
    # the county hospital; a routine one (two weeks) still goes to the township centre.
    _close(client, flows["admin"], "town-an1", at(1, 0), at(3, 0))
    stat = _order(client, clinic, "cbc", priority="stat").json()
    assert stat["performing_institution_id"] == "hosp"
    assert stat["distance_km"] == pytest.approx(11.1, abs=0.1)
    routine = _order(client, clinic, "cbc", priority="routine").json()
    assert routine["performing_institution_id"] == "town"

    # CT: the county hospital (11 km) unless its scanner is out today; then the branch (39 km).
    assert _order(client, clinic).json()["performing_institution_id"] == "hosp"
    _close(client, flows["admin"], "hosp-ct1", at(1, 0), at(2, 0))
    ct = _order(client, clinic, priority="asap").json()
    assert ct["performing_institution_id"] == "east"
    assert ct["distance_km"] == pytest.approx(38.5, abs=0.2)


def test_routed_to_the_picked_member_even_when_farther(client: TestClient, flows: Headers) -> None:
    picked = _order(client, flows["clinic_doctor"], target_institution_id="east")
    assert picked.status_code == 201, picked.text
    body = picked.json()
    assert body["performing_institution_id"] == "east" and body["target_institution_id"] == "east"
    assert body["routing_note"].startswith("picked by the orderer")
    not_offering = _order(client, flows["clinic_doctor"], target_institution_id="town")
    assert not_offering.status_code == 422
    assert not_offering.json()["errors"][0]["location"] == "body:target_institution_id"
    not_lab = _order(client, flows["clinic_doctor"], "cardio-consult")
    assert not_lab.status_code == 422


def test_no_capacity_keeps_the_order_placed_until_routed_again(
    client: TestClient, flows: Headers
) -> None:
    admin, clinic = flows["admin"], flows["clinic_doctor"]
    hosp_closure = _close(client, admin, "hosp-ct1", at(1, 0), at(2, 0))
    _close(client, admin, "east-ct1", at(1, 0), at(2, 0))
    placed = _order(client, clinic, priority="stat").json()
    assert placed["status"] == "placed" and placed["performing_institution_id"] is None
    assert "no member offering ct-head has a free slot within 1 day" in placed["routing_note"]
    oid = placed["id"]
    again = client.post(f"/api/v1/orders/{oid}/route", headers=clinic)
    assert again.status_code == 409 and again.json()["type"].endswith("no-capacity")
    assert {c["institution_id"] for c in again.json()["considered"]} == {"hosp", "east"}
    # Only the ordering member sees (and routes) a placed order.
    assert client.get(f"/api/v1/orders/{oid}", headers=flows["hosp_doctor"]).status_code == 403
    deleted = client.delete(f"/api/v1/calendar-exceptions/{hosp_closure}", headers=admin)
    assert deleted.status_code in (200, 204), deleted.text
    routed = client.post(f"/api/v1/orders/{oid}/route", headers=clinic)
    assert routed.status_code == 200, routed.text
    assert routed.json()["status"] == "routed"
    assert routed.json()["performing_institution_id"] == "hosp"
    assert client.post(f"/api/v1/orders/{oid}/route", headers=clinic).status_code == 409


def test_tracked_to_completion_with_a_result_filled_later(
    client: TestClient, flows: Headers, sessions: sessionmaker[Session]
) -> None:
    clinic, hosp, lab = flows["clinic_doctor"], flows["hosp_doctor"], flows["hosp_lab"]
    created = _order(client, {**clinic, "Idempotency-Key": "o-1"})
    again = _order(client, {**clinic, "Idempotency-Key": "o-1"})
    assert created.status_code == 201 and again.status_code == 200
    oid = created.json()["id"]
    assert again.json()["id"] == oid

    slot = client.get(
        "/api/v1/slots", params={"service": "ct-head", "institution": "hosp"}, headers=clinic
    ).json()["items"][0]
    scheduled = client.post(
        f"/api/v1/orders/{oid}/schedule", json={"slot_id": slot["id"]}, headers=clinic
    )
    assert scheduled.status_code == 200, scheduled.text
    body = scheduled.json()
    assert body["status"] == "scheduled" and body["appointment"]["start"] == slot["start"]
    apt = body["appointment_id"]

    assert client.post(f"/api/v1/orders/{oid}/start", headers=clinic).status_code == 403
    started = client.post(f"/api/v1/orders/{oid}/start", headers=lab)
    assert started.status_code == 200 and started.json()["status"] == "in_progress"
    assert started.json()["appointment"]["status"] == "arrived"
    done = client.post(f"/api/v1/orders/{oid}/complete", json={}, headers=hosp)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed" and done.json()["result_ref"] is None
    assert client.get(f"/api/v1/appointments/{apt}", headers=hosp).json()["status"] == "fulfilled"

    # The data middle platform (a consortium-wide caller) fills the result link later.
    assert (
        client.put(
            f"/api/v1/orders/{oid}/result", json={"result_ref": "x"}, headers=clinic
        ).status_code
        == 403
    )
    filled = client.put(
        f"/api/v1/orders/{oid}/result",
        json={"result_ref": "DiagnosticReport/ct-77"},
        headers=flows["admin"],
    )
    assert filled.status_code == 200, filled.text
    seen = client.get(f"/api/v1/orders/{oid}", headers=clinic).json()
    assert seen["result_ref"] == "DiagnosticReport/ct-77" and seen["result_at"] is not None
    assert [h["status"] for h in seen["history"]] == [
        "placed",
        "routed",
        "scheduled",
        "in_progress",
        "completed",
        "completed",
    ]
    assert _events(sessions, oid) == [
        "booking.order.placed",
        "booking.order.routed",
        "booking.order.scheduled",
        "booking.order.in_progress",
        "booking.order.completed",
        "booking.order.result_attached",
    ]
    with sessions() as s:
        details = [
            r.detail
            for r in s.scalars(
                select(AuditRecord)
                .where(AuditRecord.entity_type == "order", AuditRecord.entity_id == oid)
                .order_by(AuditRecord.id)
            )
        ]
    assert details[:6] == ["", "route", "schedule", "start", "complete", "attach-result"]

    sr = ServiceRequest.model_validate(
        client.get(f"/fhir/ServiceRequest/{oid}", headers=clinic).json()
    )
    assert sr.status == "completed"
    assert sr.category is not None and sr.category[0].coding[0].code == "363679005"
    assert any(
        e.url.endswith("result-ref") and e.valueString == "DiagnosticReport/ct-77"
        for e in sr.extension or []
    )


def test_lab_order_without_appointment_and_completion_with_result(
    client: TestClient, flows: Headers
) -> None:
    clinic, town = flows["clinic_doctor"], flows["town_doctor"]
    oid = _order(client, clinic, "cbc").json()["id"]
    queued = client.post(f"/api/v1/orders/{oid}/schedule", headers=town)
    assert queued.status_code == 200 and queued.json()["appointment_id"] is None
    assert client.post(f"/api/v1/orders/{oid}/start", headers=town).status_code == 200
    done = client.post(
        f"/api/v1/orders/{oid}/complete",
        json={"result_ref": "Observation/cbc-1"},
        headers=town,
    ).json()
    assert done["status"] == "completed" and done["result_ref"] == "Observation/cbc-1"


def test_invalid_transitions_are_conflicts(client: TestClient, flows: Headers) -> None:
    clinic, hosp = flows["clinic_doctor"], flows["hosp_doctor"]
    oid = _order(client, clinic).json()["id"]
    url = f"/api/v1/orders/{oid}"
    premature = client.post(url + "/complete", json={}, headers=hosp)
    assert premature.status_code == 409
    assert premature.json()["type"].endswith("invalid-transition")
    assert client.put(url + "/result", json={"result_ref": "r"}, headers=hosp).status_code == 409
    assert client.post(url + "/cancel", json={}, headers=clinic).status_code == 422
    cancelled = client.post(url + "/cancel", json={"reason": "duplicate"}, headers=hosp)
    assert cancelled.status_code == 200 and cancelled.json()["cancel_reason"] == "duplicate"
    for step in ("schedule", "start", "route"):  # the state is checked before the member
        assert client.post(f"{url}/{step}", headers=hosp).status_code == 409
    assert client.post(url + "/cancel", json={"reason": "x"}, headers=clinic).status_code == 409


def test_cancelled_appointment_sends_the_order_back_to_routed(
    client: TestClient, flows: Headers
) -> None:
    clinic, hosp = flows["clinic_doctor"], flows["hosp_doctor"]
    oid = _order(client, clinic).json()["id"]
    apt = client.post(
        f"/api/v1/orders/{oid}/schedule", json={"start": at(2, 9, 5)}, headers=clinic
    ).json()["appointment_id"]
    client.post(f"/api/v1/appointments/{apt}/cancel", json={"reason": "scanner"}, headers=hosp)
    listed = client.get("/api/v1/orders", params={"mine": "ordered"}, headers=clinic).json()
    (item,) = [i for i in listed["items"] if i["id"] == oid]
    assert item["status"] == "routed" and item["appointment_id"] is None
    rescheduled = client.post(
        f"/api/v1/orders/{oid}/schedule", json={"start": at(2, 9, 5)}, headers=clinic
    )
    assert rescheduled.status_code == 200 and rescheduled.json()["status"] == "scheduled"


def test_lists_for_both_members_and_access(client: TestClient, flows: Headers) -> None:
    clinic, hosp, town = flows["clinic_doctor"], flows["hosp_doctor"], flows["town_doctor"]
    ct = _order(client, clinic).json()["id"]
    cbc = _order(client, clinic, "cbc").json()["id"]  # performed by town
    ordered = client.get("/api/v1/orders", params={"mine": "ordered"}, headers=clinic).json()
    assert {i["id"] for i in ordered["items"]} == {ct, cbc}
    performing = client.get("/api/v1/orders", params={"mine": "performing"}, headers=hosp).json()
    assert [i["id"] for i in performing["items"]] == [ct]
    assert (
        client.get("/api/v1/orders", params={"mine": "ordered"}, headers=hosp).json()["total"] == 0
    )
    by_service = client.get("/api/v1/orders", params={"service": "cbc"}, headers=clinic).json()
    assert [i["id"] for i in by_service["items"]] == [cbc]
    assert client.get(f"/api/v1/orders/{ct}", headers=town).status_code == 403
    assert client.get(f"/api/v1/orders/{cbc}", headers=town).status_code == 200
    assert (
        client.post(f"/api/v1/orders/{ct}/cancel", json={"reason": "x"}, headers=town).status_code
        == 403
    )

    response = client.get(
        "/fhir/ServiceRequest",
        params={"requester": "Organization/clinic", "performer": "Organization/hosp"},
        headers=hosp,
    )
    assert response.status_code == 200, response.text
    bundle = Bundle.model_validate(response.json())
    assert [e.resource.id for e in bundle.entry or []] == [ct]
