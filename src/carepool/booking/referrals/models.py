"""The referral table: one patient sent from one member to another, and where it stands.

requested -> accepted | declined;  accepted -> booked (an appointment at the receiving member);
booked -> attended (the appointment was fulfilled) -> report_returned;  booked -> accepted
again when the appointment is cancelled or missed;  requested | accepted | booked -> cancelled.
Rows carry a version counter: two members changing one referral at once cannot both win.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carepool.core.db import Base, JsonType, UtcDateTime, str_enum

ReferralId = str


class Priority(enum.StrEnum):
    """FHIR request-priority codes; orders and referrals share them."""

    ROUTINE = "routine"
    URGENT = "urgent"
    ASAP = "asap"
    STAT = "stat"


class ReferralStatus(enum.StrEnum):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    BOOKED = "booked"
    ATTENDED = "attended"
    REPORT_RETURNED = "report_returned"
    CANCELLED = "cancelled"


class Referral(Base):
    __tablename__ = "referral"
    __table_args__ = (
        UniqueConstraint("referred_by", "idempotency_key", name="uq_referral_idempotency"),
        CheckConstraint(
            "service_id IS NOT NULL OR department_code IS NOT NULL OR staff_id IS NOT NULL",
            name="referral_target",
        ),
        CheckConstraint("from_institution_id <> to_institution_id", name="referral_other_member"),
        Index("ix_referral_from_status", "from_institution_id", "status"),
        Index("ix_referral_to_status", "to_institution_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_ref: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    # The registered patient (records' Patient id, `Patient/<id>` at /fhir); None on rows booked
    # before patients were checked (migration 0015), whose `patient_ref` is free text.
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    patient_name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    # The referring member and clinician.
    from_institution_id: Mapped[str] = mapped_column(ForeignKey("institution.id"), nullable=False)
    referred_by: Mapped[str] = mapped_column(String(64), nullable=False)
    # The receiving member and what is asked of it: a service, a department, a staff member.
    to_institution_id: Mapped[str] = mapped_column(ForeignKey("institution.id"), nullable=False)
    service_id: Mapped[str | None] = mapped_column(ForeignKey("service.id"))
    department_code: Mapped[str | None] = mapped_column(ForeignKey("department_code.code"))
    staff_id: Mapped[str | None] = mapped_column(ForeignKey("resource.id"))
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    priority: Mapped[Priority] = mapped_column(str_enum(Priority, 10), nullable=False)
    status: Mapped[ReferralStatus] = mapped_column(
        str_enum(ReferralStatus, 20), nullable=False, index=True
    )
    # The receiver's answer: a note on acceptance, the reason of a decline.
    decision_note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # The window in which the receiver lets the referrer book (null: any time).
    book_from: Mapped[datetime | None] = mapped_column(UtcDateTime())
    book_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    appointment_id: Mapped[str | None] = mapped_column(ForeignKey("appointment.id"), index=True)
    report_ref: Mapped[str | None] = mapped_column(String(500))
    report_text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    cancel_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_digest: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    # Every step: [{"status", "at", "by", "note"}], oldest first (what the referrer follows).
    history: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, nullable=False, default=list)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)

    __mapper_args__ = {"version_id_col": version}
