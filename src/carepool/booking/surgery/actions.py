"""Writes of surgery cases: request, schedule (with the whole team), start, complete, cancel.

Scheduling claims the theatre and every team member for one block (preparation + expected
duration + turnover) in the caller's transaction: first the named ones (theatre, surgeon, any
named staff) in resource-id order, then the roles left open from the procedure's requirements,
each claim in a savepoint like `booking.actions.allocate`. Any member busy or off duty refuses the
whole schedule with a 409 naming who and where; nothing is half-booked.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from carepool.booking import patients
from carepool.booking import service as booking_service
from carepool.booking.actions import check_orderable
from carepool.booking.errors import IdempotencyMismatch, InvalidTransition
from carepool.booking.inpatient.models import Priority
from carepool.booking.models import BookingPolicy, ClaimPurpose, PatientLane, ResourceClaim
from carepool.booking.surgery import service as surgery_service
from carepool.booking.surgery.errors import NotOnDuty, TeamMemberBusy, TeamUnavailable
from carepool.booking.surgery.models import SurgeryCase, SurgeryStatus
from carepool.catalog import calendar
from carepool.catalog import service as catalog_service
from carepool.catalog.models import (
    Resource,
    ResourceKind,
    ResourceStatus,
    Service,
    ServiceCategory,
    ServiceRequirement,
    StaffRole,
)
from carepool.core import audit, events
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput

S = SurgeryStatus
TRANSITIONS: dict[str, tuple[set[SurgeryStatus], SurgeryStatus]] = {
    "schedule": ({S.REQUESTED, S.SCHEDULED}, S.SCHEDULED),
    "start": ({S.SCHEDULED}, S.IN_THEATRE),
    "complete": ({S.IN_THEATRE}, S.COMPLETED),
    "cancel": ({S.REQUESTED, S.SCHEDULED}, S.CANCELLED),
}
EVENT_OF = {S.IN_THEATRE: "in_theatre", S.COMPLETED: "completed", S.CANCELLED: "cancelled"}


def _digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def _covers(intervals: list[calendar.Interval], start: datetime, end: datetime) -> bool:
    return any(i.start <= start and i.end >= end for i in intervals)


def _role_of(req: ServiceRequirement) -> str:
    return req.role.value if req.role else (req.type_code or req.kind.value)


def _describe_req(req: ServiceRequirement) -> str:
    parts = [_role_of(req)]
    if req.type_code and req.role:
        parts.append(req.type_code)
    if req.min_skill is not None:
        parts.append(f"skill ≥ {req.min_skill}")
    if req.specialty:
        parts.append(f"specialty {req.specialty}")
    return ", ".join(parts)


def _surgeon_requirement(service: Service) -> ServiceRequirement | None:
    return next(
        (
            r
            for r in service.requirements
            if r.kind is ResourceKind.STAFF and r.role is StaffRole.SURGEON
        ),
        None,
    )


def _audit(
    session: Session,
    actor: Principal,
    case: SurgeryCase,
    before: dict[str, Any] | None,
    detail: str,
) -> None:
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE if before else AuditAction.CREATE,
        entity_type="surgery_case",
        entity_id=case.id,
        entity_institution=case.institution_id,
        before=before,
        after=surgery_service.to_dict(case),
        detail=detail,
    )


def _emit(session: Session, case: SurgeryCase, what: str, **payload: Any) -> None:
    events.emit(
        session,
        type=f"booking.surgery.{what}",
        entity_type="surgery_case",
        entity_id=case.id,
        institution_id=case.institution_id,
        payload=payload,
    )


def _check_surgeon(
    session: Session, service: Service, institution_id: str, surgeon_id: str
) -> Resource:
    surgeon = session.get(Resource, surgeon_id)
    where = "body:surgeon_id"
    if surgeon is None:
        raise InvalidInput(f"surgeon {surgeon_id!r} does not exist", [FieldError(where, "unknown")])
    problems = []
    if surgeon.kind is not ResourceKind.STAFF or surgeon.role is not StaffRole.SURGEON:
        problems.append(f"{surgeon_id} is not a surgeon")
    if surgeon.institution_id != institution_id:
        problems.append(f"{surgeon_id} works at {surgeon.institution_id}, not {institution_id}")
    req = _surgeon_requirement(service)
    if not problems and req is not None and not booking_service.matches(surgeon, req):
        problems.append(
            f"{surgeon_id} does not meet the operating surgeon requirement of {service.id} "
            f"({_describe_req(req)}; has skill {surgeon.skill_level}, specialties "
            f"{', '.join(surgeon.specialties or []) or 'none'}, {surgeon.status.value})"
        )
    if problems:
        raise InvalidInput("; ".join(problems), [FieldError(where, p) for p in problems])
    return surgeon


def _load_for(session: Session, actor: Principal, id: str, action: str) -> SurgeryCase:
    """Load and lock a case the caller may change with `action` in its current state."""
    case = surgery_service.access_surgery_case_by_id(session, actor, id)
    actor.require_scope("Booking", "write")
    if action != "cancel":  # the requesting member may cancel; only the performing member acts
        actor.require_institution(
            case.institution_id, f"surgery case {id} (theatres of {case.institution_id})"
        )
    session.refresh(case, with_for_update=True)
    allowed, _ = TRANSITIONS[action]
    if case.status not in allowed:
        raise InvalidTransition(
            f"surgery case {id} is {case.status.value}; '{action}' needs "
            f"{' or '.join(sorted(s.value for s in allowed))}"
        )
    return case


def do_create_surgery_case(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    institution_id: str,
    service_id: str,
    patient_ref: str,
    surgeon_id: str,
    patient_name: str = "",
    expected_duration_min: int | None = None,
    priority: Priority = Priority.ELECTIVE,
    admission_id: str | None = None,
    note: str = "",
    idempotency_key: str | None = None,
) -> tuple[SurgeryCase, bool]:
    """Request a surgery case (procedure, surgeon, expected duration); returns (case, created)."""
    actor.require_scope("Booking", "write")
    digest = _digest(
        {
            "institution_id": institution_id,
            "service_id": service_id,
            "patient_ref": patient_ref,
            "surgeon_id": surgeon_id,
            "expected_duration_min": expected_duration_min,
        }
    )
    if idempotency_key:
        existing = session.scalar(
            select(SurgeryCase).where(
                SurgeryCase.requested_by == actor.username,
                SurgeryCase.idempotency_key == idempotency_key,
            )
        )
        if existing is not None:
            if existing.request_digest != digest:
                raise IdempotencyMismatch(
                    f"idempotency key {idempotency_key!r} was used for a different request "
                    f"(surgery case {existing.id})"
                )
            return existing, False
    service: Service = catalog_service.get(session, kind="service", id=service_id)
    if service.category is not ServiceCategory.SURGERY:
        raise InvalidInput(
            f"{service_id} is a {service.category.value} service, not a surgical procedure",
            [FieldError("body:service_id", "not category surgery")],
        )
    if institution_id not in booking_service.offering_members(session, service):
        raise InvalidInput(
            f"{institution_id!r} does not offer {service_id!r}",
            [FieldError("body:institution_id", "does not offer the procedure")],
        )
    check_orderable(session, actor, service)
    patient = patients.resolve(session, actor, patient_ref)
    _check_surgeon(session, service, institution_id, surgeon_id)
    case = SurgeryCase(
        id="sc-" + uuid.uuid4().hex[:20],
        institution_id=institution_id,
        requester_institution_id=actor.institution_id,
        requested_by=actor.username,
        idempotency_key=idempotency_key,
        request_digest=digest,
        patient_ref=patient.id,
        patient_id=patient.id,
        patient_name=patient_name,
        service_id=service_id,
        surgeon_id=surgeon_id,
        expected_duration_min=expected_duration_min or service.duration_min,
        priority=priority,
        admission_id=admission_id,
        status=S.REQUESTED,
        team=[],
        note=note,
        cancel_reason="",
        created_at=now,
        updated_at=now,
    )
    session.add(case)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise IdempotencyMismatch(
            f"idempotency key {idempotency_key!r} is being used by a concurrent request; retry"
        ) from exc
    _audit(session, actor, case, None, "request")
    _emit(session, case, "requested", service_id=service_id, surgeon_id=surgeon_id)
    return case, True


@dataclass
class _Slot:
    index: int  # position of the requirement in the service
    req: ServiceRequirement
    resource: Resource | None = None
    named: bool = False


def _named(
    session: Session, resource_id: str, kind: ResourceKind, institution_id: str, where: str
) -> Resource:
    resource = session.get(Resource, resource_id)
    if resource is None:
        raise InvalidInput(f"{resource_id!r} does not exist", [FieldError(where, "unknown")])
    problems = []
    if resource.kind is not kind:
        problems.append(f"{resource_id} is a {resource.kind.value}, not a {kind.value}")
    if resource.institution_id != institution_id:
        problems.append(f"{resource_id} belongs to {resource.institution_id}, not {institution_id}")
    if resource.status is not ResourceStatus.IN_SERVICE:
        problems.append(f"{resource_id} is {resource.status.value}")
    if problems:
        raise InvalidInput("; ".join(problems), [FieldError(where, p) for p in problems])
    return resource


def _place_team(
    service: Service, theatre: Resource, surgeon: Resource, named: list[Resource]
) -> tuple[list[_Slot], list[tuple[Resource, str]]]:
    """Put the named resources into the procedure's role slots.

    The theatre takes the theatre requirement and the case surgeon the first surgeon
    requirement (the operating surgeon); other named staff are matched to the remaining slots
    (bipartite matching, so a named nurse never blocks a slot another named nurse needs).
    Returns (slots, extras: named resources the procedure does not list, with their role).
    """
    slots = [_Slot(i, req) for i, req in enumerate(service.requirements) for _ in range(req.count)]
    extras: list[tuple[Resource, str]] = []
    errors: list[FieldError] = []
    for resource, where, is_kind in (
        (theatre, "body:theatre_id", lambda r: r.kind is ResourceKind.THEATRE),
        (
            surgeon,
            "case:surgeon_id",
            lambda r: r.kind is ResourceKind.STAFF and r.role is StaffRole.SURGEON,
        ),
    ):
        slot = next((s for s in slots if is_kind(s.req) and s.resource is None), None)
        if slot is None:
            extras.append((resource, surgery_service.who(resource).split(" ")[0]))
        elif booking_service.matches(resource, slot.req):
            slot.resource, slot.named = resource, True
        else:
            errors.append(
                FieldError(
                    where,
                    f"{surgery_service.who(resource)} does not meet {service.id}'s requirement "
                    f"({_describe_req(slot.req)})",
                )
            )
    open_slots = [i for i, s in enumerate(slots) if s.resource is None]
    adjacent = [[i for i in open_slots if booking_service.matches(r, slots[i].req)] for r in named]
    holder: dict[int, int] = {}

    def augment(person: int, seen: set[int]) -> bool:
        for i in adjacent[person]:
            if i in seen:
                continue
            seen.add(i)
            if i not in holder or augment(holder[i], seen):
                holder[i] = person
                return True
        return False

    for person, resource in enumerate(named):
        if not augment(person, set()):
            needs = "; ".join(_describe_req(slots[i].req) for i in open_slots) or "nothing more"
            errors.append(
                FieldError(
                    f"body:team[{person}]",
                    f"{surgery_service.who(resource)} fits no open role of {service.id} "
                    f"(open roles: {needs})",
                )
            )
    if errors:
        raise InvalidInput("; ".join(e.message for e in errors), errors)
    for i, person in holder.items():
        slots[i].resource, slots[i].named = named[person], True
    return slots, extras


def _insert_claim(
    session: Session, resource: Resource, case_id: str, start: datetime, end: datetime
) -> bool:
    try:
        with session.begin_nested():
            session.add(
                ResourceClaim(
                    resource_id=resource.id,
                    lane=0,
                    start_at=start,
                    end_at=end,
                    purpose=ClaimPurpose.SURGERY,
                    owner_id=case_id,
                    active=True,
                    expires_at=None,
                )
            )
            session.flush()
    except IntegrityError:
        return False
    return True


def _busy_error(
    session: Session, claims: list[ResourceClaim], *, reference: datetime
) -> TeamMemberBusy:
    described = surgery_service.describe_busy(session, claims, reference=reference)
    return TeamMemberBusy("; ".join(d["text"] for d in described), taken=described)


def do_schedule_surgery_case(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    id: str,
    theatre_id: str,
    start: datetime,
    team: list[str] | None = None,
) -> SurgeryCase:
    """Book the case into a theatre at `start` with its whole team, or refuse it whole.

    Scheduling a scheduled case moves it: its old claims are released in the same transaction,
    so a refused move keeps the old booking.
    """
    case = _load_for(session, actor, id, "schedule")
    before = surgery_service.to_dict(case)
    moving = case.status is S.SCHEDULED
    if start < now:
        raise InvalidInput(
            f"{start.isoformat()} is in the past", [FieldError("body:start", "in the past")]
        )
    service: Service = catalog_service.get(session, kind="service", id=case.service_id)
    block_start = start - timedelta(minutes=service.preparation_min)
    end = start + timedelta(minutes=case.expected_duration_min)
    block_end = end + timedelta(minutes=service.turnover_min)
    member = case.institution_id
    theatre = _named(session, theatre_id, ResourceKind.THEATRE, member, "body:theatre_id")
    surgeon = _named(session, case.surgeon_id, ResourceKind.STAFF, member, "case:surgeon_id")
    ids = list(dict.fromkeys(team or []))
    if case.surgeon_id in ids:
        ids.remove(case.surgeon_id)
    named_staff = [
        _named(session, rid, ResourceKind.STAFF, member, f"body:team[{i}]")
        for i, rid in enumerate(ids)
    ]
    slots, extras = _place_team(service, theatre, surgeon, named_staff)

    session.execute(
        update(ResourceClaim)
        .where(ResourceClaim.owner_id == id, ResourceClaim.active.is_(True))
        .values(active=False)
    )
    patients.release_time(session, id)
    session.flush()

    named = [theatre, surgeon, *named_staff]
    busy = surgery_service.busy_claims(
        session, [r.id for r in named], block_start, block_end, now=now
    )
    if busy:
        raise _busy_error(session, busy, reference=start)
    clock = surgery_service.LocalClock(session, start)
    off = [
        r
        for r in named
        if not _covers(
            catalog_service.availability(
                session, resource_id=r.id, start=block_start, end=block_end
            ),
            block_start,
            block_end,
        )
    ]
    if off:
        span = f"{clock(block_start)} to {clock(block_end)}"
        raise NotOnDuty(
            "; ".join(
                f"{surgery_service.who(r)} "
                + ("has no session" if r.kind is ResourceKind.THEATRE else "is not on duty")
                + f" from {span}"
                for r in off
            ),
            off_duty=[r.id for r in off],
        )
    patient = patients.known(session, case.patient_id) if case.patient_id else None
    if patient is not None:  # the patient's own time: the operation itself
        policy = session.get(BookingPolicy, case.service_id)
        patients.claim_time(
            session,
            patients.claim_values(
                patient,
                lane=PatientLane.VISIT,
                institution_id=member,
                start=start,
                end=end,
                purpose=ClaimPurpose.SURGERY,
                owner_id=id,
                exclusive=not (policy is not None and policy.allow_patient_overlap),
                expires_at=None,
            ),
            now=now,
        )
    for resource in sorted(named, key=lambda r: r.id):
        if not _insert_claim(session, resource, id, block_start, block_end):
            lost = surgery_service.busy_claims(
                session, [resource.id], block_start, block_end, now=now, exclude_owner=id
            )
            raise _busy_error(session, lost, reference=start)

    chosen = {r.id for r in named}
    open_slots = [s for s in slots if s.resource is None]
    if open_slots:
        per_req = booking_service.candidates(session, service, member, theatre.campus_id)
        everyone = {r.id: r for group in per_req for r in group}
        free = booking_service.free_time(
            session, list(everyone.values()), block_start, block_end, now=now, exclude_owner=id
        )
        for slot in open_slots:
            group = per_req[slot.index]
            for resource in group:
                if resource.id in chosen:
                    continue
                if not _covers(free.get((resource.id, 0), []), block_start, block_end):
                    continue
                if _insert_claim(session, resource, id, block_start, block_end):
                    slot.resource = resource
                    chosen.add(resource.id)
                    break
            if slot.resource is None:
                raise _unavailable(
                    session, slot.req, group, chosen, member, block_start, block_end, now, start
                )

    case.theatre_id = theatre.id
    case.start_at, case.end_at = start, end
    case.block_start_at, case.block_end_at = block_start, block_end
    members: list[dict[str, str | bool]] = [
        {"resource_id": r.id, "role": role, "named": True}
        for r, role in sorted(extras, key=lambda e: e[1] != "theatre")
    ]
    members += [
        {"resource_id": s.resource.id, "role": _role_of(s.req), "named": s.named}
        for s in slots
        if s.resource is not None
    ]
    case.team = members
    case.status = S.SCHEDULED
    case.updated_at = now
    session.flush()
    _audit(session, actor, case, before, "reschedule" if moving else "schedule")
    _emit(
        session,
        case,
        "rescheduled" if moving else "scheduled",
        theatre_id=theatre.id,
        start=start.isoformat(),
        end=end.isoformat(),
        team=[m["resource_id"] for m in case.team],
    )
    return case


def _unavailable(
    session: Session,
    req: ServiceRequirement,
    group: list[Resource],
    chosen: set[str],
    member: str,
    block_start: datetime,
    block_end: datetime,
    now: datetime,
    reference: datetime,
) -> TeamUnavailable:
    """Why no candidate could fill a role: who is busy where, who is off duty."""
    clock = surgery_service.LocalClock(session, reference)
    others = [r for r in group if r.id not in chosen]
    busy = surgery_service.busy_claims(
        session, [r.id for r in others], block_start, block_end, now=now
    )
    described = surgery_service.describe_busy(session, busy, reference=reference)
    busy_ids = {d["resource_id"] for d in described}
    off = [f"{surgery_service.who(r)} is not on duty" for r in others if r.id not in busy_ids]
    reasons = [d["text"] for d in described] + off
    return TeamUnavailable(
        f"no {_role_of(req)} ({_describe_req(req)}) at {member} is free from "
        f"{clock(block_start)} to {clock(block_end)}"
        + (": " + "; ".join(reasons) if reasons else ": the member has none"),
        taken=described,
    )


def do_transition_surgery_case(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    id: str,
    action: str,
    reason: str = "",
) -> SurgeryCase:
    """Start, complete or cancel a case. Cancelling releases every claim of the team.

    Completing early gives the time back: staff from now, the theatre after its turnover.
    """
    if action not in ("start", "complete", "cancel"):
        raise InvalidInput(f"unknown action {action!r}; one of start, complete, cancel")
    if action == "cancel" and not reason:
        raise InvalidInput("a cancellation needs a reason", [FieldError("body:reason", "missing")])
    case = _load_for(session, actor, id, action)
    before = surgery_service.to_dict(case)
    _, target = TRANSITIONS[action]
    if action == "start":
        case.started_at = now
    elif action == "complete":
        case.completed_at = now
        service: Service = catalog_service.get(session, kind="service", id=case.service_id)
        for claim in session.scalars(
            select(ResourceClaim).where(
                ResourceClaim.owner_id == id, ResourceClaim.active.is_(True)
            )
        ):
            at = (
                now + timedelta(minutes=service.turnover_min)
                if claim.resource_id == case.theatre_id
                else now
            )
            if claim.start_at < at < claim.end_at:
                claim.end_at = at
        patients.end_time(session, id, now)
    else:
        session.execute(
            update(ResourceClaim)
            .where(ResourceClaim.owner_id == id, ResourceClaim.active.is_(True))
            .values(active=False)
        )
        patients.release_time(session, id)
        case.cancel_reason = reason
    case.status = target
    case.updated_at = now
    session.flush()
    _audit(session, actor, case, before, action)
    _emit(session, case, EVENT_OF[target], reason=reason)
    return case


__all__ = [
    "TRANSITIONS",
    "do_create_surgery_case",
    "do_schedule_surgery_case",
    "do_transition_surgery_case",
]
