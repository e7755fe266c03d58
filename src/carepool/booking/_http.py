"""Small request helpers shared by every booking route (the app's clock, times, slots)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from fastapi import Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from carepool.booking import service as booking_service
from carepool.core.db import transaction
from carepool.core.errors import FieldError, InvalidInput
from carepool.core.time import ensure_utc

__all__ = ["aware", "in_transaction", "now_of", "start_of"]

T = TypeVar("T")


async def in_transaction(request: Request, work: Callable[[Session], T]) -> T:
    """Run `work` in one transaction on a worker thread: committed if it returns, rolled back
    if it raises (as `api.deps.get_session`).

    For the hot routes (slot search, booking): one thread hop per request, where a sync route
    with sync dependencies takes one per dependency and one for the route.
    """

    def run() -> T:
        with transaction(request.app.state.sessions) as session:
            return work(session)

    return await run_in_threadpool(run)


def now_of(request: Request) -> datetime:
    """The app's clock (a fake one in tests)."""
    now: datetime = request.app.state.clock.now()
    return now


def aware(value: datetime | None, name: str) -> datetime | None:
    """A time from the request in UTC; a time without zone is the caller's input error."""
    if value is None:
        return None
    try:
        return ensure_utc(value)
    except ValueError as exc:
        raise InvalidInput(
            f"{name} needs a time zone", [FieldError(name, "give an offset, e.g. +08:00")]
        ) from exc


def start_of(
    session: Session,
    *,
    slot_id: str | None,
    start: datetime | None,
    service_id: str | None,
    institution_id: str | None,
) -> datetime:
    """The start a body asks for, by slot id (which must name this service and member) or time."""
    if slot_id:
        slot_service, slot_member, slot_start = booking_service.parse_slot_id(session, slot_id)
        if (slot_service, slot_member) != (service_id, institution_id):
            raise InvalidInput(
                f"slot {slot_id} is {slot_service} at {slot_member}, not {service_id} at "
                f"{institution_id}",
                [FieldError("body:slot_id", "a slot of the service at the performing member")],
            )
        return slot_start
    when = aware(start, "body:start")
    if when is None:
        raise InvalidInput("give slot_id or start", [FieldError("body:slot_id", "missing")])
    return when
