"""Writes to orders: place (and route), route again, schedule, start, complete, attach a result,
cancel, and follow a scheduled order's appointment.

Every action runs in the caller's transaction, writes one audit row and one outbox event
(`booking.order.<placed|routed|scheduled|in_progress|completed|result_attached|...>`).

Who does what: the ordering member places, routes again and may cancel; either member may
schedule (with or without an appointment at the performing member; the appointment is made by
`booking.actions.do_create_appointment`, so its orderability and quota rules apply to the
caller); the performing member starts and completes the order. The result link is filled at
completion or later (`do_attach_order_result`), by the performing member or the data middle
platform (a consortium-wide system caller).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from carepool.booking import actions as booking_actions
from carepool.booking import patients
from carepool.booking._flow import advance, require_status
from carepool.booking.errors import IdempotencyMismatch, InvalidTransition
from carepool.booking.models import Appointment, AppointmentStatus
from carepool.booking.orders import service
from carepool.booking.orders.errors import NoCapacity
from carepool.booking.orders.models import Order, OrderStatus
from carepool.booking.referrals.actions import digest, flush_versioned, known
from carepool.booking.referrals.models import Priority
from carepool.catalog.models import Institution, Service, ServiceCategory
from carepool.core import audit, events
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput, PermissionDenied

S = OrderStatus
ORDERABLE = (ServiceCategory.LAB, ServiceCategory.IMAGING)


class Party(enum.StrEnum):
    ORDERER = "the ordering member"
    PERFORMER = "the performing member"
    EITHER = "either member"
    POOL = "the booking pool"


# action -> (from states, to state, who, event suffix)
TRANSITIONS: dict[str, tuple[frozenset[OrderStatus], OrderStatus, Party, str]] = {
    "route": (frozenset({S.PLACED}), S.ROUTED, Party.ORDERER, "routed"),
    "schedule": (frozenset({S.ROUTED}), S.SCHEDULED, Party.EITHER, "scheduled"),
    "start": (frozenset({S.ROUTED, S.SCHEDULED}), S.IN_PROGRESS, Party.PERFORMER, "in_progress"),
    "complete": (frozenset({S.IN_PROGRESS}), S.COMPLETED, Party.PERFORMER, "completed"),
    "attach-result": (frozenset({S.COMPLETED}), S.COMPLETED, Party.PERFORMER, "result_attached"),
    "cancel": (
        frozenset({S.PLACED, S.ROUTED, S.SCHEDULED}),
        S.CANCELLED,
        Party.EITHER,
        "cancelled",
    ),
    # Driven by the order's appointment (see do_sync_order_from_appointment).
    "arrive": (frozenset({S.SCHEDULED}), S.IN_PROGRESS, Party.POOL, "in_progress"),
    "unschedule": (frozenset({S.SCHEDULED}), S.ROUTED, Party.POOL, "unscheduled"),
}
SYNC_ACTOR = Principal.system_actor("order-sync")


def _require_party(actor: Principal, order: Order, party: Party, action: str) -> None:
    actor.require_scope("Booking", "write")
    if party is Party.POOL:
        allowed = actor.system
    elif party is Party.EITHER:
        allowed = actor.can_act_for(order.ordering_institution_id) or (
            order.performing_institution_id is not None
            and actor.can_act_for(order.performing_institution_id)
        )
    elif party is Party.ORDERER:
        allowed = actor.can_act_for(order.ordering_institution_id)
    else:
        allowed = actor.consortium_wide or (
            order.performing_institution_id is not None
            and actor.can_act_for(order.performing_institution_id)
        )
    if not allowed:
        raise PermissionDenied(
            f"only {party.value} may {action} order {order.id}; {actor.username!r} is of "
            f"{actor.institution_id!r}",
            institution=order.ordering_institution_id,
        )


def _check(actor: Principal, order: Order, action: str) -> None:
    allowed, _target, party, _event = TRANSITIONS[action]
    require_status("order", order.id, order.status, allowed, action)
    _require_party(actor, order, party, action)


def _apply(
    order: Order, action: str, *, actor: Principal, now: datetime, note: str, **changes: Any
) -> None:
    advance(order, TRANSITIONS[action][1], actor=actor, now=now, note=note, **changes)


def _emit(session: Session, order: Order, suffix: str, payload: dict[str, Any] | None) -> None:
    events.emit(
        session,
        type=f"booking.order.{suffix}",
        entity_type="order",
        entity_id=order.id,
        institution_id=order.performing_institution_id or order.ordering_institution_id,
        payload={
            "ordering_institution_id": order.ordering_institution_id,
            "performing_institution_id": order.performing_institution_id,
            "service_id": order.service_id,
            "status": order.status.value,
            **(payload or {}),
        },
    )


def _record(
    session: Session,
    order: Order,
    action: str,
    *,
    actor: Principal,
    before: dict[str, Any],
    payload: dict[str, Any] | None = None,
) -> None:
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="order",
        entity_id=order.id,
        entity_institution=order.ordering_institution_id,
        before=before,
        after=service.to_dict(order),
        detail=action,
    )
    _emit(session, order, TRANSITIONS[action][3], payload)


def _step(
    session: Session,
    order: Order,
    action: str,
    *,
    actor: Principal,
    now: datetime,
    note: str = "",
    payload: dict[str, Any] | None = None,
    **changes: Any,
) -> Order:
    """Check, apply, flush (version-guarded), audit and emit one transition."""
    _check(actor, order, action)
    before = service.to_dict(order)
    _apply(order, action, actor=actor, now=now, note=note, **changes)
    flush_versioned(session, "order", order.id)
    _record(session, order, action, actor=actor, before=before, payload=payload)
    return order


def _route_changes(route: service.Route) -> dict[str, Any]:
    return {
        "performing_institution_id": route.institution_id,
        "distance_km": route.distance_km,
        "routing_note": route.note,
    }


def do_place_order(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    service_id: str,
    patient_ref: str,
    patient_name: str = "",
    priority: Priority = Priority.ROUTINE,
    clinician: str = "",
    indication: str = "",
    target_institution_id: str | None = None,
    ordering_institution_id: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[Order, bool]:
    """Order a lab test or exam and route it at once; returns (order, created).

    Routed to the member the orderer picked, or to the nearest with a free slot within the
    priority's horizon; when no member has capacity the order stays `placed` (the routing note
    says why) and `do_route_order` tries again later. Idempotent like appointments.
    """
    actor.require_scope("Booking", "write")
    orderer = ordering_institution_id or actor.institution_id
    if orderer is None:
        raise InvalidInput(
            "a consortium-wide caller names the ordering member",
            [FieldError("body:ordering_institution_id", "missing")],
        )
    actor.require_institution(orderer, f"orders placed by {orderer}")
    request_digest = digest(
        {
            "service_id": service_id,
            "patient_ref": patient_ref,
            "ordering": orderer,
            "target": target_institution_id,
            "priority": priority.value,
        }
    )
    if idempotency_key:
        existing = session.scalar(
            select(Order).where(
                Order.ordered_by == actor.username, Order.idempotency_key == idempotency_key
            )
        )
        if existing is not None:
            if existing.request_digest != request_digest:
                raise IdempotencyMismatch(
                    f"idempotency key {idempotency_key!r} was used for a different request "
                    f"(order {existing.id})"
                )
            return existing, False
    svc: Service = known(session, "service", service_id, "body:service_id")
    if svc.category not in ORDERABLE:
        raise InvalidInput(
            f"{service_id} is a {svc.category.value} service; orders are for lab tests and exams",
            [FieldError("body:service_id", "a service of category lab or imaging")],
        )
    booking_actions.check_orderable(session, actor, svc)
    patient = patients.resolve(session, actor, patient_ref)
    ordering: Institution = known(session, "institution", orderer, "body:ordering_institution_id")
    if target_institution_id:
        known(session, "institution", target_institution_id, "body:target_institution_id")
        if target_institution_id not in [o.institution_id for o in svc.offerings]:
            raise InvalidInput(
                f"{target_institution_id!r} does not offer {service_id!r}",
                [FieldError("body:target_institution_id", f"not an offerer of {service_id}")],
            )
    route = service.choose_performer(
        session,
        service=svc,
        ordering=ordering,
        priority=priority,
        now=now,
        target_institution_id=target_institution_id,
    )
    order = Order(
        id="ord-" + uuid.uuid4().hex[:20],
        patient_ref=patient.id,
        patient_id=patient.id,
        patient_name=patient_name,
        service_id=service_id,
        ordering_institution_id=orderer,
        ordered_by=actor.username,
        clinician=clinician or actor.username,
        priority=priority,
        indication=indication,
        target_institution_id=target_institution_id,
        routing_note="" if route.institution_id else route.note,
        status=S.PLACED,
        idempotency_key=idempotency_key,
        request_digest=request_digest,
        history=[
            {"status": S.PLACED.value, "at": now.isoformat(), "by": actor.username, "note": ""}
        ],
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # the same idempotency key, concurrently
        raise IdempotencyMismatch(
            f"idempotency key {idempotency_key!r} is being used by a concurrent request; retry"
        ) from exc
    audit.record(
        session,
        actor=actor,
        action=AuditAction.CREATE,
        entity_type="order",
        entity_id=order.id,
        entity_institution=orderer,
        after=service.to_dict(order),
    )
    _emit(session, order, "placed", {"priority": priority.value, "target": target_institution_id})
    if route.institution_id:
        _step(
            session,
            order,
            "route",
            actor=actor,
            now=now,
            note=route.note,
            payload={"distance_km": route.distance_km},
            **_route_changes(route),
        )
    return order, True


def do_route_order(session: Session, *, actor: Principal, now: datetime, id: str) -> Order:
    """Try again to route a placed order; `NoCapacity` (409) when still no member can take it."""
    order = service.access_order_by_id(session, actor, id)
    _check(actor, order, "route")
    svc: Service = known(session, "service", order.service_id, "service_id")
    ordering: Institution = known(session, "institution", order.ordering_institution_id, "id")
    route = service.choose_performer(
        session,
        service=svc,
        ordering=ordering,
        priority=order.priority,
        now=now,
        target_institution_id=order.target_institution_id,
    )
    if route.institution_id is None:
        raise NoCapacity(
            route.note,
            considered=[
                {
                    "institution_id": c.institution_id,
                    "distance_km": c.distance_km,
                    "first_slot": c.first_slot.isoformat() if c.first_slot else None,
                }
                for c in route.considered
            ],
        )
    return _step(
        session,
        order,
        "route",
        actor=actor,
        now=now,
        note=route.note,
        payload={"distance_km": route.distance_km},
        **_route_changes(route),
    )


def do_schedule_order(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    id: str,
    start: datetime | None = None,
    idempotency_key: str | None = None,
    note: str = "",
) -> Order:
    """Schedule a routed order: with `start`, an appointment at the performing member; without,
    the performing member's own queue (a walk-in sample, say)."""
    order = service.access_order_by_id(session, actor, id)
    do_sync_order_from_appointment(session, now=now, order=order)
    if idempotency_key and order.appointment_id:
        first = session.scalar(
            select(Appointment).where(
                Appointment.requested_by == actor.username,
                Appointment.idempotency_key == idempotency_key,
            )
        )
        if first is not None and first.id == order.appointment_id:
            return order
    _check(actor, order, "schedule")
    if order.performing_institution_id is None:  # routed orders have one; a guard
        raise InvalidTransition(f"order {id} has no performing member")
    changes: dict[str, Any] = {}
    step_note = note or "in the performing member's queue"
    if start is not None:
        appointment, created = booking_actions.do_create_appointment(
            session,
            actor=actor,
            now=now,
            service_id=order.service_id,
            institution_id=order.performing_institution_id,
            start=start,
            patient_ref=order.patient_ref,
            patient_name=order.patient_name,
            patient=patients.known(session, order.patient_id) if order.patient_id else None,
            idempotency_key=idempotency_key,
            note=note or f"order {order.id}",
        )
        if not created:  # the key scheduled this order before; that appointment has ended
            raise IdempotencyMismatch(
                f"idempotency key {idempotency_key!r} booked appointment {appointment.id}, now "
                f"{appointment.status.value}; schedule again with a new key"
            )
        changes["appointment_id"] = appointment.id
        step_note = f"appointment {appointment.id} at {appointment.start_at.isoformat()}"
    return _step(
        session,
        order,
        "schedule",
        actor=actor,
        now=now,
        note=step_note,
        payload={"appointment_id": changes.get("appointment_id")},
        **changes,
    )


def _carry_to_appointment(
    session: Session, actor: Principal, now: datetime, order: Order, *, fulfil: bool
) -> None:
    """Carry an order's step over to its appointment: arrived when the order starts, also
    fulfilled when it completes."""
    appointment = service.appointment_of(session, order)
    if appointment is None:
        return
    steps = []
    if appointment.status is AppointmentStatus.BOOKED:
        steps.append("arrive")
    if fulfil and appointment.status in (AppointmentStatus.BOOKED, AppointmentStatus.ARRIVED):
        steps.append("fulfil")
    for action in steps:
        booking_actions.do_transition_appointment(
            session, actor=actor, now=now, id=appointment.id, action=action
        )


def do_start_order(session: Session, *, actor: Principal, now: datetime, id: str) -> Order:
    """The performing member starts the test or exam (the patient or sample is there)."""
    order = service.access_order_by_id(session, actor, id)
    do_sync_order_from_appointment(session, now=now, order=order)
    _check(actor, order, "start")
    _carry_to_appointment(session, actor, now, order, fulfil=False)
    return _step(session, order, "start", actor=actor, now=now)


def do_complete_order(
    session: Session, *, actor: Principal, now: datetime, id: str, result_ref: str | None = None
) -> Order:
    """The performing member finishes; the result link may come now or later."""
    order = service.access_order_by_id(session, actor, id)
    do_sync_order_from_appointment(session, now=now, order=order)
    _check(actor, order, "complete")
    _carry_to_appointment(session, actor, now, order, fulfil=True)
    return _step(
        session,
        order,
        "complete",
        actor=actor,
        now=now,
        note=result_ref or "",
        payload={"result_ref": result_ref},
        result_ref=result_ref,
        result_at=now if result_ref else None,
    )


def do_attach_order_result(
    session: Session, *, actor: Principal, now: datetime, id: str, result_ref: str
) -> Order:
    """Fill (or correct) the result link of a completed order; the old link stays in the audit."""
    order = service.access_order_by_id(session, actor, id)
    _check(actor, order, "attach-result")
    if not result_ref.strip():
        raise InvalidInput("give the result link", [FieldError("body:result_ref", "missing")])
    return _step(
        session,
        order,
        "attach-result",
        actor=actor,
        now=now,
        note=result_ref,
        payload={"result_ref": result_ref},
        result_ref=result_ref,
        result_at=now,
    )


def do_cancel_order(
    session: Session, *, actor: Principal, now: datetime, id: str, reason: str
) -> Order:
    """Either member cancels an order not yet started; its appointment is cancelled with it."""
    order = service.access_order_by_id(session, actor, id)
    do_sync_order_from_appointment(session, now=now, order=order)
    _check(actor, order, "cancel")
    if not reason.strip():
        raise InvalidInput("a cancellation needs a reason", [FieldError("body:reason", "missing")])
    appointment = service.appointment_of(session, order)
    if appointment is not None and appointment.status in (
        AppointmentStatus.HELD,
        AppointmentStatus.BOOKED,
    ):
        booking_actions.do_transition_appointment(
            session,
            actor=actor,
            now=now,
            id=appointment.id,
            action="cancel",
            reason=f"order {id} cancelled: {reason}",
        )
    return _step(
        session,
        order,
        "cancel",
        actor=actor,
        now=now,
        note=reason,
        payload={"reason": reason},
        cancel_reason=reason,
    )


def do_sync_order_from_appointment(session: Session, *, now: datetime, order: Order) -> bool:
    """Move a scheduled order on when its appointment did; True if it moved.

    Arrived or fulfilled -> in_progress; cancelled or no-show -> routed (schedule again).
    Idempotent and safe under concurrency, like the referral sync.
    """
    if order.status is not S.SCHEDULED or order.appointment_id is None:
        return False
    appointment = session.get(Appointment, order.appointment_id)
    if appointment is None or appointment.status not in service.SETTLING:
        return False
    arrived = appointment.status in (AppointmentStatus.ARRIVED, AppointmentStatus.FULFILLED)
    action = "arrive" if arrived else "unschedule"
    note = f"appointment {appointment.id} {appointment.status.value}"
    before = service.to_dict(order)
    session.flush()  # only this step may be undone below
    try:
        with session.begin_nested():
            _apply(
                order,
                action,
                actor=SYNC_ACTOR,
                now=now,
                note=note,
                **({} if arrived else {"appointment_id": None}),
            )
            session.flush()
    except StaleDataError:
        session.refresh(order)
        return False
    _record(
        session,
        order,
        action,
        actor=SYNC_ACTOR,
        before=before,
        payload={"appointment_id": appointment.id, "appointment_status": appointment.status.value},
    )
    return True


def do_sync_orders(session: Session, *, actor: Principal, now: datetime) -> int:
    """Sync every scheduled order the caller may see whose appointment moved; returns how many."""
    return sum(
        do_sync_order_from_appointment(session, now=now, order=o)
        for o in service.awaiting_sync(session, actor)
    )


__all__ = [
    "TRANSITIONS",
    "do_attach_order_result",
    "do_cancel_order",
    "do_complete_order",
    "do_place_order",
    "do_route_order",
    "do_schedule_order",
    "do_start_order",
    "do_sync_order_from_appointment",
    "do_sync_orders",
]
