"""Audit trail, shaped like FHIR AuditEvent: who did what to which entity, when, with what outcome.

Writes record before/after in the caller's transaction. Refusals are recorded in their own
transaction, so the record survives the rollback of the refused request.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from carepool.core.auth import Principal
from carepool.core.db import Base, JsonType, UtcDateTime, str_enum
from carepool.core.time import utcnow


class AuditAction(enum.StrEnum):
    """FHIR AuditEvent.action codes."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class AuditOutcome(enum.StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    FAILED = "failed"


class AuditRecord(Base):
    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, index=True)
    action: Mapped[AuditAction] = mapped_column(str_enum(AuditAction, 1), nullable=False)
    outcome: Mapped[AuditOutcome] = mapped_column(str_enum(AuditOutcome, 10), nullable=False)
    agent: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    agent_institution: Mapped[str | None] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(60), nullable=False)
    entity_id: Mapped[str | None] = mapped_column(String(200))
    entity_institution: Mapped[str | None] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(40), nullable=False, default="api")
    detail: Mapped[str] = mapped_column(Text, nullable=False, default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JsonType)


def record(
    session: Session,
    *,
    actor: Principal,
    action: AuditAction,
    entity_type: str,
    entity_id: str | None,
    entity_institution: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    detail: str = "",
    source: str = "api",
) -> AuditRecord:
    """Add an audit row to the caller's transaction."""
    row = AuditRecord(
        **row_values(
            actor=actor,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            entity_institution=entity_institution,
            before=before,
            after=after,
            outcome=outcome,
            detail=detail,
            source=source,
        )
    )
    session.add(row)
    return row


def row_values(
    *,
    actor: Principal,
    action: AuditAction,
    entity_type: str,
    entity_id: str | None,
    entity_institution: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    detail: str = "",
    source: str = "api",
) -> dict[str, Any]:
    """The column values of the audit row `record` adds (every column but `id`).

    `record` is built on it; so is the one-statement booking on PostgreSQL
    (`booking._fast`, migration 0012), which inserts these values itself.
    """
    return {
        "recorded_at": utcnow(),
        "action": action,
        "outcome": outcome,
        "agent": actor.username,
        "agent_institution": actor.institution_id,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "entity_institution": entity_institution,
        "source": source,
        "detail": detail,
        "before": before,
        "after": after,
    }


def record_refusal(
    factory: sessionmaker[Session],
    *,
    actor: Principal,
    action: AuditAction,
    entity_type: str,
    entity_id: str | None,
    entity_institution: str | None,
    detail: str,
    source: str = "api",
) -> None:
    """Record a refused attempt in a transaction of its own (the request itself rolls back)."""
    with factory() as session, session.begin():
        record(
            session,
            actor=actor,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            entity_institution=entity_institution,
            outcome=AuditOutcome.DENIED,
            detail=detail,
            source=source,
        )


def get_all(
    session: Session,
    *,
    entity_type: str | None = None,
    entity_id: str | None = None,
    agent: str | None = None,
    outcome: AuditOutcome | None = None,
    institution_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditRecord]:
    """Audit rows, newest first, filtered."""
    stmt = select(AuditRecord)
    if entity_type is not None:
        stmt = stmt.where(AuditRecord.entity_type == entity_type)
    if entity_id is not None:
        stmt = stmt.where(AuditRecord.entity_id == entity_id)
    if agent is not None:
        stmt = stmt.where(AuditRecord.agent == agent)
    if outcome is not None:
        stmt = stmt.where(AuditRecord.outcome == outcome)
    if institution_id is not None:
        stmt = stmt.where(AuditRecord.entity_institution == institution_id)
    stmt = stmt.order_by(AuditRecord.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(stmt))
