"""Tables of the Process Service Center: resource claims, appointments, quotas and policies.

A `ResourceClaim` is the one thing that makes a resource busy: appointments, admissions and
surgery cases all claim resource time through it, and the database refuses two active claims on
the same resource lane whose times overlap (an exclusion constraint on PostgreSQL, triggers on
SQLite; migration 0002).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from carepool.core.db import Base, JsonType, UtcDateTime, str_enum

AppointmentId = str


class ClaimPurpose(enum.StrEnum):
    APPOINTMENT = "appointment"
    ADMISSION = "admission"
    SURGERY = "surgery"
    BLOCK = "block"


class AppointmentStatus(enum.StrEnum):
    HELD = "held"
    BOOKED = "booked"
    ARRIVED = "arrived"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    NOSHOW = "noshow"


class ResourceClaim(Base):
    """Resource time taken by someone; active claims of one resource lane never overlap."""

    __tablename__ = "resource_claim"
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="claim_positive"),
        CheckConstraint("lane >= 0", name="lane_non_negative"),
        Index("ix_resource_claim_lookup", "resource_id", "start_at", "end_at"),
        # "Live claims of these resources that end after t": bounded by the future, not by
        # the history a busy scanner piles up (the lookup index above scans all past claims).
        Index(
            "ix_resource_claim_live",
            "resource_id",
            "end_at",
            postgresql_where=text("active"),
            sqlite_where=text("active"),
        ),
        # Holds that may have lapsed, found by every booking without scanning bookings.
        Index(
            "ix_resource_claim_holds",
            "resource_id",
            "expires_at",
            postgresql_where=text("active AND expires_at IS NOT NULL"),
            sqlite_where=text("active AND expires_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    resource_id: Mapped[str] = mapped_column(ForeignKey("resource.id"), nullable=False)
    # Overbooking: a service may allow extra parallel bookings; each takes its own lane.
    lane: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    start_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    end_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    purpose: Mapped[ClaimPurpose] = mapped_column(str_enum(ClaimPurpose, 20), nullable=False)
    owner_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # A hold's claim lapses at this time; booking it clears the expiry.
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Appointment(Base):
    __tablename__ = "appointment"
    __table_args__ = (
        UniqueConstraint("requested_by", "idempotency_key", name="uq_appointment_idempotency"),
        CheckConstraint("end_at > start_at", name="appointment_positive"),
        Index("ix_appointment_member_start", "institution_id", "start_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("service.id"), nullable=False, index=True)
    # The member that performs the service.
    institution_id: Mapped[str] = mapped_column(ForeignKey("institution.id"), nullable=False)
    # The member that asked for it (quotas, and who may see the appointment).
    requester_institution_id: Mapped[str | None] = mapped_column(
        ForeignKey("institution.id"), index=True
    )
    requested_by: Mapped[str] = mapped_column(String(64), nullable=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    patient_ref: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    # The registered patient (records' Patient id, `Patient/<id>` at /fhir); None on rows booked
    # before patients were checked (migration 0015), whose `patient_ref` is free text.
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    patient_name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    referral_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[AppointmentStatus] = mapped_column(
        str_enum(AppointmentStatus, 20), nullable=False, index=True
    )
    start_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    end_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    hold_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resource_ids: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    quota_id: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    cancel_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    request_digest: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class PatientLane(enum.StrEnum):
    """What of a patient's time a booking takes: a visit (appointment, surgery) or a stay."""

    VISIT = "visit"
    STAY = "stay"


class PatientClaim(Base):
    """A patient's own time taken by a booking; active exclusive claims of one patient never clash.

    Two claims of one patient clash when they overlap and are in the same lane (two visits, two
    beds) or are in different lanes at different members (an exam elsewhere during a stay). The
    database refuses a clash (PostgreSQL exclusion constraints; SQLite triggers under
    `BEGIN IMMEDIATE`; migration 0015, decision 0013). `patient_key` is the patient's person in
    the index when linked, else the patient record, so a person's records at two members share
    one time line.
    """

    __tablename__ = "patient_claim"
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="patient_claim_positive"),
        Index(
            "ix_patient_claim_live",
            "patient_key",
            "end_at",
            postgresql_where=text("active"),
            sqlite_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    patient_key: Mapped[str] = mapped_column(String(64), nullable=False)
    patient_id: Mapped[str] = mapped_column(String(64), nullable=False)
    lane: Mapped[PatientLane] = mapped_column(str_enum(PatientLane, 10), nullable=False)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False)
    start_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    end_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    purpose: Mapped[ClaimPurpose] = mapped_column(str_enum(ClaimPurpose, 20), nullable=False)
    owner_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # False: the service's policy lets it overlap anything (`allow_patient_overlap`).
    exclusive: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class BookingPolicy(Base):
    """Per-service booking rules: how long a hold lasts, overbooking, slot grid, notice."""

    __tablename__ = "booking_policy"

    service_id: Mapped[str] = mapped_column(ForeignKey("service.id"), primary_key=True)
    hold_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=10)
    # Extra parallel bookings allowed on each resource (no-show compensation); 0 = none.
    overbook_lanes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    slot_step_minutes: Mapped[int | None] = mapped_column(Integer)
    min_notice_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # The service does not take the patient's own time (a lab draw during a stay or a visit):
    # its patient claims are kept but never refuse, nor are refused (decision 0013).
    allow_patient_overlap: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )


class Quota(Base):
    """A share of a member's capacity for a service kept for some requesters until a deadline.

    Example: 30 % of the county hospital's CT time is kept for village clinics and township
    centres until 48 hours before; after that anyone may book it.
    """

    __tablename__ = "booking_quota"
    __table_args__ = (CheckConstraint("share > 0 AND share <= 1", name="share_range"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("service.id"), nullable=False, index=True)
    institution_id: Mapped[str] = mapped_column(ForeignKey("institution.id"), nullable=False)
    reserved_for_kinds: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    reserved_for_institutions: Mapped[list[str]] = mapped_column(
        JsonType, nullable=False, default=list
    )
    share: Mapped[float] = mapped_column(Float, nullable=False)
    release_hours: Mapped[int] = mapped_column(Integer, nullable=False, default=48)


class QuotaUsage(Base):
    """Minutes of one day's capacity used by requesters outside a quota's group.

    Updated with a guarded `UPDATE ... SET used = used + m WHERE used + m <= limit`, so two
    concurrent bookings cannot both take the last minutes.
    """

    __tablename__ = "booking_quota_usage"
    __table_args__ = (CheckConstraint("used_minutes >= 0", name="used_non_negative"),)

    quota_id: Mapped[str] = mapped_column(
        ForeignKey("booking_quota.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # local date, ISO
    used_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    limit_minutes: Mapped[int] = mapped_column(Integer, nullable=False)


class CacheVersion(Base):
    """One row whose `version` changes whenever data the booking pool caches per process changes.

    Triggers (migration 0010) on the catalogue tables the pool reads (consortium, institutions,
    resources, calendars, services) and on booking policies and quotas give `version` a new
    value in the writing transaction, whatever code or SQL wrote; each booking request reads it
    once and reuses its process's cached copy only while it matches (decision 0009).
    """

    __tablename__ = "booking_cache_version"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)
