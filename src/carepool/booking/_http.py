"""Small request helpers shared by every booking route (the app's clock, times, slots)."""

from __future__ import annotations

from datetime import datetime

from fastapi import Request
from sqlalchemy.orm import Session

from carepool.booking import service as booking_service
from carepool.core.errors import FieldError, InvalidInput
from carepool.core.time import ensure_utc

__all__ = ["aware", "now_of", "start_of"]


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
