"""Slots and appointments through the HTTP API: booking, refusals, holds, quotas, access."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.core.audit import AuditOutcome, AuditRecord
from carepool.core.events import OutboxEvent
from carepool.core.time import FakeClock
from tests.booking.conftest import at, pid

Headers = dict[str, dict[str, str]]


def _book(
    client: TestClient, h: dict[str, str], start: str, patient: str = "p1", **extra: Any
) -> Any:
    body = {
        "service_id": "ct-head",
        "institution_id": "hosp",
        "start": start,
        "patient_ref": pid(patient),
    }
    body.update(extra)
    return client.post("/api/v1/appointments", json=body, headers=h)


def test_slots_follow_calendar_prep_and_turnover(client: TestClient, pool: Headers) -> None:
    response = client.get(
        "/api/v1/slots", params={"service": "ct-head", "limit": 3}, headers=pool["clinic_doctor"]
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    # CT opens 08:00 local; 5 min preparation: the first start is 08:05, then every 15 min.
    assert [i["start"] for i in items] == [
        "2026-12-01T00:05:00+00:00",
        "2026-12-01T00:20:00+00:00",
        "2026-12-01T00:35:00+00:00",
    ]
    assert items[0]["institution_id"] == "hosp"
    assert items[0]["resources"] == [["hosp-ct1"], ["hosp-tech1"]]


def test_slots_skip_maintenance_window(client: TestClient, pool: Headers) -> None:
    # Wednesday 2 Dec: maintenance 12:00-14:00 local.
    items = client.get(
        "/api/v1/slots",
        params={"service": "ct-head", "start": at(2, 11, 30), "end": at(2, 15), "limit": 10},
        headers=pool["admin"],
    ).json()["items"]
    starts = [i["start"][11:16] for i in items]
    assert starts[0] == "03:30"  # 11:30 local
    assert all(not ("03:45" < s < "06:05") for s in starts)  # nothing overlapping 12:00-14:00
    assert "06:05" in starts  # 14:05 local, after 5 min preparation


def test_book_then_same_time_conflicts_with_what_was_taken(
    client: TestClient, pool: Headers, sessions: sessionmaker[Session]
) -> None:
    first = _book(client, pool["clinic_doctor"], at(1, 9, 5))
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["status"] == "booked" and body["resource_ids"] == ["hosp-ct1", "hosp-tech1"]

    second = _book(client, pool["hosp_doctor"], at(1, 9, 5), patient="p2")
    assert second.status_code == 409
    problem = second.json()
    assert problem["type"].endswith("slot-taken")
    assert problem["taken"][0]["resource_id"] == "hosp-ct1"
    assert (
        problem["taken"][0]["start"] == "2026-12-01T01:00:00+00:00"
    )  # 09:00 local incl. preparation

    overlapping = _book(
        client, pool["hosp_doctor"], at(1, 9, 20), patient="p2"
    )  # prep overlaps turnover
    assert overlapping.status_code == 409
    after = _book(client, pool["hosp_doctor"], at(1, 9, 30), patient="p2")
    assert after.status_code == 201, after.text

    with sessions() as s:
        types = [e.type for e in s.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
    assert types.count("booking.appointment.booked") == 2


def test_slot_id_round_trip(client: TestClient, pool: Headers) -> None:
    slot = client.get(
        "/api/v1/slots", params={"service": "ct-head", "limit": 1}, headers=pool["admin"]
    ).json()["items"][0]
    booked = client.post(
        "/api/v1/appointments",
        json={"slot_id": slot["id"], "patient_ref": pid("p9")},
        headers=pool["clinic_doctor"],
    )
    assert booked.status_code == 201, booked.text
    assert booked.json()["start"] == slot["start"]
    nxt = client.get(
        "/api/v1/slots", params={"service": "ct-head", "limit": 1}, headers=pool["admin"]
    ).json()["items"][0]
    assert nxt["start"] > slot["start"]


def test_idempotency_key(client: TestClient, pool: Headers) -> None:
    h = {**pool["clinic_doctor"], "Idempotency-Key": "req-1"}
    first = _book(client, h, at(1, 10, 5))
    again = _book(client, h, at(1, 10, 5))
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    different = _book(client, h, at(1, 10, 20))
    assert different.status_code == 409
    assert different.json()["type"].endswith("idempotency-key-reused")


def test_openapi_documents_what_a_booking_answers(client: TestClient) -> None:
    post = client.get("/openapi.json").json()["paths"]["/api/v1/appointments"]["post"]
    answers = post["responses"]
    assert {"200", "201", "409", "422"} <= set(answers)
    for code in ("200", "201"):
        assert answers[code]["content"]["application/json"]["schema"]["type"] == "object"
    assert "Idempotency-Key" in answers["200"]["description"]


def test_hold_then_book_and_expired_hold(
    client: TestClient, pool: Headers, clock: FakeClock
) -> None:
    held = _book(client, pool["clinic_doctor"], at(1, 11, 5), hold=True)
    assert held.status_code == 201 and held.json()["status"] == "held"
    hold_id = held.json()["id"]
    assert _book(client, pool["hosp_doctor"], at(1, 11, 5), patient="p2").status_code == 409

    booked = client.post(f"/api/v1/appointments/{hold_id}/book", headers=pool["clinic_doctor"])
    assert booked.status_code == 200 and booked.json()["status"] == "booked"

    second_hold = _book(
        client, pool["clinic_doctor"], at(1, 11, 35), patient="p3", hold=True
    ).json()
    clock.advance(timedelta(minutes=11))  # default hold: 10 minutes
    late = client.post(
        f"/api/v1/appointments/{second_hold['id']}/book", headers=pool["clinic_doctor"]
    )
    assert late.status_code == 409 and late.json()["type"].endswith("hold-expired")
    # The lapsed hold no longer blocks the time.
    assert _book(client, pool["hosp_doctor"], at(1, 11, 35), patient="p4").status_code == 201
    state = client.get(f"/api/v1/appointments/{second_hold['id']}", headers=pool["admin"]).json()
    assert state["status"] == "cancelled" and state["cancel_reason"] == "hold expired"


def test_state_machine_and_cancel_frees_time(client: TestClient, pool: Headers) -> None:
    a = _book(client, pool["clinic_doctor"], at(1, 13, 5)).json()
    url = f"/api/v1/appointments/{a['id']}"
    assert client.post(url + "/fulfil", headers=pool["admin"]).status_code == 409  # not arrived yet
    no_reason = client.post(url + "/cancel", headers=pool["clinic_doctor"])
    assert no_reason.status_code == 422
    cancelled = client.post(
        url + "/cancel", json={"reason": "patient unwell"}, headers=pool["clinic_doctor"]
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert _book(client, pool["hosp_doctor"], at(1, 13, 5), patient="p2").status_code == 201

    b = _book(client, pool["clinic_doctor"], at(1, 14, 5), patient="p5").json()
    burl = f"/api/v1/appointments/{b['id']}"
    assert client.post(burl + "/arrive", headers=pool["hosp_doctor"]).json()["status"] == "arrived"
    assert (
        client.post(burl + "/fulfil", headers=pool["hosp_doctor"]).json()["status"] == "fulfilled"
    )
    assert (
        client.post(burl + "/cancel", json={"reason": "x"}, headers=pool["hosp_doctor"]).status_code
        == 409
    )


def test_reschedule_keeps_old_time_when_new_is_taken(client: TestClient, pool: Headers) -> None:
    a = _book(client, pool["clinic_doctor"], at(1, 15, 5)).json()
    _book(client, pool["hosp_doctor"], at(1, 15, 35), patient="p2")
    clash = client.post(
        f"/api/v1/appointments/{a['id']}/reschedule",
        json={"start": at(1, 15, 35)},
        headers=pool["clinic_doctor"],
    )
    assert clash.status_code == 409
    assert (
        _book(client, pool["hosp_doctor"], at(1, 15, 5), patient="p3").status_code == 409
    )  # still held by a
    moved = client.post(
        f"/api/v1/appointments/{a['id']}/reschedule",
        json={"start": at(1, 16, 5)},
        headers=pool["clinic_doctor"],
    )
    assert moved.status_code == 200 and moved.json()["start"] == "2026-12-01T08:05:00+00:00"
    assert _book(client, pool["hosp_doctor"], at(1, 15, 5), patient="p3").status_code == 201


def test_quota_kept_for_village_clinics_until_48_hours(client: TestClient, pool: Headers) -> None:
    quota = {
        "id": "ct-for-villages",
        "service_id": "ct-head",
        "institution_id": "hosp",
        "reserved_for_kinds": ["village_clinic", "township_health_centre"],
        "share": 1.0,
        "release_hours": 48,
    }
    assert (
        client.put("/api/v1/quotas/ct-for-villages", json=quota, headers=pool["admin"]).status_code
        == 200
    )
    refused = _book(client, pool["hosp_doctor"], at(4, 9, 5))  # Friday: more than 48 h ahead
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("quota-exhausted")
    assert "village_clinic" in refused.json()["detail"]
    assert _book(client, pool["clinic_doctor"], at(4, 9, 5)).status_code == 201
    assert (
        _book(client, pool["hosp_doctor"], at(2, 9, 5)).status_code == 201
    )  # within 48 h: released


def test_overbooking_lane(client: TestClient, pool: Headers) -> None:
    policy = {"hold_minutes": 10, "overbook_lanes": 1, "min_notice_minutes": 0}
    assert (
        client.put(
            "/api/v1/services/ct-head/booking-policy", json=policy, headers=pool["admin"]
        ).status_code
        == 200
    )
    assert _book(client, pool["clinic_doctor"], at(1, 9, 5)).status_code == 201
    assert _book(client, pool["clinic_doctor"], at(1, 9, 5), patient="p2").status_code == 201
    assert _book(client, pool["clinic_doctor"], at(1, 9, 5), patient="p3").status_code == 409


def test_other_member_cannot_see_appointment_and_reads_are_audited(
    client: TestClient, pool: Headers, tokens: Any, sessions: sessionmaker[Session]
) -> None:
    a = _book(client, pool["clinic_doctor"], at(1, 9, 5)).json()
    assert (
        client.get(f"/api/v1/appointments/{a['id']}", headers=pool["hosp_doctor"]).status_code
        == 200
    )
    client.post(
        "/api/v1/catalog/import",
        json={
            "format": "carepool.catalog/1",
            "consortium": {
                "id": "cons",
                "name": "Test County Consortium",
                "name_zh": "测试县医共体",
            },
            "institutions": [
                {
                    "id": "other",
                    "name": "Other clinic",
                    "kind": "village_clinic",
                    "grade": "unrated",
                }
            ],
        },
        headers=pool["admin"],
    )
    stranger = tokens.headers("clinician", "other")
    assert client.get(f"/api/v1/appointments/{a['id']}", headers=stranger).status_code == 403
    listed = client.get("/api/v1/appointments", headers=stranger).json()
    assert listed["total"] == 0
    with sessions() as s:
        reads = s.scalars(
            select(AuditRecord).where(
                AuditRecord.entity_type == "appointment", AuditRecord.action == "R"
            )
        ).all()
        denied = s.scalars(
            select(AuditRecord).where(AuditRecord.outcome == AuditOutcome.DENIED)
        ).all()
    assert any(r.entity_id == a["id"] and r.outcome == AuditOutcome.SUCCESS for r in reads)
    assert [d.entity_id for d in denied] == [f"GET /api/v1/appointments/{a['id']}"]


def test_viewer_cannot_book_and_service_rules_apply(client: TestClient, pool: Headers) -> None:
    assert _book(client, pool["viewer"], at(1, 9, 5)).status_code == 403
    wrong_member = client.post(
        "/api/v1/appointments",
        json={
            "service_id": "ct-head",
            "institution_id": "clinic",
            "start": at(1, 9, 5),
            "patient_ref": pid("p"),
        },
        headers=pool["clinic_doctor"],
    )
    assert wrong_member.status_code == 422 and "does not offer" in wrong_member.json()["detail"]
    naive = client.post(
        "/api/v1/appointments",
        json={
            "service_id": "ct-head",
            "institution_id": "hosp",
            "start": "2026-12-01T09:05:00",
            "patient_ref": pid("p"),
        },
        headers=pool["clinic_doctor"],
    )
    assert naive.status_code == 422


def test_reschedule_moves_quota_usage(client: TestClient, pool: Headers) -> None:
    quota = {
        "id": "ct-villages",
        "service_id": "ct-head",
        "institution_id": "hosp",
        "reserved_for_kinds": ["village_clinic"],
        "share": 1.0,
        "release_hours": 48,
    }
    assert (
        client.put("/api/v1/quotas/ct-villages", json=quota, headers=pool["admin"]).status_code
        == 200
    )
    a = _book(client, pool["hosp_doctor"], at(2, 9, 5)).json()  # within 48 h: outside the quota
    moved = client.post(
        f"/api/v1/appointments/{a['id']}/reschedule",
        json={"start": at(4, 9, 5)},
        headers=pool["hosp_doctor"],
    )
    assert moved.status_code == 409 and moved.json()["type"].endswith("quota-exhausted")
    still = client.get(f"/api/v1/appointments/{a['id']}", headers=pool["hosp_doctor"]).json()
    assert still["start"] == "2026-12-02T01:05:00+00:00"
