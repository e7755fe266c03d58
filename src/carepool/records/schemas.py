"""Shapes of the clinical store: records as a connector hands them over, and what ingest adds.

Incoming records are plain slotted dataclasses (a feed has millions of them; validation happened
at the boundary, in the connector). Their `content_hash` covers what the source sent, never the
standard form, so re-applying maps does not make a re-sent record look new.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import operator
from dataclasses import dataclass, field
from datetime import date, datetime
from json.encoder import encode_basestring  # the C one where there is one
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Coding:
    """A code as a feed sent it: system (may be empty), code (may be empty), display text."""

    system: str = ""
    code: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to another record of the same member: its kind, id system and local id."""

    kind: str
    system: str
    local_id: str


@dataclass(slots=True)
class Identifier:
    system: str
    value: str
    type: str = ""


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


# `json.dumps(..., sort_keys=True, default=_jsonable, ensure_ascii=False)` for what the fast
# path does not write itself (bodies of `other` records, unusual types).
_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=_jsonable)
_PART_MEMO: dict[Any, str] = {}  # (class, field values) -> JSON text (a feed repeats them)


def _json_text(value: Any) -> str:
    """The JSON text `_ENCODER` writes for `value` (same separators, key order and numbers)."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if kind is float:
        return float.__repr__(value) if math.isfinite(value) else _ENCODER.encode(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if kind is datetime or kind is date:
        return encode_basestring(value.isoformat())
    if kind is list:
        return "[" + ", ".join([_json_text(v) for v in value]) + "]"
    if kind is Coding or kind is Ref or kind is Identifier:
        return _part_text(value)
    return _ENCODER.encode(value)


def _part_text(value: Any) -> str:
    """A nested part (`dataclasses.asdict` in `_jsonable`) as a dict with sorted keys."""
    cls = type(value)
    getter = _PART_VALUES.get(cls)
    if getter is None:
        getter = _PART_VALUES[cls] = operator.attrgetter(*[n for n, _p in _sorted_fields(cls)])
    values = getter(value)  # a tuple: parts have three fields
    key = (cls, values)  # remembered by value, compared and hashed in C
    try:
        return _PART_MEMO[key]
    except KeyError:
        pass
    except TypeError:  # a field holds something unhashable
        return _ENCODER.encode(value)
    if not all(type(v) is str for v in values):  # only plain text: what asdict copies as is
        return _ENCODER.encode(value)
    names = _sorted_fields(cls)
    items = [p + encode_basestring(v) for (_n, p), v in zip(names, values, strict=True)]
    text = "{" + ", ".join(items) + "}"
    if len(_PART_MEMO) >= 100_000:
        _PART_MEMO.clear()
    _PART_MEMO[key] = text
    return text


_PART_VALUES: dict[type, Any] = {}


_WRITERS: dict[type, Any] = {}


def _content_writer(cls: type) -> Any:
    """A function writing a record class's content text: its fields in key order, written
    without a loop or a call for text values (most of them); built once per class."""
    writer = _WRITERS.get(cls)
    if writer is None:
        added_later: frozenset[str] = getattr(cls, "added_later", frozenset())
        lines = ["def write(record):", "    parts = []"]
        for i, (name, _prefix) in enumerate(_sorted_fields(cls)):
            value = f"record.{name}"
            text = f"(P{i} + (E(v) if v.__class__ is str else J(v)))"
            lines.append(f"    v = {value}")
            if name in added_later:
                lines.append(f"    if not (v is None or v == ''): parts.append{text}")
            else:
                lines.append(f"    parts.append{text}")
        lines.append('    return "{" + ", ".join(parts) + "}"')
        scope: dict[str, Any] = {"E": encode_basestring, "J": _json_text}
        scope.update({f"P{i}": prefix for i, (_n, prefix) in enumerate(_sorted_fields(cls))})
        exec("\n".join(lines), scope)
        writer = _WRITERS[cls] = scope["write"]
    return writer


_SORTED: dict[type, tuple[tuple[str, str], ...]] = {}


def _sorted_fields(cls: type) -> tuple[tuple[str, str], ...]:
    """A dataclass's fields in key order, each with the `"name": ` the encoder writes first."""
    found = _SORTED.get(cls)
    if found is None:
        names = sorted(f.name for f in dataclasses.fields(cls))
        found = _SORTED[cls] = tuple((n, encode_basestring(n) + ": ") for n in names)
    return found


@dataclass(slots=True)
class _RecordIn:
    kind: ClassVar[str] = ""
    # Fields added after records were first stored: left out of the content while empty, so a
    # record sent again exactly as before is still a duplicate (its hash does not change).
    added_later: ClassVar[frozenset[str]] = frozenset()
    system: str
    local_id: str | None

    def content(self) -> dict[str, Any]:
        """The record's fields, shallow (bodies are hashed as they are, not copied)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in self.added_later:
            if out[name] is None or out[name] == "":
                del out[name]
        return out

    def content_text(self) -> str:
        """`json.dumps(self.content(), sort_keys=True, default=_jsonable, ensure_ascii=False)`,
        written field by field (tested to be the same text): no dict of the fields, no deep
        copies of nested parts, no encoder callbacks; codes and references are written once."""
        return _content_writer(type(self))(self)

    def content_hash(self) -> str:
        """The SHA-256 of `content_text()`: what the source sent, as the dedup key."""
        return hashlib.sha256(self.content_text().encode()).hexdigest()

    def ref(self) -> Ref:
        return Ref(self.kind, self.system, self.local_id or "")


@dataclass(slots=True)
class PatientIn(_RecordIn):
    kind: ClassVar[str] = "patient"
    identifiers: list[Identifier] = field(default_factory=list)
    name: str = ""
    family: str = ""
    given: str = ""
    sex: str = "unknown"
    birth_date: date | None = None
    national_id: str | None = None
    phone: str = ""
    address: str = ""
    deceased: bool = False
    # When known (date and time, or a day as its local midnight); implies `deceased`.
    deceased_at: datetime | None = None
    added_later: ClassVar[frozenset[str]] = frozenset({"deceased_at"})


@dataclass(slots=True)
class EncounterIn(_RecordIn):
    kind: ClassVar[str] = "encounter"
    patient: Ref | None = None
    encounter_class: str = "other"
    status: str = "unknown"
    start_at: datetime | None = None
    end_at: datetime | None = None
    type_text: str = ""
    department_text: str = ""
    # A standard department code the source itself declared (a CSV mapping's department list).
    department_code: str | None = None
    location: str = ""
    event: str = ""


@dataclass(slots=True)
class ReportIn(_RecordIn):
    kind: ClassVar[str] = "report"
    patient: Ref | None = None
    encounter: Ref | None = None
    status: str = "unknown"
    codings: list[Coding] = field(default_factory=list)
    text: str = ""
    category: str = ""
    effective_at: datetime | None = None
    issued_at: datetime | None = None
    conclusion: str = ""
    results: list[Ref] = field(default_factory=list)
    # The order the report answers: a reference to the order record, and/or its placer number.
    order: Ref | None = None
    placer_number: str = ""
    added_later: ClassVar[frozenset[str]] = frozenset({"order", "placer_number"})


@dataclass(slots=True)
class ObservationIn(_RecordIn):
    kind: ClassVar[str] = "observation"
    patient: Ref | None = None
    encounter: Ref | None = None
    report: Ref | None = None
    status: str = "unknown"
    category: str = ""
    codings: list[Coding] = field(default_factory=list)
    text: str = ""
    value_type: str = "none"  # quantity | string | coded | none
    value_number: float | None = None
    value_text: str = ""
    unit: str = ""
    ref_low: float | None = None
    ref_high: float | None = None
    ref_text: str = ""
    value_code: str = ""
    value_code_system: str = ""
    interpretation: str = ""
    effective_at: datetime | None = None
    issued_at: datetime | None = None
    # How the value relates to the true one as the source said it: `<`, `<=`, `>=`, `>` (FHIR
    # Quantity.comparator; HL7 SN comparator, `<0.2` in NM/ST); empty for an exact value.
    comparator: str = ""
    added_later: ClassVar[frozenset[str]] = frozenset({"comparator"})


@dataclass(slots=True)
class OrderIn(_RecordIn):
    kind: ClassVar[str] = "order"
    patient: Ref | None = None
    encounter: Ref | None = None
    placer_number: str = ""
    filler_number: str = ""
    status: str = "unknown"
    codings: list[Coding] = field(default_factory=list)
    text: str = ""
    priority: str = ""
    ordered_at: datetime | None = None


@dataclass(slots=True)
class OtherIn(_RecordIn):
    """A record of a kind the store does not model (`fhir:Claim`, `hl7:SIU^S12`), kept whole."""

    kind: ClassVar[str] = "other"
    type_name: str = ""
    patient: Ref | None = None
    body: dict[str, Any] = field(default_factory=dict)


RecordIn = PatientIn | EncounterIn | ReportIn | ObservationIn | OrderIn | OtherIn


@dataclass(slots=True)
class ObservationStandard:
    """The standard form that terminology computed for an observation."""

    loinc: str | None
    display: str
    original: Coding
    value: float | None
    unit: str | None
    ref_low: float | None
    ref_high: float | None
    flags: list[str]
    note: str


@dataclass(slots=True)
class Standard:
    """What ingest adds to a record before storing it (codes, units, departments)."""

    observation: ObservationStandard | None = None
    department_code: str | None = None
    loinc: str | None = None
    display: str = ""
    flags: list[str] = field(default_factory=list)
    # A patient's name in pinyin, worked out where the record was parsed (the store's main
    # process would otherwise spend a tenth of its time on it); None: the store works it out.
    name_pinyin: str | None = None
