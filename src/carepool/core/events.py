"""The transactional outbox: domain events written in the same transaction as the change.

Consumers read `event_outbox` in `id` order; an event exists if and only if its change committed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from carepool.core.db import Base, JsonType, UtcDateTime
from carepool.core.time import utcnow


class OutboxEvent(Base):
    __tablename__ = "event_outbox"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    type: Mapped[str] = mapped_column(String(80), nullable=False, index=True)
    entity_type: Mapped[str] = mapped_column(String(60), nullable=False)
    entity_id: Mapped[str] = mapped_column(String(120), nullable=False)
    institution_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)


def emit(
    session: Session,
    *,
    type: str,
    entity_type: str,
    entity_id: str,
    institution_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> OutboxEvent:
    """Queue an event in the caller's transaction; it becomes visible when that commits."""
    row = OutboxEvent(
        **row_values(
            type=type,
            entity_type=entity_type,
            entity_id=entity_id,
            institution_id=institution_id,
            payload=payload,
        )
    )
    session.add(row)
    return row


def row_values(
    *,
    type: str,
    entity_type: str,
    entity_id: str,
    institution_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The column values of the event `emit` queues (every column but `id`).

    `emit` is built on it; so is the one-statement booking on PostgreSQL
    (`booking._fast`, migration 0012), which inserts these values itself.
    """
    return {
        "occurred_at": utcnow(),
        "type": type,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "institution_id": institution_id,
        "payload": payload or {},
    }


def read_after(session: Session, *, after_id: int = 0, limit: int = 100) -> list[OutboxEvent]:
    """Events with id greater than `after_id`, oldest first (a consumer's cursor read)."""
    stmt = (
        select(OutboxEvent).where(OutboxEvent.id > after_id).order_by(OutboxEvent.id).limit(limit)
    )
    return list(session.scalars(stmt))
