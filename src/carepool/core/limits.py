"""Bounds on request values, the same on every backend (SQLite stores what PostgreSQL refuses,
so the API refuses it first, with a 422 that says which bound)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carepool.core.errors import FieldError

# The largest offset a list or search accepts: beyond any real page, far below the 2^63 that
# makes both databases fail.
MAX_OFFSET = 1_000_000_000


def too_long(model: Any, values: Mapping[str, Any], where: str = "") -> list[FieldError]:
    """Text values longer than their column (`String(n)`) allows — PostgreSQL refuses them,
    SQLite would store them whole: the same refusal on both, naming the field and the limit."""
    errors = []
    columns = model.__table__.columns
    for name, value in values.items():
        if not isinstance(value, str) or name not in columns:
            continue
        length = getattr(columns[name].type, "length", None)
        if length is not None and len(value) > length:
            errors.append(
                FieldError(f"{where}{name}", f"at most {length} characters, not {len(value)}")
            )
    return errors
