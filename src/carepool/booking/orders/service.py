"""Reads of orders: who may see one, the lists of both members, and where an order should go.

Routing: the member the orderer picked, or else the nearest offering member (great-circle
distance between the members' coordinates) that has a free slot of the service within the
priority's horizon. Members without coordinates come after every member with them; when the
ordering member itself has none, the earliest free slot decides.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from carepool.booking import service as booking_service
from carepool.booking.models import Appointment, AppointmentStatus
from carepool.booking.orders.models import Order, OrderStatus
from carepool.booking.referrals.models import Priority
from carepool.catalog import service as catalog_service
from carepool.catalog.models import Institution, Service
from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput, NotFound, PermissionDenied

EARTH_RADIUS_KM = 6371.0088
# How far ahead a member must have a free slot to count as having capacity.
HORIZONS: dict[Priority, timedelta] = {
    Priority.STAT: timedelta(days=1),
    Priority.ASAP: timedelta(days=1),
    Priority.URGENT: timedelta(days=3),
    Priority.ROUTINE: timedelta(days=14),
}
# Appointment states that move a scheduled order on (in progress, or back to routed).
SETTLING = (
    AppointmentStatus.ARRIVED,
    AppointmentStatus.FULFILLED,
    AppointmentStatus.CANCELLED,
    AppointmentStatus.NOSHOW,
)


class Side(enum.StrEnum):
    """Which orders of a member: the ones it ordered, or the ones it performs."""

    ORDERED = "ordered"
    PERFORMING = "performing"


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def distance_km(a: Institution, b: Institution) -> float | None:
    """Distance between two members, None when either has no coordinates."""
    if None in (a.latitude, a.longitude, b.latitude, b.longitude):
        return None
    return haversine_km(a.latitude, a.longitude, b.latitude, b.longitude)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Candidate:
    institution_id: str
    distance_km: float | None
    first_slot: datetime | None


@dataclass(frozen=True)
class Route:
    """Where an order goes (None: nowhere yet), and why."""

    institution_id: str | None
    distance_km: float | None
    first_slot: datetime | None
    note: str
    considered: tuple[Candidate, ...]


def first_free_slot(
    session: Session, *, service_id: str, institution_id: str, now: datetime, horizon: timedelta
) -> datetime | None:
    """The earliest bookable start of the service at the member within `horizon` from now."""
    found = booking_service.search_slots(
        session,
        service_id=service_id,
        start=now,
        end=now + horizon,
        now=now,
        institution_id=institution_id,
        limit=1,
    )
    return found[0].slot.start if found else None


def _km(value: float | None) -> str:
    return "unknown distance" if value is None else f"{value:.1f} km"


def choose_performer(
    session: Session,
    *,
    service: Service,
    ordering: Institution,
    priority: Priority,
    now: datetime,
    target_institution_id: str | None = None,
) -> Route:
    """The member an order should go to (see the module docstring); reads only."""
    horizon = HORIZONS[priority]
    days = f"{horizon.days} day{'s' if horizon.days != 1 else ''}"
    if target_institution_id:
        target: Institution = catalog_service.get(
            session, kind="institution", id=target_institution_id
        )
        d = distance_km(ordering, target)
        slot = first_free_slot(
            session,
            service_id=service.id,
            institution_id=target.id,
            now=now,
            horizon=horizon,
        )
        when = f"first free slot {slot.isoformat()}" if slot else f"no free slot within {days}"
        return Route(
            target.id,
            d,
            slot,
            f"picked by the orderer ({_km(d)}; {when})",
            (Candidate(target.id, d, slot),),
        )
    members: list[tuple[Institution, float | None]] = []
    for member_id in booking_service.offering_members(session, service):
        member: Institution = catalog_service.get(session, kind="institution", id=member_id)
        members.append((member, distance_km(ordering, member)))
    members.sort(key=lambda m: (m[1] is None, m[1] or 0.0, m[0].id))
    by_distance = any(d is not None for _m, d in members)
    considered: list[Candidate] = []
    for member, d in members:
        slot = first_free_slot(
            session, service_id=service.id, institution_id=member.id, now=now, horizon=horizon
        )
        considered.append(Candidate(member.id, d, slot))
        if slot is not None and by_distance:
            break
    with_capacity = [c for c in considered if c.first_slot is not None]
    if not with_capacity:
        checked = ", ".join(f"{c.institution_id} ({_km(c.distance_km)})" for c in considered)
        return Route(
            None,
            None,
            None,
            f"no member offering {service.id} has a free slot within {days}"
            + (f"; checked {checked}" if checked else "; no member offers it"),
            tuple(considered),
        )
    best = (
        with_capacity[0]
        if by_distance
        else min(with_capacity, key=lambda c: (c.first_slot, c.institution_id))
    )
    reason = "nearest with capacity" if by_distance else "earliest free slot (no coordinates)"
    return Route(
        best.institution_id,
        best.distance_km,
        best.first_slot,
        f"{reason}: {_km(best.distance_km)}, first free slot "
        f"{best.first_slot.isoformat() if best.first_slot else '?'}",
        tuple(considered),
    )


def can_see(principal: Principal, order: Order) -> bool:
    """The ordering member, the performing member and consortium-wide callers see it."""
    return principal.consortium_wide or (
        principal.institution_id is not None
        and principal.institution_id
        in (order.ordering_institution_id, order.performing_institution_id)
    )


def access_order_by_id(session: Session, principal: Principal, id: str) -> Order:
    """Load an order the caller may see (scope and member checked)."""
    principal.require_scope("Booking", "read")
    order = session.get(Order, id)
    if order is None:
        raise NotFound("order", id)
    if not can_see(principal, order):
        raise PermissionDenied(
            f"order {id!r} of {order.ordering_institution_id!r} is performed by "
            f"{order.performing_institution_id!r}; {principal.username!r} of "
            f"{principal.institution_id!r} may not see it",
            institution=order.ordering_institution_id,
        )
    return order


def visible_to(principal: Principal) -> ColumnElement[bool] | None:
    if principal.consortium_wide:
        return None
    return or_(
        Order.ordering_institution_id == principal.institution_id,
        Order.performing_institution_id == principal.institution_id,
    )


def get_all_orders(
    session: Session,
    principal: Principal,
    *,
    mine: Side | None = None,
    institution_id: str | None = None,
    status: OrderStatus | None = None,
    patient_ref: str | None = None,
    service_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Order], int]:
    """Orders the caller may see, newest first; `mine` as for referrals (ordered/performing)."""
    principal.require_scope("Booking", "read")
    member = institution_id or principal.institution_id
    if institution_id and not principal.can_act_for(institution_id):
        raise PermissionDenied(
            f"{principal.username!r} of {principal.institution_id!r} may not list the orders "
            f"of {institution_id!r}",
            institution=institution_id,
        )
    stmt = select(Order)
    visible = visible_to(principal)
    if visible is not None:
        stmt = stmt.where(visible)
    if mine is not None:
        if member is None:
            raise InvalidInput(
                f"mine={mine.value} needs a member; consortium-wide callers give institution",
                [FieldError("query:institution", "missing")],
            )
        column = (
            Order.ordering_institution_id
            if mine is Side.ORDERED
            else Order.performing_institution_id
        )
        stmt = stmt.where(column == member)
    elif institution_id:
        stmt = stmt.where(
            or_(
                Order.ordering_institution_id == institution_id,
                Order.performing_institution_id == institution_id,
            )
        )
    if status is not None:
        stmt = stmt.where(Order.status == status)
    if patient_ref:
        stmt = stmt.where(Order.patient_ref == patient_ref)
    if service_id:
        stmt = stmt.where(Order.service_id == service_id)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(
        stmt.order_by(Order.created_at.desc(), Order.id).limit(limit).offset(offset)
    )
    return list(rows), int(total)


def awaiting_sync(session: Session, principal: Principal) -> list[Order]:
    """Scheduled orders (visible to the caller) whose appointment has moved on."""
    stmt = (
        select(Order)
        .join(Appointment, Appointment.id == Order.appointment_id)
        .where(Order.status == OrderStatus.SCHEDULED, Appointment.status.in_(SETTLING))
    )
    visible = visible_to(principal)
    if visible is not None:
        stmt = stmt.where(visible)
    return list(session.scalars(stmt.order_by(Order.id)))


def appointment_of(session: Session, order: Order) -> Appointment | None:
    return session.get(Appointment, order.appointment_id) if order.appointment_id else None


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def to_dict(order: Order, appointment: Appointment | None = None) -> dict[str, Any]:
    """The API shape; with its appointment, the booked time and the appointment's state."""
    return {
        "id": order.id,
        "patient_ref": order.patient_ref,
        "patient_name": order.patient_name,
        "service_id": order.service_id,
        "ordering_institution_id": order.ordering_institution_id,
        "ordered_by": order.ordered_by,
        "clinician": order.clinician,
        "priority": order.priority.value,
        "indication": order.indication,
        "target_institution_id": order.target_institution_id,
        "performing_institution_id": order.performing_institution_id,
        "distance_km": round(order.distance_km, 2) if order.distance_km is not None else None,
        "routing_note": order.routing_note,
        "status": order.status.value,
        "appointment_id": order.appointment_id,
        "appointment": (
            {
                "id": appointment.id,
                "status": appointment.status.value,
                "start": appointment.start_at.isoformat(),
                "end": appointment.end_at.isoformat(),
            }
            if appointment is not None
            else None
        ),
        "result_ref": order.result_ref,
        "result_at": _iso(order.result_at),
        "cancel_reason": order.cancel_reason,
        "history": list(order.history),
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
    }
