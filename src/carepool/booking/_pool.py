"""What slot search and booking read on every request, cached per process (decision 0009).

Catalogue data (services, resources, calendars, members), booking policies and quotas change
rarely and are read by every request. Each process keeps one `Pool` per database engine and
reuses it while `booking_cache_version.version` equals the value it was built under; triggers
give that row a new value in every transaction that writes those tables (migration 0010), and
each request reads it once (a primary-key read). Claims, quota usage and appointments are never
cached: the database decides who gets resource time.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from carepool.booking.models import BookingPolicy, CacheVersion, Quota
from carepool.catalog import calendar
from carepool.catalog import service as catalog_service
from carepool.catalog.models import InstitutionKind, ResourceKind, ResourceStatus, StaffRole
from carepool.catalog.service import (
    CatalogSnapshot,
    ResourceView,
    ServiceView,
)
from carepool.core.errors import NotFound

__all__ = ["DEFAULT_POLICY", "Policy", "Pool", "QuotaView", "get", "last", "matches"]


@dataclass(frozen=True)
class Policy:
    """A service's booking rules (`BookingPolicy`, or the defaults when it has none)."""

    hold_minutes: int = 10
    overbook_lanes: int = 0
    slot_step_minutes: int | None = None
    min_notice_minutes: int = 0
    allow_patient_overlap: bool = False


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class QuotaView:
    id: str
    service_id: str
    institution_id: str
    reserved_for_kinds: tuple[str, ...]
    reserved_for_institutions: tuple[str, ...]
    share: float
    release_hours: int


class Fills(Protocol):
    """What `matches` reads of a resource: a `ResourceView` or a catalogue `Resource` row."""

    @property
    def kind(self) -> ResourceKind: ...
    @property
    def status(self) -> ResourceStatus: ...
    @property
    def type_code(self) -> str: ...
    @property
    def role(self) -> StaffRole | None: ...
    @property
    def skill_level(self) -> int | None: ...
    @property
    def specialties(self) -> Sequence[str] | None: ...


class Needs(Protocol):
    """What `matches` reads of a requirement: a `RequirementView` or a `ServiceRequirement`."""

    @property
    def kind(self) -> ResourceKind: ...
    @property
    def type_code(self) -> str | None: ...
    @property
    def role(self) -> StaffRole | None: ...
    @property
    def min_skill(self) -> int | None: ...
    @property
    def specialty(self) -> str | None: ...


def matches(resource: Fills, req: Needs) -> bool:
    """Whether a resource can fill a requirement (kind, type, role, skill, specialty)."""
    if resource.kind != req.kind or resource.status is not ResourceStatus.IN_SERVICE:
        return False
    if req.type_code and resource.type_code != req.type_code:
        return False
    if req.role and resource.role != req.role:
        return False
    if req.min_skill is not None and (resource.skill_level or 0) < req.min_skill:
        return False
    return not (req.specialty and req.specialty not in (resource.specialties or ()))


# Availability is computed per resource in week-long blocks and kept: a 7-day search touches
# two blocks per resource instead of expanding every rule again.
_BLOCK = timedelta(days=7)
_EPOCH = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday
_MAX_BLOCKS = 200_000  # about 100 MB at worst; past it the memo starts again


@dataclass
class Pool:
    """One consistent picture of the catalogue, policies and quotas, as plain data."""

    version: int | None
    catalog: CatalogSnapshot
    policies: dict[str, Policy]
    quotas: dict[tuple[str, str], tuple[QuotaView, ...]]
    zone: ZoneInfo = field(init=False)
    _by_member: dict[str, list[ResourceView]] = field(default_factory=dict, repr=False)
    _candidates: dict[tuple[str, str, str | None], tuple[tuple[ResourceView, ...], ...]] = field(
        default_factory=dict, repr=False
    )
    _blocks: dict[tuple[str, int], tuple[calendar.Interval, ...]] = field(
        default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        self.zone = ZoneInfo(self.catalog.timezone)
        for r in self.catalog.resources.values():
            self._by_member.setdefault(r.institution_id, []).append(r)

    def service(self, service_id: str) -> ServiceView:
        found = self.catalog.services.get(service_id)
        if found is None:
            raise NotFound("service", service_id)
        return found

    def institution_kind(self, institution_id: str | None) -> InstitutionKind | None:
        return self.catalog.institution_kinds.get(institution_id) if institution_id else None

    def policy(self, service_id: str) -> Policy:
        return self.policies.get(service_id, DEFAULT_POLICY)

    def quotas_for(self, service_id: str, institution_id: str) -> tuple[QuotaView, ...]:
        return self.quotas.get((service_id, institution_id), ())

    def candidates(
        self, service: ServiceView, institution_id: str, campus_id: str | None = None
    ) -> tuple[tuple[ResourceView, ...], ...]:
        """Per requirement, the member's resources that could fill it, in id order."""
        key = (service.id, institution_id, campus_id)
        found = self._candidates.get(key)
        if found is None:
            pool = [
                r
                for r in self._by_member.get(institution_id, ())
                if campus_id is None or r.campus_id in (campus_id, None)
            ]
            found = tuple(tuple(r for r in pool if matches(r, req)) for req in service.requirements)
            self._candidates[key] = found
        return found

    def availability(
        self, resource: ResourceView, start: datetime, end: datetime
    ) -> list[calendar.Interval]:
        """Calendar availability of a resource over [start, end), as `calendar.availability`."""
        if end <= start or resource.status is not ResourceStatus.IN_SERVICE:
            return []
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        first = (start - _EPOCH) // _BLOCK
        last = (end - _EPOCH - timedelta(microseconds=1)) // _BLOCK
        out: list[calendar.Interval] = []
        for k in range(first, last + 1):
            block = self._blocks.get((resource.id, k))
            if block is None:
                block = self._block(resource.id, k)
            # Blocks are sorted and disjoint, and follow each other: clip, and join the piece
            # that a block boundary cut in two.
            for iv in block:
                if iv.end <= start or iv.start >= end:
                    continue
                if iv.start < start or iv.end > end:
                    iv = calendar.Interval(max(iv.start, start), min(iv.end, end))
                if out and out[-1].end >= iv.start:
                    out[-1] = calendar.Interval(out[-1].start, max(out[-1].end, iv.end))
                else:
                    out.append(iv)
        return out

    def covers(self, resource: ResourceView, start: datetime, end: datetime) -> bool:
        """Whether the resource's calendar is open for the whole of [start, end)."""
        if resource.status is not ResourceStatus.IN_SERVICE:
            return False
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        k = (start - _EPOCH) // _BLOCK
        while True:
            block = self._blocks.get((resource.id, k)) or self._block(resource.id, k)
            i = bisect.bisect_right(block, start, key=lambda iv: iv.start) - 1
            if i < 0 or block[i].end <= start:
                return False
            if block[i].end >= end:
                return True
            if block[i].end != _EPOCH + (k + 1) * _BLOCK:
                return False
            start, k = block[i].end, k + 1  # open past the block's end: go on in the next one

    def _block(self, resource_id: str, k: int) -> tuple[calendar.Interval, ...]:
        if len(self._blocks) >= _MAX_BLOCKS:
            self._blocks.clear()
        block_start = _EPOCH + k * _BLOCK
        block = tuple(
            calendar.availability(
                rules=self.catalog.rules.get(resource_id, ()),
                exceptions=self.catalog.exceptions.get(resource_id, ()),
                start=block_start,
                end=block_start + _BLOCK,
                tz=self.catalog.timezone,
            )
        )
        self._blocks[(resource_id, k)] = block
        return block


def _load(session: Session, version: int | None) -> Pool:
    policies = {
        p.service_id: Policy(
            hold_minutes=p.hold_minutes,
            overbook_lanes=p.overbook_lanes,
            slot_step_minutes=p.slot_step_minutes,
            min_notice_minutes=p.min_notice_minutes,
            allow_patient_overlap=p.allow_patient_overlap,
        )
        for p in session.scalars(select(BookingPolicy))
    }
    quotas: dict[tuple[str, str], list[QuotaView]] = {}
    for q in session.scalars(select(Quota).order_by(Quota.id)):
        quotas.setdefault((q.service_id, q.institution_id), []).append(
            QuotaView(
                id=q.id,
                service_id=q.service_id,
                institution_id=q.institution_id,
                reserved_for_kinds=tuple(q.reserved_for_kinds),
                reserved_for_institutions=tuple(q.reserved_for_institutions),
                share=q.share,
                release_hours=q.release_hours,
            )
        )
    return Pool(
        version=version,
        catalog=catalog_service.load_snapshot(session),
        policies=policies,
        quotas={k: tuple(v) for k, v in quotas.items()},
    )


# Read on every request: plain SQL, no statement to build or compile.
_VERSION_SQL = f"SELECT version FROM {CacheVersion.__tablename__} WHERE id = 1"


class _Cache:
    """The current `Pool` of each engine in this process."""

    def __init__(self) -> None:
        self._pools: weakref.WeakKeyDictionary[Engine, Pool] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, session: Session) -> Pool:
        bind: Any = session.get_bind()
        engine: Engine = getattr(bind, "engine", bind)
        version = session.connection().exec_driver_sql(_VERSION_SQL).scalar()
        pool = self._pools.get(engine)
        if pool is not None and version is not None and pool.version == version:
            return pool
        with self._lock:  # one thread loads; the others wait and take its result
            pool = self._pools.get(engine)
            if pool is not None and version is not None and pool.version == version:
                return pool
            pool = _load(session, version)
            if version is not None:  # no version row (a table emptied by hand): never reuse
                self._pools[engine] = pool
            return pool

    def last(self, session: Session) -> Pool | None:
        """The pool this process last built for the session's database, not checked (no read)."""
        bind: Any = session.get_bind()
        return self._pools.get(getattr(bind, "engine", bind))


_cache = _Cache()


def get(session: Session) -> Pool:
    """The pool for this session's database as its transaction sees it now (one version read).

    Call once per action and pass the pool down: a write earlier in the same transaction
    changes the version, so a later call sees it, but a pool held from before does not.
    """
    return _cache.get(session)


def last(session: Session) -> Pool | None:
    """The pool this process last built for this database, without reading the version: a guess
    the caller must check before acting on it (`get` returns the very same object while it is
    current). The one-statement booking checks it in its statement (`actions`, migration 0012).
    """
    return _cache.last(session)
