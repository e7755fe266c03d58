"""Who a booking is for, and the patient's own time (docs/decisions/0013).

Every appointment, admission, surgery case, referral and order names a registered patient: a
records `Patient` (its FHIR id, `Patient/<id>` or the bare id) that the caller may see by the
same rule as `/fhir` — a record of the caller's member, or one whose person in the index has a
record there; consortium-wide callers may name any. An unknown or invisible reference is one
422 naming the field and the value (the two are not told apart: a refusal must not reveal
another member's patients).

The patient's own time is `PatientClaim` rows, which the database refuses to let clash (see the
model). This module inserts, ends and releases them for the booking actions, in the caller's
transaction; a clash is `PatientBusy` (409) naming the other booking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from carepool.booking.models import ClaimPurpose, PatientClaim, PatientLane
from carepool.core.auth import Principal
from carepool.core.errors import Conflict, FieldError, InvalidInput
from carepool.records import service as records_service

__all__ = [
    "BookedPatient",
    "PatientBusy",
    "bare_id",
    "claim_time",
    "claim_values",
    "end_time",
    "fhir_reference",
    "holds_time",
    "keep_time",
    "known",
    "lapsed_owners",
    "move_time",
    "patient_busy",
    "release_time",
    "resolve",
    "resolve_failure",
]

PatientId = str


class PatientBusy(Conflict):
    """The patient already has a booking at that time (`other` names it)."""

    code = "patient-busy"
    fhir_code = "business-rule"

    def __init__(self, detail: str, other: dict[str, Any]) -> None:
        super().__init__(detail, other=other)
        self.other = other


@dataclass(frozen=True)
class BookedPatient:
    """A checked reference: the record, its member, and the key of the patient's time line."""

    id: PatientId
    institution_id: str
    key: str  # the person in the index when linked, else the record

    @property
    def reference(self) -> str:
        return f"Patient/{self.id}"


def bare_id(ref: str) -> PatientId:
    """The patient id a reference names (`Patient/<id>` or `<id>`)."""
    return ref.strip().removeprefix("Patient/")


def fhir_reference(patient_id: str | None) -> dict[str, str] | None:
    """The FHIR reference of a booking's patient (None for rows booked before 0015)."""
    return {"reference": f"Patient/{patient_id}"} if patient_id else None


def resolve(
    session: Session, actor: Principal, ref: str, *, field: str = "body:patient_ref"
) -> BookedPatient:
    """The registered patient `ref` names, if `actor` may see it; else `InvalidInput` (422).

    One query (`records_service.person_records`).
    """
    patient_id = bare_id(ref)
    found = records_service.person_records(session, patient_id=patient_id) if patient_id else None
    visible = found is not None and (
        actor.consortium_wide
        or found.member == actor.institution_id
        or any(m == actor.institution_id for _p, m in found.records)
    )
    if found is None or not visible:
        raise resolve_failure(actor, ref, field=field)
    return BookedPatient(patient_id, found.member, found.person_id or patient_id)


def resolve_failure(actor: Principal, ref: str, *, field: str = "body:patient_ref") -> InvalidInput:
    """The 422 for a reference that names no patient the caller may book for."""
    return InvalidInput(
        f"{field.split(':')[-1]} {ref!r} is not a registered patient {actor.username!r} may "
        "book for",
        [
            FieldError(
                field,
                f"{ref!r}: give the FHIR id (Patient/<id>) of a patient of "
                f"{actor.institution_id or 'the consortium'} or of a person linked to one; "
                "register a walk-in first (POST /api/v1/patients)",
            )
        ],
    )


def claim_values(
    patient: BookedPatient,
    *,
    lane: PatientLane,
    institution_id: str,
    start: datetime,
    end: datetime,
    purpose: ClaimPurpose,
    owner_id: str,
    exclusive: bool,
    expires_at: datetime | None,
) -> dict[str, Any]:
    """A patient claim's column values (both booking paths insert exactly these)."""
    return {
        "patient_key": patient.key,
        "patient_id": patient.id,
        "lane": lane,
        "institution_id": institution_id,
        "start_at": start,
        "end_at": end,
        "purpose": purpose,
        "owner_id": owner_id,
        "active": True,
        "exclusive": exclusive,
        "expires_at": expires_at,
    }


_TABLE = cast(Table, PatientClaim.__table__)
_INSERT = insert(_TABLE)
_PG_INSERT = pg_insert(_TABLE).on_conflict_do_nothing().returning(_TABLE.c.id)


def _clashing(session: Session, values: dict[str, Any], now: datetime) -> PatientClaim | None:
    """The first live exclusive claim that `values` would clash with."""
    return session.scalars(
        select(PatientClaim)
        .where(
            PatientClaim.patient_key == values["patient_key"],
            PatientClaim.active.is_(True),
            PatientClaim.exclusive.is_(True),
            PatientClaim.owner_id != values["owner_id"],
            PatientClaim.start_at < values["end_at"],
            PatientClaim.end_at > values["start_at"],
            or_(
                PatientClaim.lane == values["lane"],
                PatientClaim.institution_id != values["institution_id"],
            ),
            or_(PatientClaim.expires_at.is_(None), PatientClaim.expires_at > now),
        )
        .order_by(PatientClaim.start_at, PatientClaim.id)
        .limit(1)
    ).first()


def patient_busy(session: Session, values: dict[str, Any], now: datetime) -> PatientBusy:
    """The 409 for a claim the database refused: which booking holds the patient then."""
    other = _clashing(session, values, now)
    patient = values["patient_id"]
    if other is None:  # the holder went away meanwhile; the refusal still stands
        return PatientBusy(
            f"patient {patient} was booked at that time by a concurrent request; retry",
            other={},
        )
    kind = other.purpose.value
    where = "" if other.institution_id == values["institution_id"] else " elsewhere"
    return PatientBusy(
        f"patient {patient} already has {kind} {other.owner_id} at {other.institution_id}{where} "
        f"from {other.start_at.isoformat()} to {_until(other.end_at)}; a patient cannot be in "
        "two bookings at once (a service whose policy has allow_patient_overlap can)",
        other={
            "kind": kind,
            "id": other.owner_id,
            "institution_id": other.institution_id,
            "start": other.start_at.isoformat(),
            "end": other.end_at.isoformat(),
        },
    )


def _until(end: datetime) -> str:
    return "discharge" if end.year >= 2200 else end.isoformat()


def holds_time(session: Session, owner_id: str) -> bool:
    """Whether a booking holds live patient time already."""
    found = session.scalar(
        select(PatientClaim.id)
        .where(PatientClaim.owner_id == owner_id, PatientClaim.active.is_(True))
        .limit(1)
    )
    return found is not None


def lapsed_owners(session: Session, *, patient_key: str, now: datetime) -> list[str]:
    """Owners of the patient's holds whose time ran out (released before claiming)."""
    return list(
        session.scalars(
            select(PatientClaim.owner_id).where(
                PatientClaim.patient_key == patient_key,
                PatientClaim.active.is_(True),
                PatientClaim.expires_at.is_not(None),
                PatientClaim.expires_at <= now,
            )
        )
    )


def claim_time(session: Session, values: dict[str, Any], *, now: datetime) -> None:
    """Insert a patient claim; `PatientBusy` if the database refuses it.

    PostgreSQL: `ON CONFLICT DO NOTHING` (the exclusion constraints answer; a concurrent
    claimant is waited for), one round trip. SQLite: the trigger refuses (under BEGIN
    IMMEDIATE nobody else writes meanwhile); the refused statement is undone alone.
    """
    if session.get_bind().dialect.name == "postgresql":
        if session.execute(_PG_INSERT, values).first() is None:
            raise patient_busy(session, values, now)
        return
    try:
        session.execute(_INSERT, values)
    except IntegrityError as exc:
        raise patient_busy(session, values, now) from exc


def release_time(session: Session, owner_id: str) -> None:
    """Give back all the patient time a booking holds (cancel, no-show, expired hold)."""
    session.execute(
        update(PatientClaim)
        .where(PatientClaim.owner_id == owner_id, PatientClaim.active.is_(True))
        .values(active=False)
    )


def keep_time(session: Session, owner_id: str) -> None:
    """A hold became a booking: its patient time no longer lapses."""
    session.execute(
        update(PatientClaim)
        .where(PatientClaim.owner_id == owner_id, PatientClaim.active.is_(True))
        .values(expires_at=None)
    )


def end_time(session: Session, owner_id: str, at: datetime) -> None:
    """End a booking's patient time at `at` (discharge): trimmed, or dropped if not begun."""
    session.execute(
        update(PatientClaim)
        .where(
            PatientClaim.owner_id == owner_id,
            PatientClaim.active.is_(True),
            PatientClaim.start_at >= at,
        )
        .values(active=False)
    )
    session.execute(
        update(PatientClaim)
        .where(
            PatientClaim.owner_id == owner_id,
            PatientClaim.active.is_(True),
            PatientClaim.end_at > at,
        )
        .values(end_at=at)
    )


def move_time(
    session: Session, owner_id: str, *, start: datetime, end: datetime, now: datetime
) -> None:
    """Move a booking's patient time (reschedule); `PatientBusy` if the new time clashes."""
    claims = list(
        session.scalars(
            select(PatientClaim).where(
                PatientClaim.owner_id == owner_id, PatientClaim.active.is_(True)
            )
        )
    )
    for claim in claims:
        values = {
            "patient_key": claim.patient_key,
            "patient_id": claim.patient_id,
            "lane": claim.lane,
            "institution_id": claim.institution_id,
            "start_at": start,
            "end_at": end,
            "owner_id": owner_id,
        }
        if claim.exclusive and _clashing(session, values, now) is not None:
            raise patient_busy(session, values, now)
        claim.start_at, claim.end_at = start, end
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError as exc:
            raise patient_busy(session, values, now) from exc


def known(session: Session, patient_id: str) -> BookedPatient | None:
    """A patient a booking named when it was made (checked then), for the bookings it leads to
    (a referral's or an order's appointment); None if the record is gone."""
    found = records_service.person_records(session, patient_id=patient_id)
    if found is None:
        return None
    return BookedPatient(patient_id, found.member, found.person_id or patient_id)
