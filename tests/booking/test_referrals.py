"""Referrals through the HTTP API: the whole path as the referring clinic sees it, declines,
re-booking after a cancelled appointment, access, invalid transitions, FHIR ServiceRequest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.servicerequest import ServiceRequest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.booking.referrals import actions as referral_actions
from carepool.booking.referrals import service as referral_service
from carepool.booking.referrals.errors import ChangedConcurrently
from carepool.core.audit import AuditOutcome, AuditRecord
from carepool.core.auth import ROLE_SCOPES, Principal, Role
from carepool.core.events import OutboxEvent
from tests.booking.conftest import at, pid

Headers = dict[str, dict[str, str]]


def _refer(client: TestClient, h: dict[str, str], **extra: Any) -> Any:
    body = {
        "patient_ref": pid("p-ref-1"),
        "patient_name": "Chen Jing",
        "to_institution_id": "hosp",
        "service_id": "ct-head",
        "reason": "headache for three weeks, rule out a mass",
        "priority": "urgent",
    }
    body.update(extra)
    return client.post("/api/v1/referrals", json=body, headers=h)


def _status_seen_by(client: TestClient, h: dict[str, str], id: str, mine: str = "sent") -> str:
    """The referral's status in the member's list (the way the clinic follows it)."""
    listing = client.get("/api/v1/referrals", params={"mine": mine}, headers=h)
    assert listing.status_code == 200, listing.text
    (item,) = [i for i in listing.json()["items"] if i["id"] == id]
    return str(item["status"])


def _events(sessions: sessionmaker[Session], entity_id: str) -> list[str]:
    with sessions() as s:
        rows = s.scalars(
            select(OutboxEvent).where(OutboxEvent.entity_id == entity_id).order_by(OutboxEvent.id)
        )
        return [e.type for e in rows]


def test_full_path_seen_by_the_referring_clinic(
    client: TestClient, flows: Headers, sessions: sessionmaker[Session]
) -> None:
    clinic, hosp = flows["clinic_doctor"], flows["hosp_doctor"]
    created = _refer(client, {**clinic, "Idempotency-Key": "ref-1"})
    assert created.status_code == 201, created.text
    ref = created.json()
    rid = ref["id"]
    assert ref["status"] == "requested" and ref["from_institution_id"] == "clinic"
    again = _refer(client, {**clinic, "Idempotency-Key": "ref-1"})
    assert again.status_code == 200 and again.json()["id"] == rid
    assert _status_seen_by(client, clinic, rid) == "requested"
    assert _status_seen_by(client, hosp, rid, mine="received") == "requested"
    assert rid not in [
        i["id"]
        for i in client.get(
            "/api/v1/referrals", params={"mine": "received"}, headers=clinic
        ).json()["items"]
    ]

    accepted = client.post(
        f"/api/v1/referrals/{rid}/accept",
        json={"note": "we will see her this week", "book_from": at(3, 8), "book_until": at(5, 0)},
        headers=hosp,
    )
    assert accepted.status_code == 200, accepted.text
    assert _status_seen_by(client, clinic, rid) == "accepted"

    slots = client.get(f"/api/v1/referrals/{rid}/slots", params={"limit": 2}, headers=clinic)
    assert slots.status_code == 200, slots.text
    first = slots.json()["items"][0]
    assert first["start"] == "2026-12-03T00:05:00+00:00"  # Thursday 08:05 local, not earlier
    too_early = client.post(
        f"/api/v1/referrals/{rid}/book", json={"start": at(2, 9, 5)}, headers=clinic
    )
    assert too_early.status_code == 422
    assert too_early.json()["errors"][0]["location"] == "body:start"

    booked = client.post(
        f"/api/v1/referrals/{rid}/book",
        json={"slot_id": first["id"]},
        headers={**clinic, "Idempotency-Key": "book-1"},
    )
    assert booked.status_code == 200, booked.text
    body = booked.json()
    assert body["status"] == "booked" and body["appointment"]["start"] == first["start"]
    apt = body["appointment_id"]
    replay = client.post(
        f"/api/v1/referrals/{rid}/book",
        json={"slot_id": first["id"]},
        headers={**clinic, "Idempotency-Key": "book-1"},
    )
    assert replay.status_code == 200 and replay.json()["appointment_id"] == apt
    assert _status_seen_by(client, clinic, rid) == "booked"
    appointment = client.get(f"/api/v1/appointments/{apt}", headers=clinic).json()
    assert appointment["referral_id"] == rid and appointment["requester_institution_id"] == "clinic"

    # The receiving member runs the appointment; the clinic sees the referral attended.
    assert client.post(f"/api/v1/appointments/{apt}/arrive", headers=hosp).status_code == 200
    assert _status_seen_by(client, clinic, rid) == "booked"
    assert client.post(f"/api/v1/appointments/{apt}/fulfil", headers=hosp).status_code == 200
    assert _status_seen_by(client, clinic, rid) == "attended"

    by_clinic = client.post(
        f"/api/v1/referrals/{rid}/report", json={"report_text": "fine"}, headers=clinic
    )
    assert by_clinic.status_code == 403  # only the receiving member returns the report
    reported = client.post(
        f"/api/v1/referrals/{rid}/report",
        json={"report_ref": "DiagnosticReport/dr-1", "report_text": "No acute findings."},
        headers=hosp,
    )
    assert reported.status_code == 200, reported.text
    final = client.get(f"/api/v1/referrals/{rid}", headers=clinic).json()
    assert final["status"] == "report_returned"
    assert final["report_ref"] == "DiagnosticReport/dr-1"
    assert [h["status"] for h in final["history"]] == [
        "requested",
        "accepted",
        "booked",
        "attended",
        "report_returned",
    ]
    assert final["history"][3]["by"] == "referral-sync"

    types = [t for t in _events(sessions, rid) if t.startswith("booking.referral.")]
    assert types == [
        "booking.referral.requested",
        "booking.referral.accepted",
        "booking.referral.booked",
        "booking.referral.attended",
        "booking.referral.report_returned",
    ]
    with sessions() as s:
        rows = list(
            s.scalars(
                select(AuditRecord)
                .where(AuditRecord.entity_type == "referral", AuditRecord.entity_id == rid)
                .order_by(AuditRecord.id)
            )
        )
    assert [r.action.value for r in rows if r.action.value != "R"] == ["C", "U", "U", "U", "U"]
    assert [r.detail for r in rows if r.action.value == "U"] == [
        "accept",
        "book",
        "attend",
        "return-report",
    ]
    assert any(r.action.value == "R" and r.agent_institution == "clinic" for r in rows)

    fhir = client.get(f"/fhir/ServiceRequest/{rid}", headers=clinic)
    assert fhir.status_code == 200, fhir.text
    sr = ServiceRequest.model_validate(fhir.json())
    assert sr.status == "completed" and sr.intent == "order"
    assert sr.subject.reference == f"Patient/{pid('p-ref-1')}"
    assert sr.requester is not None and sr.requester.reference == "Organization/clinic"
    assert [p.reference for p in sr.performer or []] == ["Organization/hosp"]


def test_decline_with_reason_for_a_department_referral(
    client: TestClient, flows: Headers, sessions: sessionmaker[Session]
) -> None:
    clinic, hosp = flows["clinic_doctor"], flows["hosp_doctor"]
    ref = _refer(
        client, clinic, service_id=None, department_code="03.04", reason="palpitations"
    ).json()
    rid = ref["id"]
    no_reason = client.post(f"/api/v1/referrals/{rid}/decline", json={}, headers=hosp)
    assert no_reason.status_code == 422
    by_sender = client.post(
        f"/api/v1/referrals/{rid}/decline", json={"reason": "x"}, headers=clinic
    )
    assert by_sender.status_code == 403
    declined = client.post(
        f"/api/v1/referrals/{rid}/decline",
        json={"reason": "manage locally: ECG first, refer if abnormal"},
        headers=hosp,
    )
    assert declined.status_code == 200, declined.text
    seen = client.get(f"/api/v1/referrals/{rid}", headers=clinic).json()
    assert seen["status"] == "declined"
    assert seen["decision_note"] == "manage locally: ECG first, refer if abnormal"
    late_accept = client.post(f"/api/v1/referrals/{rid}/accept", json={}, headers=hosp)
    assert late_accept.status_code == 409
    assert late_accept.json()["type"].endswith("invalid-transition")
    assert "booking.referral.declined" in _events(sessions, rid)

    sr = ServiceRequest.model_validate(
        client.get(f"/fhir/ServiceRequest/{rid}", headers=hosp).json()
    )
    assert sr.status == "revoked"
    assert sr.performerType is not None and sr.performerType.coding[0].code == "03.04"
    assert any("manage locally" in (n.text or "") for n in sr.note or [])


def test_specialist_referral_accepted_with_a_service_and_rebooked_after_cancel(
    client: TestClient, flows: Headers, sessions: sessionmaker[Session]
) -> None:
    clinic, hosp = flows["clinic_doctor"], flows["hosp_doctor"]
    rid = _refer(client, clinic, service_id=None, staff_id="hosp-dr1").json()["id"]
    no_service = client.post(f"/api/v1/referrals/{rid}/accept", json={}, headers=hosp)
    assert no_service.status_code == 422  # nothing to book yet: name the service
    accepted = client.post(
        f"/api/v1/referrals/{rid}/accept", json={"service_id": "cardio-consult"}, headers=hosp
    )
    assert accepted.status_code == 200 and accepted.json()["service_id"] == "cardio-consult"
    first = client.post(
        f"/api/v1/referrals/{rid}/book",
        json={"start": at(2, 9)},
        headers={**clinic, "Idempotency-Key": "b-1"},
    ).json()
    assert first["status"] == "booked"
    apt = first["appointment_id"]
    cancelled = client.post(
        f"/api/v1/appointments/{apt}/cancel", json={"reason": "doctor away"}, headers=hosp
    )
    assert cancelled.status_code == 200
    back = client.get(f"/api/v1/referrals/{rid}", headers=clinic).json()
    assert back["status"] == "accepted" and back["appointment_id"] is None
    assert "doctor away" in back["history"][-1]["note"]
    stale_key = client.post(
        f"/api/v1/referrals/{rid}/book",
        json={"start": at(2, 9)},
        headers={**clinic, "Idempotency-Key": "b-1"},
    )
    assert stale_key.status_code == 409  # that key's appointment was cancelled: use a new one
    again = client.post(
        f"/api/v1/referrals/{rid}/book", json={"start": at(3, 9)}, headers=clinic
    ).json()
    assert again["status"] == "booked" and again["appointment_id"] != apt
    assert _events(sessions, rid).count("booking.referral.booked") == 2
    assert "booking.referral.unbooked" in _events(sessions, rid)

    # Cancelling the referral cancels its appointment and frees the time.
    withdrawn = client.post(
        f"/api/v1/referrals/{rid}/cancel", json={"reason": "patient moved"}, headers=clinic
    )
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "cancelled"
    apt2 = client.get(f"/api/v1/appointments/{again['appointment_id']}", headers=hosp).json()
    assert apt2["status"] == "cancelled"
    free = client.get(
        "/api/v1/slots",
        params={"service": "cardio-consult", "start": at(3, 9), "end": at(3, 9, 20)},
        headers=hosp,
    ).json()["items"]
    assert [s["start"] for s in free] == ["2026-12-03T01:00:00+00:00"]


def test_invalid_transitions_and_inputs(client: TestClient, flows: Headers) -> None:
    clinic, hosp = flows["clinic_doctor"], flows["hosp_doctor"]
    rid = _refer(client, clinic).json()["id"]
    premature = client.post(
        f"/api/v1/referrals/{rid}/book", json={"start": at(2, 9, 5)}, headers=clinic
    )
    assert premature.status_code == 409  # not accepted yet
    report = client.post(f"/api/v1/referrals/{rid}/report", json={"report_text": "x"}, headers=hosp)
    assert report.status_code == 409
    assert (
        client.post(f"/api/v1/referrals/{rid}/cancel", json={}, headers=clinic).status_code == 422
    )
    assert (
        client.post(
            f"/api/v1/referrals/{rid}/cancel", json={"reason": "better"}, headers=clinic
        ).status_code
        == 200
    )
    assert client.post(f"/api/v1/referrals/{rid}/accept", json={}, headers=hosp).status_code == 409
    # Inputs: the same member, a service the receiver does not offer, no target at all.
    assert _refer(client, clinic, to_institution_id="clinic").status_code == 422
    not_offered = _refer(client, clinic, to_institution_id="town")
    assert not_offered.status_code == 422
    assert not_offered.json()["errors"][0]["location"] == "body:service_id"
    assert _refer(client, clinic, service_id=None).status_code == 422
    assert _refer(client, clinic, staff_id="hosp-tech1", service_id=None).status_code == 201
    assert _refer(client, clinic, staff_id="east-tech1", service_id=None).status_code == 422
    reused = _refer(client, {**clinic, "Idempotency-Key": "k"})
    other = _refer(client, {**clinic, "Idempotency-Key": "k"}, patient_ref=pid("p3"))
    assert reused.status_code == 201 and other.status_code == 409


def test_only_the_two_members_see_a_referral(
    client: TestClient, flows: Headers, sessions: sessionmaker[Session]
) -> None:
    clinic, hosp, town = flows["clinic_doctor"], flows["hosp_doctor"], flows["town_doctor"]
    rid = _refer(client, clinic).json()["id"]
    denied = client.get(f"/api/v1/referrals/{rid}", headers=town)
    assert denied.status_code == 403
    assert client.post(f"/api/v1/referrals/{rid}/accept", json={}, headers=town).status_code == 403
    assert client.get(f"/api/v1/referrals/{rid}/slots", headers=town).status_code == 403
    assert client.get("/api/v1/referrals", headers=town).json()["total"] == 0
    other_list = client.get("/api/v1/referrals", params={"institution": "clinic"}, headers=town)
    assert other_list.status_code == 403
    assert client.get(f"/fhir/ServiceRequest/{rid}", headers=town).status_code == 403
    search = client.get("/fhir/ServiceRequest", params={"patient": pid("p-ref-1")}, headers=town)
    assert search.status_code == 200 and search.json()["total"] == 0
    with sessions() as s:
        refusals = list(
            s.scalars(
                select(AuditRecord).where(
                    AuditRecord.outcome == AuditOutcome.DENIED,
                    AuditRecord.agent_institution == "town",
                )
            )
        )
    assert any(r.entity_id == f"GET /api/v1/referrals/{rid}" for r in refusals)
    assert all(r.entity_institution == "clinic" for r in refusals)
    # The two members and consortium admins do see it.
    for h in (clinic, hosp, flows["admin"]):
        assert client.get(f"/api/v1/referrals/{rid}", headers=h).status_code == 200
    everything = client.get("/api/v1/referrals", headers=flows["admin"]).json()
    assert [i["id"] for i in everything["items"]] == [rid]


def test_fhir_search_by_patient_requester_performer_status_intent(
    client: TestClient, flows: Headers
) -> None:
    clinic, hosp = flows["clinic_doctor"], flows["hosp_doctor"]
    first = _refer(client, clinic).json()["id"]
    second = _refer(client, clinic, patient_ref=pid("p-ref-2")).json()["id"]
    client.post(f"/api/v1/referrals/{second}/decline", json={"reason": "full"}, headers=hosp)

    def search(**params: str) -> list[str]:
        response = client.get("/fhir/ServiceRequest", params=params, headers=hosp)
        assert response.status_code == 200, response.text
        bundle = Bundle.model_validate(response.json())
        for entry in bundle.entry or []:
            ServiceRequest.model_validate(entry.resource.model_dump())
        return [e.resource.id for e in bundle.entry or []]

    assert search(patient=f"Patient/{pid('p-ref-1')}") == [first]
    assert sorted(search(requester="Organization/clinic")) == sorted([first, second])
    assert search(requester="Organization/hosp") == []
    assert sorted(search(performer="hosp")) == sorted([first, second])
    assert search(status="active") == [first]
    assert search(status="revoked") == [second]
    assert sorted(search(intent="order")) == sorted([first, second])
    assert search(intent="proposal") == []
    assert search(status="active", patient="p-ref-2") == []
    bad = client.get("/fhir/ServiceRequest", params={"status": "booked"}, headers=hosp)
    assert bad.status_code == 400
    assert bad.json()["resourceType"] == "OperationOutcome"


def test_two_members_changing_one_referral_at_once_one_wins(
    client: TestClient, flows: Headers, sessions: sessionmaker[Session], db_url: str
) -> None:
    """Row versions: a write based on a stale read is refused (PostgreSQL; SQLite serialises
    whole transactions, so there the second writer reads the first one's result)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writing transaction at a time (BEGIN IMMEDIATE)")
    rid = _refer(client, flows["clinic_doctor"]).json()["id"]
    hosp = Principal(
        username="hosp-doc",
        role=Role.CLINICIAN,
        institution_id="hosp",
        scopes=frozenset(ROLE_SCOPES[Role.CLINICIAN]),
    )
    clinic = Principal(
        username="clinic-doc",
        role=Role.CLINICIAN,
        institution_id="clinic",
        scopes=frozenset(ROLE_SCOPES[Role.CLINICIAN]),
    )
    now = datetime(2026, 12, 1, tzinfo=UTC)
    late = sessions()
    try:
        stale = referral_service.access_referral_by_id(late, clinic, rid)  # read, then...
        with sessions() as first, first.begin():
            referral_actions.do_accept_referral(first, actor=hosp, now=now, id=rid)
        assert stale.status.value == "requested"  # held: the identity map is weak
        with pytest.raises(ChangedConcurrently):
            referral_actions.do_cancel_referral(
                late, actor=clinic, now=now, id=rid, reason="changed my mind"
            )
        late.rollback()
    finally:
        late.close()
    seen = client.get(f"/api/v1/referrals/{rid}", headers=flows["clinic_doctor"]).json()
    assert seen["status"] == "accepted"
