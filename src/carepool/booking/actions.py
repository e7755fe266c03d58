"""Writes to the booking pool: hold, book, arrive, fulfil, cancel, no-show, reschedule.

Every action runs in the caller's transaction. Resource time is taken only by inserting
`ResourceClaim` rows, which the database refuses to overlap; a lost race surfaces as
`SlotTaken` (409) naming what was taken, and the caller's transaction rolls back whole.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from carepool.booking import _fast, patients
from carepool.booking import _pool as booking_pool
from carepool.booking import service as booking_service
from carepool.booking._flow import require_status
from carepool.booking.errors import (
    HoldExpired,
    IdempotencyMismatch,
    InvalidTransition,
    QuotaExhausted,
    SlotTaken,
)
from carepool.booking.models import (
    Appointment,
    AppointmentStatus,
    BookingPolicy,
    ClaimPurpose,
    PatientLane,
    Quota,
    QuotaUsage,
    ResourceClaim,
)
from carepool.catalog import service as catalog_service
from carepool.catalog.models import InstitutionKind
from carepool.catalog.service import ResourceView, ServiceView
from carepool.core import audit, events
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal
from carepool.core.errors import CarepoolError, InvalidInput, PermissionDenied

S = AppointmentStatus
TRANSITIONS: dict[str, tuple[set[AppointmentStatus], AppointmentStatus]] = {
    "book": ({S.HELD}, S.BOOKED),
    "arrive": ({S.BOOKED}, S.ARRIVED),
    "fulfil": ({S.ARRIVED}, S.FULFILLED),
    "cancel": ({S.HELD, S.BOOKED}, S.CANCELLED),
    "no-show": ({S.BOOKED}, S.NOSHOW),
}
RELEASES_TIME = {S.CANCELLED, S.NOSHOW}


def _digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def release_expired_holds(
    session: Session,
    *,
    now: datetime,
    owner_ids: Collection[str] | None = None,
    pool: booking_pool.Pool | None = None,
) -> int:
    """Cancel holds whose time ran out (all, or those of `owner_ids`) and free their claims."""
    stmt = select(Appointment).where(
        Appointment.status == S.HELD, Appointment.hold_expires_at <= now
    )
    if owner_ids is not None:
        if not owner_ids:
            return 0
        stmt = stmt.where(Appointment.id.in_(list(owner_ids)))
    expired = list(session.scalars(stmt.with_for_update(skip_locked=True)))
    for a in expired:
        a.status = S.CANCELLED
        a.cancel_reason = "hold expired"
        a.updated_at = now
        _release_claims(session, a.id)
        if a.quota_id:
            pool = pool or booking_pool.get(session)
            _give_back_quota(session, pool, a)
        events.emit(
            session,
            type="booking.appointment.hold_expired",
            entity_type="appointment",
            entity_id=a.id,
            institution_id=a.institution_id,
        )
    session.flush()
    return len(expired)


def _release_claims(session: Session, owner_id: str) -> None:
    session.execute(
        update(ResourceClaim)
        .where(ResourceClaim.owner_id == owner_id, ResourceClaim.active.is_(True))
        .values(active=False)
    )
    patients.release_time(session, owner_id)


def _taken_report(
    session: Session, resource_ids: list[str], start: datetime, end: datetime, now: datetime
) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(ResourceClaim)
        .where(
            ResourceClaim.resource_id.in_(resource_ids),
            ResourceClaim.active.is_(True),
            ResourceClaim.start_at < end,
            ResourceClaim.end_at > start,
            or_(ResourceClaim.expires_at.is_(None), ResourceClaim.expires_at > now),
        )
        .order_by(ResourceClaim.resource_id, ResourceClaim.start_at)
    )
    return [
        {
            "resource_id": c.resource_id,
            "lane": c.lane,
            "start": c.start_at.isoformat(),
            "end": c.end_at.isoformat(),
            "purpose": c.purpose.value,
        }
        for c in rows
    ]


def _insert_claims(session: Session, rows: list[dict[str, Any]]) -> set[tuple[str, int]]:
    """Insert claims; the (resource, lane) pairs the database accepted.

    PostgreSQL skips a row its exclusion constraint refuses (`ON CONFLICT DO NOTHING` waits
    for a concurrent claimant to finish first), so a lost race costs no savepoint and leaves
    the transaction usable. SQLite (in-process, one writer) inserts row by row; a row its
    trigger refuses is undone alone and the transaction goes on.
    """
    if session.get_bind().dialect.name == "postgresql":
        return {(rid, lane) for rid, lane in session.execute(_PG_CLAIMS, rows)}
    accepted = set()
    for row in rows:  # in-process: a statement per row costs no round trip
        try:
            session.execute(_CLAIMS, row)
        except IntegrityError:
            continue
        accepted.add((row["resource_id"], row["lane"]))
    return accepted


# Core statements on the table (not the ORM entity): no unit of work, compiled once.
_CLAIM_TABLE = cast(Table, ResourceClaim.__table__)
_CLAIMS = insert(_CLAIM_TABLE)
_PG_CLAIMS = (
    pg_insert(_CLAIM_TABLE)
    .on_conflict_do_nothing()
    .returning(_CLAIM_TABLE.c.resource_id, _CLAIM_TABLE.c.lane)
)


@dataclass(frozen=True)
class _Plan:
    """Where and when a booking needs resource time: the block, the lanes, the candidates."""

    block_start: datetime
    block_end: datetime
    lanes: int
    per_req: tuple[tuple[ResourceView, ...], ...]
    everyone: list[str]  # every candidate (their lapsed holds are released first)
    open_: list[str]  # the candidates whose calendars cover the block


def _plan(
    pool: booking_pool.Pool, service: ServiceView, institution_id: str, start: datetime
) -> _Plan:
    policy = pool.policy(service.id)
    t = booking_service.timing(service, policy)
    block_start, block_end = start - t.before, start + t.duration + t.after
    per_req = pool.candidates(service, institution_id)
    everyone = {r.id: r for group in per_req for r in group}
    open_ = [rid for rid, r in everyone.items() if pool.covers(r, block_start, block_end)]
    return _Plan(block_start, block_end, 1 + policy.overbook_lanes, per_req, list(everyone), open_)


def _not_free(
    session: Session,
    service: ServiceView,
    institution_id: str,
    start: datetime,
    plan: _Plan,
    index: int,
    available: int,
    now: datetime,
) -> SlotTaken:
    """The error for a requirement of which only `available` units are free."""
    req = service.requirements[index]
    what = req.type_code or (req.role.value if req.role else req.kind.value)
    return SlotTaken(
        f"{service.id} at {institution_id} from {start.isoformat()} is not free: "
        f"needs {req.count} × {what}, {available} available for "
        f"{plan.block_start.isoformat()}–{plan.block_end.isoformat()}",
        taken=_taken_report(
            session, [r.id for r in plan.per_req[index]], plan.block_start, plan.block_end, now
        ),
    )


def allocate(
    session: Session,
    *,
    pool: booking_pool.Pool,
    service: ServiceView,
    institution_id: str,
    start: datetime,
    owner_id: str,
    purpose: ClaimPurpose,
    now: datetime,
    expires_at: datetime | None,
    exclude_owner: str | None = None,
) -> list[str]:
    """Claim, for `start`, the resources every requirement of `service` needs at the member.

    One query reads the live claims in the way (and lapsed holds, which are released first);
    candidates are tried in a stable order and inserted together; a resource lane lost to a
    concurrent booking is skipped for the next candidate. Raises `SlotTaken` when some
    requirement cannot be met. Returns the resource ids in requirement order.

    `booking_create_appointment` (migration 0012) makes the same choices on PostgreSQL.
    """
    plan = _plan(pool, service, institution_id, start)
    block_start, block_end, lanes = plan.block_start, plan.block_end, plan.lanes
    claims = booking_service.claims_around(
        session,
        plan.open_,
        block_start,
        block_end,
        now=now,
        exclude_owner=exclude_owner,
        lapsed_of=plan.everyone,
    )
    if claims.lapsed_owners:
        release_expired_holds(session, now=now, owner_ids=claims.lapsed_owners, pool=pool)
    opened = set(plan.open_)
    refused: set[tuple[str, int]] = set()
    chosen: list[list[str]] = [[] for _ in service.requirements]
    while True:
        taken = {rid for group in chosen for rid in group}
        picks: list[tuple[int, str, int]] = []
        for i, (req, group) in enumerate(zip(service.requirements, plan.per_req, strict=True)):
            want = req.count - len(chosen[i])
            for resource in group:
                if want == 0:
                    break
                if resource.id in taken or resource.id not in opened:
                    continue
                lane = next(
                    (
                        k
                        for k in range(lanes)
                        if (resource.id, k) not in claims.busy and (resource.id, k) not in refused
                    ),
                    None,
                )
                if lane is None:
                    continue
                picks.append((i, resource.id, lane))
                taken.add(resource.id)
                want -= 1
            if want:
                raise _not_free(
                    session, service, institution_id, start, plan, i, req.count - want, now
                )
        if not picks:
            break
        accepted = _insert_claims(
            session,
            [
                {
                    "resource_id": rid,
                    "lane": lane,
                    "start_at": block_start,
                    "end_at": block_end,
                    "purpose": purpose,
                    "owner_id": owner_id,
                    "active": True,
                    "expires_at": expires_at,
                }
                for _, rid, lane in picks
            ],
        )
        for i, rid, lane in picks:
            if (rid, lane) in accepted:
                chosen[i].append(rid)
            else:
                refused.add((rid, lane))  # taken a moment ago by someone else
    return [rid for group in chosen for rid in group]


def _quota_for(
    pool: booking_pool.Pool,
    service_id: str,
    institution_id: str,
    requester_id: str | None,
    requester_kind: InstitutionKind | None,
) -> booking_pool.QuotaView | None:
    """The quota this booking draws on when the requester is outside its reserved group."""
    for quota in pool.quotas_for(service_id, institution_id):
        inside = requester_id is not None and (
            (requester_kind is not None and requester_kind.value in quota.reserved_for_kinds)
            or requester_id in quota.reserved_for_institutions
        )
        if not inside:
            return quota
    return None


def _local_day(zone: ZoneInfo, when: datetime) -> tuple[str, datetime, datetime]:
    local = when.astimezone(zone)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local.date().isoformat(), day_start, day_start + timedelta(days=1)


def _capacity_minutes(
    pool: booking_pool.Pool,
    service: ServiceView,
    institution_id: str,
    start: datetime,
    end: datetime,
) -> int:
    """Calendar minutes of the scarcest requirement's resources over [start, end)."""
    per_req = pool.candidates(service, institution_id)
    best: int | None = None
    for req, group in zip(service.requirements, per_req, strict=True):
        total = 0
        for r in group:
            for iv in pool.availability(r, start, end):
                total += int((iv.end - iv.start).total_seconds() // 60)
        per = total // req.count
        best = per if best is None else min(best, per)
    return best or 0


def _take_quota(
    session: Session,
    pool: booking_pool.Pool,
    quota: booking_pool.QuotaView,
    service: ServiceView,
    start: datetime,
    minutes: int,
) -> str:
    day, day_start, day_end = _local_day(pool.zone, start)
    limit = int(
        _capacity_minutes(pool, service, quota.institution_id, day_start, day_end)
        * (1 - quota.share)
    )
    values = {"quota_id": quota.id, "day": day, "used_minutes": 0, "limit_minutes": limit}
    insert_ = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert_(QuotaUsage).values(**values).on_conflict_do_nothing())
    result = session.execute(
        update(QuotaUsage)
        .where(
            QuotaUsage.quota_id == quota.id,
            QuotaUsage.day == day,
            QuotaUsage.used_minutes + minutes <= QuotaUsage.limit_minutes,
        )
        .values(used_minutes=QuotaUsage.used_minutes + minutes)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise QuotaExhausted(
            f"{quota.share:.0%} of {service.id} at {quota.institution_id} on {day} is kept for "
            f"{', '.join(quota.reserved_for_kinds + quota.reserved_for_institutions)} until "
            f"{quota.release_hours} h before; the rest ({limit} min) is booked",
            quota=quota.id,
            day=day,
        )
    return day


def _give_back_quota(session: Session, pool: booking_pool.Pool, appointment: Appointment) -> None:
    if not appointment.quota_id:
        return
    day, _, _ = _local_day(pool.zone, appointment.start_at)
    minutes = int((appointment.end_at - appointment.start_at).total_seconds() // 60)
    session.execute(
        update(QuotaUsage)
        .where(QuotaUsage.quota_id == appointment.quota_id, QuotaUsage.day == day)
        .values(used_minutes=QuotaUsage.used_minutes - minutes)
    )


class Orderable(Protocol):
    """What `check_orderable` reads of a service (a catalogue row or its cached view)."""

    @property
    def id(self) -> str: ...
    @property
    def orderable_by_roles(self) -> Sequence[str]: ...
    @property
    def orderable_by_kinds(self) -> Sequence[str]: ...


def check_orderable(
    session: Session,
    actor: Principal,
    service: Orderable,
    *,
    pool: booking_pool.Pool | None = None,
) -> InstitutionKind | None:
    """Refuse unless the caller's role and member kind may order `service`; the member's kind."""
    kind = (pool or booking_pool.get(session)).institution_kind(actor.institution_id)
    if actor.consortium_wide:
        return kind
    if service.orderable_by_roles and (
        actor.role is None or actor.role.value not in service.orderable_by_roles
    ):
        raise PermissionDenied(
            f"{service.id} may be ordered by {', '.join(service.orderable_by_roles)}; "
            f"{actor.username!r} is {actor.role.value if actor.role else 'no role'}"
        )
    if service.orderable_by_kinds and (
        kind is None or kind.value not in service.orderable_by_kinds
    ):
        raise PermissionDenied(
            f"{service.id} may be ordered from {', '.join(service.orderable_by_kinds)}; "
            f"{actor.institution_id!r} is not one"
        )
    return kind


def _idempotency_lock(session: Session, username: str, key: str) -> None:
    """On PostgreSQL, make concurrent requests with one caller's key wait for each other.

    The second then finds the first's appointment instead of failing on the unique index
    (SQLite transactions hold the write lock already).
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"appointment\0{username}\0{key}".encode()).digest()
    session.execute(
        select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], "big", signed=True)))
    )


def do_create_appointment(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    service_id: str,
    institution_id: str,
    start: datetime,
    patient_ref: str,
    patient_name: str = "",
    hold: bool = False,
    idempotency_key: str | None = None,
    referral_id: str | None = None,
    note: str = "",
    patient: patients.BookedPatient | None = None,
) -> tuple[Appointment, bool]:
    """Hold or book a service at a member for a registered patient; (appointment, created).

    `patient_ref` names the patient (`Patient/<id>`, checked as `patients.resolve` does: 422 if
    unknown or not the caller's); `patient`, already checked (a referral's), skips that. The
    patient's own time is claimed with the resources (`PatientBusy`, 409, on a clash).
    With an idempotency key, repeating the same request returns the first result (created is
    False); reusing the key for a different request is refused.
    """
    actor.require_scope("Booking", "write")
    request = {
        "service_id": service_id,
        "institution_id": institution_id,
        "start": start.isoformat(),
        "patient_ref": patient_ref,
        "hold": hold,
        "referral_id": referral_id,
    }
    digest = _digest(request)
    if idempotency_key:
        _idempotency_lock(session, actor.username, idempotency_key)
        existing = session.scalar(
            select(Appointment).where(
                Appointment.requested_by == actor.username,
                Appointment.idempotency_key == idempotency_key,
            )
        )
        if existing is not None:
            if existing.request_digest != digest:
                raise IdempotencyMismatch(
                    f"idempotency key {idempotency_key!r} was used for a different request "
                    f"(appointment {existing.id})"
                )
            return existing, False
    args = _Request(
        actor=actor,
        now=now,
        service_id=service_id,
        institution_id=institution_id,
        start=start,
        patient_ref=patient_ref,
        patient_name=patient_name,
        hold=hold,
        idempotency_key=idempotency_key,
        referral_id=referral_id,
        note=note,
        digest=digest,
        patient=patient,
    )
    # On PostgreSQL, go ahead on the pool this process last built, unchecked: the booking
    # statement checks its version first and writes nothing if it is stale. Whatever is refused
    # before that statement is refused again only if the pool is current (else: start afresh).
    guess = booking_pool.last(session) if _fast.usable(session) else None
    if guess is not None:
        try:
            return _create(session, args, guess, checked=False)
        except _StalePool:
            pass
        except CarepoolError:
            if booking_pool.get(session) is guess:
                raise
    return _create(session, args, booking_pool.get(session), checked=True)


class _StalePool(Exception):
    """The unchecked pool turned out older than the database's catalogue (nothing written)."""


@dataclass(frozen=True)
class _Request:
    actor: Principal
    now: datetime
    service_id: str
    institution_id: str
    start: datetime
    patient_ref: str
    patient_name: str
    hold: bool
    idempotency_key: str | None
    referral_id: str | None
    note: str
    digest: str
    patient: patients.BookedPatient | None


def _create(
    session: Session, args: _Request, pool: booking_pool.Pool, *, checked: bool
) -> tuple[Appointment, bool]:
    """`do_create_appointment` after the idempotency check, on `pool` (`checked`: known current)."""
    actor, now, start = args.actor, args.now, args.start
    service_id, institution_id = args.service_id, args.institution_id
    idempotency_key = args.idempotency_key

    service = pool.service(service_id)
    if institution_id not in service.offered_by:
        raise InvalidInput(
            f"{institution_id!r} does not offer {service_id!r}",
            [],
        )
    requester_kind = check_orderable(session, actor, service, pool=pool)
    policy = pool.policy(service_id)
    if start < now + timedelta(minutes=policy.min_notice_minutes):
        raise InvalidInput(
            f"{service_id} must be booked at least {policy.min_notice_minutes} min ahead; "
            f"{start.isoformat()} is too soon"
        )
    appointment_id = "apt-" + uuid.uuid4().hex[:20]
    patient_id = args.patient.id if args.patient else patients.bare_id(args.patient_ref)
    expires = now + timedelta(minutes=policy.hold_minutes) if args.hold else None
    quota = _quota_for(pool, service_id, institution_id, actor.institution_id, requester_kind)
    quota_id = None
    if quota is not None and start - now > timedelta(hours=quota.release_hours):
        if not checked and booking_pool.get(session) is not pool:
            raise _StalePool
        _take_quota(session, pool, quota, service, start, service.duration_min)
        quota_id = quota.id
        checked = True
    appointment = Appointment(
        id=appointment_id,
        service_id=service_id,
        institution_id=institution_id,
        requester_institution_id=actor.institution_id,
        requested_by=actor.username,
        idempotency_key=idempotency_key,
        patient_ref=patient_id,
        patient_id=patient_id,
        patient_name=args.patient_name,
        referral_id=args.referral_id,
        status=S.HELD if args.hold else S.BOOKED,
        start_at=start,
        end_at=start + timedelta(minutes=service.duration_min),
        hold_expires_at=expires,
        resource_ids=[],  # the chosen resources, below
        quota_id=quota_id,
        note=args.note,
        request_digest=args.digest,
        created_at=now,
        updated_at=now,
    )
    claim = {  # the patient's time; `patient_key` is filled in once the patient is checked
        "lane": PatientLane.VISIT,
        "institution_id": institution_id,
        "start": appointment.start_at,
        "end": appointment.end_at,
        "purpose": ClaimPurpose.APPOINTMENT,
        "owner_id": appointment_id,
        "exclusive": not policy.allow_patient_overlap,
        "expires_at": expires,
    }
    if _fast.usable(session):
        try:
            chosen = _book_in_one_statement(
                session,
                actor,
                pool,
                service,
                institution_id,
                start,
                appointment,
                now,
                expires,
                version=None if checked else pool.version,
                patient=args.patient,
                patient_claim=claim,
                patient_ref=args.patient_ref,
            )
        except IntegrityError as exc:
            raise _key_in_use(idempotency_key, exc) from exc
        if chosen is not None:
            return appointment, True
    patient = args.patient or patients.resolve(session, actor, args.patient_ref)
    lapsed = patients.lapsed_owners(session, patient_key=patient.key, now=now)
    if lapsed:
        release_expired_holds(session, now=now, owner_ids=lapsed, pool=pool)
    patients.claim_time(session, _patient_claim_values(patient, claim), now=now)
    appointment.resource_ids = allocate(
        session,
        pool=pool,
        service=service,
        institution_id=institution_id,
        start=start,
        owner_id=appointment_id,
        purpose=ClaimPurpose.APPOINTMENT,
        now=now,
        expires_at=expires,
    )
    session.add(appointment)
    audit.record(session, **_created_audit(actor, appointment))
    events.emit(session, **_created_event(appointment))
    try:
        session.flush()  # the appointment, its audit row and its event: three inserts
    except IntegrityError as exc:
        raise _key_in_use(idempotency_key, exc) from exc
    return appointment, True


def _patient_claim_values(patient: patients.BookedPatient, claim: dict[str, Any]) -> dict[str, Any]:
    return patients.claim_values(
        patient,
        lane=claim["lane"],
        institution_id=claim["institution_id"],
        start=claim["start"],
        end=claim["end"],
        purpose=claim["purpose"],
        owner_id=claim["owner_id"],
        exclusive=claim["exclusive"],
        expires_at=claim["expires_at"],
    )


def _key_in_use(idempotency_key: str | None, exc: IntegrityError) -> Exception:
    if idempotency_key:  # the key's lock makes this unreachable on PostgreSQL
        return IdempotencyMismatch(
            f"idempotency key {idempotency_key!r} is being used by a concurrent request; retry"
        )
    return exc


def _created_audit(actor: Principal, appointment: Appointment) -> dict[str, Any]:
    """The audit record of a new appointment (both paths; `after` as the ORM path had it)."""
    return {
        "actor": actor,
        "action": AuditAction.CREATE,
        "entity_type": "appointment",
        "entity_id": appointment.id,
        "entity_institution": appointment.institution_id,
        "after": booking_service.to_dict(appointment),
    }


def _created_event(appointment: Appointment) -> dict[str, Any]:
    """The outbox event of a new appointment (both paths)."""
    return {
        "type": f"booking.appointment.{appointment.status.value}",
        "entity_type": "appointment",
        "entity_id": appointment.id,
        "institution_id": appointment.institution_id,
        "payload": {
            "service_id": appointment.service_id,
            "start": appointment.start_at.isoformat(),
            "resources": list(appointment.resource_ids),
        },
    }


def _book_in_one_statement(
    session: Session,
    actor: Principal,
    pool: booking_pool.Pool,
    service: ServiceView,
    institution_id: str,
    start: datetime,
    appointment: Appointment,
    now: datetime,
    expires: datetime | None,
    *,
    version: int | None,
    patient: patients.BookedPatient | None,
    patient_claim: dict[str, Any],
    patient_ref: str,
) -> list[str] | None:
    """`allocate` plus the appointment, audit and outbox inserts in one statement (PostgreSQL).

    Returns the chosen resources (the appointment is then persistent in `session`), raises
    `SlotTaken` as `allocate` does, or returns None when a candidate has a lapsed hold: nothing
    was written and the ORM path (which releases it first) takes over. With `version`, the
    statement first checks that the pool is current and raises `_StalePool` if not.
    """
    plan = _plan(pool, service, institution_id, start)
    # Without a checked patient the function checks the reference and fills in the key.
    unchecked = patients.BookedPatient(appointment.patient_id or "", "", "")
    claim_row = _patient_claim_values(patient or unchecked, patient_claim)
    if patient is None:
        del claim_row["patient_key"]
    audit_row = audit.row_values(**_created_audit(actor, appointment))
    event_row = events.row_values(**_created_event(appointment))
    result = _fast.book(
        session,
        {
            "start": plan.block_start,
            "end": plan.block_end,
            "lanes": plan.lanes,
            "now": now,
            "version": version,
            "claim": {
                "purpose": ClaimPurpose.APPOINTMENT,
                "owner_id": appointment.id,
                "expires_at": expires,
            },
            "patient": claim_row,
            "caller_member": actor.institution_id,
            "see_all": actor.consortium_wide,
            "appointment": _fast.columns(appointment),
            "audit": audit_row,
            "event": event_row,
        },
        counts=[req.count for req in service.requirements],
        groups=[[r.id for r in group] for group in plan.per_req],
        everyone=plan.everyone,
        open_=plan.open_,
    )
    if result["status"] == "stale":
        raise _StalePool
    if result["status"] == "unknown_patient":
        raise patients.resolve_failure(actor, patient_ref)
    if result["status"] == "patient_busy":
        raise patients.patient_busy(
            session, {**claim_row, "patient_key": result["patient_key"]}, now
        )
    if result["status"] == "taken":
        raise _not_free(
            session,
            service,
            institution_id,
            start,
            plan,
            result["requirement"],
            result["available"],
            now,
        )
    if result["status"] != "ok":
        return None
    appointment.resource_ids = list(result["resource_ids"])
    _fast.attach(session, appointment)
    return appointment.resource_ids


def _require_manage(actor: Principal, appointment: Appointment) -> None:
    actor.require_scope("Booking", "write")
    if not booking_service.can_see(actor, appointment):
        raise PermissionDenied(
            f"appointment {appointment.id!r} belongs to {appointment.institution_id!r}",
            institution=appointment.institution_id,
        )


def do_transition_appointment(
    session: Session, *, actor: Principal, now: datetime, id: str, action: str, reason: str = ""
) -> Appointment:
    """Move an appointment along its state machine (book a hold, arrive, fulfil, cancel...)."""
    if action not in TRANSITIONS:
        raise InvalidInput(f"unknown action {action!r}; one of {', '.join(TRANSITIONS)}")
    appointment = booking_service.access_appointment_by_id(session, actor, id)
    _require_manage(actor, appointment)
    allowed, target = TRANSITIONS[action]
    require_status("appointment", id, appointment.status, allowed, action)
    before = booking_service.to_dict(appointment)
    if action == "book":
        if appointment.hold_expires_at is not None and appointment.hold_expires_at <= now:
            release_expired_holds(session, now=now)
            raise HoldExpired(
                f"the hold on appointment {id} expired at "
                f"{appointment.hold_expires_at.isoformat()}; "
                "search again and hold a new slot"
            )
        session.execute(
            update(ResourceClaim)
            .where(ResourceClaim.owner_id == id, ResourceClaim.active.is_(True))
            .values(expires_at=None)
        )
        patients.keep_time(session, id)
        appointment.hold_expires_at = None
    if action == "cancel" and not reason:
        raise InvalidInput("a cancellation needs a reason")
    appointment.status = target
    appointment.updated_at = now
    if target in RELEASES_TIME:
        _release_claims(session, id)
        if appointment.quota_id:
            _give_back_quota(session, booking_pool.get(session), appointment)
        appointment.cancel_reason = reason
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="appointment",
        entity_id=id,
        entity_institution=appointment.institution_id,
        before=before,
        after=booking_service.to_dict(appointment),
        detail=action,
    )
    events.emit(
        session,
        type=f"booking.appointment.{target.value}",
        entity_type="appointment",
        entity_id=id,
        institution_id=appointment.institution_id,
        payload={"reason": reason},
    )
    return appointment


def do_reschedule_appointment(
    session: Session, *, actor: Principal, now: datetime, id: str, start: datetime
) -> Appointment:
    """Move a booked or held appointment to another start; the old time is kept if the new fails."""
    appointment = booking_service.access_appointment_by_id(session, actor, id)
    _require_manage(actor, appointment)
    if appointment.status not in (S.HELD, S.BOOKED):
        raise InvalidTransition(
            f"appointment {id} is {appointment.status.value}; only held or booked ones move"
        )
    before = booking_service.to_dict(appointment)
    pool = booking_pool.get(session)
    service = pool.service(appointment.service_id)
    old_claims = list(
        session.scalars(
            select(ResourceClaim).where(
                ResourceClaim.owner_id == id, ResourceClaim.active.is_(True)
            )
        )
    )
    for c in old_claims:
        c.active = False
    # Quotas follow the appointment: the old day's minutes come back, the new day's are taken.
    _give_back_quota(session, pool, appointment)
    requester = appointment.requester_institution_id
    quota = _quota_for(
        pool, service.id, appointment.institution_id, requester, pool.institution_kind(requester)
    )
    appointment.quota_id = None
    if quota is not None and start - now > timedelta(hours=quota.release_hours):
        _take_quota(session, pool, quota, service, start, service.duration_min)
        appointment.quota_id = quota.id
    session.flush()
    expires = appointment.hold_expires_at
    chosen = allocate(
        session,
        pool=pool,
        service=service,
        institution_id=appointment.institution_id,
        start=start,
        owner_id=id,
        purpose=ClaimPurpose.APPOINTMENT,
        now=now,
        expires_at=expires,
    )
    appointment.start_at = start
    appointment.end_at = start + timedelta(minutes=service.duration_min)
    patients.move_time(session, id, start=appointment.start_at, end=appointment.end_at, now=now)
    appointment.resource_ids = chosen
    appointment.updated_at = now
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="appointment",
        entity_id=id,
        entity_institution=appointment.institution_id,
        before=before,
        after=booking_service.to_dict(appointment),
        detail="reschedule",
    )
    events.emit(
        session,
        type="booking.appointment.rescheduled",
        entity_type="appointment",
        entity_id=id,
        institution_id=appointment.institution_id,
        payload={"from": before["start"], "to": start.isoformat()},
    )
    return appointment


def do_set_booking_policy(
    session: Session, *, actor: Principal, service_id: str, values: dict[str, Any]
) -> BookingPolicy:
    """Create or change a service's booking policy (consortium-wide callers only)."""
    actor.require_scope("Catalog", "write")
    actor.require_institution(None, f"the booking policy of {service_id}")
    catalog_service.get(session, kind="service", id=service_id)
    policy = session.get(BookingPolicy, service_id)
    before = None
    if policy is None:
        policy = BookingPolicy(
            service_id=service_id, hold_minutes=10, overbook_lanes=0, min_notice_minutes=0
        )
        session.add(policy)
    else:
        before = {k: getattr(policy, k) for k in values}
    for k, v in values.items():
        setattr(policy, k, v)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE if before else AuditAction.CREATE,
        entity_type="booking_policy",
        entity_id=service_id,
        before=before,
        after=values,
    )
    return policy


def do_set_quota(session: Session, *, actor: Principal, values: dict[str, Any]) -> Quota:
    """Create or replace a quota (the performing member's admins or consortium admins)."""
    actor.require_scope("Booking", "write")
    actor.require_institution(values["institution_id"], f"quotas of {values['institution_id']}")
    catalog_service.get(session, kind="service", id=values["service_id"])
    catalog_service.get(session, kind="institution", id=values["institution_id"])
    quota = session.get(Quota, values["id"])
    before = None
    if quota is None:
        quota = Quota(**values)
        session.add(quota)
    else:
        before = {k: getattr(quota, k) for k in values}
        for k, v in values.items():
            setattr(quota, k, v)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE if before else AuditAction.CREATE,
        entity_type="booking_quota",
        entity_id=values["id"],
        entity_institution=values["institution_id"],
        before=before,
        after=values,
    )
    return quota


__all__ = [
    "allocate",
    "do_create_appointment",
    "do_reschedule_appointment",
    "do_set_booking_policy",
    "do_set_quota",
    "do_transition_appointment",
    "release_expired_holds",
]
