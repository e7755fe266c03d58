"""Reads of the catalogue: entity lookup, filtered lists, serialisation, export, availability."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carepool.catalog import calendar
from carepool.catalog.models import (
    CalendarException,
    CalendarRule,
    Campus,
    Consortium,
    Department,
    DepartmentCode,
    ExceptionKind,
    Institution,
    InstitutionKind,
    Resource,
    ResourceKind,
    ResourceStatus,
    Service,
    ServiceOffering,
    ServiceRequirement,
    StaffRole,
    Ward,
)
from carepool.catalog.schemas import (
    CalendarExceptionIn,
    CalendarRuleIn,
    CampusIn,
    CampusPatch,
    CatalogDocument,
    ConsortiumIn,
    DepartmentCodeIn,
    DepartmentIn,
    DepartmentPatch,
    InstitutionIn,
    InstitutionPatch,
    ResourceIn,
    ResourcePatch,
    ServiceIn,
    ServicePatch,
    WardIn,
    WardPatch,
    _Shape,
)
from carepool.core.db import Base
from carepool.core.errors import FieldError, InvalidInput, NotFound


@dataclass(frozen=True)
class EntityKind:
    """How the generic read and write paths handle one kind of catalogue entry."""

    name: str
    section: str  # the catalogue document's section
    model: type[Base]
    shape: type[_Shape]
    patch: type[_Shape] | None
    key: str = "id"
    # Which member owns an entry (None: the consortium); used for access checks and audit.
    owner: Callable[[Session, Any], str | None] = lambda _s, obj: obj.institution_id
    # Fields that must name an existing row: field -> kind name.
    refs: tuple[tuple[str, str], ...] = ()


def _resource_owner(session: Session, obj: Any) -> str | None:
    resource = session.get(Resource, obj.resource_id)
    return resource.institution_id if resource else None


ENTITIES: dict[str, EntityKind] = {
    k.name: k
    for k in (
        EntityKind(
            "consortium", "consortium", Consortium, ConsortiumIn, None, owner=lambda _s, _o: None
        ),
        EntityKind(
            "department_code",
            "department_codes",
            DepartmentCode,
            DepartmentCodeIn,
            None,
            key="code",
            owner=lambda _s, _o: None,
        ),
        EntityKind(
            "institution",
            "institutions",
            Institution,
            InstitutionIn,
            InstitutionPatch,
            owner=lambda _s, obj: obj.id,
            refs=(("parent_id", "institution"),),
        ),
        EntityKind(
            "campus",
            "campuses",
            Campus,
            CampusIn,
            CampusPatch,
            refs=(("institution_id", "institution"),),
        ),
        EntityKind(
            "department",
            "departments",
            Department,
            DepartmentIn,
            DepartmentPatch,
            refs=(
                ("institution_id", "institution"),
                ("campus_id", "campus"),
                ("code", "department_code"),
            ),
        ),
        EntityKind(
            "ward",
            "wards",
            Ward,
            WardIn,
            WardPatch,
            refs=(("institution_id", "institution"), ("department_id", "department")),
        ),
        EntityKind(
            "resource",
            "resources",
            Resource,
            ResourceIn,
            ResourcePatch,
            refs=(
                ("institution_id", "institution"),
                ("campus_id", "campus"),
                ("department_id", "department"),
                ("ward_id", "ward"),
                ("room_id", "resource"),
            ),
        ),
        EntityKind(
            "calendar_rule",
            "calendar_rules",
            CalendarRule,
            CalendarRuleIn,
            None,
            owner=_resource_owner,
            refs=(("resource_id", "resource"),),
        ),
        EntityKind(
            "calendar_exception",
            "calendar_exceptions",
            CalendarException,
            CalendarExceptionIn,
            None,
            owner=_resource_owner,
            refs=(("resource_id", "resource"),),
        ),
        EntityKind(
            "service",
            "services",
            Service,
            ServiceIn,
            ServicePatch,
            owner=lambda _s, _o: None,
            refs=(("department_code", "department_code"),),
        ),
    )
}


def entity(name: str) -> EntityKind:
    return ENTITIES[name]


def get(session: Session, *, kind: str, id: str) -> Any:
    """One entry by id; `NotFound` if absent."""
    ek = ENTITIES[kind]
    obj = session.get(ek.model, id)
    if obj is None:
        raise NotFound(kind.replace("_", " "), id)
    return obj


def check_filters(kind: str, filters: dict[str, Any]) -> None:
    """Refuse filter values that can match nothing for a reason the caller should hear: an
    empty value, or a value outside an enumerated column's members (`InvalidInput`)."""
    model: Any = ENTITIES[kind].model
    errors = []
    for name, value in filters.items():
        if value is None:
            continue
        if value == "":
            errors.append(FieldError(f"query:{name}", "empty: give a value or leave it out"))
            continue
        column_type = getattr(getattr(model, name), "type", None)
        members = getattr(column_type, "enums", None)
        if members and value not in members:
            errors.append(
                FieldError(f"query:{name}", f"{value!r} is not one of {', '.join(members)}")
            )
    if errors:
        raise InvalidInput(f"{len(errors)} filter value(s) cannot be used", errors)


def get_all(
    session: Session,
    *,
    kind: str,
    filters: dict[str, Any] | None = None,
    search: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Any], int]:
    """A page of entries of `kind` matching equality `filters` (None values ignored), by id."""
    ek = ENTITIES[kind]
    model: Any = ek.model
    stmt = select(model)
    for field, value in (filters or {}).items():
        if value is not None:
            stmt = stmt.where(getattr(model, field) == value)
    if search:
        pattern = f"%{search.lower()}%"
        name_cols = [
            c for c in ("name", "name_zh", "local_name", "local_name_zh") if hasattr(model, c)
        ]
        if name_cols:
            from sqlalchemy import or_

            stmt = stmt.where(
                or_(*[func.lower(getattr(model, c)).like(pattern) for c in name_cols])
            )
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    stmt = stmt.order_by(getattr(model, ek.key)).limit(limit).offset(offset)
    return list(session.scalars(stmt)), int(total)


def to_dict(kind: str, obj: Any) -> dict[str, Any]:
    """An entry as its document / API shape (JSON-ready)."""
    ek = ENTITIES[kind]
    if kind == "service":
        data = {c: getattr(obj, c) for c in ServiceIn.model_fields if hasattr(obj, c)}
        data["requirements"] = [
            {
                "kind": r.kind,
                "type_code": r.type_code,
                "role": r.role,
                "min_skill": r.min_skill,
                "specialty": r.specialty,
                "count": r.count,
            }
            for r in obj.requirements
        ]
        data["offered_by"] = [o.institution_id for o in obj.offerings]
        return ServiceIn.model_validate(data).model_dump(mode="json")
    return ek.shape.model_validate(obj).model_dump(mode="json")


def owner_of(session: Session, kind: str, obj: Any) -> str | None:
    return ENTITIES[kind].owner(session, obj)


def export_document(session: Session) -> dict[str, Any]:
    """The whole catalogue as one document, deterministic (sections in order, entries by id)."""
    consortium = session.scalars(select(Consortium).order_by(Consortium.id)).first()
    if consortium is None:
        raise NotFound("consortium", "(none)")
    doc: dict[str, Any] = {
        "format": CatalogDocument.model_fields["format"].default,
        "consortium": to_dict("consortium", consortium),
    }
    for name, ek in ENTITIES.items():
        if name == "consortium":
            continue
        model: Any = ek.model
        rows = session.scalars(select(model).order_by(getattr(model, ek.key)))
        doc[ek.section] = [to_dict(name, row) for row in rows]
    return doc


def counts(session: Session) -> dict[str, int]:
    """Number of entries per kind (and resources per kind), for landing pages and summaries."""
    out: dict[str, int] = {}
    for name, ek in ENTITIES.items():
        out[name] = int(session.scalar(select(func.count()).select_from(ek.model)) or 0)
    for kind, n in session.execute(
        select(Resource.kind, func.count()).group_by(Resource.kind)
    ).all():
        out[f"resource.{kind.value if hasattr(kind, 'value') else kind}"] = int(n)
    return out


def consortium_timezone(session: Session) -> str:
    """The consortium's time zone (read once per session)."""
    if "consortium_tz" not in session.info:
        tz = session.scalar(select(Consortium.timezone).limit(1))
        session.info["consortium_tz"] = tz or "Asia/Shanghai"
    return str(session.info["consortium_tz"])


def calendar_rule(row: Any) -> calendar.Rule:
    """A stored calendar rule (a `CalendarRule` or a row of its columns) as the calendar's rule."""
    return calendar.Rule(
        cycle_days=row.cycle_days,
        anchor=row.anchor,
        days=tuple(row.days),
        start=row.start,
        end=row.end,
        label=row.label,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
    )


def availability(
    session: Session, *, resource_id: str, start: datetime, end: datetime
) -> list[calendar.Interval]:
    """Computed availability of one resource over [start, end) in UTC."""
    resource: Resource = get(session, kind="resource", id=resource_id)
    rules = session.scalars(select(CalendarRule).where(CalendarRule.resource_id == resource_id))
    exceptions = session.scalars(
        select(CalendarException).where(
            CalendarException.resource_id == resource_id,
            CalendarException.end > start,
            CalendarException.start < end,
        )
    )
    return calendar.availability(
        rules=[calendar_rule(r) for r in rules],
        exceptions=[
            calendar.Exception_(start=x.start, end=x.end, adds=x.kind is ExceptionKind.EXTRA)
            for x in exceptions
        ],
        start=start,
        end=end,
        tz=consortium_timezone(session),
        in_service=resource.status is ResourceStatus.IN_SERVICE,
    )


# --- A plain-data picture of what booking reads, loaded in a few queries (cached by callers) ---


@dataclass(frozen=True)
class ResourceView:
    id: str
    kind: ResourceKind
    type_code: str
    status: ResourceStatus
    institution_id: str
    campus_id: str | None
    role: StaffRole | None
    skill_level: int | None
    specialties: tuple[str, ...]


@dataclass(frozen=True)
class RequirementView:
    kind: ResourceKind
    type_code: str | None
    role: StaffRole | None
    min_skill: int | None
    specialty: str | None
    count: int


@dataclass(frozen=True)
class ServiceView:
    id: str
    duration_min: int
    preparation_min: int
    turnover_min: int
    orderable_by_roles: tuple[str, ...]
    orderable_by_kinds: tuple[str, ...]
    requirements: tuple[RequirementView, ...]
    offered_by: tuple[str, ...]  # institution ids, sorted


@dataclass(frozen=True)
class CatalogSnapshot:
    """Services, resources, calendars and members as plain data, for readers that cache them.

    Holding one is safe only while the catalogue is unchanged; `booking` keeps one per process
    and checks a version row on every request (docs/decisions/0009-booking-caches.md).
    """

    timezone: str
    institution_kinds: dict[str, InstitutionKind]
    services: dict[str, ServiceView]
    resources: dict[str, ResourceView]  # in id order
    rules: dict[str, tuple[calendar.Rule, ...]]
    exceptions: dict[str, tuple[calendar.Exception_, ...]]


def load_snapshot(session: Session) -> CatalogSnapshot:
    """The catalogue as `CatalogSnapshot`, in seven queries (no ORM objects)."""
    tz = session.scalar(select(Consortium.timezone).order_by(Consortium.id).limit(1))
    kinds: dict[str, InstitutionKind] = {
        id_: kind for id_, kind in session.execute(select(Institution.id, Institution.kind))
    }
    reqs: dict[str, list[RequirementView]] = defaultdict(list)
    for row in session.execute(
        select(
            ServiceRequirement.service_id,
            ServiceRequirement.kind,
            ServiceRequirement.type_code,
            ServiceRequirement.role,
            ServiceRequirement.min_skill,
            ServiceRequirement.specialty,
            ServiceRequirement.count,
        ).order_by(ServiceRequirement.service_id, ServiceRequirement.position)
    ):
        reqs[row[0]].append(RequirementView(*row[1:]))
    offered: dict[str, list[str]] = defaultdict(list)
    for service_id, institution_id in session.execute(
        select(ServiceOffering.service_id, ServiceOffering.institution_id).order_by(
            ServiceOffering.service_id, ServiceOffering.institution_id
        )
    ):
        offered[service_id].append(institution_id)
    services = {
        sid: ServiceView(
            id=sid,
            duration_min=duration,
            preparation_min=prep,
            turnover_min=turnover,
            orderable_by_roles=tuple(roles or ()),
            orderable_by_kinds=tuple(by_kinds or ()),
            requirements=tuple(reqs.get(sid, ())),
            offered_by=tuple(offered.get(sid, ())),
        )
        for sid, duration, prep, turnover, roles, by_kinds in session.execute(
            select(
                Service.id,
                Service.duration_min,
                Service.preparation_min,
                Service.turnover_min,
                Service.orderable_by_roles,
                Service.orderable_by_kinds,
            )
        )
    }
    resources = {
        row[0]: ResourceView(*row[:8], specialties=tuple(row[8] or ()))
        for row in session.execute(
            select(
                Resource.id,
                Resource.kind,
                Resource.type_code,
                Resource.status,
                Resource.institution_id,
                Resource.campus_id,
                Resource.role,
                Resource.skill_level,
                Resource.specialties,
            ).order_by(Resource.id)
        )
    }
    rules: dict[str, list[calendar.Rule]] = defaultdict(list)
    for r in session.execute(
        select(
            CalendarRule.resource_id,
            CalendarRule.cycle_days,
            CalendarRule.anchor,
            CalendarRule.days,
            CalendarRule.start,
            CalendarRule.end,
            CalendarRule.label,
            CalendarRule.valid_from,
            CalendarRule.valid_to,
        ).order_by(CalendarRule.resource_id, CalendarRule.id)
    ):
        rules[r.resource_id].append(calendar_rule(r))
    exceptions: dict[str, list[calendar.Exception_]] = defaultdict(list)
    for resource_id, start, end, kind in session.execute(
        select(
            CalendarException.resource_id,
            CalendarException.start,
            CalendarException.end,
            CalendarException.kind,
        ).order_by(CalendarException.resource_id, CalendarException.start)
    ):
        exceptions[resource_id].append(
            calendar.Exception_(start=start, end=end, adds=kind is ExceptionKind.EXTRA)
        )
    return CatalogSnapshot(
        timezone=tz or "Asia/Shanghai",
        institution_kinds=kinds,
        services=services,
        resources=resources,
        rules={k: tuple(v) for k, v in rules.items()},
        exceptions={k: tuple(v) for k, v in exceptions.items()},
    )
