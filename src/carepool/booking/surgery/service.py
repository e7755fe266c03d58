"""Reads of surgery cases: access, lists, who is busy and why, the theatre schedule of a day."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from carepool.booking.inpatient.service import can_see_patients
from carepool.booking.models import Appointment, ResourceClaim
from carepool.booking.surgery.models import SurgeryCase, SurgeryStatus
from carepool.catalog import service as catalog_service
from carepool.catalog.models import Resource, ResourceKind
from carepool.core.auth import Principal
from carepool.core.errors import InvalidInput, NotFound, PermissionDenied

S = SurgeryStatus
ON_THE_SCHEDULE = (S.SCHEDULED, S.IN_THEATRE, S.COMPLETED)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def can_see(principal: Principal, case: SurgeryCase) -> bool:
    """The performing member, the requesting member and consortium-wide callers see it."""
    return principal.consortium_wide or principal.institution_id in (
        case.institution_id,
        case.requester_institution_id,
    )


def access_surgery_case_by_id(session: Session, principal: Principal, id: str) -> SurgeryCase:
    """Load a surgery case the caller may see (scope and member checked)."""
    principal.require_scope("Booking", "read")
    case = session.get(SurgeryCase, id)
    if case is None:
        raise NotFound("surgery case", id)
    if not can_see(principal, case):
        raise PermissionDenied(
            f"surgery case {id!r} belongs to {case.institution_id!r}; "
            f"{principal.username!r} of {principal.institution_id!r} may not see it",
            institution=case.institution_id,
        )
    return case


def get_all_cases(
    session: Session,
    principal: Principal,
    *,
    status: SurgeryStatus | None = None,
    institution_id: str | None = None,
    surgeon_id: str | None = None,
    patient_ref: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[SurgeryCase], int]:
    """Surgery cases the caller may see, by start (unscheduled last), then by creation."""
    principal.require_scope("Booking", "read")
    stmt = select(SurgeryCase)
    if not principal.consortium_wide:
        stmt = stmt.where(
            or_(
                SurgeryCase.institution_id == principal.institution_id,
                SurgeryCase.requester_institution_id == principal.institution_id,
            )
        )
    conds: list[Any] = []
    if status is not None:
        conds.append(SurgeryCase.status == status)
    if institution_id:
        conds.append(SurgeryCase.institution_id == institution_id)
    if surgeon_id:
        conds.append(SurgeryCase.surgeon_id == surgeon_id)
    if patient_ref:
        conds.append(SurgeryCase.patient_ref == patient_ref)
    if conds:
        stmt = stmt.where(and_(*conds))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(
        stmt.order_by(SurgeryCase.start_at.is_(None), SurgeryCase.start_at, SurgeryCase.created_at)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total)


def to_dict(c: SurgeryCase, *, show_patient: bool = True) -> dict[str, Any]:
    return {
        "id": c.id,
        "institution_id": c.institution_id,
        "requester_institution_id": c.requester_institution_id,
        "requested_by": c.requested_by,
        "patient_ref": c.patient_ref if show_patient else None,
        "patient_name": c.patient_name if show_patient else None,
        "patient_masked": not show_patient,
        "service_id": c.service_id,
        "surgeon_id": c.surgeon_id,
        "expected_duration_min": c.expected_duration_min,
        "priority": c.priority.value,
        "admission_id": c.admission_id if show_patient else None,
        "status": c.status.value,
        "theatre_id": c.theatre_id,
        "start": _iso(c.start_at),
        "end": _iso(c.end_at),
        "block_start": _iso(c.block_start_at),
        "block_end": _iso(c.block_end_at),
        "team": [dict(m) for m in c.team],
        "started_at": _iso(c.started_at),
        "completed_at": _iso(c.completed_at),
        "note": c.note if show_patient else "",
        "cancel_reason": c.cancel_reason,
        "created_at": c.created_at.isoformat(),
        "updated_at": c.updated_at.isoformat(),
    }


# --- who is busy, in words ---------------------------------------------------------------------


def who(resource: Resource) -> str:
    """`surgeon s-li`, `theatre t-2`, `nurse n-1`."""
    if resource.kind is ResourceKind.STAFF and resource.role is not None:
        return f"{resource.role.value} {resource.id}"
    return f"{resource.kind.value} {resource.id}"


class LocalClock:
    """Local wall-clock times for messages ("09:00", or "2026-12-02 09:00" on another day)."""

    def __init__(self, session: Session, reference: datetime) -> None:
        self.tz = ZoneInfo(catalog_service.consortium_timezone(session))
        self.day = reference.astimezone(self.tz).date()

    def __call__(self, value: datetime) -> str:
        local = value.astimezone(self.tz)
        return local.strftime("%H:%M" if local.date() == self.day else "%Y-%m-%d %H:%M")


def busy_claims(
    session: Session,
    resource_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    exclude_owner: str | None = None,
) -> list[ResourceClaim]:
    """Live claims on the resources that overlap [start, end), by resource and time."""
    if not resource_ids:
        return []
    stmt = select(ResourceClaim).where(
        ResourceClaim.resource_id.in_(resource_ids),
        ResourceClaim.active.is_(True),
        ResourceClaim.start_at < end,
        ResourceClaim.end_at > start,
        or_(ResourceClaim.expires_at.is_(None), ResourceClaim.expires_at > now),
    )
    if exclude_owner:
        stmt = stmt.where(ResourceClaim.owner_id != exclude_owner)
    return list(session.scalars(stmt.order_by(ResourceClaim.resource_id, ResourceClaim.start_at)))


def describe_busy(
    session: Session, claims: Sequence[ResourceClaim], *, reference: datetime
) -> list[dict[str, Any]]:
    """Each claim as {resource_id, who, start, end, owner, theatre_id, text}.

    The text names the person and where they are: "surgeon s-li is already in theatre t-2 from
    09:00 to 11:00 (case sc-…)".
    """
    local = LocalClock(session, reference)
    owners = {c.owner_id for c in claims}
    cases = (
        {c.id: c for c in session.scalars(select(SurgeryCase).where(SurgeryCase.id.in_(owners)))}
        if owners
        else {}
    )
    appointments = (
        set(session.scalars(select(Appointment.id).where(Appointment.id.in_(owners))))
        if owners
        else set()
    )
    out = []
    for c in claims:
        resource = session.get(Resource, c.resource_id)
        name = who(resource) if resource else c.resource_id
        span = f"from {local(c.start_at)} to {local(c.end_at)}"
        case = cases.get(c.owner_id)
        theatre = case.theatre_id if case else None
        if case is not None and resource is not None and resource.kind is ResourceKind.THEATRE:
            text = f"{name} is already booked for case {case.id} {span}"
        elif case is not None:
            text = f"{name} is already in theatre {theatre} {span} (case {case.id})"
        elif c.owner_id in appointments:
            text = f"{name} is already booked for appointment {c.owner_id} {span}"
        else:
            text = f"{name} is already taken ({c.purpose.value} {c.owner_id}) {span}"
        out.append(
            {
                "resource_id": c.resource_id,
                "who": name,
                "lane": c.lane,
                "start": c.start_at.isoformat(),
                "end": c.end_at.isoformat(),
                "purpose": c.purpose.value,
                "owner_id": c.owner_id,
                "theatre_id": theatre,
                "text": text,
            }
        )
    return out


# --- the theatre schedule ----------------------------------------------------------------------


def local_day(session: Session, day: date) -> tuple[datetime, datetime, str]:
    """[start, end) of a local calendar day, and the zone's name."""
    tz_name = catalog_service.consortium_timezone(session)
    tz = ZoneInfo(tz_name)
    nxt = day + timedelta(days=1)
    return (
        datetime(day.year, day.month, day.day, tzinfo=tz),
        datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz),
        tz_name,
    )


def today(session: Session, now: datetime) -> date:
    return now.astimezone(ZoneInfo(catalog_service.consortium_timezone(session))).date()


def theatre_schedule(
    session: Session,
    principal: Principal,
    *,
    institution_id: str | None,
    day: date,
) -> tuple[dict[str, Any], bool]:
    """Every theatre of a member on one local day: its sessions, its cases, its other claims.

    Returns (schedule, whether patients were shown). Patients are masked for callers who may
    not see the member's patients; times and teams are visible to the whole consortium.
    """
    principal.require_scope("Booking", "read")
    member = institution_id or principal.institution_id
    if member is None:
        raise InvalidInput("give institution: consortium-wide callers have no own member")
    catalog_service.get(session, kind="institution", id=member)
    start, end, tz_name = local_day(session, day)
    theatres = list(
        session.scalars(
            select(Resource)
            .where(Resource.kind == ResourceKind.THEATRE, Resource.institution_id == member)
            .order_by(Resource.id)
        )
    )
    ids = [t.id for t in theatres]
    cases = (
        list(
            session.scalars(
                select(SurgeryCase)
                .where(
                    SurgeryCase.theatre_id.in_(ids),
                    SurgeryCase.status.in_(ON_THE_SCHEDULE),
                    SurgeryCase.block_start_at < end,
                    SurgeryCase.block_end_at > start,
                )
                .order_by(SurgeryCase.block_start_at)
            )
        )
        if ids
        else []
    )
    case_ids = {c.id for c in cases}
    others: dict[str, list[ResourceClaim]] = defaultdict(list)
    for claim in session.scalars(
        select(ResourceClaim)
        .where(
            ResourceClaim.resource_id.in_(ids),
            ResourceClaim.active.is_(True),
            ResourceClaim.start_at < end,
            ResourceClaim.end_at > start,
        )
        .order_by(ResourceClaim.start_at)
    ):
        if claim.owner_id not in case_ids:
            others[claim.resource_id].append(claim)
    show = can_see_patients(principal, member)
    by_theatre: dict[str, list[SurgeryCase]] = defaultdict(list)
    for c in cases:
        by_theatre[c.theatre_id or ""].append(c)
    out = []
    for t in theatres:
        sessions = catalog_service.availability(session, resource_id=t.id, start=start, end=end)
        session_min = sum(int((iv.end - iv.start).total_seconds() // 60) for iv in sessions)
        booked_min = 0
        for c in by_theatre.get(t.id, []):
            if c.block_start_at and c.block_end_at:
                lo, hi = max(c.block_start_at, start), min(c.block_end_at, end)
                booked_min += int((hi - lo).total_seconds() // 60)
        out.append(
            {
                "id": t.id,
                "name": t.name,
                "type_code": t.type_code,
                "campus_id": t.campus_id,
                "status": t.status.value,
                "sessions": [
                    {"start": iv.start.isoformat(), "end": iv.end.isoformat()} for iv in sessions
                ],
                "session_minutes": session_min,
                "booked_minutes": booked_min,
                "utilisation": round(booked_min / session_min, 3) if session_min else None,
                "cases": [to_dict(c, show_patient=show) for c in by_theatre.get(t.id, [])],
                "other_claims": [
                    {
                        "owner_id": o.owner_id,
                        "purpose": o.purpose.value,
                        "start": o.start_at.isoformat(),
                        "end": o.end_at.isoformat(),
                    }
                    for o in others.get(t.id, [])
                ],
            }
        )
    schedule = {
        "institution_id": member,
        "date": day.isoformat(),
        "timezone": tz_name,
        "theatres": out,
    }
    return schedule, show and bool(cases)
