"""The per-process booking cache (decision 0009): a catalogue change is seen by the next request.

Slot search and booking read calendars, services, policies and quotas from a cache that is
reused only while `booking_cache_version` is unchanged; triggers change it on every write to
those tables, through the API or by hand. Claims are never cached.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from carepool.booking import actions
from carepool.booking.models import CacheVersion, ClaimPurpose, ResourceClaim
from tests.booking.conftest import at, pid

Headers = dict[str, dict[str, str]]


def _starts(client: TestClient, h: dict[str, str], start: str, end: str) -> list[str]:
    response = client.get(
        "/api/v1/slots",
        params={"service": "ct-head", "start": start, "end": end, "limit": 50},
        headers=h,
    )
    assert response.status_code == 200, response.text
    return [i["start"] for i in response.json()["items"]]


def _book(client: TestClient, h: dict[str, str], start: str, patient: str = "p1") -> Any:
    body = {"service_id": "ct-head", "institution_id": "hosp", "start": start}
    return client.post(
        "/api/v1/appointments", json={**body, "patient_ref": pid(patient)}, headers=h
    )


def test_a_calendar_exception_added_through_the_api_is_seen_by_the_next_search(
    client: TestClient, pool: Headers
) -> None:
    before = _starts(client, pool["admin"], at(3, 9), at(3, 11))  # Thursday, the cache is warm
    assert "2026-12-03T01:30:00+00:00" in before  # 09:30 local
    created = client.post(
        "/api/v1/calendar-exceptions",
        json={
            "id": "hosp-ct1-leak",
            "resource_id": "hosp-ct1",
            "kind": "maintenance",
            "start": at(3, 9, 15),
            "end": at(3, 10),
            "reason": "coolant leak",
        },
        headers=pool["admin"],
    )
    assert created.status_code == 201, created.text
    after = _starts(client, pool["admin"], at(3, 9), at(3, 11))
    assert "2026-12-03T01:30:00+00:00" not in after
    assert after[0] == "2026-12-03T02:05:00+00:00"  # 10:05 local: after the leak, with prep


def test_a_calendar_rule_changed_by_hand_is_seen_by_search_and_booking(
    client: TestClient, pool: Headers, sessions: sessionmaker[Session]
) -> None:
    assert _starts(client, pool["admin"], at(1, 16), at(1, 18))  # open until 17:00
    with sessions() as s, s.begin():  # a DBA shortens the day, bypassing the API
        s.execute(
            text("UPDATE calendar_rule SET \"end\" = :end WHERE id = 'hosp-ct1-weekdays'"),
            {"end": "16:00:00.000000"},
        )
    assert _starts(client, pool["admin"], at(1, 16), at(1, 18)) == []
    refused = _book(client, pool["clinic_doctor"], at(1, 16, 5))
    assert refused.status_code == 409, refused.text
    assert "not free" in refused.json()["detail"]


def test_a_booking_policy_change_is_seen_by_the_next_search(
    client: TestClient, pool: Headers
) -> None:
    first = _starts(client, pool["admin"], at(1, 9), at(1, 10))
    assert first[:2] == ["2026-12-01T01:00:00+00:00", "2026-12-01T01:15:00+00:00"]  # 15 min
    policy = {"hold_minutes": 10, "overbook_lanes": 0, "slot_step_minutes": 30}
    put = client.put("/api/v1/services/ct-head/booking-policy", json=policy, headers=pool["admin"])
    assert put.status_code == 200, put.text
    assert _starts(client, pool["admin"], at(1, 9), at(1, 10))[:2] == [
        "2026-12-01T01:00:00+00:00",
        "2026-12-01T01:30:00+00:00",
    ]


def test_every_catalogue_write_changes_the_version(
    client: TestClient, pool: Headers, sessions: sessionmaker[Session]
) -> None:
    def version() -> int | None:
        with sessions() as s:
            return s.scalar(select(CacheVersion.version))

    seen = {version()}
    patch = client.patch(
        "/api/v1/resources/hosp-ct1", json={"status": "maintenance"}, headers=pool["admin"]
    )
    assert patch.status_code == 200, patch.text
    seen.add(version())
    _book(client, pool["clinic_doctor"], at(1, 9, 5))  # bookings do not touch the catalogue
    seen_after_booking = version()
    assert len(seen) == 2 and None not in seen and seen_after_booking in seen
    assert _starts(client, pool["admin"], at(1, 9), at(1, 12)) == []  # the scanner is out


def test_claims_lost_to_a_concurrent_booking_are_skipped_without_aborting(
    pool: Headers, sessions: sessionmaker[Session]
) -> None:
    """`_insert_claims` keeps the rows the database accepts; the transaction stays usable."""

    def row(resource: str, lane: int, owner: str) -> dict[str, Any]:
        from datetime import datetime, timedelta, timezone

        start = datetime(2026, 12, 1, 9, tzinfo=timezone(timedelta(hours=8)))
        return {
            "resource_id": resource,
            "lane": lane,
            "start_at": start,
            "end_at": start + timedelta(minutes=25),
            "purpose": ClaimPurpose.APPOINTMENT,
            "owner_id": owner,
            "active": True,
            "expires_at": None,
        }

    with sessions() as s, s.begin():
        actions._insert_claims(s, [row("hosp-ct1", 0, "first")])
    with sessions() as s, s.begin():
        accepted = actions._insert_claims(
            s, [row("hosp-ct1", 0, "second"), row("hosp-tech1", 0, "second")]
        )
        assert accepted == {("hosp-tech1", 0)}
        owners = s.scalars(select(ResourceClaim.owner_id).order_by(ResourceClaim.id)).all()
    assert owners == ["first", "second"]


def test_cached_calendars_answer_as_the_catalogue_does(
    pool: Headers, sessions: sessionmaker[Session]
) -> None:
    """`Pool.availability` and `Pool.covers` (week blocks, memoised) agree with
    `catalog.service.availability` (computed from the tables), across block boundaries."""
    from datetime import UTC, datetime, timedelta

    from carepool.booking import _pool as booking_pool
    from carepool.catalog import service as catalog_service

    with sessions() as s:
        cached = booking_pool.get(s)
        for rid in ("hosp-ct1", "hosp-tech1", "hosp-nurse1"):
            resource = cached.catalog.resources[rid]
            start = datetime(2026, 11, 29, 20, tzinfo=UTC)  # Sunday evening: a week ends
            for hours in (1, 9, 30, 200):
                for shift in range(0, 48, 5):
                    a = start + timedelta(hours=shift)
                    b = a + timedelta(hours=hours)
                    truth = catalog_service.availability(s, resource_id=rid, start=a, end=b)
                    assert cached.availability(resource, a, b) == truth, (rid, a, b)
                    assert cached.covers(resource, a, b) == any(
                        i.start <= a and i.end >= b for i in truth
                    ), (rid, a, b)
