"""Writes to referrals: request, accept, decline, book, follow the appointment, report, cancel.

Every action runs in the caller's transaction, writes one audit row and one outbox event
(`booking.referral.<requested|accepted|declined|booked|attended|report_returned|...>`).

Who does what: the referring member requests, books and may cancel; the receiving member
accepts (naming the service to book, and optionally a window of dates) or declines with a
reason, returns the report and may cancel. Booking is the referrer's: it knows when the
patient can travel, and the appointment then counts as the referrer's request, so the
receiving member's quotas kept for clinics apply and the clinic sees the appointment too.

A booked referral follows its appointment (`do_sync_referral_from_appointment`): fulfilled
-> attended; cancelled or no-show -> accepted again, to be booked anew. The booking core is
not told about referrals; the sync runs whenever a referral is read or changed.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from carepool.booking import actions as booking_actions
from carepool.booking import patients
from carepool.booking import service as booking_service
from carepool.booking._flow import advance, require_status
from carepool.booking.errors import IdempotencyMismatch, InvalidTransition
from carepool.booking.models import Appointment, AppointmentStatus
from carepool.booking.referrals import service
from carepool.booking.referrals.errors import ChangedConcurrently
from carepool.booking.referrals.models import Priority, Referral, ReferralStatus
from carepool.catalog import service as catalog_service
from carepool.catalog.models import ResourceKind, Service
from carepool.core import audit, events
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput, NotFound, PermissionDenied

S = ReferralStatus


class Party(enum.StrEnum):
    """Who may take a step: the referring member, the receiving member, either, or the pool."""

    SENDER = "the referring member"
    RECEIVER = "the receiving member"
    EITHER = "either member"
    POOL = "the booking pool"


# action -> (from states, to state, who, event suffix)
TRANSITIONS: dict[str, tuple[frozenset[ReferralStatus], ReferralStatus, Party, str]] = {
    "accept": (frozenset({S.REQUESTED}), S.ACCEPTED, Party.RECEIVER, "accepted"),
    "decline": (frozenset({S.REQUESTED}), S.DECLINED, Party.RECEIVER, "declined"),
    "book": (frozenset({S.ACCEPTED}), S.BOOKED, Party.SENDER, "booked"),
    "attend": (frozenset({S.BOOKED}), S.ATTENDED, Party.POOL, "attended"),
    "unbook": (frozenset({S.BOOKED}), S.ACCEPTED, Party.POOL, "unbooked"),
    "return-report": (
        frozenset({S.ATTENDED}),
        S.REPORT_RETURNED,
        Party.RECEIVER,
        "report_returned",
    ),
    "cancel": (
        frozenset({S.REQUESTED, S.ACCEPTED, S.BOOKED}),
        S.CANCELLED,
        Party.EITHER,
        "cancelled",
    ),
}
SYNC_ACTOR = Principal.system_actor("referral-sync")


def digest(values: dict[str, Any]) -> str:
    """A stable fingerprint of a request (idempotency: the same key must mean the same request)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def flush_versioned(session: Session, kind: str, id: str) -> None:
    """Flush; a row changed by someone else since we read it becomes `ChangedConcurrently`."""
    try:
        session.flush()
    except StaleDataError as exc:
        raise ChangedConcurrently(
            f"{kind} {id} was changed by someone else meanwhile; reload it and try again"
        ) from exc


def known(session: Session, kind: str, id: str, field: str) -> Any:
    """A catalogue row named in a request body; an unknown id is the caller's input error."""
    try:
        return catalog_service.get(session, kind=kind, id=id)
    except NotFound as exc:
        raise InvalidInput(exc.detail, [FieldError(field, f"no {kind} {id!r}")]) from exc


def _require_party(actor: Principal, referral: Referral, party: Party, action: str) -> None:
    actor.require_scope("Booking", "write")
    if party is Party.POOL:
        allowed = actor.system
    elif party is Party.EITHER:
        allowed = actor.can_act_for(referral.from_institution_id) or actor.can_act_for(
            referral.to_institution_id
        )
    else:
        member = (
            referral.from_institution_id if party is Party.SENDER else referral.to_institution_id
        )
        allowed = actor.can_act_for(member)
    if not allowed:
        raise PermissionDenied(
            f"only {party.value} may {action} referral {referral.id}; {actor.username!r} is of "
            f"{actor.institution_id!r}",
            institution=referral.from_institution_id,
        )


def _check(actor: Principal, referral: Referral, action: str) -> None:
    allowed, _target, party, _event = TRANSITIONS[action]
    require_status("referral", referral.id, referral.status, allowed, action)
    _require_party(actor, referral, party, action)


def _apply(
    referral: Referral, action: str, *, actor: Principal, now: datetime, note: str, **changes: Any
) -> None:
    advance(referral, TRANSITIONS[action][1], actor=actor, now=now, note=note, **changes)


def _record(
    session: Session,
    referral: Referral,
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
        entity_type="referral",
        entity_id=referral.id,
        entity_institution=referral.from_institution_id,
        before=before,
        after=service.to_dict(referral),
        detail=action,
    )
    _emit(session, referral, TRANSITIONS[action][3], payload)


def _emit(
    session: Session, referral: Referral, suffix: str, payload: dict[str, Any] | None = None
) -> None:
    events.emit(
        session,
        type=f"booking.referral.{suffix}",
        entity_type="referral",
        entity_id=referral.id,
        institution_id=referral.to_institution_id,
        payload={
            "from_institution_id": referral.from_institution_id,
            "to_institution_id": referral.to_institution_id,
            "status": referral.status.value,
            **(payload or {}),
        },
    )


def _step(
    session: Session,
    referral: Referral,
    action: str,
    *,
    actor: Principal,
    now: datetime,
    note: str = "",
    payload: dict[str, Any] | None = None,
    **changes: Any,
) -> Referral:
    """Check, apply, flush (version-guarded), audit and emit one transition."""
    _check(actor, referral, action)
    before = service.to_dict(referral)
    _apply(referral, action, actor=actor, now=now, note=note, **changes)
    flush_versioned(session, "referral", referral.id)
    _record(session, referral, action, actor=actor, before=before, payload=payload)
    return referral


def do_create_referral(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    patient_ref: str,
    to_institution_id: str,
    patient_name: str = "",
    service_id: str | None = None,
    department_code: str | None = None,
    staff_id: str | None = None,
    reason: str = "",
    priority: Priority = Priority.ROUTINE,
    from_institution_id: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[Referral, bool]:
    """Refer a patient to a service, a department or a staff member at another member.

    Returns (referral, created); repeating a request with the same idempotency key returns the
    first referral, and reusing the key for another request is refused.
    """
    actor.require_scope("Booking", "write")
    sender = from_institution_id or actor.institution_id
    if sender is None:
        raise InvalidInput(
            "a consortium-wide caller names the referring member",
            [FieldError("body:from_institution_id", "missing")],
        )
    actor.require_institution(sender, f"referrals sent by {sender}")
    request_digest = digest(
        {
            "patient_ref": patient_ref,
            "from": sender,
            "to": to_institution_id,
            "service_id": service_id,
            "department_code": department_code,
            "staff_id": staff_id,
        }
    )
    if idempotency_key:
        existing = session.scalar(
            select(Referral).where(
                Referral.referred_by == actor.username,
                Referral.idempotency_key == idempotency_key,
            )
        )
        if existing is not None:
            if existing.request_digest != request_digest:
                raise IdempotencyMismatch(
                    f"idempotency key {idempotency_key!r} was used for a different request "
                    f"(referral {existing.id})"
                )
            return existing, False
    patient = patients.resolve(session, actor, patient_ref)
    _check_target(
        session,
        sender=sender,
        to_institution_id=to_institution_id,
        service_id=service_id,
        department_code=department_code,
        staff_id=staff_id,
    )
    referral = Referral(
        id="ref-" + uuid.uuid4().hex[:20],
        patient_ref=patient.id,
        patient_id=patient.id,
        patient_name=patient_name,
        from_institution_id=sender,
        referred_by=actor.username,
        to_institution_id=to_institution_id,
        service_id=service_id,
        department_code=department_code,
        staff_id=staff_id,
        reason=reason,
        priority=priority,
        status=S.REQUESTED,
        idempotency_key=idempotency_key,
        request_digest=request_digest,
        history=[
            {"status": S.REQUESTED.value, "at": now.isoformat(), "by": actor.username, "note": ""}
        ],
        created_at=now,
        updated_at=now,
    )
    session.add(referral)
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
        entity_type="referral",
        entity_id=referral.id,
        entity_institution=sender,
        after=service.to_dict(referral),
    )
    _emit(session, referral, "requested", {"priority": priority.value, "service_id": service_id})
    return referral, True


def _check_target(
    session: Session,
    *,
    sender: str,
    to_institution_id: str,
    service_id: str | None,
    department_code: str | None,
    staff_id: str | None,
) -> None:
    known(session, "institution", to_institution_id, "body:to_institution_id")
    if to_institution_id == sender:
        raise InvalidInput(
            "a referral goes to another member",
            [FieldError("body:to_institution_id", f"is the referring member {sender!r}")],
        )
    if not (service_id or department_code or staff_id):
        raise InvalidInput(
            "say what the patient is referred to: service_id, department_code or staff_id",
            [FieldError("body:service_id", "give at least one of the three")],
        )
    if service_id:
        _check_offered(session, service_id, to_institution_id, "body:service_id")
    if department_code:
        known(session, "department_code", department_code, "body:department_code")
        _, n = catalog_service.get_all(
            session,
            kind="department",
            filters={"institution_id": to_institution_id, "code": department_code},
            limit=1,
        )
        if n == 0:
            raise InvalidInput(
                f"{to_institution_id!r} has no department {department_code}",
                [FieldError("body:department_code", "not a department of the receiving member")],
            )
    if staff_id:
        staff = known(session, "resource", staff_id, "body:staff_id")
        if staff.kind is not ResourceKind.STAFF or staff.institution_id != to_institution_id:
            raise InvalidInput(
                f"{staff_id!r} is not a staff member of {to_institution_id!r}",
                [FieldError("body:staff_id", "a staff member of the receiving member")],
            )


def _check_offered(session: Session, service_id: str, institution_id: str, field: str) -> Service:
    svc: Service = known(session, "service", service_id, field)
    if institution_id not in booking_service.offering_members(session, svc):
        raise InvalidInput(
            f"{institution_id!r} does not offer {service_id!r}",
            [FieldError(field, f"not offered by {institution_id}")],
        )
    return svc


def do_accept_referral(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    id: str,
    note: str = "",
    service_id: str | None = None,
    book_from: datetime | None = None,
    book_until: datetime | None = None,
) -> Referral:
    """The receiving member takes the patient, naming the service to book (if the referral did
    not) and, optionally, the window in which the referrer may book it."""
    referral = service.access_referral_by_id(session, actor, id)
    _check(actor, referral, "accept")
    chosen = service_id or referral.service_id
    if chosen is None:
        raise InvalidInput(
            f"referral {id} names no service; accepting it names the one to book",
            [FieldError("body:service_id", "missing")],
        )
    _check_offered(session, chosen, referral.to_institution_id, "body:service_id")
    if book_from and book_until and book_until <= book_from:
        raise InvalidInput(
            "the booking window ends before it starts",
            [FieldError("body:book_until", "after book_from")],
        )
    return _step(
        session,
        referral,
        "accept",
        actor=actor,
        now=now,
        note=note,
        payload={"service_id": chosen},
        service_id=chosen,
        decision_note=note,
        book_from=book_from,
        book_until=book_until,
    )


def do_decline_referral(
    session: Session, *, actor: Principal, now: datetime, id: str, reason: str
) -> Referral:
    """The receiving member refuses the referral; the reason goes back to the referrer."""
    referral = service.access_referral_by_id(session, actor, id)
    _check(actor, referral, "decline")
    if not reason.strip():
        raise InvalidInput("a decline needs a reason", [FieldError("body:reason", "missing")])
    return _step(
        session,
        referral,
        "decline",
        actor=actor,
        now=now,
        note=reason,
        payload={"reason": reason},
        decision_note=reason,
    )


def do_book_referral(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    id: str,
    start: datetime,
    idempotency_key: str | None = None,
    note: str = "",
) -> Referral:
    """The referrer books the accepted referral's service at the receiving member.

    The appointment is made by `booking.actions.do_create_appointment` (same checks, same
    conflicts: `SlotTaken` names what was taken). Repeating the request with the same
    idempotency key returns the referral as booked the first time.
    """
    referral = service.access_referral_by_id(session, actor, id)
    do_sync_referral_from_appointment(session, now=now, referral=referral)
    if idempotency_key and referral.appointment_id:
        first = session.scalar(
            select(Appointment).where(
                Appointment.requested_by == actor.username,
                Appointment.idempotency_key == idempotency_key,
            )
        )
        if first is not None and first.id == referral.appointment_id:
            return referral
    _check(actor, referral, "book")
    if referral.service_id is None:  # accept always sets it; a guard for hand-edited rows
        raise InvalidTransition(f"referral {id} has no service to book")
    if (referral.book_from and start < referral.book_from) or (
        referral.book_until and start >= referral.book_until
    ):
        window = (
            f"{referral.book_from.isoformat() if referral.book_from else 'any time'} – "
            f"{referral.book_until.isoformat() if referral.book_until else 'any time'}"
        )
        raise InvalidInput(
            f"{referral.to_institution_id} lets referral {id} be booked within {window}",
            [FieldError("body:start", f"within {window}")],
        )
    # The key's digest covers referral_id: a key reused for another referral is refused there.
    appointment, created = booking_actions.do_create_appointment(
        session,
        actor=actor,
        now=now,
        service_id=referral.service_id,
        institution_id=referral.to_institution_id,
        start=start,
        patient_ref=referral.patient_ref,
        patient_name=referral.patient_name,
        patient=patients.known(session, referral.patient_id) if referral.patient_id else None,
        idempotency_key=idempotency_key,
        referral_id=referral.id,
        note=note or f"referral {referral.id}",
    )
    if not created:  # the key booked this referral before, and that appointment has ended
        raise IdempotencyMismatch(
            f"idempotency key {idempotency_key!r} booked appointment {appointment.id}, now "
            f"{appointment.status.value}; book again with a new key"
        )
    return _step(
        session,
        referral,
        "book",
        actor=actor,
        now=now,
        note=f"appointment {appointment.id} at {appointment.start_at.isoformat()}",
        payload={"appointment_id": appointment.id, "start": appointment.start_at.isoformat()},
        appointment_id=appointment.id,
    )


def do_sync_referral_from_appointment(
    session: Session, *, now: datetime, referral: Referral
) -> bool:
    """Move a booked referral on when its appointment has ended; True if it moved.

    Fulfilled -> attended; cancelled or no-show -> accepted (book again). Idempotent and safe
    under concurrency: of two callers syncing one referral, one moves it, the other sees the
    result (the step runs in a savepoint, guarded by the row's version).
    """
    if referral.status is not S.BOOKED or referral.appointment_id is None:
        return False
    appointment = session.get(Appointment, referral.appointment_id)
    if appointment is None or appointment.status not in service.SETTLING:
        return False
    attended = appointment.status is AppointmentStatus.FULFILLED
    action = "attend" if attended else "unbook"
    note = f"appointment {appointment.id} {appointment.status.value}"
    if not attended and appointment.cancel_reason:
        note += f": {appointment.cancel_reason}"
    before = service.to_dict(referral)
    session.flush()  # only this step may be undone below
    try:
        with session.begin_nested():
            _apply(
                referral,
                action,
                actor=SYNC_ACTOR,
                now=now,
                note=note,
                **({} if attended else {"appointment_id": None}),
            )
            session.flush()
    except StaleDataError:
        session.refresh(referral)
        return False
    _record(
        session,
        referral,
        action,
        actor=SYNC_ACTOR,
        before=before,
        payload={"appointment_id": appointment.id, "appointment_status": appointment.status.value},
    )
    return True


def do_sync_referrals(session: Session, *, actor: Principal, now: datetime) -> int:
    """Sync every booked referral the caller may see whose appointment ended; returns how many."""
    return sum(
        do_sync_referral_from_appointment(session, now=now, referral=r)
        for r in service.awaiting_sync(session, actor)
    )


def do_return_referral_report(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    id: str,
    report_ref: str | None = None,
    report_text: str = "",
) -> Referral:
    """The receiving member sends back what it found: a link to a report, a text, or both."""
    referral = service.access_referral_by_id(session, actor, id)
    do_sync_referral_from_appointment(session, now=now, referral=referral)
    _check(actor, referral, "return-report")
    if not (report_ref or report_text.strip()):
        raise InvalidInput(
            "a report needs a link (report_ref) or a text",
            [FieldError("body:report_ref", "give report_ref or report_text")],
        )
    return _step(
        session,
        referral,
        "return-report",
        actor=actor,
        now=now,
        note=report_ref or "",
        payload={"report_ref": report_ref},
        report_ref=report_ref,
        report_text=report_text,
    )


def do_cancel_referral(
    session: Session, *, actor: Principal, now: datetime, id: str, reason: str
) -> Referral:
    """Either member withdraws the referral; a booked appointment is cancelled with it."""
    referral = service.access_referral_by_id(session, actor, id)
    do_sync_referral_from_appointment(session, now=now, referral=referral)
    _check(actor, referral, "cancel")
    if not reason.strip():
        raise InvalidInput("a cancellation needs a reason", [FieldError("body:reason", "missing")])
    if referral.appointment_id:
        booking_actions.do_transition_appointment(
            session,
            actor=actor,
            now=now,
            id=referral.appointment_id,
            action="cancel",
            reason=f"referral {id} cancelled: {reason}",
        )
    return _step(
        session,
        referral,
        "cancel",
        actor=actor,
        now=now,
        note=reason,
        payload={"reason": reason},
        cancel_reason=reason,
    )


__all__ = [
    "TRANSITIONS",
    "do_accept_referral",
    "do_book_referral",
    "do_cancel_referral",
    "do_create_referral",
    "do_decline_referral",
    "do_return_referral_report",
    "do_sync_referral_from_appointment",
    "do_sync_referrals",
]
