"""Tables of terminology: versioned maps over the shipped seed, and the unmapped-term queue.

A map is one (kind, scope): kind `code` (local code or name -> LOINC), `unit` (local unit ->
UCUM) or `department` (local department name -> standard department code); scope `*` for the
consortium or a member's institution id. Each change bumps the map's version; an entry is never
changed in place: the old row gets `valid_to` = the new version and a new row is added, so the
map as it was at any version can be rebuilt.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carepool.core.db import Base, UtcDateTime, str_enum
from carepool.core.time import utcnow


class MapKind(enum.StrEnum):
    CODE = "code"
    UNIT = "unit"
    DEPARTMENT = "department"


class TermStatus(enum.StrEnum):
    OPEN = "open"
    MAPPED = "mapped"
    IGNORED = "ignored"


class TermMap(Base):
    __tablename__ = "term_map"
    __table_args__ = (UniqueConstraint("kind", "scope", name="uq_term_map_kind_scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[MapKind] = mapped_column(str_enum(MapKind, 12), nullable=False)
    # "*" for the consortium-wide map, else the member's institution id.
    scope: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), nullable=False, default="")


class TermMapping(Base):
    __tablename__ = "term_mapping"
    __table_args__ = (Index("ix_term_mapping_lookup", "map_id", "source_system", "source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    map_id: Mapped[int] = mapped_column(
        ForeignKey("term_map.id", ondelete="CASCADE"), nullable=False
    )
    # `code`: (source_system, source) is a local code; `name`: source is a folded name or unit.
    match: Mapped[str] = mapped_column(String(8), nullable=False, default="code")
    source_system: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    source: Mapped[str] = mapped_column(String(200), nullable=False)
    source_display: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    # None: explicitly unmapped (hides the seed's entry for the same key).
    target: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    valid_from: Mapped[int] = mapped_column(Integer, nullable=False)
    valid_to: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False, default="")


class UnmappedTerm(Base):
    """A code, name, unit or department that no map knew, with how often and when it was seen."""

    __tablename__ = "unmapped_term"
    __table_args__ = (
        UniqueConstraint(
            "kind",
            "institution_id",
            "source_system",
            "match",
            "term",
            name="uq_unmapped_term_key",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[MapKind] = mapped_column(str_enum(MapKind, 12), nullable=False)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    source_system: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    # `code` when `term` is a local code, `name` when it is a folded name or unit spelling.
    match: Mapped[str] = mapped_column(String(8), nullable=False, default="code")
    term: Mapped[str] = mapped_column(String(200), nullable=False)
    display: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    status: Mapped[TermStatus] = mapped_column(
        str_enum(TermStatus, 10), nullable=False, default=TermStatus.OPEN
    )
