"""The connector interface: bytes in, units out (pure: no database, no terminology).

A *unit* is the smallest piece of a feed that can be retried on its own: one HL7 v2 message, one
FHIR resource, one CSV row (with its header). A unit carries the records parsed from it and an
error per record that could not be parsed; a unit that cannot be read at all carries no records
and one error. Every record and every error counts as one received item, so an ingest run can
keep `received = stored + duplicates + rejected`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Protocol

from carepool.records.schemas import RecordIn


@dataclass(slots=True)
class Parsed:
    """One record parsed from a unit, with where it was and its original text."""

    record: RecordIn
    position: str
    original: str | None = None
    # Quality flags the connector found while parsing (`invalid-date:PID-7`, `invalid-code:gender`,
    # `truncated`): the record is stored with them (they describe its content, so they are not
    # part of the content hash).
    flags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Unit:
    position: str  # `file#3` (the third message), `file#entry[12]`, `file:42` (line 42)
    raw: bytes  # what a retry feeds back into the same connector
    message: str = ""  # message control id, bundle id, file name
    records: list[Parsed] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (position, reason)
    # Parts of the unit kept with it but not modelled as records, counted by type
    # (`{"segment:IN1": 2, "resource:Claim": 1}`): the run summary reports them.
    unmodelled: dict[str, int] = field(default_factory=dict)

    @property
    def received(self) -> int:
        return len(self.records) + len(self.errors)


@dataclass(frozen=True)
class ParseOptions:
    """What a connector needs to know about the source: its time zone, CSV mapping and the
    character set it declared."""

    timezone: tzinfo = UTC
    mapping: str | None = None  # CSV: a shipped mapping name or a path to a mapping document
    mapping_doc: dict[str, Any] | None = None
    # The character set the source declared (`gb18030`, `latin-1`, a Python codec name);
    # None: the connector detects it (HL7 v2: MSH-18).
    encoding: str | None = None


class Connector(Protocol):
    """Parses one input (a file, a request body, a dead letter) into units."""

    format: str

    def units(self, data: bytes, *, source: str, options: ParseOptions) -> Iterator[Unit]: ...


def decode(data: bytes) -> str:
    """UTF-8 (with or without a BOM), falling back to GB18030 (a superset of GBK and GB2312)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace")


_HL7_TS = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?\s*([+-]\d{4})?$"
)


_TS_MEMO: dict[tuple[str, tzinfo], datetime | None] = {}


def parse_hl7_ts(text: str | None, tz: tzinfo) -> datetime | None:
    """An HL7 v2 DTM (`YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]`); no zone means the member's."""
    if not text:
        return None
    # A message repeats its times (OBR-7 and every OBX-14): remember the answers (immutable).
    key = (text, tz)
    try:
        return _TS_MEMO[key]
    except KeyError:
        pass
    if len(_TS_MEMO) >= 50_000:
        _TS_MEMO.clear()
    found = _TS_MEMO[key] = _parse_hl7_ts(text, tz)
    return found


def _parse_hl7_ts(text: str, tz: tzinfo) -> datetime | None:
    match = _HL7_TS.match(text.strip())
    if not match:
        return None
    y, mo, d, h, mi, s, frac, zone = match.groups()
    try:
        value = datetime(
            int(y),
            int(mo or 1),
            int(d or 1),
            int(h or 0),
            int(mi or 0),
            int(s or 0),
            int((frac or "0").ljust(6, "0")[:6]),
        )
    except ValueError:
        return None
    if zone:
        sign = 1 if zone[0] == "+" else -1
        from datetime import timedelta, timezone

        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        return value.replace(tzinfo=timezone(sign * offset)).astimezone(UTC)
    return value.replace(tzinfo=tz).astimezone(UTC)


def parse_hl7_date(text: str | None) -> date | None:
    if not text:
        return None
    match = _HL7_TS.match(text.strip())
    if not match or not match.group(2) or not match.group(3):
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def parse_iso(text: str | None, tz: tzinfo) -> datetime | None:
    """An ISO 8601 date or date-time (FHIR); partial dates start at their first day."""
    if not text:
        return None
    text = text.strip()
    try:
        if len(text) == 4:
            value = datetime(int(text), 1, 1)
        elif len(text) == 7:
            value = datetime(int(text[:4]), int(text[5:7]), 1)
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


_NUMBER = re.compile(r"^\s*([<>]=?|=)?\s*([-+]?\d+(?:[.,]\d+)?(?:[eE][-+]?\d+)?)\s*$")


def parse_number(text: str | None) -> tuple[float | None, str]:
    """A result number and its comparator (`<0.5` -> (0.5, '<')); (None, '') when not a number."""
    if text is None:
        return None, ""
    match = _NUMBER.match(text)
    if not match:
        return None, ""
    try:
        return float(match.group(2).replace(",", ".")), match.group(1) or ""
    except ValueError:
        return None, ""


_RANGE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*(?:-|–|~|to|TO|—|至)\s*([-+]?\d+(?:\.\d+)?)\s*$")


def parse_range(text: str | None) -> tuple[float | None, float | None]:
    """A reference range (`4.3 to 6.2`, `13-18`, `<0.21`, `>5`) as (low, high)."""
    if not text:
        return None, None
    match = _RANGE.match(text)
    if match:
        return float(match.group(1)), float(match.group(2))
    number, comparator = parse_number(text)
    if number is None:
        return None, None
    if comparator.startswith("<"):
        return None, number
    if comparator.startswith(">"):
        return number, None
    return None, None
