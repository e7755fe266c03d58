"""Tables of the master patient index: persons, links of patient records to them, the review
queue, pairs a human said are different people, merge history, and link runs.

Every non-stub patient record that a link run has seen belongs to exactly one active person
(`identity_link`, one row per record). A merge moves every link of one person to another and
marks the absorbed person `merged`; the history row lists the records it moved, so an unmerge
can move exactly those back.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
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

PersonId = str
PatientId = str
RunId = str


class PersonStatus(enum.StrEnum):
    ACTIVE = "active"
    MERGED = "merged"


class LinkSource(enum.StrEnum):
    """How a record came to belong to its person."""

    NEW = "new"  # first seen: a person of its own
    AUTO = "auto"  # a link run scored the pair above the automatic-link threshold
    REVIEW = "review"  # a reviewer accepted a candidate pair
    MANUAL = "manual"  # a steward merged two persons
    UNMERGE = "unmerge"  # moved back by an unmerge or detached into a person of its own


class CandidateStatus(enum.StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"  # a later run no longer proposes the pair, or it was linked


class HistoryAction(enum.StrEnum):
    MERGE = "merge"
    UNMERGE = "unmerge"
    DETACH = "detach"
    RELINK = "relink"  # a changed record no longer matched its person and was taken out


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Person(Base):
    """One person as the consortium knows them, across every member's records."""

    __tablename__ = "identity_person"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[PersonStatus] = mapped_column(
        str_enum(PersonStatus, 10), nullable=False, default=PersonStatus.ACTIVE
    )
    merged_into: Mapped[str | None] = mapped_column(
        ForeignKey("identity_person.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)


class PersonLink(Base):
    """A member's patient record belongs to a person (one row per record)."""

    __tablename__ = "identity_link"
    __table_args__ = (Index("ix_identity_link_institution_person", "institution_id", "person_id"),)

    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[str] = mapped_column(
        ForeignKey("identity_person.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False)
    source: Mapped[LinkSource] = mapped_column(str_enum(LinkSource, 10), nullable=False)
    match_probability: Mapped[float | None] = mapped_column(Float)
    linked_by: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    linked_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)


class Candidate(Base):
    """A pair of records that may be the same person: the review queue.

    `patient_a` < `patient_b`, so a pair has one row however often runs propose it.
    """

    __tablename__ = "identity_candidate"
    __table_args__ = (
        UniqueConstraint("patient_a", "patient_b", name="uq_identity_candidate_pair"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_a: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), nullable=False, index=True
    )
    patient_b: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), nullable=False, index=True
    )
    institution_a: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    institution_b: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    match_probability: Mapped[float] = mapped_column(Float, nullable=False)
    match_weight: Mapped[float] = mapped_column(Float, nullable=False)
    # Per field: the comparison level and its weight (log2 Bayes factor), for the reviewer.
    detail: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    reason: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    status: Mapped[CandidateStatus] = mapped_column(
        str_enum(CandidateStatus, 12), nullable=False, default=CandidateStatus.OPEN, index=True
    )
    run_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")


class Exclusion(Base):
    """Two records a human said are different people: no run links them again."""

    __tablename__ = "identity_exclusion"

    patient_a: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), primary_key=True
    )
    patient_b: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    reason: Mapped[str] = mapped_column(String(40), nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)


class HistoryEvent(Base):
    """A merge, unmerge or detach: which records moved from which person to which."""

    __tablename__ = "identity_history"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    action: Mapped[HistoryAction] = mapped_column(str_enum(HistoryAction, 10), nullable=False)
    # merge: `other_id` was absorbed into `person_id`; unmerge/detach: records moved from
    # `person_id` to `other_id`.
    person_id: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    other_id: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    patient_ids: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    cause: Mapped[str] = mapped_column(String(10), nullable=False)  # auto, review, manual
    candidate_id: Mapped[int | None] = mapped_column(Integer)
    run_id: Mapped[str | None] = mapped_column(String(40))
    match_probability: Mapped[float | None] = mapped_column(Float)
    reverses: Mapped[int | None] = mapped_column(Integer)  # the merge an unmerge undid
    undone_by: Mapped[int | None] = mapped_column(Integer)  # the unmerge that undid a merge
    actor: Mapped[str] = mapped_column(String(64), nullable=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")


class RecordFacts(Base):
    """What the index last evaluated of a record: its matching features and their hash.

    Two jobs: a record whose current features hash differently was changed by a feed since
    (`do_relink_changed` re-evaluates its person), and the indexed columns are the blocking
    keys an incremental link (`do_link_records`) looks candidates up by, without a full run.
    """

    __tablename__ = "identity_record"
    __table_args__ = (
        Index("ix_identity_record_name_year", "name_key", "birth_year"),
        Index("ix_identity_record_rev_year", "name_rev", "birth_year"),
        Index("ix_identity_record_dob_initial", "dob", "name_initial"),
    )

    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), primary_key=True
    )
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False)
    name_han: Mapped[str | None] = mapped_column(String(200))
    name_key: Mapped[str | None] = mapped_column(String(200))
    name_rev: Mapped[str | None] = mapped_column(String(200))
    name_initial: Mapped[str | None] = mapped_column(String(4))
    name_phonetic: Mapped[str | None] = mapped_column(String(200))
    sex: Mapped[str | None] = mapped_column(String(10))
    dob: Mapped[str | None] = mapped_column(String(8))
    birth_year: Mapped[str | None] = mapped_column(String(4))
    nid: Mapped[str | None] = mapped_column(String(40), index=True)
    phone: Mapped[str | None] = mapped_column(String(40), index=True)
    address: Mapped[str | None] = mapped_column(String(400))
    ids: Mapped[str | None] = mapped_column(Text)  # other identifiers: `system|value` lines
    facts_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    evaluated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)


class LinkRun(Base):
    """One matching run over every record: a job with progress, counters and its model."""

    __tablename__ = "identity_run"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    actor: Mapped[str] = mapped_column(String(64), nullable=False)
    channel: Mapped[str] = mapped_column(String(20), nullable=False, default="cli")
    status: Mapped[RunStatus] = mapped_column(
        str_enum(RunStatus, 12), nullable=False, default=RunStatus.RUNNING
    )
    phase: Mapped[str] = mapped_column(String(20), nullable=False, default="load")
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    records: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    pairs: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    auto_links: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    review: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    excluded: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    new_persons: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    persons: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    model: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    timings: Mapped[dict[str, float]] = mapped_column(JsonType, nullable=False, default=dict)
    error: Mapped[str] = mapped_column(Text, nullable=False, default="")
