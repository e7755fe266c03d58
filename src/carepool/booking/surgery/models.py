"""Tables of surgery cases.

A scheduled case owns one `ResourceClaim` (purpose surgery) per resource it needs: the theatre,
the surgeon and every other team member, all for the same block (preparation + expected
duration + turnover). The claims are the truth about who is busy; `team` on the case is the
readable copy (who fills which role).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carepool.booking.inpatient.models import Priority
from carepool.core.db import Base, JsonType, UtcDateTime, str_enum

SurgeryCaseId = str


class SurgeryStatus(enum.StrEnum):
    REQUESTED = "requested"
    SCHEDULED = "scheduled"
    IN_THEATRE = "in_theatre"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class SurgeryCase(Base):
    __tablename__ = "surgery_case"
    __table_args__ = (
        UniqueConstraint("requested_by", "idempotency_key", name="uq_surgery_case_idempotency"),
        CheckConstraint("expected_duration_min > 0", name="duration_positive"),
        Index("ix_surgery_case_member_start", "institution_id", "start_at"),
    )

    id: Mapped[SurgeryCaseId] = mapped_column(String(64), primary_key=True)
    # The member whose theatre and staff perform it.
    institution_id: Mapped[str] = mapped_column(ForeignKey("institution.id"), nullable=False)
    requester_institution_id: Mapped[str | None] = mapped_column(
        ForeignKey("institution.id"), index=True
    )
    requested_by: Mapped[str] = mapped_column(String(64), nullable=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_digest: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    patient_ref: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    # The registered patient (records' Patient id, `Patient/<id>` at /fhir); None on rows booked
    # before patients were checked (migration 0015), whose `patient_ref` is free text.
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    patient_name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    # The procedure: a service of category surgery; its requirements define the team.
    service_id: Mapped[str] = mapped_column(ForeignKey("service.id"), nullable=False, index=True)
    surgeon_id: Mapped[str] = mapped_column(ForeignKey("resource.id"), nullable=False, index=True)
    expected_duration_min: Mapped[int] = mapped_column(Integer, nullable=False)
    priority: Mapped[Priority] = mapped_column(str_enum(Priority, 12), nullable=False)
    # An inpatient stay the case belongs to (optional; no foreign key across sub-packages' rows).
    admission_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[SurgeryStatus] = mapped_column(
        str_enum(SurgeryStatus, 16), nullable=False, index=True
    )
    theatre_id: Mapped[str | None] = mapped_column(ForeignKey("resource.id"), index=True)
    # The operation itself; the claims cover [block_start_at, block_end_at).
    start_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    end_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    block_start_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    block_end_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # [{"resource_id", "role", "named"}]: who fills which role, theatre first.
    team: Mapped[list[dict[str, str | bool]]] = mapped_column(
        JsonType, nullable=False, default=list
    )
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    cancel_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
