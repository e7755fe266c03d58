"""Writes of the inpatient flow: request, reserve a bed, admit, transfer, discharge, cancel, clean.

Every action runs in the caller's transaction: it locks the admission row, then the housekeeping
rows of every bed of the rooms it touches (sorted, so two requests cannot deadlock; a same-sex
check and the claim it guards are therefore never interleaved with another assignment to the
room), checks, claims, audits and queues an outbox event. A bed becomes busy only through a
`ResourceClaim`; a lost race surfaces as `BedOccupied` (409) and the transaction rolls back whole.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from carepool.booking import patients
from carepool.booking.errors import IdempotencyMismatch, InvalidTransition
from carepool.booking.inpatient import service as inpatient_service
from carepool.booking.inpatient.errors import BedOccupied
from carepool.booking.inpatient.models import (
    OPEN_END,
    Admission,
    AdmissionStatus,
    BedHousekeeping,
    Housekeeping,
    PatientSex,
    Priority,
)
from carepool.booking.models import ClaimPurpose, PatientLane, ResourceClaim
from carepool.catalog import service as catalog_service
from carepool.catalog.models import Department, Resource, Ward
from carepool.core import audit, events
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput

A = AdmissionStatus
TRANSITIONS: dict[str, tuple[set[AdmissionStatus], AdmissionStatus]] = {
    "reserve": ({A.REQUESTED, A.BED_RESERVED}, A.BED_RESERVED),
    "admit": ({A.REQUESTED, A.BED_RESERVED}, A.ADMITTED),
    "transfer": ({A.ADMITTED}, A.ADMITTED),
    "discharge": ({A.ADMITTED}, A.DISCHARGED),
    "cancel": ({A.REQUESTED, A.BED_RESERVED}, A.CANCELLED),
}


def _digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def _audit(
    session: Session,
    actor: Principal,
    admission: Admission,
    *,
    action: AuditAction,
    before: dict[str, Any] | None,
    detail: str,
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="admission",
        entity_id=admission.id,
        entity_institution=admission.institution_id,
        before=before,
        after=inpatient_service.to_dict(admission),
        detail=detail,
    )


def _emit(session: Session, admission: Admission, what: str, **payload: Any) -> None:
    events.emit(
        session,
        type=f"booking.admission.{what}",
        entity_type="admission",
        entity_id=admission.id,
        institution_id=admission.institution_id,
        payload=payload,
    )


def _emit_bed(
    session: Session, bed_id: str, institution_id: str, what: str, **payload: Any
) -> None:
    events.emit(
        session,
        type=f"booking.bed.{what}",
        entity_type="bed",
        entity_id=bed_id,
        institution_id=institution_id,
        payload=payload,
    )


def _lock_beds(session: Session, bed_ids: list[str], now: datetime) -> dict[str, BedHousekeeping]:
    """Lock (creating if needed) the housekeeping rows of the beds, in id order."""
    ids = sorted(set(bed_ids))
    if not ids:
        return {}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(BedHousekeeping)
        .values(
            [
                {"bed_id": i, "state": Housekeeping.CLEAN, "since": now, "updated_by": ""}
                for i in ids
            ]
        )
        .on_conflict_do_nothing()
    )
    rows = session.scalars(
        select(BedHousekeeping)
        .where(BedHousekeeping.bed_id.in_(ids))
        .order_by(BedHousekeeping.bed_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {r.bed_id: r for r in rows}


def _live_claim(session: Session, admission_id: str, now: datetime) -> ResourceClaim | None:
    """The admission's claim that holds its bed from now on (a reservation or the stay)."""
    return session.scalars(
        select(ResourceClaim)
        .where(
            ResourceClaim.owner_id == admission_id,
            ResourceClaim.purpose == ClaimPurpose.ADMISSION,
            ResourceClaim.active.is_(True),
            ResourceClaim.end_at > now,
        )
        .order_by(ResourceClaim.start_at.desc())
        .limit(1)
    ).first()


def _end_claim(claim: ResourceClaim, at: datetime) -> None:
    """Give the bed back at `at`: trim a used claim (it stays as history) or drop an unused one."""
    if at > claim.start_at:
        claim.end_at = min(claim.end_at, at)
    else:
        claim.active = False


def _claim_bed(
    session: Session,
    admission: Admission,
    bed: Resource,
    *,
    start: datetime,
    now: datetime,
    check_target: bool,
    also_lock: tuple[str | None, ...] = (),
) -> ResourceClaim:
    """Check the bed for the patient and claim it from `start`, open-ended; refusals are typed."""
    lock = inpatient_service.room_bed_ids(session, [bed]) + [i for i in also_lock if i]
    _lock_beds(session, lock, now)
    assessment = inpatient_service.assess_beds(
        session, admission, [bed], start=start, check_target=check_target
    )[bed.id]
    assessment.raise_if_refused()
    claim = ResourceClaim(
        resource_id=bed.id,
        lane=0,
        start_at=start,
        end_at=OPEN_END,
        purpose=ClaimPurpose.ADMISSION,
        owner_id=admission.id,
        active=True,
        expires_at=None,
    )
    try:
        with session.begin_nested():
            session.add(claim)
            session.flush()
    except IntegrityError as exc:  # taken a moment ago by a concurrent request
        holders = [
            h
            for h in inpatient_service.live_holders(session, [bed.id], start)
            if h.claim.owner_id != admission.id
        ]
        raise BedOccupied(
            "; ".join(inpatient_service.describe_holder(bed.id, h) for h in holders)
            or f"bed {bed.id} was taken by a concurrent request",
            taken=[inpatient_service.taken_entry(h) for h in holders],
        ) from exc
    _claim_stay(session, admission, start=start, now=now)
    return claim


def _claim_stay(session: Session, admission: Admission, *, start: datetime, now: datetime) -> None:
    """The patient's own time for the stay, from its first bed claim until discharge (one claim:
    a transfer moves the bed, not the stay)."""
    if admission.patient_id is None:  # requested before patients were checked (0015)
        return
    patient = patients.known(session, admission.patient_id)
    if patient is None or patients.holds_time(session, admission.id):
        return
    patients.claim_time(
        session,
        patients.claim_values(
            patient,
            lane=PatientLane.STAY,
            institution_id=admission.institution_id,
            start=start,
            end=OPEN_END,
            purpose=ClaimPurpose.ADMISSION,
            owner_id=admission.id,
            exclusive=True,
            expires_at=None,
        ),
        now=now,
    )


def _mark_to_clean(
    session: Session, bed_id: str, *, now: datetime, admission_id: str, actor: Principal
) -> None:
    row = _lock_beds(session, [bed_id], now)[bed_id]
    row.state = Housekeeping.TO_CLEAN
    row.since = now
    row.last_admission_id = admission_id
    row.updated_by = actor.username


def _close_history(admission: Admission, at: datetime) -> None:
    history = [dict(h) for h in admission.bed_history]
    if history and history[-1].get("to") is None:
        history[-1]["to"] = at.isoformat()
    admission.bed_history = history


def _open_history(admission: Admission, bed_id: str, at: datetime) -> None:
    admission.bed_history = [
        *(dict(h) for h in admission.bed_history),
        {"bed_id": bed_id, "from": at.isoformat(), "to": None},
    ]


def _load_for(session: Session, actor: Principal, id: str, action: str) -> Admission:
    """Load and lock an admission the caller may change with `action` in its current state."""
    admission = inpatient_service.access_admission_by_id(session, actor, id)
    actor.require_scope("Booking", "write")
    if action != "cancel":  # the requesting member may cancel; only the admitting member acts
        actor.require_institution(
            admission.institution_id,
            f"admission {id} (beds of {admission.institution_id})",
        )
    session.refresh(admission, with_for_update=True)
    allowed, _ = TRANSITIONS[action]
    if admission.status not in allowed:
        raise InvalidTransition(
            f"admission {id} is {admission.status.value}; '{action}' needs "
            f"{' or '.join(sorted(s.value for s in allowed))}"
        )
    return admission


def do_create_admission(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    institution_id: str,
    patient_ref: str,
    patient_sex: PatientSex,
    age: int,
    expected_stay_days: int,
    patient_name: str = "",
    department_id: str | None = None,
    ward_id: str | None = None,
    needed_features: list[str] | None = None,
    isolation: bool = False,
    priority: Priority = Priority.ELECTIVE,
    planned_admit_at: datetime | None = None,
    note: str = "",
    idempotency_key: str | None = None,
) -> tuple[Admission, bool]:
    """Request an admission at a member; returns (admission, created).

    Any member may ask (a clinic referring a patient in); the admitting member's staff assign
    the bed. With an idempotency key a repeated request returns the first admission.
    """
    actor.require_scope("Booking", "write")
    features = sorted(set(needed_features or []))
    digest = _digest(
        {
            "institution_id": institution_id,
            "patient_ref": patient_ref,
            "patient_sex": patient_sex.value,
            "department_id": department_id,
            "ward_id": ward_id,
            "features": features,
            "isolation": isolation,
            "planned_admit_at": planned_admit_at.isoformat() if planned_admit_at else None,
        }
    )
    if idempotency_key:
        existing = session.scalar(
            select(Admission).where(
                Admission.requested_by == actor.username,
                Admission.idempotency_key == idempotency_key,
            )
        )
        if existing is not None:
            if existing.request_digest != digest:
                raise IdempotencyMismatch(
                    f"idempotency key {idempotency_key!r} was used for a different request "
                    f"(admission {existing.id})"
                )
            return existing, False
    catalog_service.get(session, kind="institution", id=institution_id)
    errors: list[FieldError] = []
    ward: Ward | None = None
    if ward_id:
        ward = catalog_service.get(session, kind="ward", id=ward_id)
        if ward.institution_id != institution_id:
            errors.append(
                FieldError("body:ward_id", f"ward {ward_id} belongs to {ward.institution_id}")
            )
    if department_id:
        dept: Department = catalog_service.get(session, kind="department", id=department_id)
        if dept.institution_id != institution_id:
            errors.append(
                FieldError(
                    "body:department_id",
                    f"department {department_id} belongs to {dept.institution_id}",
                )
            )
        if ward is not None and ward.department_id != department_id:
            errors.append(
                FieldError(
                    "body:ward_id", f"ward {ward_id} is not a ward of department {department_id}"
                )
            )
    if errors:
        raise InvalidInput(f"the admission's target does not belong to {institution_id}", errors)
    patient = patients.resolve(session, actor, patient_ref)
    planned = max(planned_admit_at or now, now)
    admission = Admission(
        id="adm-" + uuid.uuid4().hex[:20],
        institution_id=institution_id,
        requester_institution_id=actor.institution_id,
        requested_by=actor.username,
        idempotency_key=idempotency_key,
        request_digest=digest,
        patient_ref=patient.id,
        patient_id=patient.id,
        patient_name=patient_name,
        patient_sex=patient_sex,
        age=age,
        department_id=department_id or (ward.department_id if ward else None),
        ward_id=ward_id,
        needed_features=features,
        isolation=isolation,
        priority=priority,
        expected_stay_days=expected_stay_days,
        planned_admit_at=planned,
        expected_discharge_at=planned + timedelta(days=expected_stay_days),
        status=A.REQUESTED,
        bed_id=None,
        bed_history=[],
        note=note,
        cancel_reason="",
        created_at=now,
        updated_at=now,
    )
    session.add(admission)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # the same idempotency key, concurrently
        raise IdempotencyMismatch(
            f"idempotency key {idempotency_key!r} is being used by a concurrent request; retry"
        ) from exc
    _audit(session, actor, admission, action=AuditAction.CREATE, before=None, detail="request")
    _emit(session, admission, "requested", priority=priority.value, ward_id=ward_id)
    return admission, True


def do_reserve_bed(
    session: Session, *, actor: Principal, now: datetime, id: str, bed_id: str
) -> Admission:
    """Hold a suitable bed for the patient from the planned admission on (or move the hold)."""
    admission = _load_for(session, actor, id, "reserve")
    before = inpatient_service.to_dict(admission)
    bed = inpatient_service.get_bed(session, bed_id)
    old = _live_claim(session, id, now)
    if old is not None and old.resource_id == bed_id:
        return admission  # already reserved there: nothing to do
    start = max(admission.planned_admit_at, now)
    _claim_bed(
        session,
        admission,
        bed,
        start=start,
        now=now,
        check_target=True,
        also_lock=(old.resource_id if old else None,),
    )
    if old is not None:
        old.active = False  # a reservation moved away was never used
    admission.bed_id = bed_id
    admission.status = A.BED_RESERVED
    admission.updated_at = now
    session.flush()
    _audit(session, actor, admission, action=AuditAction.UPDATE, before=before, detail="reserve")
    _emit(session, admission, "bed_reserved", bed_id=bed_id, start=start.isoformat())
    return admission


def do_admit_patient(
    session: Session, *, actor: Principal, now: datetime, id: str, bed_id: str | None = None
) -> Admission:
    """Admit the patient into the reserved bed, or into `bed_id` (claimed now, open-ended)."""
    admission = _load_for(session, actor, id, "admit")
    before = inpatient_service.to_dict(admission)
    target = bed_id or admission.bed_id
    if target is None:
        raise InvalidInput(
            f"admission {id} has no reserved bed; give bed_id",
            [FieldError("body:bed_id", "missing")],
        )
    bed = inpatient_service.get_bed(session, target)
    reservation = _live_claim(session, id, now)
    if reservation is not None and reservation.resource_id == target:
        _lock_beds(session, inpatient_service.room_bed_ids(session, [bed]), now)
        inpatient_service.assess_beds(session, admission, [bed], start=now)[
            bed.id
        ].raise_if_refused()
        try:
            with session.begin_nested():
                reservation.start_at = now  # the stay starts when the patient arrives
                session.flush()
        except IntegrityError as exc:
            raise BedOccupied(f"bed {target} is taken before the reserved time", taken=[]) from exc
    else:
        _claim_bed(
            session,
            admission,
            bed,
            start=now,
            now=now,
            check_target=True,
            also_lock=(reservation.resource_id if reservation else None,),
        )
        if reservation is not None:
            reservation.active = False
    admission.bed_id = target
    admission.status = A.ADMITTED
    admission.admitted_at = now
    admission.updated_at = now
    _open_history(admission, target, now)
    session.flush()
    _audit(session, actor, admission, action=AuditAction.UPDATE, before=before, detail="admit")
    _emit(session, admission, "admitted", bed_id=target, at=now.isoformat())
    return admission


def do_transfer_patient(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    id: str,
    bed_id: str,
    reason: str = "",
) -> Admission:
    """Move an admitted patient to another bed of the member, atomically.

    The new bed is claimed first; only then is the old claim trimmed to now and the old bed sent
    to cleaning. If the new bed cannot be had, nothing changes.
    """
    admission = _load_for(session, actor, id, "transfer")
    before = inpatient_service.to_dict(admission)
    old_bed_id = admission.bed_id
    if bed_id == old_bed_id:
        raise InvalidInput(
            f"the patient of admission {id} already lies in bed {bed_id}",
            [FieldError("body:bed_id", "the current bed")],
        )
    bed = inpatient_service.get_bed(session, bed_id)
    old_claim = _live_claim(session, id, now)
    old_bed = session.get(Resource, old_bed_id) if old_bed_id else None
    also: tuple[str | None, ...] = tuple(
        inpatient_service.room_bed_ids(session, [old_bed]) if old_bed else []
    )
    _claim_bed(session, admission, bed, start=now, now=now, check_target=False, also_lock=also)
    if old_claim is not None:
        _end_claim(old_claim, now)
    if old_bed_id:
        _mark_to_clean(session, old_bed_id, now=now, admission_id=id, actor=actor)
    _close_history(admission, now)
    _open_history(admission, bed_id, now)
    admission.bed_id = bed_id
    admission.updated_at = now
    session.flush()
    _audit(
        session,
        actor,
        admission,
        action=AuditAction.UPDATE,
        before=before,
        detail=f"transfer {old_bed_id} -> {bed_id}" + (f": {reason}" if reason else ""),
    )
    _emit(session, admission, "transferred", from_bed=old_bed_id, to_bed=bed_id, reason=reason)
    if old_bed_id:
        _emit_bed(session, old_bed_id, admission.institution_id, "to_clean", admission_id=id)
    return admission


def do_discharge_patient(
    session: Session, *, actor: Principal, now: datetime, id: str, note: str = ""
) -> Admission:
    """Discharge: the stay's claim ends now and the bed goes to cleaning (not straight to free)."""
    admission = _load_for(session, actor, id, "discharge")
    before = inpatient_service.to_dict(admission)
    bed_id = admission.bed_id
    claim = _live_claim(session, id, now)
    if claim is not None:
        _end_claim(claim, now)
    patients.end_time(session, id, now)
    if bed_id:
        _mark_to_clean(session, bed_id, now=now, admission_id=id, actor=actor)
    _close_history(admission, now)
    admission.status = A.DISCHARGED
    admission.discharged_at = now
    admission.bed_id = None
    admission.updated_at = now
    if note:
        admission.note = (admission.note + "\n" + note).strip()
    session.flush()
    _audit(session, actor, admission, action=AuditAction.UPDATE, before=before, detail="discharge")
    _emit(session, admission, "discharged", bed_id=bed_id, at=now.isoformat())
    if bed_id:
        _emit_bed(session, bed_id, admission.institution_id, "to_clean", admission_id=id)
    return admission


def do_cancel_admission(
    session: Session, *, actor: Principal, now: datetime, id: str, reason: str
) -> Admission:
    """Cancel a request or reservation (admitting or requesting member); frees a reserved bed."""
    if not reason:
        raise InvalidInput("a cancellation needs a reason", [FieldError("body:reason", "missing")])
    admission = _load_for(session, actor, id, "cancel")
    before = inpatient_service.to_dict(admission)
    session.execute(
        update(ResourceClaim)
        .where(ResourceClaim.owner_id == id, ResourceClaim.active.is_(True))
        .values(active=False)
    )
    patients.release_time(session, id)
    admission.status = A.CANCELLED
    admission.cancel_reason = reason
    admission.bed_id = None
    admission.updated_at = now
    session.flush()
    _audit(session, actor, admission, action=AuditAction.UPDATE, before=before, detail="cancel")
    _emit(session, admission, "cancelled", reason=reason)
    return admission


def do_mark_bed_cleaned(
    session: Session, *, actor: Principal, now: datetime, bed_id: str
) -> BedHousekeeping:
    """to_clean -> clean: the bed can take the next patient. Refused if it was not waiting."""
    actor.require_scope("Booking", "write")
    bed = inpatient_service.get_bed(session, bed_id)
    actor.require_institution(bed.institution_id, f"bed {bed_id}")
    row = _lock_beds(session, [bed_id], now)[bed_id]
    if row.state is not Housekeeping.TO_CLEAN:
        state = inpatient_service.bed_state(session, bed, now=now)
        raise InvalidTransition(f"bed {bed_id} is not waiting for cleaning; it is {state.value}")
    before = {"state": row.state.value, "since": row.since.isoformat()}
    row.state = Housekeeping.CLEAN
    row.since = now
    row.updated_by = actor.username
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="bed",
        entity_id=bed_id,
        entity_institution=bed.institution_id,
        before=before,
        after={"state": row.state.value, "since": now.isoformat()},
        detail="cleaned",
    )
    _emit_bed(
        session, bed_id, bed.institution_id, "cleaned", last_admission_id=row.last_admission_id
    )
    return row


__all__ = [
    "TRANSITIONS",
    "do_admit_patient",
    "do_cancel_admission",
    "do_create_admission",
    "do_discharge_patient",
    "do_mark_bed_cleaned",
    "do_reserve_bed",
    "do_transfer_patient",
]
