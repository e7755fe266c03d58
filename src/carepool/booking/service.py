"""Reads of the booking pool: candidate resources, free time, slots, appointments.

Free time of a resource lane = calendar availability (catalogue) minus its active claims; a hold
whose time has passed no longer counts.
"""

from __future__ import annotations

import functools
import heapq
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import String, and_, any_, bindparam, or_, select, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from carepool.booking import _pool as booking_pool
from carepool.booking.models import (
    Appointment,
    AppointmentStatus,
    BookingPolicy,
    ResourceClaim,
)
from carepool.booking.patients import bare_id, fhir_reference
from carepool.booking.slots import (
    Requirement,
    Slot,
    Unit,
    candidate_starts,
    earliest_possible,
    slot_at,
)
from carepool.catalog import calendar
from carepool.catalog import service as catalog_service
from carepool.catalog.models import (
    CalendarException,
    CalendarRule,
    ExceptionKind,
    Resource,
    ResourceStatus,
    Service,
)
from carepool.core.auth import Principal
from carepool.core.errors import InvalidInput, NotFound, PermissionDenied

DEFAULT_POLICY = BookingPolicy(hold_minutes=10, overbook_lanes=0, min_notice_minutes=0)


@dataclass(frozen=True)
class ServiceTiming:
    duration: timedelta
    before: timedelta
    after: timedelta
    step: timedelta

    @property
    def block(self) -> timedelta:
        return self.before + self.duration + self.after


def policy_for(session: Session, service_id: str) -> BookingPolicy:
    """The service's booking policy (defaults when it has none); read once per session."""
    memo: dict[str, BookingPolicy] = session.info.setdefault("booking_policy", {})
    if service_id not in memo:
        memo[service_id] = session.get(BookingPolicy, service_id) or DEFAULT_POLICY
    return memo[service_id]


class _Timed(Protocol):
    @property
    def duration_min(self) -> int: ...
    @property
    def preparation_min(self) -> int: ...
    @property
    def turnover_min(self) -> int: ...


class _Stepped(Protocol):
    @property
    def slot_step_minutes(self) -> int | None: ...


def timing(service: _Timed, policy: _Stepped) -> ServiceTiming:
    step = policy.slot_step_minutes or max(5, service.duration_min)
    return ServiceTiming(
        duration=timedelta(minutes=service.duration_min),
        before=timedelta(minutes=service.preparation_min),
        after=timedelta(minutes=service.turnover_min),
        step=timedelta(minutes=step),
    )


# Whether a resource can fill a service requirement: one rule for catalogue rows and cached views.
matches = booking_pool.matches


def candidates_by_member(
    session: Session, service: Service, members: Sequence[str], campus_id: str | None = None
) -> dict[str, list[list[Resource]]]:
    """Per member, per requirement, the resources that could fill it, in a stable order."""
    # Narrow in SQL by what each requirement asks for (kind, type, role, skill); specialties
    # (JSON lists) are checked in `matches` below.
    wanted = []
    for req in service.requirements:
        conds = [Resource.kind == req.kind]
        if req.type_code:
            conds.append(Resource.type_code == req.type_code)
        if req.role:
            conds.append(Resource.role == req.role)
        if req.min_skill is not None:
            conds.append(Resource.skill_level >= req.min_skill)
        wanted.append(and_(*conds))
    stmt = select(Resource).where(
        Resource.institution_id.in_(list(members)),
        Resource.status == ResourceStatus.IN_SERVICE,
        or_(*wanted),
    )
    if campus_id:
        stmt = stmt.where(or_(Resource.campus_id == campus_id, Resource.campus_id.is_(None)))
    pools: dict[str, list[Resource]] = {m: [] for m in members}
    for r in session.scalars(stmt.order_by(Resource.id)):
        pools[r.institution_id].append(r)
    return {
        m: [[r for r in pool if matches(r, req)] for req in service.requirements]
        for m, pool in pools.items()
    }


def candidates(
    session: Session, service: Service, institution_id: str, campus_id: str | None = None
) -> list[list[Resource]]:
    """Per requirement, the member's resources that could fill it, in a stable order.

    Read once per session (a request): booking asks twice, for holds and for claims.
    """
    memo: dict[tuple[str, str, str | None], list[list[Resource]]] = session.info.setdefault(
        "booking_candidates", {}
    )
    key = (service.id, institution_id, campus_id)
    if key not in memo:
        memo[key] = candidates_by_member(session, service, [institution_id], campus_id)[
            institution_id
        ]
    return memo[key]


def free_time(
    session: Session,
    resources: Sequence[Resource],
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    lanes: int = 1,
    exclude_owner: str | None = None,
) -> dict[tuple[str, int], list[calendar.Interval]]:
    """Free intervals per (resource, lane) in [start, end): availability minus live claims."""
    ids = [r.id for r in resources]
    if not ids:
        return {}
    tz = catalog_service.consortium_timezone(session)
    rules: dict[str, list[calendar.Rule]] = defaultdict(list)
    for rule in session.scalars(select(CalendarRule).where(CalendarRule.resource_id.in_(ids))):
        rules[rule.resource_id].append(catalog_service.calendar_rule(rule))
    exceptions: dict[str, list[calendar.Exception_]] = defaultdict(list)
    for x in session.scalars(
        select(CalendarException).where(
            CalendarException.resource_id.in_(ids),
            CalendarException.end > start,
            CalendarException.start < end,
        )
    ):
        exceptions[x.resource_id].append(
            calendar.Exception_(start=x.start, end=x.end, adds=x.kind is ExceptionKind.EXTRA)
        )
    busy: dict[tuple[str, int], list[calendar.Interval]] = defaultdict(list)
    claim_stmt = select(
        ResourceClaim.resource_id, ResourceClaim.lane, ResourceClaim.start_at, ResourceClaim.end_at
    ).where(
        ResourceClaim.resource_id.in_(ids),
        ResourceClaim.active.is_(True),
        ResourceClaim.end_at > start,
        ResourceClaim.start_at < end,
        or_(ResourceClaim.expires_at.is_(None), ResourceClaim.expires_at > now),
    )
    if exclude_owner:
        claim_stmt = claim_stmt.where(ResourceClaim.owner_id != exclude_owner)
    for resource_id, lane, claim_start, claim_end in session.execute(claim_stmt):
        busy[(resource_id, lane)].append(calendar.Interval(claim_start, claim_end))
    out: dict[tuple[str, int], list[calendar.Interval]] = {}
    for r in resources:
        base = calendar.availability(
            rules=rules.get(r.id, []),
            exceptions=exceptions.get(r.id, []),
            start=start,
            end=end,
            tz=tz,
            in_service=r.status is ResourceStatus.IN_SERVICE,
        )
        for lane in range(lanes):
            out[(r.id, lane)] = calendar.subtract(base, busy.get((r.id, lane), []))
    return out


@dataclass
class Claims:
    """Live claims overlapping a window, per (resource, lane); and owners of lapsed holds."""

    busy: dict[tuple[str, int], list[calendar.Interval]]
    lapsed_owners: set[str]


_CLAIM_COLUMNS = (
    ResourceClaim.resource_id,
    ResourceClaim.lane,
    ResourceClaim.start_at,
    ResourceClaim.end_at,
    ResourceClaim.expires_at,
    ResourceClaim.owner_id,
)


@functools.cache
def _claims_statement(dialect: str, exclude_owner: bool, lapsed: bool) -> Any:
    """The claims query, built once per shape: hot paths pay no statement construction.

    On PostgreSQL the ids are one array bind (`= ANY(:ids)`), so the SQL text is the same for
    any number of resources and psycopg prepares it once; SQLite expands `IN (...)`.
    """

    def among(name: str) -> Any:
        if dialect == "postgresql":
            return ResourceClaim.resource_id == any_(bindparam(name, type_=ARRAY(String)))
        return ResourceClaim.resource_id.in_(bindparam(name, expanding=True))

    window = select(*_CLAIM_COLUMNS).where(
        among("ids"),
        ResourceClaim.active,
        ResourceClaim.end_at > bindparam("start"),
        ResourceClaim.start_at < bindparam("end"),
    )
    if exclude_owner:
        window = window.where(ResourceClaim.owner_id != bindparam("exclude_owner"))
    if not lapsed:
        return window
    return union_all(
        window,
        select(*_CLAIM_COLUMNS).where(
            among("lapsed_ids"),
            ResourceClaim.active,
            ResourceClaim.expires_at.is_not(None),
            ResourceClaim.expires_at <= bindparam("now"),
        ),
    )


def claims_around(
    session: Session,
    resource_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    exclude_owner: str | None = None,
    lapsed_of: Sequence[str] = (),
) -> Claims:
    """One query: the live claims of `resource_ids` in [start, end), and the owners of active
    claims of `lapsed_of` whose hold ran out (at any time), for release."""
    busy: dict[tuple[str, int], list[calendar.Interval]] = defaultdict(list)
    lapsed: set[str] = set()
    if not resource_ids and not lapsed_of:
        return Claims(busy, lapsed)
    stmt = _claims_statement(
        session.get_bind().dialect.name, exclude_owner is not None, bool(lapsed_of)
    )
    params: dict[str, Any] = {"ids": list(resource_ids), "start": start, "end": end}
    if exclude_owner is not None:
        params["exclude_owner"] = exclude_owner
    if lapsed_of:
        params |= {"lapsed_ids": list(lapsed_of), "now": now}
    for resource_id, lane, claim_start, claim_end, expires_at, owner_id in session.execute(
        stmt, params
    ):
        if expires_at is not None and expires_at <= now:
            lapsed.add(owner_id)  # readers ignore it; the next booking releases it
        elif claim_start < end and claim_end > start:
            busy[(resource_id, lane)].append(calendar.Interval(claim_start, claim_end))
    return Claims(busy, lapsed)


def offering_members(session: Session, service: Service) -> list[str]:
    return [o.institution_id for o in service.offerings]


@dataclass(frozen=True)
class MemberSlot:
    service_id: str
    institution_id: str
    slot: Slot

    @property
    def id(self) -> str:
        return slot_id(self.service_id, self.institution_id, self.slot.start)


def slot_id(service_id: str, institution_id: str, start: datetime) -> str:
    """A stable id for "this service at this member at this time" (resources chosen at booking)."""
    minutes = int(start.timestamp() // 60)
    return f"{minutes:x}.{institution_id}.{service_id}"


def parse_slot_id(session: Session, value: str) -> tuple[str, str, datetime]:
    """(service_id, institution_id, start) of a slot id; `InvalidInput` if it names nothing."""
    from datetime import UTC

    head, _, rest = value.partition(".")
    try:
        start = datetime.fromtimestamp(int(head, 16) * 60, tz=UTC)
    except ValueError as exc:
        raise InvalidInput(f"slot id {value!r} is not one this server gave out") from exc
    parts = rest.split(".")
    catalog = booking_pool.get(session).catalog
    for i in range(1, len(parts)):
        member, service = ".".join(parts[:i]), ".".join(parts[i:])
        if member in catalog.institution_kinds and service in catalog.services:
            return service, member, start
    raise InvalidInput(f"slot id {value!r} does not name a service offered by a member")


def search_slots(
    session: Session,
    *,
    service_id: str,
    start: datetime,
    end: datetime,
    now: datetime,
    institution_id: str | None = None,
    campus_id: str | None = None,
    limit: int = 20,
) -> list[MemberSlot]:
    """Bookable times for a service across every member offering it, earliest first.

    Calendars come from the process's pool (decision 0009); claims from one query.
    """
    pool = booking_pool.get(session)
    service = pool.service(service_id)
    policy = pool.policy(service_id)
    t = timing(service, policy)
    earliest = max(start, now + timedelta(minutes=policy.min_notice_minutes))
    members = [m for m in service.offered_by if not institution_id or m == institution_id]
    lanes = 1 + policy.overbook_lanes
    by_member = {}
    for m in members:
        per_req = pool.candidates(service, m, campus_id)
        if all(len(c) >= req.count for c, req in zip(per_req, service.requirements, strict=True)):
            by_member[m] = per_req
    if not by_member or earliest >= end:
        return []
    everyone = {r.id: r for per_req in by_member.values() for group in per_req for r in group}
    window_start, window_end = earliest - t.before, end + t.after
    busy = claims_around(session, list(everyone), window_start, window_end, now=now).busy
    free: dict[tuple[str, int], list[calendar.Interval]] = {}
    for r in everyone.values():
        base = pool.availability(r, window_start, window_end)
        for lane in range(lanes):
            taken = busy.get((r.id, lane))
            free[(r.id, lane)] = calendar.subtract(base, taken) if taken else base

    reqs = {
        member: [
            Requirement(
                count=req.count,
                units=[
                    Unit(r.id, lane, free[(r.id, lane)]) for r in group for lane in range(lanes)
                ],
            )
            for req, group in zip(service.requirements, per_req, strict=True)
        ]
        for member, per_req in by_member.items()
    }

    # Candidate times of every member in one time-ordered queue, checked until `limit` slots are
    # found, so no member's window is scanned past the last slot returned. A time at which some
    # requirement has no free unit at all moves that member on to the next time at which each
    # has one (its grid unchanged).
    def starts(member: str, skip_to: datetime | None) -> Iterator[datetime]:
        return candidate_starts(
            reqs[member],
            window_start=earliest,
            window_end=end,
            duration=t.duration,
            before=t.before,
            after=t.after,
            step=t.step,
            skip_to=skip_to,
        )

    queue: list[tuple[datetime, str]] = []
    streams: dict[str, Iterator[datetime]] = {}

    def advance(member: str) -> None:
        when = next(streams[member], None)
        if when is not None:
            heapq.heappush(queue, (when, member))

    for member in sorted(reqs):
        streams[member] = starts(member, None)
        advance(member)
    found: list[MemberSlot] = []
    while queue and len(found) < limit:
        when, member = heapq.heappop(queue)
        possible = earliest_possible(reqs[member], when, before=t.before, block=t.block)
        if possible is None:
            continue  # nothing more at this member in the window
        if possible > when:
            streams[member] = starts(member, possible)
        else:
            slot = slot_at(reqs[member], when, duration=t.duration, before=t.before, after=t.after)
            if slot is not None:
                found.append(MemberSlot(service_id, member, slot))
        advance(member)
    return found


def can_see(principal: Principal, appointment: Appointment) -> bool:
    """The performing member, the requesting member and consortium-wide callers see it."""
    return principal.consortium_wide or principal.institution_id in (
        appointment.institution_id,
        appointment.requester_institution_id,
    )


def access_appointment_by_id(session: Session, principal: Principal, id: str) -> Appointment:
    """Load an appointment the caller may see (scope and member checked)."""
    principal.require_scope("Booking", "read")
    appointment = session.get(Appointment, id)
    if appointment is None:
        raise NotFound("appointment", id)
    if not can_see(principal, appointment):
        raise PermissionDenied(
            f"appointment {id!r} belongs to {appointment.institution_id!r}; "
            f"{principal.username!r} of {principal.institution_id!r} may not see it",
            institution=appointment.institution_id,
        )
    return appointment


def get_all_appointments(
    session: Session,
    principal: Principal,
    *,
    status: AppointmentStatus | None = None,
    service_id: str | None = None,
    patient_ref: str | None = None,
    institution_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Appointment], int]:
    """Appointments the caller may see, by start time."""
    from sqlalchemy import func

    principal.require_scope("Booking", "read")
    stmt = select(Appointment)
    if not principal.consortium_wide:
        stmt = stmt.where(
            or_(
                Appointment.institution_id == principal.institution_id,
                Appointment.requester_institution_id == principal.institution_id,
            )
        )
    conds: list[Any] = []
    if status is not None:
        conds.append(Appointment.status == status)
    if service_id:
        conds.append(Appointment.service_id == service_id)
    if patient_ref:
        conds.append(Appointment.patient_ref == bare_id(patient_ref))
    if institution_id:
        conds.append(Appointment.institution_id == institution_id)
    if start:
        conds.append(Appointment.end_at > start)
    if end:
        conds.append(Appointment.start_at < end)
    if conds:
        stmt = stmt.where(and_(*conds))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(
        stmt.order_by(Appointment.start_at, Appointment.id).limit(limit).offset(offset)
    )
    return list(rows), int(total)


def to_dict(a: Appointment) -> dict[str, Any]:
    return {
        "id": a.id,
        "service_id": a.service_id,
        "institution_id": a.institution_id,
        "requester_institution_id": a.requester_institution_id,
        "requested_by": a.requested_by,
        "patient_ref": a.patient_ref,
        "patient_id": a.patient_id,
        "patient": fhir_reference(a.patient_id),
        "patient_name": a.patient_name,
        "referral_id": a.referral_id,
        "status": a.status.value,
        "start": a.start_at.isoformat(),
        "end": a.end_at.isoformat(),
        "hold_expires_at": a.hold_expires_at.isoformat() if a.hold_expires_at else None,
        "resource_ids": list(a.resource_ids),
        "note": a.note,
        "cancel_reason": a.cancel_reason,
        "created_at": a.created_at.isoformat(),
        "updated_at": a.updated_at.isoformat(),
    }
