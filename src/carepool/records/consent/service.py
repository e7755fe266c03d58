"""Reads of consent: a person's sharing decision (default allow), and who denied sharing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from carepool.records.consent.models import DEFAULT_SHARING, PersonConsent, Sharing


def get(session: Session, *, person_id: str) -> PersonConsent | None:
    return session.get(PersonConsent, person_id)


def sharing_of(session: Session, *, person_id: str | None) -> Sharing:
    """The person's decision; the default (allow) when they never said anything."""
    if person_id is None:
        return DEFAULT_SHARING
    row = session.get(PersonConsent, person_id)
    return row.sharing if row is not None else DEFAULT_SHARING


def denied(session: Session, *, person_ids: Iterable[str]) -> set[str]:
    """Which of these persons deny sharing across members."""
    ids = sorted(set(person_ids))
    out: set[str] = set()
    for i in range(0, len(ids), 500):
        stmt = select(PersonConsent.person_id).where(
            PersonConsent.person_id.in_(ids[i : i + 500]),
            PersonConsent.sharing == Sharing.DENY,
        )
        out.update(session.scalars(stmt))
    return out


def denied_person_ids() -> Select[Any]:
    """A subquery of every person who denies sharing (for visibility filters in SQL)."""
    return select(PersonConsent.person_id).where(PersonConsent.sharing == Sharing.DENY)


def to_dict(person_id: str, row: PersonConsent | None) -> dict[str, Any]:
    return {
        "person_id": person_id,
        "sharing": (row.sharing if row else DEFAULT_SHARING).value,
        "default": row is None,
        "institution_id": row.institution_id if row else None,
        "recorded_by": row.recorded_by if row else None,
        "recorded_at": row.recorded_at.isoformat() if row else None,
        "note": row.note if row else "",
    }
