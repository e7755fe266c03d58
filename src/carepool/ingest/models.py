"""Tables of ingest: runs (a job with progress and counters) and the dead-letter store."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carepool.core.db import Base, JsonType, UtcDateTime, str_enum
from carepool.core.time import utcnow

RunId = str


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DeadLetterStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    DISCARDED = "discarded"


class IngestRun(Base):
    """One ingest job: who sent what for which member, how far it got, what became of it.

    Invariant, checked when the run ends: received = stored + duplicates + rejected.
    """

    __tablename__ = "ingest_run"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    actor: Mapped[str] = mapped_column(String(64), nullable=False)
    channel: Mapped[str] = mapped_column(String(20), nullable=False, default="cli")
    status: Mapped[RunStatus] = mapped_column(
        str_enum(RunStatus, 12), nullable=False, default=RunStatus.RUNNING
    )
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, nullable=False, default=list)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    received: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    stored: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rejected: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    stubs: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    by_kind: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    flags: Mapped[dict[str, int]] = mapped_column(JsonType, nullable=False, default=dict)
    # Parts of the input kept but not modelled, by type (`segment:AL1`, `resource:Claim`).
    unmodelled: Mapped[dict[str, int]] = mapped_column(JsonType, nullable=False, default=dict)
    # What the run noticed without rejecting anything (an empty input).
    warnings: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    # Progress for the API and the dashboard: bytes of input read so far, of how many.
    bytes_done: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    bytes_total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    units_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error: Mapped[str] = mapped_column(Text, nullable=False, default="")


class DeadLetter(Base):
    """A unit (message, resource, row) with at least one record that could not be stored.

    The same bytes from the same member are one dead letter however often they arrive
    (`occurrences` counts them); a retry feeds `raw` back through the same connector.
    """

    __tablename__ = "dead_letter"
    __table_args__ = (
        UniqueConstraint("institution_id", "format", "raw_hash", name="uq_dead_letter_raw"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    format: Mapped[str] = mapped_column(String(20), nullable=False)
    source: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    position: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    rejected: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    raw: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    raw_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    options: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    status: Mapped[DeadLetterStatus] = mapped_column(
        str_enum(DeadLetterStatus, 12), nullable=False, default=DeadLetterStatus.OPEN, index=True
    )
    occurrences: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    retry_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    retried_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolved_by_run: Mapped[str | None] = mapped_column(String(40))
