"""Tables of data quality: runs with their results and scores, thresholds, feed schedules, alerts.

A run is a job (id, status, progress); each result row is one check for one member (`*` is the
whole consortium). Scores are stored per run, member and category so a scorecard over time is one
indexed read. The check definitions themselves live in code (`checks.py`); only their threshold
and on/off state may be overridden here, per check.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from carepool.core.db import Base, JsonType, UtcDateTime, str_enum
from carepool.core.time import utcnow

QualityRunId = str
ALL_MEMBERS = "*"


class QualityRunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AlertKind(enum.StrEnum):
    SCORE_DROP = "score-drop"
    FEED_LATE = "feed-late"
    MEMBER_STALE = "member-stale"


class AlertStatus(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class QualityRun(Base):
    """One run of the check suite over the store (all members, or one)."""

    __tablename__ = "quality_run"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # None: every member; else the member whose results the run keeps.
    institution_id: Mapped[str | None] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(64), nullable=False)
    channel: Mapped[str] = mapped_column(String(20), nullable=False, default="cli")
    status: Mapped[QualityRunStatus] = mapped_column(
        str_enum(QualityRunStatus, 12), nullable=False, default=QualityRunStatus.RUNNING
    )
    backend: Mapped[str] = mapped_column(String(20), nullable=False, default="")
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The time the checks measured against (timeliness); equal to started_at unless given.
    as_of: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    checks_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    checks_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    checks_failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Thresholds and parameters in force for this run (results stay readable if they change).
    settings: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    error: Mapped[str] = mapped_column(Text, nullable=False, default="")


class QualityResult(Base):
    """One check's outcome for one member of one run (`institution_id` `*`: the consortium)."""

    __tablename__ = "quality_result"
    __table_args__ = (
        UniqueConstraint("run_id", "check_id", "institution_id", name="uq_quality_result_key"),
        Index("ix_quality_result_member_check", "institution_id", "check_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(
        ForeignKey("quality_run.id", ondelete="CASCADE"), nullable=False, index=True
    )
    check_id: Mapped[str] = mapped_column(String(80), nullable=False)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False)
    category: Mapped[str] = mapped_column(String(20), nullable=False)
    subcategory: Mapped[str] = mapped_column(String(20), nullable=False, default="")
    target: Mapped[str] = mapped_column(String(40), nullable=False)
    severity: Mapped[str] = mapped_column(String(20), nullable=False)
    threshold: Mapped[float] = mapped_column(Float, nullable=False)
    failing: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    denominator: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    percent: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    passed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    sample: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)


class QualityScore(Base):
    """A member's score (0-100) in one category (`overall` too) at one run."""

    __tablename__ = "quality_score"
    __table_args__ = (
        UniqueConstraint("run_id", "institution_id", "category", name="uq_quality_score_key"),
        Index("ix_quality_score_member_time", "institution_id", "category", "measured_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(
        ForeignKey("quality_run.id", ondelete="CASCADE"), nullable=False, index=True
    )
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False)
    category: Mapped[str] = mapped_column(String(20), nullable=False)
    measured_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    checks_passed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    checks_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class QualityThreshold(Base):
    """A per-check override of the shipped threshold (percent of rows allowed to fail)."""

    __tablename__ = "quality_threshold"

    check_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    threshold: Mapped[float | None] = mapped_column(Float)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    note: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), nullable=False, default="")


class FeedSchedule(Base):
    """What a member agreed to send: one feed (`hl7v2`, `fhir`, `csv`, `*`) at least this often."""

    __tablename__ = "feed_schedule"
    __table_args__ = (
        UniqueConstraint("institution_id", "feed", name="uq_feed_schedule_member_feed"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False)
    feed: Mapped[str] = mapped_column(String(40), nullable=False)
    every_minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    note: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), nullable=False, default="")


class QualityAlert(Base):
    """Something a data steward should look at: a score that dropped, a late feed, a quiet member.

    One open alert per (kind, member, key): a condition that persists across runs does not
    raise a new alert, and one that clears is resolved by the next run.
    """

    __tablename__ = "quality_alert"
    __table_args__ = (Index("ix_quality_alert_open", "kind", "institution_id", "key", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[AlertKind] = mapped_column(str_enum(AlertKind, 20), nullable=False)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    key: Mapped[str] = mapped_column(String(120), nullable=False, default="")
    run_id: Mapped[str] = mapped_column(String(40), nullable=False)
    status: Mapped[AlertStatus] = mapped_column(
        str_enum(AlertStatus, 14), nullable=False, default=AlertStatus.OPEN
    )
    message: Mapped[str] = mapped_column(String(500), nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
