"""Shapes of the clinical store: records as a connector hands them over, and what ingest adds.

Incoming records are plain slotted dataclasses (a feed has millions of them; validation happened
at the boundary, in the connector). Their `content_hash` covers what the source sent, never the
standard form, so re-applying maps does not make a re-sent record look new.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
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

    def content_hash(self) -> str:
        text = json.dumps(self.content(), sort_keys=True, default=_jsonable, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

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
