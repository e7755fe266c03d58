"""Reads of referrals: who may see one, the lists of the sending and the receiving member.

Only the two members a referral joins (and consortium-wide callers) see it. A booked referral
follows its appointment: `awaiting_sync` finds the ones whose appointment has ended, and the
actions module moves them on (attended, or back to accepted to book again).
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from carepool.booking.models import Appointment, AppointmentStatus
from carepool.booking.referrals.models import Referral, ReferralStatus
from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput, NotFound, PermissionDenied

# Appointment states that settle a booked referral (attended, or to be booked again).
SETTLING = (AppointmentStatus.FULFILLED, AppointmentStatus.CANCELLED, AppointmentStatus.NOSHOW)


class Side(enum.StrEnum):
    """Which referrals of a member: the ones it sent, or the ones it received."""

    SENT = "sent"
    RECEIVED = "received"


def can_see(principal: Principal, referral: Referral) -> bool:
    """The referring member, the receiving member and consortium-wide callers see it."""
    return principal.consortium_wide or principal.institution_id in (
        referral.from_institution_id,
        referral.to_institution_id,
    )


def access_referral_by_id(session: Session, principal: Principal, id: str) -> Referral:
    """Load a referral the caller may see (scope and member checked)."""
    principal.require_scope("Booking", "read")
    referral = session.get(Referral, id)
    if referral is None:
        raise NotFound("referral", id)
    if not can_see(principal, referral):
        raise PermissionDenied(
            f"referral {id!r} joins {referral.from_institution_id!r} and "
            f"{referral.to_institution_id!r}; {principal.username!r} of "
            f"{principal.institution_id!r} may not see it",
            institution=referral.from_institution_id,
        )
    return referral


def visible_to(principal: Principal) -> ColumnElement[bool] | None:
    if principal.consortium_wide:
        return None
    return or_(
        Referral.from_institution_id == principal.institution_id,
        Referral.to_institution_id == principal.institution_id,
    )


def get_all_referrals(
    session: Session,
    principal: Principal,
    *,
    mine: Side | None = None,
    institution_id: str | None = None,
    status: ReferralStatus | None = None,
    patient_ref: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Referral], int]:
    """Referrals the caller may see, newest first.

    `mine` picks the ones `institution_id` (default: the caller's member) sent or received;
    a member's caller may name only its own member.
    """
    principal.require_scope("Booking", "read")
    member = institution_id or principal.institution_id
    if institution_id and not principal.can_act_for(institution_id):
        raise PermissionDenied(
            f"{principal.username!r} of {principal.institution_id!r} may not list the referrals "
            f"of {institution_id!r}",
            institution=institution_id,
        )
    stmt = select(Referral)
    visible = visible_to(principal)
    if visible is not None:
        stmt = stmt.where(visible)
    if mine is not None:
        if member is None:
            raise InvalidInput(
                f"mine={mine.value} needs a member; consortium-wide callers give institution",
                [FieldError("query:institution", "missing")],
            )
        column = Referral.from_institution_id if mine is Side.SENT else Referral.to_institution_id
        stmt = stmt.where(column == member)
    elif institution_id:
        stmt = stmt.where(
            or_(
                Referral.from_institution_id == institution_id,
                Referral.to_institution_id == institution_id,
            )
        )
    if status is not None:
        stmt = stmt.where(Referral.status == status)
    if patient_ref:
        stmt = stmt.where(Referral.patient_ref == patient_ref)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(
        stmt.order_by(Referral.created_at.desc(), Referral.id).limit(limit).offset(offset)
    )
    return list(rows), int(total)


def awaiting_sync(
    session: Session, principal: Principal, *, ids: list[str] | None = None
) -> list[Referral]:
    """Booked referrals (visible to the caller) whose appointment has ended one way or another."""
    stmt = (
        select(Referral)
        .join(Appointment, Appointment.id == Referral.appointment_id)
        .where(Referral.status == ReferralStatus.BOOKED, Appointment.status.in_(SETTLING))
    )
    visible = visible_to(principal)
    if visible is not None:
        stmt = stmt.where(visible)
    if ids is not None:
        stmt = stmt.where(Referral.id.in_(ids))
    return list(session.scalars(stmt.order_by(Referral.id)))


def appointment_of(session: Session, referral: Referral) -> Appointment | None:
    return session.get(Appointment, referral.appointment_id) if referral.appointment_id else None


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def to_dict(referral: Referral, appointment: Appointment | None = None) -> dict[str, Any]:
    """The API shape; with its appointment, the booked time and the appointment's state."""
    return {
        "id": referral.id,
        "patient_ref": referral.patient_ref,
        "patient_name": referral.patient_name,
        "from_institution_id": referral.from_institution_id,
        "referred_by": referral.referred_by,
        "to_institution_id": referral.to_institution_id,
        "service_id": referral.service_id,
        "department_code": referral.department_code,
        "staff_id": referral.staff_id,
        "reason": referral.reason,
        "priority": referral.priority.value,
        "status": referral.status.value,
        "decision_note": referral.decision_note,
        "book_from": _iso(referral.book_from),
        "book_until": _iso(referral.book_until),
        "appointment_id": referral.appointment_id,
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
        "report_ref": referral.report_ref,
        "report_text": referral.report_text,
        "cancel_reason": referral.cancel_reason,
        "history": list(referral.history),
        "created_at": referral.created_at.isoformat(),
        "updated_at": referral.updated_at.isoformat(),
    }
