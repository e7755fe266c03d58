"""The order table: a lab test or exam ordered at one member and performed at another (or the same).

placed -> routed (a performing member chosen) -> scheduled (optionally with an appointment) ->
in_progress -> completed (`result_ref` filled now or later by the data middle platform);
placed | routed | scheduled -> cancelled. Rows carry a version counter, like referrals.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carepool.booking.referrals.models import Priority
from carepool.core.db import Base, JsonType, UtcDateTime, str_enum

OrderId = str


class OrderStatus(enum.StrEnum):
    PLACED = "placed"
    ROUTED = "routed"
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Order(Base):
    __tablename__ = "service_order"
    __table_args__ = (
        UniqueConstraint("ordered_by", "idempotency_key", name="uq_service_order_idempotency"),
        Index("ix_service_order_ordering_status", "ordering_institution_id", "status"),
        Index("ix_service_order_performing_status", "performing_institution_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_ref: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    # The registered patient (records' Patient id, `Patient/<id>` at /fhir); None on rows booked
    # before patients were checked (migration 0015), whose `patient_ref` is free text.
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    patient_name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    service_id: Mapped[str] = mapped_column(ForeignKey("service.id"), nullable=False, index=True)
    ordering_institution_id: Mapped[str] = mapped_column(
        ForeignKey("institution.id"), nullable=False
    )
    ordered_by: Mapped[str] = mapped_column(String(64), nullable=False)
    clinician: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    priority: Mapped[Priority] = mapped_column(str_enum(Priority, 10), nullable=False)
    indication: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # The member the orderer picked (null: the pool chooses the nearest with capacity).
    target_institution_id: Mapped[str | None] = mapped_column(ForeignKey("institution.id"))
    performing_institution_id: Mapped[str | None] = mapped_column(ForeignKey("institution.id"))
    distance_km: Mapped[float | None] = mapped_column(Float)
    routing_note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    status: Mapped[OrderStatus] = mapped_column(
        str_enum(OrderStatus, 20), nullable=False, index=True
    )
    appointment_id: Mapped[str | None] = mapped_column(ForeignKey("appointment.id"), index=True)
    # A link to the result (a DiagnosticReport, an Observation bundle...); filled later.
    result_ref: Mapped[str | None] = mapped_column(String(500))
    result_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    cancel_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_digest: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    history: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, nullable=False, default=list)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)

    __mapper_args__ = {"version_id_col": version}
