"""Reads of the inpatient flow: admissions, bed suitability, bed states, the bed board, options.

Suitability has three layers, checked in this order and reported with the bed's id and why:
the bed itself (member, ward, sex policy, features, isolation), its condition (out of service,
to clean), the room's other patients (same-sex rooms, isolation), and finally whether another
admission holds the bed for the stay (the claim insert is the real guard; this is the preview).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from carepool.booking.inpatient.errors import (
    BedNotClean,
    BedNotSuitable,
    BedOccupied,
    BedOutOfService,
    RoomNotSuitable,
)
from carepool.booking.inpatient.models import (
    OPEN_END,
    Admission,
    AdmissionStatus,
    BedHousekeeping,
    BedState,
    Housekeeping,
    PatientSex,
)
from carepool.booking.models import ClaimPurpose, ResourceClaim
from carepool.catalog import service as catalog_service
from carepool.catalog.models import GenderPolicy, Resource, ResourceKind, ResourceStatus, Ward
from carepool.core.auth import Principal
from carepool.core.errors import NotFound, PermissionDenied

A = AdmissionStatus
# Admissions whose claims make a bed busy and whose patients count as the room's patients.
HOLDING = (A.BED_RESERVED, A.ADMITTED)
ISOLATION_TYPE = "bed.isolation"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return None if value >= OPEN_END else value.isoformat()


# --- access ------------------------------------------------------------------------------------


def can_see(principal: Principal, admission: Admission) -> bool:
    """The admitting member, the requesting member and consortium-wide callers see it."""
    return principal.consortium_wide or principal.institution_id in (
        admission.institution_id,
        admission.requester_institution_id,
    )


def can_see_patients(principal: Principal, institution_id: str) -> bool:
    """Whether the caller may see who lies in the member's beds (names on boards and schedules).

    Consortium-wide callers may; a member's own staff may when they work with patients
    (`Booking.write` or `Patient.read`), not read-only administrators; other members may not.
    """
    if principal.consortium_wide:
        return True
    return principal.institution_id == institution_id and (
        principal.has_scope("Booking", "write") or principal.has_scope("Patient", "read")
    )


def access_admission_by_id(session: Session, principal: Principal, id: str) -> Admission:
    """Load an admission the caller may see (scope and member checked)."""
    principal.require_scope("Booking", "read")
    admission = session.get(Admission, id)
    if admission is None:
        raise NotFound("admission", id)
    if not can_see(principal, admission):
        raise PermissionDenied(
            f"admission {id!r} belongs to {admission.institution_id!r}; "
            f"{principal.username!r} of {principal.institution_id!r} may not see it",
            institution=admission.institution_id,
        )
    return admission


def get_all_admissions(
    session: Session,
    principal: Principal,
    *,
    status: AdmissionStatus | None = None,
    institution_id: str | None = None,
    ward_id: str | None = None,
    patient_ref: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Admission], int]:
    """Admissions the caller may see, newest planned admission first."""
    principal.require_scope("Booking", "read")
    stmt = select(Admission)
    if not principal.consortium_wide:
        stmt = stmt.where(
            or_(
                Admission.institution_id == principal.institution_id,
                Admission.requester_institution_id == principal.institution_id,
            )
        )
    conds: list[Any] = []
    if status is not None:
        conds.append(Admission.status == status)
    if institution_id:
        conds.append(Admission.institution_id == institution_id)
    if ward_id:
        conds.append(Admission.ward_id == ward_id)
    if patient_ref:
        conds.append(Admission.patient_ref == patient_ref)
    if conds:
        stmt = stmt.where(and_(*conds))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(
        stmt.order_by(Admission.planned_admit_at.desc(), Admission.id).limit(limit).offset(offset)
    )
    return list(rows), int(total)


def to_dict(a: Admission) -> dict[str, Any]:
    return {
        "id": a.id,
        "institution_id": a.institution_id,
        "requester_institution_id": a.requester_institution_id,
        "requested_by": a.requested_by,
        "patient_ref": a.patient_ref,
        "patient_name": a.patient_name,
        "patient_sex": a.patient_sex.value,
        "age": a.age,
        "department_id": a.department_id,
        "ward_id": a.ward_id,
        "needed_features": list(a.needed_features),
        "isolation": a.isolation,
        "priority": a.priority.value,
        "expected_stay_days": a.expected_stay_days,
        "planned_admit_at": a.planned_admit_at.isoformat(),
        "expected_discharge_at": a.expected_discharge_at.isoformat(),
        "status": a.status.value,
        "bed_id": a.bed_id,
        "bed_history": list(a.bed_history),
        "admitted_at": _iso(a.admitted_at),
        "discharged_at": _iso(a.discharged_at),
        "note": a.note,
        "cancel_reason": a.cancel_reason,
        "created_at": a.created_at.isoformat(),
        "updated_at": a.updated_at.isoformat(),
    }


# --- beds --------------------------------------------------------------------------------------


def get_bed(session: Session, bed_id: str) -> Resource:
    """A bed of the catalogue; `NotFound` if there is no bed with that id."""
    bed = session.get(Resource, bed_id)
    if bed is None or bed.kind is not ResourceKind.BED:
        raise NotFound("bed", bed_id)
    return bed


def room_bed_ids(session: Session, beds: Iterable[Resource]) -> list[str]:
    """The beds and every other bed sharing a room with one of them, sorted."""
    beds = list(beds)
    ids = {b.id for b in beds}
    rooms = {b.room_id for b in beds if b.room_id}
    if rooms:
        ids.update(
            session.scalars(
                select(Resource.id).where(
                    Resource.kind == ResourceKind.BED, Resource.room_id.in_(rooms)
                )
            )
        )
    return sorted(ids)


@dataclass(frozen=True)
class Holder:
    """A live claim on a bed and the admission behind it (None for non-admission claims)."""

    claim: ResourceClaim
    admission: Admission | None


def live_holders(session: Session, bed_ids: Sequence[str], after: datetime) -> list[Holder]:
    """Active claims on the beds that end after `after`, with their admissions."""
    if not bed_ids:
        return []
    claims = list(
        session.scalars(
            select(ResourceClaim)
            .where(
                ResourceClaim.resource_id.in_(bed_ids),
                ResourceClaim.active.is_(True),
                ResourceClaim.end_at > after,
                or_(ResourceClaim.expires_at.is_(None), ResourceClaim.expires_at > after),
            )
            .order_by(ResourceClaim.resource_id, ResourceClaim.start_at)
        )
    )
    owners = {c.owner_id for c in claims if c.purpose is ClaimPurpose.ADMISSION}
    admissions = (
        {a.id: a for a in session.scalars(select(Admission).where(Admission.id.in_(owners)))}
        if owners
        else {}
    )
    return [Holder(c, admissions.get(c.owner_id)) for c in claims]


def housekeeping(session: Session, bed_ids: Sequence[str]) -> dict[str, BedHousekeeping]:
    if not bed_ids:
        return {}
    rows = session.scalars(select(BedHousekeeping).where(BedHousekeeping.bed_id.in_(bed_ids)))
    return {r.bed_id: r for r in rows}


def _department_of(bed: Resource, wards: dict[str, Ward]) -> str | None:
    if bed.department_id:
        return bed.department_id
    ward = wards.get(bed.ward_id or "")
    return ward.department_id if ward else None


def bed_refusals(
    bed: Resource, admission: Admission, *, wards: dict[str, Ward], check_target: bool
) -> list[str]:
    """Why the bed itself does not fit the patient (empty: it fits); no database access."""
    reasons: list[str] = []
    if bed.institution_id != admission.institution_id:
        reasons.append(
            f"bed {bed.id} belongs to {bed.institution_id}; "
            f"the admission is at {admission.institution_id}"
        )
    if check_target and admission.ward_id and bed.ward_id != admission.ward_id:
        reasons.append(
            f"bed {bed.id} is in ward {bed.ward_id}; "
            f"the admission asks for ward {admission.ward_id}"
        )
    if (
        check_target
        and admission.department_id
        and not admission.ward_id
        and _department_of(bed, wards) != admission.department_id
    ):
        reasons.append(
            f"bed {bed.id} is in department {_department_of(bed, wards)}; "
            f"the admission asks for {admission.department_id}"
        )
    sex = admission.patient_sex
    if bed.gender_policy is GenderPolicy.FEMALE and sex is not PatientSex.FEMALE:
        reasons.append(f"bed {bed.id} is female-only; patient is {sex.value}")
    if bed.gender_policy is GenderPolicy.MALE and sex is not PatientSex.MALE:
        reasons.append(f"bed {bed.id} is male-only; patient is {sex.value}")
    missing = sorted(set(admission.needed_features) - set(bed.features or []))
    if missing:
        reasons.append(f"bed {bed.id} lacks {', '.join(missing)}")
    if (
        admission.isolation
        and "isolation" not in (bed.features or [])
        and bed.type_code != ISOLATION_TYPE
    ):
        reasons.append(f"bed {bed.id} is not an isolation bed; patient needs isolation")
    return reasons


def room_refusals(bed: Resource, admission: Admission, others: Sequence[Admission]) -> list[str]:
    """Why the room's other patients (reserved or admitted) rule the bed out (empty: they don't)."""
    if not bed.room_id or not others:
        return []
    reasons: list[str] = []
    sex = admission.patient_sex
    if bed.gender_policy is GenderPolicy.SAME_SEX_ROOM:
        known = (PatientSex.FEMALE, PatientSex.MALE)
        other_sexes = sorted({o.patient_sex.value for o in others})
        if sex not in known:
            reasons.append(
                f"bed {bed.id} is in same-sex room {bed.room_id}, which holds "
                f"{len(others)} other patient(s); patient's sex is {sex.value}"
            )
        elif any(o.patient_sex is not sex for o in others):
            reasons.append(
                f"bed {bed.id} is in same-sex room {bed.room_id}, which holds "
                f"{' and '.join(other_sexes)} patient(s); patient is {sex.value}"
            )
    if admission.isolation:
        reasons.append(
            f"patient needs isolation; room {bed.room_id} holds {len(others)} other patient(s)"
        )
    elif any(o.isolation for o in others):
        reasons.append(f"room {bed.room_id} holds a patient in isolation")
    return reasons


@dataclass
class Assessment:
    """Everything that decides whether one bed can take one admission for a stay."""

    bed: Resource
    refusals: list[str] = field(default_factory=list)
    out_of_service: bool = False
    to_clean: bool = False
    room: list[str] = field(default_factory=list)
    taken: list[Holder] = field(default_factory=list)
    roommates: int = 0

    @property
    def suitable(self) -> bool:
        return not (
            self.refusals or self.out_of_service or self.to_clean or self.room or self.taken
        )

    def reasons(self) -> list[str]:
        out = list(self.refusals)
        if self.out_of_service:
            out.append(f"bed {self.bed.id} is out of service ({self.bed.status.value})")
        if self.to_clean:
            out.append(f"bed {self.bed.id} waits for cleaning")
        out += self.room
        out += [describe_holder(self.bed.id, h) for h in self.taken]
        return out

    def raise_if_refused(self) -> None:
        """Raise the first refusal, in the order a person would fix them."""
        bed = self.bed
        if self.refusals:
            raise BedNotSuitable(bed.id, self.refusals)
        if self.out_of_service:
            raise BedOutOfService(
                f"bed {bed.id} is out of service ({bed.status.value}) in the catalogue"
            )
        if self.to_clean:
            raise BedNotClean(
                f"bed {bed.id} waits for cleaning after its last patient; "
                f"mark it cleaned (POST /api/v1/beds/{bed.id}/cleaned) before assigning it"
            )
        if self.room:
            raise RoomNotSuitable(bed.id, self.room)
        if self.taken:
            raise BedOccupied(
                "; ".join(describe_holder(bed.id, h) for h in self.taken),
                taken=[taken_entry(h) for h in self.taken],
            )


def describe_holder(bed_id: str, h: Holder) -> str:
    a = h.admission
    if a is None:
        return f"bed {bed_id} is taken ({h.claim.purpose.value} {h.claim.owner_id})"
    if a.status is A.ADMITTED:
        return f"bed {bed_id} is occupied (admission {a.id} since {h.claim.start_at.isoformat()})"
    return f"bed {bed_id} is reserved (admission {a.id} from {h.claim.start_at.isoformat()})"


def taken_entry(h: Holder) -> dict[str, Any]:
    return {
        "resource_id": h.claim.resource_id,
        "lane": h.claim.lane,
        "start": h.claim.start_at.isoformat(),
        "end": _iso(h.claim.end_at),
        "purpose": h.claim.purpose.value,
        "owner_id": h.claim.owner_id,
    }


def assess_beds(
    session: Session,
    admission: Admission,
    beds: Sequence[Resource],
    *,
    start: datetime,
    check_target: bool = True,
) -> dict[str, Assessment]:
    """For each bed, whether it can take the admission's patient from `start` on (open-ended)."""
    all_ids = room_bed_ids(session, beds)
    holders = [
        h
        for h in live_holders(session, all_ids, start)
        if h.claim.owner_id != admission.id
        and (h.admission is None or h.admission.status in HOLDING)
    ]
    by_bed: dict[str, list[Holder]] = defaultdict(list)
    for h in holders:
        by_bed[h.claim.resource_id].append(h)
    room_of: dict[str, str | None] = {
        rid: room
        for rid, room in session.execute(
            select(Resource.id, Resource.room_id).where(Resource.id.in_(all_ids))
        )
    }
    wards = {
        w.id: w for w in session.scalars(select(Ward).where(Ward.id.in_({b.ward_id for b in beds})))
    }
    clean = housekeeping(session, [b.id for b in beds])
    out: dict[str, Assessment] = {}
    for bed in beds:
        roommates = [
            h.admission
            for h in holders
            if h.admission is not None
            and room_of.get(h.claim.resource_id) == bed.room_id
            and h.claim.resource_id != bed.id
            and bed.room_id
        ]
        hk = clean.get(bed.id)
        out[bed.id] = Assessment(
            bed=bed,
            refusals=bed_refusals(bed, admission, wards=wards, check_target=check_target),
            out_of_service=bed.status is not ResourceStatus.IN_SERVICE,
            to_clean=hk is not None and hk.state is Housekeeping.TO_CLEAN,
            room=room_refusals(bed, admission, roommates),
            taken=by_bed.get(bed.id, []),
            roommates=len({a.id for a in roommates}),
        )
    return out


# --- bed states and the board ------------------------------------------------------------------


@dataclass(frozen=True)
class BedView:
    bed: Resource
    state: BedState
    since: datetime | None
    admission: Admission | None


def bed_views(session: Session, beds: Sequence[Resource], *, now: datetime) -> list[BedView]:
    """Each bed's state at `now`, derived from catalogue status, live claims and housekeeping.

    occupied (an admitted patient's claim covers now) > out_of_service (catalogue) > to_clean >
    reserved (any other live claim: a reservation now or later) > free.
    """
    ids = [b.id for b in beds]
    holders: dict[str, list[Holder]] = defaultdict(list)
    for h in live_holders(session, ids, now):
        holders[h.claim.resource_id].append(h)
    clean = housekeeping(session, ids)
    views: list[BedView] = []
    for bed in beds:
        hs = holders.get(bed.id, [])
        occupied = next(
            (
                h
                for h in hs
                if h.admission is not None
                and h.admission.status is A.ADMITTED
                and h.claim.start_at <= now
            ),
            None,
        )
        hk = clean.get(bed.id)
        reserved = next(
            (h for h in hs if h.admission is None or h.admission.status in HOLDING), None
        )
        if occupied is not None:
            view = BedView(bed, BedState.OCCUPIED, occupied.claim.start_at, occupied.admission)
        elif bed.status is not ResourceStatus.IN_SERVICE:
            view = BedView(bed, BedState.OUT_OF_SERVICE, None, None)
        elif hk is not None and hk.state is Housekeeping.TO_CLEAN:
            view = BedView(bed, BedState.TO_CLEAN, hk.since, None)
        elif reserved is not None:
            view = BedView(bed, BedState.RESERVED, reserved.claim.start_at, reserved.admission)
        else:
            view = BedView(bed, BedState.FREE, None, None)
        views.append(view)
    return views


def bed_state(session: Session, bed: Resource, *, now: datetime) -> BedState:
    return bed_views(session, [bed], now=now)[0].state


def _counts(views: Iterable[BedView]) -> dict[str, int]:
    counts = {s.value: 0 for s in BedState}
    total = 0
    for v in views:
        counts[v.state.value] += 1
        total += 1
    counts["total"] = total
    return counts


def bed_board(
    session: Session,
    principal: Principal,
    *,
    now: datetime,
    ward_id: str | None = None,
    campus_id: str | None = None,
    institution_id: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The beds of a ward, campus or member (or all), their states and counts.

    Returns (board, members whose patients were shown): patients are shown only to callers who
    may see that member's patients; others see the state with the patient masked.
    """
    principal.require_scope("Booking", "read")
    stmt = select(Resource).where(Resource.kind == ResourceKind.BED)
    if ward_id:
        catalog_service.get(session, kind="ward", id=ward_id)
        stmt = stmt.where(Resource.ward_id == ward_id)
    if campus_id:
        catalog_service.get(session, kind="campus", id=campus_id)
        stmt = stmt.where(Resource.campus_id == campus_id)
    if institution_id:
        catalog_service.get(session, kind="institution", id=institution_id)
        stmt = stmt.where(Resource.institution_id == institution_id)
    beds = list(session.scalars(stmt.order_by(Resource.ward_id, Resource.id)))
    views = bed_views(session, beds, now=now)
    ward_rows = {
        w.id: w for w in session.scalars(select(Ward).where(Ward.id.in_({b.ward_id for b in beds})))
    }
    shown: set[str] = set()
    by_ward: dict[str, list[BedView]] = defaultdict(list)
    items = []
    for v in views:
        by_ward[v.bed.ward_id or ""].append(v)
        a = v.admission
        patient: dict[str, Any] | None = None
        masked = False
        if a is not None:
            if can_see_patients(principal, v.bed.institution_id):
                shown.add(v.bed.institution_id)
                patient = {
                    "ref": a.patient_ref,
                    "name": a.patient_name,
                    "sex": a.patient_sex.value,
                    "age": a.age,
                }
            else:
                masked = True
        items.append(
            {
                "id": v.bed.id,
                "name": v.bed.name,
                "institution_id": v.bed.institution_id,
                "campus_id": v.bed.campus_id,
                "ward_id": v.bed.ward_id,
                "room_id": v.bed.room_id,
                "type_code": v.bed.type_code,
                "gender_policy": v.bed.gender_policy.value if v.bed.gender_policy else None,
                "features": list(v.bed.features or []),
                "state": v.state.value,
                "since": _iso(v.since),
                "admission_id": a.id if a is not None and not masked else None,
                "expected_discharge_at": (
                    a.expected_discharge_at.isoformat() if a is not None and not masked else None
                ),
                "patient": patient,
                "patient_masked": masked,
            }
        )
    wards = [
        {
            "id": wid,
            "name": ward_rows[wid].name if wid in ward_rows else "",
            "name_zh": ward_rows[wid].name_zh if wid in ward_rows else "",
            "counts": _counts(vs),
        }
        for wid, vs in by_ward.items()
    ]
    board = {
        "at": now.isoformat(),
        "filter": {"ward": ward_id, "campus": campus_id, "institution": institution_id},
        "counts": _counts(views),
        "wards": wards,
        "beds": items,
    }
    return board, sorted(shown)


def bed_options(
    session: Session, admission: Admission, *, now: datetime, limit: int = 20
) -> dict[str, Any]:
    """Suitable beds for the admission, best first, and why the others were left out.

    Best = wastes the least: fewest unused features (keep ventilators and isolation for those who
    need them), then beds joining patients already in their room before beds alone (empty rooms
    stay open for either sex), then single-sex beds before mixed ones, then by id.
    """
    start = max(admission.planned_admit_at, now)
    stmt = select(Resource).where(
        Resource.kind == ResourceKind.BED, Resource.institution_id == admission.institution_id
    )
    if admission.ward_id:
        stmt = stmt.where(Resource.ward_id == admission.ward_id)
    elif admission.department_id:
        wards_of_dept = select(Ward.id).where(Ward.department_id == admission.department_id)
        stmt = stmt.where(
            or_(
                Resource.department_id == admission.department_id,
                Resource.ward_id.in_(wards_of_dept),
            )
        )
    beds = list(session.scalars(stmt.order_by(Resource.id)))
    assessed = assess_beds(session, admission, beds, start=start)
    ranked: list[tuple[tuple[int, int, int, str], dict[str, Any]]] = []
    excluded = []
    needed = set(admission.needed_features)
    for bed in beds:
        a = assessed[bed.id]
        if not a.suitable:
            excluded.append({"bed_id": bed.id, "reasons": a.reasons()})
            continue
        unused = sorted(set(bed.features or []) - needed)
        mixed = int(bed.gender_policy in (GenderPolicy.MIXED, GenderPolicy.SAME_SEX_ROOM))
        alone = int(a.roommates == 0)
        why = []
        if unused:
            why.append(f"unused features: {', '.join(unused)}")
        if bed.room_id:
            why.append(
                f"joins {a.roommates} other patient(s) in room {bed.room_id}"
                if a.roommates
                else f"room {bed.room_id} is empty"
            )
        ranked.append(
            (
                (len(unused), alone, mixed, bed.id),
                {
                    "bed_id": bed.id,
                    "name": bed.name,
                    "ward_id": bed.ward_id,
                    "room_id": bed.room_id,
                    "gender_policy": bed.gender_policy.value if bed.gender_policy else None,
                    "features": list(bed.features or []),
                    "why": why,
                },
            )
        )
    ranked.sort(key=lambda pair: pair[0])
    items = [dict(item, rank=i + 1) for i, (_, item) in enumerate(ranked[:limit])]
    return {
        "admission_id": admission.id,
        "from": start.isoformat(),
        "items": items,
        "excluded": excluded,
    }
