"""Pydantic shapes of catalogue entries: the API's bodies and the catalogue document's entries.

One shape per entity serves create, read and the document, because ids are natural keys;
`*Patch` shapes carry the fields an update may change.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from carepool.catalog.codes import ALL_TYPE_CODES, BED_FEATURES
from carepool.catalog.models import (
    ExceptionKind,
    GenderPolicy,
    InstitutionGrade,
    InstitutionKind,
    ResourceKind,
    ResourceStatus,
    ServiceCategory,
    StaffRole,
    WardKind,
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$"
EntityId = Annotated[
    str, Field(pattern=ID_PATTERN, description="Stable id: letters, digits, - and .")
]
DEFAULT_ANCHOR = date(2024, 1, 1)  # a Monday: weekly rules count days from Monday = 0


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a time zone (e.g. 2026-12-01T08:00:00+08:00)")
    return value.astimezone(UTC)


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True, use_enum_values=False)


class ConsortiumIn(_Shape):
    id: EntityId
    name: str = Field(min_length=1, max_length=200)
    name_zh: str = ""
    timezone: str = "Asia/Shanghai"


class DepartmentCodeIn(_Shape):
    code: str = Field(pattern=r"^\d{2}(\.\d{2})?$")
    name: str = Field(min_length=1)
    name_zh: str = Field(min_length=1)


class InstitutionIn(_Shape):
    id: EntityId
    name: str = Field(min_length=1, max_length=200)
    name_zh: str = ""
    kind: InstitutionKind
    grade: InstitutionGrade
    parent_id: EntityId | None = None
    address: str = ""
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    phone: str = ""


class InstitutionPatch(_Shape):
    name: str | None = None
    name_zh: str | None = None
    grade: InstitutionGrade | None = None
    parent_id: EntityId | None = None
    address: str | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    phone: str | None = None


class CampusIn(_Shape):
    id: EntityId
    institution_id: EntityId
    name: str = Field(min_length=1)
    name_zh: str = ""
    address: str = ""
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class CampusPatch(_Shape):
    name: str | None = None
    name_zh: str | None = None
    address: str | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class DepartmentIn(_Shape):
    id: EntityId
    institution_id: EntityId
    campus_id: EntityId
    code: str = Field(description="Standard department code from the consortium's code list")
    local_name: str = ""
    local_name_zh: str = ""


class DepartmentPatch(_Shape):
    code: str | None = None
    local_name: str | None = None
    local_name_zh: str | None = None


class WardIn(_Shape):
    id: EntityId
    institution_id: EntityId
    department_id: EntityId
    kind: WardKind
    name: str = Field(min_length=1)
    name_zh: str = ""
    building: str = ""
    floor: str = ""


class WardPatch(_Shape):
    kind: WardKind | None = None
    name: str | None = None
    name_zh: str | None = None
    building: str | None = None
    floor: str | None = None


class ResourceIn(_Shape):
    id: EntityId
    kind: ResourceKind
    type_code: str
    name: str = Field(min_length=1)
    name_zh: str = ""
    status: ResourceStatus = ResourceStatus.IN_SERVICE
    institution_id: EntityId
    campus_id: EntityId | None = None
    department_id: EntityId | None = None
    ward_id: EntityId | None = None
    room_id: EntityId | None = None
    gender_policy: GenderPolicy | None = None
    features: list[str] = Field(default_factory=list)
    capacity: int | None = Field(default=None, ge=0)
    role: StaffRole | None = None
    skill_level: int | None = Field(default=None, ge=0, le=9)
    specialties: list[str] = Field(default_factory=list)
    license_no: str = ""
    manufacturer: str = ""
    model: str = ""

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: list[str]) -> list[str]:
        unknown = [f for f in value if f not in BED_FEATURES]
        if unknown:
            raise ValueError(
                f"unknown feature(s) {', '.join(unknown)}; known: {', '.join(BED_FEATURES)}"
            )
        return sorted(set(value))

    @model_validator(mode="after")
    def _kind_rules(self) -> ResourceIn:
        kind_of_code = ALL_TYPE_CODES.get(self.type_code)
        if kind_of_code is None:
            raise ValueError(f"type_code {self.type_code!r} is not a standard resource type")
        if kind_of_code != self.kind.value:
            raise ValueError(
                f"type_code {self.type_code!r} is a {kind_of_code} type, not a {self.kind.value}"
            )
        if self.kind is ResourceKind.BED:
            if self.ward_id is None:
                raise ValueError("a bed needs ward_id")
            if self.gender_policy is None:
                raise ValueError("a bed needs gender_policy")
        elif self.gender_policy is not None or self.room_id is not None:
            raise ValueError("gender_policy and room_id apply to beds only")
        if self.kind is ResourceKind.ROOM and self.capacity is None:
            raise ValueError("a room needs capacity")
        if self.kind is ResourceKind.STAFF:
            if self.role is None or self.skill_level is None:
                raise ValueError("a staff member needs role and skill_level")
            if self.type_code != f"staff.{self.role.value}":
                raise ValueError(f"a {self.role.value} has type_code staff.{self.role.value}")
        elif self.role is not None:
            raise ValueError("role applies to staff only")
        return self


class ResourcePatch(_Shape):
    name: str | None = None
    name_zh: str | None = None
    status: ResourceStatus | None = None
    campus_id: EntityId | None = None
    department_id: EntityId | None = None
    ward_id: EntityId | None = None
    room_id: EntityId | None = None
    gender_policy: GenderPolicy | None = None
    features: list[str] | None = None
    capacity: int | None = Field(default=None, ge=0)
    skill_level: int | None = Field(default=None, ge=0, le=9)
    specialties: list[str] | None = None
    license_no: str | None = None
    manufacturer: str | None = None
    model: str | None = None


class CalendarRuleIn(_Shape):
    id: EntityId = Field(max_length=80)
    resource_id: EntityId
    label: str = "open"
    cycle_days: int = Field(default=7, ge=1, le=366)
    anchor: date = DEFAULT_ANCHOR
    days: list[int] = Field(min_length=1)
    start: time
    end: time
    valid_from: date | None = None
    valid_to: date | None = None

    @field_serializer("start", "end", when_used="json")
    def _hhmm(self, value: time) -> str:
        return value.strftime("%H:%M")

    @model_validator(mode="after")
    def _days_in_cycle(self) -> CalendarRuleIn:
        bad = [d for d in self.days if not 0 <= d < self.cycle_days]
        if bad:
            raise ValueError(f"days {bad} lie outside the cycle 0..{self.cycle_days - 1}")
        self.days = sorted(set(self.days))
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        if self.start == self.end:
            raise ValueError("start and end are equal; a 24-hour window is 00:00 to 00:00 next day")
        return self


class CalendarExceptionIn(_Shape):
    id: EntityId = Field(max_length=80)
    resource_id: EntityId
    kind: ExceptionKind
    start: AwareDatetime
    end: AwareDatetime
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> CalendarExceptionIn:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class RequirementIn(_Shape):
    kind: ResourceKind
    type_code: str | None = None
    role: StaffRole | None = None
    min_skill: int | None = Field(default=None, ge=0)
    specialty: str | None = None
    count: int = Field(default=1, ge=1, le=20)

    @model_validator(mode="after")
    def _consistent(self) -> RequirementIn:
        if self.type_code is not None and ALL_TYPE_CODES.get(self.type_code) != self.kind.value:
            raise ValueError(f"type_code {self.type_code!r} is not a {self.kind.value} type")
        if self.kind is not ResourceKind.STAFF and (self.role or self.min_skill is not None):
            raise ValueError("role and min_skill apply to staff requirements only")
        return self


class ServiceIn(_Shape):
    id: EntityId
    name: str = Field(min_length=1)
    name_zh: str = ""
    category: ServiceCategory
    department_code: str | None = None
    codes: dict[str, str] = Field(default_factory=dict)
    duration_min: int = Field(ge=1, le=24 * 60)
    preparation_min: int = Field(default=0, ge=0)
    turnover_min: int = Field(default=0, ge=0)
    price: Decimal = Field(ge=0, decimal_places=2)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    requirements: list[RequirementIn] = Field(min_length=1)
    offered_by: list[EntityId] = Field(default_factory=list)
    orderable_by_roles: list[str] = Field(default_factory=list)
    orderable_by_kinds: list[InstitutionKind] = Field(default_factory=list)

    @field_serializer("price", when_used="json")
    def _price(self, value: Decimal) -> str:
        return f"{value:.2f}"


class ServicePatch(_Shape):
    name: str | None = None
    name_zh: str | None = None
    duration_min: int | None = Field(default=None, ge=1, le=24 * 60)
    preparation_min: int | None = Field(default=None, ge=0)
    turnover_min: int | None = Field(default=None, ge=0)
    price: Decimal | None = Field(default=None, ge=0, decimal_places=2)
    requirements: list[RequirementIn] | None = None
    offered_by: list[EntityId] | None = None
    orderable_by_roles: list[str] | None = None
    orderable_by_kinds: list[InstitutionKind] | None = None


DOCUMENT_FORMAT = "carepool.catalog/1"


class CatalogDocument(_Shape):
    """The whole catalogue as one document; sections are applied in this order."""

    format: str = DOCUMENT_FORMAT
    consortium: ConsortiumIn
    department_codes: list[DepartmentCodeIn] = Field(default_factory=list)
    institutions: list[InstitutionIn] = Field(default_factory=list)
    campuses: list[CampusIn] = Field(default_factory=list)
    departments: list[DepartmentIn] = Field(default_factory=list)
    wards: list[WardIn] = Field(default_factory=list)
    resources: list[ResourceIn] = Field(default_factory=list)
    calendar_rules: list[CalendarRuleIn] = Field(default_factory=list)
    calendar_exceptions: list[CalendarExceptionIn] = Field(default_factory=list)
    services: list[ServiceIn] = Field(default_factory=list)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value != DOCUMENT_FORMAT:
            raise ValueError(f"unsupported format {value!r}; this version reads {DOCUMENT_FORMAT}")
        return value


class Page(BaseModel):
    """A page of a list: `items` plus what is needed to fetch the next."""

    items: list[Any]
    total: int
    limit: int
    offset: int
