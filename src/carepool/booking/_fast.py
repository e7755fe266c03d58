"""A booking in one statement on PostgreSQL: `booking_create_appointment` (migration 0012).

The ORM path (`actions.allocate`, then appointment, audit row and outbox event flushed) costs
six round trips and most of a booking's CPU in SQLAlchemy; this sends the same decisions and the
same row values as one JSON document to a PL/pgSQL function (docs/decisions/0010). Python still
does every check and builds every value: the audit and outbox columns come from
`audit.row_values` and `events.row_values`, the appointment's from its entity; the function
chooses the lanes the way `allocate` does and fills the chosen resources into those rows.
SQLite has no such function and keeps the ORM path.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session, make_transient_to_detached

from carepool.core.db import Base

__all__ = ["ENABLED", "attach", "book", "columns", "usable"]

# Off: every booking takes the ORM path (tests compare the two paths with it).
ENABLED = True

_SQL = (
    "SELECT booking_create_appointment(%(p)s::jsonb, %(counts)s::int[], %(candidates)s::text[], "
    "%(requirement)s::int[], %(everyone)s::text[], %(open)s::text[])"
)


def usable(session: Session) -> bool:
    """Whether this session's database has the booking function (PostgreSQL)."""
    return ENABLED and session.get_bind().dialect.name == "postgresql"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} has no JSON form")


def columns(entity: Base) -> dict[str, Any]:
    """Every column of `entity` by column name, the model's defaults filled in for unset ones.

    The defaults are also set on the entity, so it holds what the row holds (as after a flush).
    """
    values: dict[str, Any] = {}
    for key, name, default in _columns_of(type(entity)):
        value = getattr(entity, key)
        if value is None and default is not None:
            if default.is_scalar:
                value = default.arg
            elif default.is_callable:
                value = default.arg(None)
            setattr(entity, key, value)
        values[name] = value
    return values


@cache
def _columns_of(model: type[Base]) -> tuple[tuple[str, str, Any], ...]:
    return tuple(
        (attr.key, attr.columns[0].name, attr.columns[0].default)
        for attr in inspect(model).column_attrs
    )


def book(
    session: Session,
    document: dict[str, Any],
    *,
    counts: list[int],
    groups: list[list[str]],
    everyone: list[str],
    open_: list[str],
) -> dict[str, Any]:
    """Run the booking function in the session's transaction; its answer (see migration 0012).

    `counts` and `groups`: each requirement's units and candidates in order; `everyone`: every
    candidate once; `open_`: those whose calendars cover the block.
    """
    params = {
        "p": json.dumps(document, default=_plain, separators=(",", ":")),
        "counts": _array(str(n) for n in counts),
        "candidates": _array(_quoted(rid) for group in groups for rid in group),
        "requirement": _array(str(i) for i, group in enumerate(groups) for _ in group),
        "everyone": _array(_quoted(rid) for rid in everyone),
        "open": _array(_quoted(rid) for rid in open_),
    }
    result: dict[str, Any] = session.connection().exec_driver_sql(_SQL, params).scalar_one()
    return result


# Arrays go as PostgreSQL array literals (text, cast in the statement): psycopg's list dumper
# costs about as much CPU as the rest of the call.
def _array(items: Iterable[str]) -> str:
    return "{" + ",".join(items) + "}"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def attach(session: Session, entity: Base) -> None:
    """Make an entity the function inserted a persistent one of `session` (no INSERT of its own):
    later changes to it are flushed as updates, as for an entity the ORM inserted."""
    make_transient_to_detached(entity)
    session.add(entity)
