"""Surgery cases through the HTTP API: the whole team booked at once, conflicts named, the
theatre schedule, cancellation and access rules."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.booking.models import ResourceClaim
from carepool.core.audit import AuditOutcome, AuditRecord
from carepool.core.events import OutboxEvent
from carepool.core.time import FakeClock
from tests.booking.conftest import at, pid

Headers = dict[str, dict[str, str]]


def _case(
    client: TestClient,
    h: dict[str, str],
    *,
    surgeon: str = "hosp-s-li",
    patient: str = "p1",
    expect: int = 201,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "institution_id": "hosp",
        "service_id": "hernia-repair",
        "patient_ref": pid(patient),
        "patient_name": f"Patient {patient}",
        "surgeon_id": surgeon,
    }
    body.update(extra)
    response = client.post("/api/v1/surgery-cases", json=body, headers=h)
    assert response.status_code == expect, response.text
    return dict(response.json())


def _schedule(
    client: TestClient, h: dict[str, str], case_id: str, theatre: str, start: str, **extra: Any
) -> Any:
    return client.post(
        f"/api/v1/surgery-cases/{case_id}/schedule",
        json={"theatre_id": theatre, "start": start, **extra},
        headers=h,
    )


def _active_claims(sessions: sessionmaker[Session], owner: str) -> list[ResourceClaim]:
    with sessions() as s:
        return list(
            s.scalars(
                select(ResourceClaim)
                .where(ResourceClaim.owner_id == owner, ResourceClaim.active.is_(True))
                .order_by(ResourceClaim.resource_id)
            )
        )


def test_schedule_claims_theatre_and_whole_team(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session]
) -> None:
    h = wards["theatre"]
    case = _case(client, h)
    assert case["status"] == "requested" and case["expected_duration_min"] == 60
    response = _schedule(client, h, case["id"], "hosp-t1", at(2, 9))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "scheduled" and body["theatre_id"] == "hosp-t1"
    assert [(m["role"], m["resource_id"], m["named"]) for m in body["team"]] == [
        ("theatre", "hosp-t1", True),
        ("surgeon", "hosp-s-li", True),
        ("anaesthetist", "hosp-a-chen", False),
        ("nurse", "hosp-n1", False),
        ("nurse", "hosp-n2", False),
    ]
    # 15 min preparation before 09:00, 60 min surgery, 30 min turnover (times in UTC).
    assert (body["block_start"], body["block_end"]) == (
        "2026-12-02T00:45:00+00:00",
        "2026-12-02T02:30:00+00:00",
    )
    claims = _active_claims(sessions, case["id"])
    assert sorted(c.resource_id for c in claims) == sorted(m["resource_id"] for m in body["team"])
    assert {(c.start_at.isoformat(), c.end_at.isoformat()) for c in claims} == {
        (body["block_start"], body["block_end"])
    }
    assert all(c.purpose.value == "surgery" for c in claims)
    with sessions() as s:
        types = [e.type for e in s.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
    assert types[-2:] == ["booking.surgery.requested", "booking.surgery.scheduled"]


def test_surgeon_already_in_another_theatre_is_refused(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session]
) -> None:
    h = wards["theatre"]
    first = _case(client, h, patient="p1")
    assert _schedule(client, h, first["id"], "hosp-t1", at(2, 9)).status_code == 200
    second = _case(client, h, patient="p2")
    clash = _schedule(client, h, second["id"], "hosp-t2", at(2, 10))
    assert clash.status_code == 409
    problem = clash.json()
    assert problem["type"].endswith("team-member-busy")
    assert problem["detail"] == (
        f"surgeon hosp-s-li is already in theatre hosp-t1 from 08:45 to 10:30 (case {first['id']})"
    )
    assert problem["taken"][0]["resource_id"] == "hosp-s-li"
    assert problem["taken"][0]["theatre_id"] == "hosp-t1"
    # Nothing was booked for the refused case: not even the free theatre.
    assert _active_claims(sessions, second["id"]) == []
    again = client.get(f"/api/v1/surgery-cases/{second['id']}", headers=h).json()
    assert again["status"] == "requested" and again["theatre_id"] is None
    # The theatre itself is named when it is the one taken.
    other = _case(client, h, surgeon="hosp-s-wang", patient="p3")
    taken = _schedule(client, h, other["id"], "hosp-t1", at(2, 10))
    assert taken.status_code == 409
    assert f"theatre hosp-t1 is already booked for case {first['id']}" in taken.json()["detail"]
    # After the turnover the surgeon is free again.
    assert _schedule(client, h, second["id"], "hosp-t2", at(2, 10, 45)).status_code == 200


def test_anaesthetist_conflicts_and_allocation(client: TestClient, wards: Headers) -> None:
    h = wards["theatre"]
    first = _case(client, h, patient="p1")
    booked = _schedule(client, h, first["id"], "hosp-t1", at(2, 9), team=["hosp-a-chen"])
    assert booked.status_code == 200, booked.text

    second = _case(client, h, surgeon="hosp-s-wang", patient="p2")
    named = _schedule(client, h, second["id"], "hosp-t2", at(2, 9), team=["hosp-a-chen"])
    assert named.status_code == 409
    assert named.json()["detail"] == (
        f"anaesthetist hosp-a-chen is already in theatre hosp-t1 from 08:45 to 10:30 "
        f"(case {first['id']})"
    )
    # Left open, the role goes to the anaesthetist who is free (Liu works mornings).
    allocated = _schedule(client, h, second["id"], "hosp-t2", at(2, 9))
    assert allocated.status_code == 200, allocated.text
    roles = {m["role"]: m["resource_id"] for m in allocated.json()["team"]}
    assert roles["anaesthetist"] == "hosp-a-liu"
    nurses = [m["resource_id"] for m in allocated.json()["team"] if m["role"] == "nurse"]
    assert nurses == ["hosp-n3", "hosp-n4"]

    # In the afternoon Chen is busy and Liu is off duty: nobody can give the anaesthetic.
    _schedule(client, h, first["id"], "hosp-t1", at(2, 14), team=["hosp-a-chen"])
    third = _case(client, h, surgeon="hosp-s-wang", patient="p3")
    nobody = _schedule(client, h, third["id"], "hosp-t2", at(2, 14))
    assert nobody.status_code == 409
    problem = nobody.json()
    assert problem["type"].endswith("team-unavailable")
    assert "no anaesthetist" in problem["detail"]
    assert "anaesthetist hosp-a-chen is already in theatre hosp-t1 from 13:45" in problem["detail"]
    assert "anaesthetist hosp-a-liu is not on duty" in problem["detail"]


def test_off_duty_and_out_of_session_are_named(client: TestClient, wards: Headers) -> None:
    h = wards["theatre"]
    case = _case(client, h)
    liu = _schedule(client, h, case["id"], "hosp-t1", at(2, 14), team=["hosp-a-liu"])
    assert liu.status_code == 409 and liu.json()["type"].endswith("not-on-duty")
    assert liu.json()["detail"] == "anaesthetist hosp-a-liu is not on duty from 13:45 to 15:30"
    late = _schedule(client, h, case["id"], "hosp-t1", at(2, 19))
    assert late.status_code == 409
    assert late.json()["detail"] == "theatre hosp-t1 has no session from 18:45 to 20:30"


def test_cancel_frees_everyone(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session]
) -> None:
    h = wards["theatre"]
    case = _case(client, h)
    assert _schedule(client, h, case["id"], "hosp-t1", at(2, 9)).status_code == 200
    url = f"/api/v1/surgery-cases/{case['id']}"
    assert client.post(url + "/cancel", headers=h).status_code == 422  # needs a reason
    cancelled = client.post(url + "/cancel", json={"reason": "patient unfit"}, headers=h)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert _active_claims(sessions, case["id"]) == []
    # The same surgeon, anaesthetist and nurses can take the same time.
    replacement = _case(client, h, patient="p2")
    again = _schedule(
        client,
        h,
        replacement["id"],
        "hosp-t1",
        at(2, 9),
        team=["hosp-a-chen", "hosp-n1", "hosp-n2"],
    )
    assert again.status_code == 200, again.text
    assert client.post(url + "/start", headers=h).status_code == 409


def test_reschedule_keeps_the_old_booking_when_refused(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session]
) -> None:
    h = wards["theatre"]
    mine = _case(client, h, patient="p1")
    assert _schedule(client, h, mine["id"], "hosp-t1", at(2, 9)).status_code == 200
    other = _case(client, h, surgeon="hosp-s-wang", patient="p2")
    assert _schedule(client, h, other["id"], "hosp-t2", at(2, 13)).status_code == 200
    before = {c.resource_id for c in _active_claims(sessions, mine["id"])}
    refused = _schedule(client, h, mine["id"], "hosp-t2", at(2, 13))
    assert refused.status_code == 409
    assert {c.resource_id for c in _active_claims(sessions, mine["id"])} == before
    moved = _schedule(client, h, mine["id"], "hosp-t1", at(2, 11))
    assert moved.status_code == 200 and moved.json()["start"] == "2026-12-02T03:00:00+00:00"
    claims = _active_claims(sessions, mine["id"])
    assert len(claims) == 5 and {c.start_at.isoformat() for c in claims} == {
        "2026-12-02T02:45:00+00:00"
    }


def test_lifecycle_and_early_completion_gives_time_back(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    h = wards["theatre"]
    case = _case(client, h)
    url = f"/api/v1/surgery-cases/{case['id']}"
    assert client.post(url + "/start", headers=h).status_code == 409  # not scheduled
    _schedule(client, h, case["id"], "hosp-t1", at(2, 9))
    clock.advance(timedelta(days=1, hours=9))  # 09:00 on 2 December
    assert client.post(url + "/start", headers=h).json()["status"] == "in_theatre"
    clock.advance(timedelta(minutes=40))
    done = client.post(url + "/complete", headers=h)
    assert done.status_code == 200 and done.json()["status"] == "completed"
    ends = {c.resource_id: c.end_at for c in _active_claims(sessions, case["id"])}
    assert ends["hosp-s-li"] == clock.now()
    assert ends["hosp-t1"] == clock.now() + timedelta(minutes=30)  # turnover after the end


def test_theatre_schedule_of_a_day(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session]
) -> None:
    h = wards["theatre"]
    case = _case(client, h, patient_name="Zhou Min")
    _schedule(client, h, case["id"], "hosp-t1", at(2, 9))
    day = client.get(
        "/api/v1/theatre-schedule", params={"institution": "hosp", "date": "2026-12-02"}, headers=h
    )
    assert day.status_code == 200, day.text
    body = day.json()
    assert [t["id"] for t in body["theatres"]] == ["hosp-t1", "hosp-t2"]
    t1 = body["theatres"][0]
    assert t1["sessions"] == [
        {"start": "2026-12-02T00:00:00+00:00", "end": "2026-12-02T10:00:00+00:00"}
    ]
    assert t1["session_minutes"] == 600 and t1["booked_minutes"] == 105
    assert [c["id"] for c in t1["cases"]] == [case["id"]]
    assert t1["cases"][0]["patient_name"] == "Zhou Min"
    assert body["theatres"][1]["cases"] == []

    outsider = client.get(
        "/api/v1/theatre-schedule",
        params={"institution": "hosp", "date": "2026-12-02"},
        headers=wards["branch_theatre"],
    ).json()
    seen = outsider["theatres"][0]["cases"][0]
    assert seen["patient_ref"] is None and seen["patient_masked"] is True
    assert seen["team"] == t1["cases"][0]["team"]
    other_day = client.get(
        "/api/v1/theatre-schedule", params={"institution": "hosp", "date": "2026-12-03"}, headers=h
    ).json()
    assert all(t["cases"] == [] for t in other_day["theatres"])
    with sessions() as s:
        reads = s.scalars(
            select(AuditRecord).where(AuditRecord.entity_type == "theatre_schedule")
        ).all()
    assert [r.entity_id for r in reads] == ["hosp:2026-12-02"]


def test_validation_of_procedure_surgeon_and_team(client: TestClient, wards: Headers) -> None:
    h = wards["theatre"]
    not_surgery = _case(client, h, service_id="cardio-consult", expect=422)
    assert "not a surgical procedure" in not_surgery["detail"]
    wrong_specialty = _case(client, h, surgeon="hosp-s-zhao", expect=422)
    assert "does not meet the operating surgeon requirement" in wrong_specialty["detail"]
    not_a_surgeon = _case(client, h, surgeon="hosp-n1", expect=422)
    assert "hosp-n1 is not a surgeon" in not_a_surgeon["detail"]

    case = _case(client, h)
    extra = _schedule(client, h, case["id"], "hosp-t1", at(2, 9), team=["hosp-s-wang"])
    assert extra.status_code == 422
    assert "surgeon hosp-s-wang fits no open role of hernia-repair" in extra.json()["detail"]
    too_many = _schedule(
        client, h, case["id"], "hosp-t1", at(2, 9), team=["hosp-n1", "hosp-n2", "hosp-n3"]
    )
    assert too_many.status_code == 422 and "nurse hosp-n3 fits no open role" in too_many.text
    not_theatre = _schedule(client, h, case["id"], "hosp-r1-1", at(2, 9))
    assert not_theatre.status_code == 422 and "not a theatre" in not_theatre.text
    past = _schedule(client, h, case["id"], "hosp-t1", "2026-11-30T09:00:00+08:00")
    assert past.status_code == 422


def test_access_rules_between_members(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session]
) -> None:
    h = wards["theatre"]
    case = _case(client, h)
    stranger = wards["branch_theatre"]
    assert client.get(f"/api/v1/surgery-cases/{case['id']}", headers=stranger).status_code == 403
    assert _schedule(client, stranger, case["id"], "hosp-t1", at(2, 9)).status_code == 403
    assert client.get("/api/v1/surgery-cases", headers=stranger).json()["total"] == 0
    # The village clinic may not order surgery (the procedure is orderable by hospitals only).
    refused = _case(client, wards["clinic_doctor"], expect=403)
    assert "general_hospital" in refused["detail"]
    # Read-only hospital staff see cases but cannot schedule them.
    reader = wards["hosp_reader"]
    assert client.get(f"/api/v1/surgery-cases/{case['id']}", headers=reader).status_code == 200
    assert _schedule(client, reader, case["id"], "hosp-t1", at(2, 9)).status_code == 403
    with sessions() as s:
        denied = [
            d.entity_id
            for d in s.scalars(
                select(AuditRecord).where(AuditRecord.outcome == AuditOutcome.DENIED)
            )
        ]
    assert f"GET /api/v1/surgery-cases/{case['id']}" in denied
    assert f"POST /api/v1/surgery-cases/{case['id']}/schedule" in denied


def test_idempotent_case_request(client: TestClient, wards: Headers) -> None:
    h = {**wards["theatre"], "Idempotency-Key": "case-1"}
    first = _case(client, h)
    again = client.post(
        "/api/v1/surgery-cases",
        json={
            "institution_id": "hosp",
            "service_id": "hernia-repair",
            "patient_ref": pid("p1"),
            "patient_name": "Patient p1",
            "surgeon_id": "hosp-s-li",
        },
        headers=h,
    )
    assert again.status_code == 200 and again.json()["id"] == first["id"]


def test_concurrent_schedules_never_share_a_team_member(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session]
) -> None:
    """Six cases of one surgeon at the same time in two theatres, all at once: exactly one is
    booked, the others get a 409, and no resource holds two overlapping active claims."""
    h = wards["theatre"]
    cases = [_case(client, h, patient=f"p{i}")["id"] for i in range(6)]
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        codes = list(
            pool.map(
                lambda ic: (
                    _schedule(
                        client, h, ic[1], ("hosp-t1", "hosp-t2")[ic[0] % 2], at(2, 9)
                    ).status_code
                ),
                enumerate(cases),
            )
        )
    assert sorted(codes) == [200] + [409] * 5, codes
    with sessions() as s:
        claims = s.scalars(select(ResourceClaim).where(ResourceClaim.active.is_(True))).all()
    by_resource: dict[str, int] = {}
    for c in claims:
        by_resource[c.resource_id] = by_resource.get(c.resource_id, 0) + 1
    assert len(claims) == 5 and set(by_resource.values()) == {1}
