"""Tables of the Product Capability Center: organisations, resource elements, calendars, services.

Ids are short, stable, human-chosen strings (`ch-east-icu-b03`): they are the keys of the
catalogue document, FHIR resource ids and API path segments all at once.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from carepool.core.db import Base, JsonType, UtcDateTime, str_enum


class InstitutionKind(enum.StrEnum):
    GENERAL_HOSPITAL = "general_hospital"
    BRANCH_HOSPITAL = "branch_hospital"
    TOWNSHIP_HEALTH_CENTRE = "township_health_centre"
    VILLAGE_CLINIC = "village_clinic"


class InstitutionGrade(enum.StrEnum):
    """Hospital grading (三级甲等 = 3A ...); clinics are `unrated`."""

    G3A = "3A"
    G3B = "3B"
    G2A = "2A"
    G2B = "2B"
    G1 = "1"
    UNRATED = "unrated"


class WardKind(enum.StrEnum):
    GENERAL = "general"
    ICU = "icu"
    DAY_SURGERY = "day_surgery"
    EMERGENCY = "emergency"
    OUTPATIENT = "outpatient"
    THEATRE_SUITE = "theatre_suite"
    IMAGING = "imaging"
    LABORATORY = "laboratory"


class ResourceKind(enum.StrEnum):
    BED = "bed"
    ROOM = "room"
    THEATRE = "theatre"
    MODALITY = "modality"
    LAB_SECTION = "lab_section"
    ANALYSER = "analyser"
    STAFF = "staff"


class ResourceStatus(enum.StrEnum):
    IN_SERVICE = "in_service"
    MAINTENANCE = "maintenance"
    CLOSED = "closed"


class GenderPolicy(enum.StrEnum):
    """Who may lie in a bed: anyone, one sex only, or the same sex as the room's other patients."""

    MIXED = "mixed"
    FEMALE = "female"
    MALE = "male"
    SAME_SEX_ROOM = "same_sex_room"


class StaffRole(enum.StrEnum):
    SURGEON = "surgeon"
    ANAESTHETIST = "anaesthetist"
    PHYSICIAN = "physician"
    NURSE = "nurse"
    TECHNICIAN = "technician"


class ExceptionKind(enum.StrEnum):
    MAINTENANCE = "maintenance"
    CLOSURE = "closure"
    LEAVE = "leave"
    EXTRA = "extra"  # adds time (an extra session or shift)


class ServiceCategory(enum.StrEnum):
    CONSULTATION = "consultation"
    IMAGING = "imaging"
    LAB = "lab"
    PROCEDURE = "procedure"
    SURGERY = "surgery"
    ADMISSION = "admission"


class Consortium(Base):
    """The consortium this deployment serves (one row): its name and local time zone."""

    __tablename__ = "consortium"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    name_zh: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, default="Asia/Shanghai")


class DepartmentCode(Base):
    __tablename__ = "department_code"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    name_zh: Mapped[str] = mapped_column(String(200), nullable=False)


class Institution(Base):
    __tablename__ = "institution"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    name_zh: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    kind: Mapped[InstitutionKind] = mapped_column(str_enum(InstitutionKind), nullable=False)
    grade: Mapped[InstitutionGrade] = mapped_column(str_enum(InstitutionGrade), nullable=False)
    # The member that leads this one (a village clinic's township centre, a branch's hospital).
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("institution.id"), index=True)
    address: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    phone: Mapped[str] = mapped_column(String(40), nullable=False, default="")


class Campus(Base):
    __tablename__ = "campus"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    institution_id: Mapped[str] = mapped_column(
        ForeignKey("institution.id"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    name_zh: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    address: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)


class Department(Base):
    __tablename__ = "department"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    institution_id: Mapped[str] = mapped_column(
        ForeignKey("institution.id"), nullable=False, index=True
    )
    campus_id: Mapped[str] = mapped_column(ForeignKey("campus.id"), nullable=False, index=True)
    code: Mapped[str] = mapped_column(
        ForeignKey("department_code.code"), nullable=False, index=True
    )
    # The member's own names for it ("心内科", "Cardio"): what its staff and feeds call it.
    local_name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    local_name_zh: Mapped[str] = mapped_column(String(200), nullable=False, default="")


class Ward(Base):
    __tablename__ = "ward"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    institution_id: Mapped[str] = mapped_column(
        ForeignKey("institution.id"), nullable=False, index=True
    )
    department_id: Mapped[str] = mapped_column(
        ForeignKey("department.id"), nullable=False, index=True
    )
    kind: Mapped[WardKind] = mapped_column(str_enum(WardKind), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    name_zh: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    building: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    floor: Mapped[str] = mapped_column(String(20), nullable=False, default="")


class Resource(Base):
    """A standard resource element. One table for every kind, so bookings reference one key."""

    __tablename__ = "resource"
    __table_args__ = (
        CheckConstraint("capacity IS NULL OR capacity >= 0", name="capacity_non_negative"),
        CheckConstraint("skill_level IS NULL OR skill_level >= 0", name="skill_non_negative"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[ResourceKind] = mapped_column(str_enum(ResourceKind), nullable=False, index=True)
    type_code: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    name_zh: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    status: Mapped[ResourceStatus] = mapped_column(
        str_enum(ResourceStatus), nullable=False, default=ResourceStatus.IN_SERVICE
    )
    institution_id: Mapped[str] = mapped_column(
        ForeignKey("institution.id"), nullable=False, index=True
    )
    campus_id: Mapped[str | None] = mapped_column(ForeignKey("campus.id"), index=True)
    department_id: Mapped[str | None] = mapped_column(ForeignKey("department.id"), index=True)
    ward_id: Mapped[str | None] = mapped_column(ForeignKey("ward.id"), index=True)
    # A bed's room.
    room_id: Mapped[str | None] = mapped_column(ForeignKey("resource.id"), index=True)
    # Beds.
    gender_policy: Mapped[GenderPolicy | None] = mapped_column(str_enum(GenderPolicy))
    features: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    # Rooms: number of beds or places.
    capacity: Mapped[int | None] = mapped_column(Integer)
    # Staff.
    role: Mapped[StaffRole | None] = mapped_column(str_enum(StaffRole))
    skill_level: Mapped[int | None] = mapped_column(Integer)
    specialties: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    license_no: Mapped[str] = mapped_column(String(40), nullable=False, default="")
    # Devices.
    manufacturer: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    model: Mapped[str] = mapped_column(String(100), nullable=False, default="")


class CalendarRule(Base):
    """A repeating window in the institution's local time: opening hours or a shift pattern.

    Applies on dates whose position `(date - anchor) mod cycle_days` is in `days`: a weekly rule
    has cycle 7 and a Monday anchor (0 = Monday); a rotating roster has its own cycle.
    An `end` at or before `start` runs past midnight into the next day.
    """

    __tablename__ = "calendar_rule"
    __table_args__ = (CheckConstraint("cycle_days >= 1", name="cycle_positive"),)

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    resource_id: Mapped[str] = mapped_column(
        ForeignKey("resource.id", ondelete="CASCADE"), nullable=False, index=True
    )
    label: Mapped[str] = mapped_column(String(40), nullable=False, default="open")
    cycle_days: Mapped[int] = mapped_column(Integer, nullable=False, default=7)
    anchor: Mapped[date] = mapped_column(Date, nullable=False)
    days: Mapped[list[int]] = mapped_column(JsonType, nullable=False)
    start: Mapped[time] = mapped_column(Time, nullable=False)
    end: Mapped[time] = mapped_column(Time, nullable=False)
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)


class CalendarException(Base):
    """A one-off change: maintenance, closure or leave removes time; `extra` adds it."""

    __tablename__ = "calendar_exception"
    __table_args__ = (CheckConstraint('"end" > start', name="end_after_start"),)

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    resource_id: Mapped[str] = mapped_column(
        ForeignKey("resource.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[ExceptionKind] = mapped_column(str_enum(ExceptionKind), nullable=False)
    start: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    end: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")


class Service(Base):
    """A service product: what it needs, how long it takes, what it costs, who offers it."""

    __tablename__ = "service"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    name_zh: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    category: Mapped[ServiceCategory] = mapped_column(str_enum(ServiceCategory), nullable=False)
    department_code: Mapped[str | None] = mapped_column(ForeignKey("department_code.code"))
    # Codes in external systems (LOINC for lab panels, local charge codes, ...).
    codes: Mapped[dict[str, str]] = mapped_column(JsonType, nullable=False, default=dict)
    duration_min: Mapped[int] = mapped_column(Integer, nullable=False)
    preparation_min: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    turnover_min: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="CNY")
    orderable_by_roles: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    orderable_by_kinds: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)

    requirements: Mapped[list[ServiceRequirement]] = relationship(
        back_populates="service",
        cascade="all, delete-orphan",
        order_by="ServiceRequirement.position",
    )
    offerings: Mapped[list[ServiceOffering]] = relationship(
        back_populates="service",
        cascade="all, delete-orphan",
        order_by="ServiceOffering.institution_id",
    )


class ServiceRequirement(Base):
    """One kind of resource element a service needs at once (e.g. 1 CT scanner, 1 technician)."""

    __tablename__ = "service_requirement"
    __table_args__ = (
        UniqueConstraint("service_id", "position", name="uq_service_requirement_position"),
        CheckConstraint("count >= 1", name="count_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[str] = mapped_column(
        ForeignKey("service.id", ondelete="CASCADE"), nullable=False, index=True
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[ResourceKind] = mapped_column(str_enum(ResourceKind), nullable=False)
    type_code: Mapped[str | None] = mapped_column(String(40))
    role: Mapped[StaffRole | None] = mapped_column(str_enum(StaffRole))
    min_skill: Mapped[int | None] = mapped_column(Integer)
    specialty: Mapped[str | None] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    service: Mapped[Service] = relationship(back_populates="requirements")


class ServiceOffering(Base):
    """A member that offers a service (optionally only at some campuses)."""

    __tablename__ = "service_offering"

    service_id: Mapped[str] = mapped_column(
        ForeignKey("service.id", ondelete="CASCADE"), primary_key=True
    )
    institution_id: Mapped[str] = mapped_column(ForeignKey("institution.id"), primary_key=True)

    service: Mapped[Service] = relationship(back_populates="offerings")
