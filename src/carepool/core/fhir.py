"""Shared pieces for contexts that serve FHIR R4 resources through the `/fhir` registry.

Providers of types that carry patient data set `uses_context = True` and receive a
`FhirContext` (the caller and the clock's now) on every call, so they can check access and
write the audit record themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput


@dataclass(frozen=True)
class FhirContext:
    caller: Principal
    now: datetime


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str
    documentation: str
    modifiers: tuple[str, ...] = ()


PREFIXES = ("eq", "ge", "gt", "le", "lt")


def _invalid(param: str, message: str) -> InvalidInput:
    return InvalidInput(f"{param}: {message}", [FieldError(f"query:{param}", message)])


def parse_date(param: str, raw: str, tz: ZoneInfo) -> tuple[str, datetime, datetime]:
    """`[prefix]value` of a FHIR date search -> (prefix, start, end) of the day or instant."""
    prefix = raw[:2] if raw[:2] in PREFIXES else "eq"
    text = raw[2:] if raw[:2] == prefix else raw
    try:
        if len(text) == 10:
            start = datetime.combine(date.fromisoformat(text), time(0), tz)
            return prefix, start, start + timedelta(days=1)
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _invalid(param, f"{raw!r} is not a date (YYYY-MM-DD) or dateTime") from exc
    if instant.tzinfo is None:
        raise _invalid(param, f"{raw!r} has a time but no time zone")
    return prefix, instant, instant


def date_bounds(
    values: Sequence[str], tz: ZoneInfo, param: str
) -> tuple[datetime | None, datetime | None]:
    """The half-open window [start, end) that all of a date parameter's values ask for."""
    start: datetime | None = None
    end: datetime | None = None
    for raw in values:
        prefix, lo, hi = parse_date(param, raw, tz)
        if prefix in ("eq", "ge"):
            start = lo if start is None else max(start, lo)
        if prefix == "gt":
            start = hi if start is None else max(start, hi)
        if prefix in ("eq", "le"):
            end = hi if end is None else min(end, hi)
        if prefix == "lt":
            end = lo if end is None else min(end, lo)
    return start, end
