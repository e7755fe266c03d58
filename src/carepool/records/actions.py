"""Writes to the clinical store: idempotent upserts of incoming records, with provenance.

`store_record` works inside the caller's transaction and never commits. A record whose natural
key is known with the same content hash is a duplicate: nothing is written. A changed one is
updated in place and gets a new provenance row; a new one is inserted. References to records not
received yet (an observation of an unknown patient) create a placeholder (`stub`) that the real
record fills in when it arrives. Auditing is the caller's job (ingest audits one row per run;
one audit row per result would double the store's size and say nothing more than provenance).
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from carepool.core.time import utcnow
from carepool.records.models import (
    ClinicalOrder,
    DiagnosticReport,
    Encounter,
    EncounterClass,
    EncounterStatus,
    Observation,
    OrderStatus,
    OtherRecord,
    Patient,
    PatientIdentifier,
    Provenance,
    ResultStatus,
    Sex,
)
from carepool.records.schemas import (
    EncounterIn,
    ObservationIn,
    ObservationStandard,
    OrderIn,
    OtherIn,
    PatientIn,
    RecordIn,
    Ref,
    ReportIn,
    Standard,
)

STUB_HASH = "stub"
_PREFIX = {
    "patient": "pat",
    "encounter": "enc",
    "report": "rep",
    "observation": "obs",
    "order": "ord",
    "other": "oth",
}
_CJK = re.compile(r"[\u3400-\u9fff]")


class Outcome(enum.StrEnum):
    STORED = "stored"
    UPDATED = "updated"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class StoreContext:
    """Who sent a batch and how: the member, the ingest run, the feed format and the file."""

    institution_id: str
    run_id: str | None = None
    feed: str = ""
    source: str = ""
    received_at: datetime | None = None


@dataclass(frozen=True)
class Stored:
    outcome: Outcome
    kind: str
    id: str
    stubs: int = 0


def natural_key(institution_id: str, kind: str, system: str, local_id: str) -> str:
    return f"{institution_id}|{kind}|{system}|{local_id}"


def id_for(kind: str, key: str) -> str:
    """The record id derived from a natural key (FHIR-id safe, 36 characters)."""
    return f"{_PREFIX[kind.split(':')[0]]}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def ref_id(institution_id: str, ref: Ref) -> str:
    return id_for(ref.kind, natural_key(institution_id, ref.kind, ref.system, ref.local_id))


def _key_of(ctx: StoreContext, record: RecordIn, content_hash: str) -> str:
    kind = f"other:{record.type_name}" if isinstance(record, OtherIn) else record.kind
    if record.local_id:
        return natural_key(ctx.institution_id, kind, record.system, record.local_id)
    return f"{ctx.institution_id}|{kind}|#{content_hash}"


def pinyin_of(name: str) -> str:
    """The pinyin of a Chinese name (`张三` -> `zhang san`); other names folded to lower case."""
    if not name:
        return ""
    if _CJK.search(name):
        from pypinyin import lazy_pinyin

        return " ".join(p for p in lazy_pinyin(name) if p.strip()).casefold()
    return " ".join(name.split()).casefold()


def _enum(cls: type[enum.Enum], value: str, default: Any) -> Any:
    try:
        return cls(value)
    except ValueError:
        return default


def _provenance(
    session: Session,
    ctx: StoreContext,
    kind: str,
    record_id: str,
    content_hash: str,
    message: str,
    position: str,
    original: str | None,
) -> None:
    session.add(
        Provenance(
            record_type=kind,
            record_id=record_id,
            institution_id=ctx.institution_id,
            run_id=ctx.run_id,
            feed=ctx.feed,
            source=ctx.source[:300],
            message=message[:300],
            position=position[:200],
            received_at=ctx.received_at or utcnow(),
            content_hash=content_hash,
            original=original,
        )
    )


def _apply_patient(obj: Patient, rec: PatientIn, ctx: StoreContext) -> None:
    obj.name = rec.name[:200]
    obj.family = rec.family[:100]
    obj.given = rec.given[:100]
    obj.name_pinyin = pinyin_of(rec.name)[:300]
    obj.sex = _enum(Sex, rec.sex, Sex.UNKNOWN)
    obj.birth_date = rec.birth_date
    obj.national_id = rec.national_id[:40] if rec.national_id else None
    obj.phone = rec.phone[:40]
    obj.address = rec.address[:400]
    obj.deceased = rec.deceased
    obj.stub = False
    seen: set[tuple[str, str]] = set()
    identifiers = []
    for ident in rec.identifiers:
        key = (ident.system[:200], ident.value[:200])
        if not ident.value or key in seen:
            continue
        seen.add(key)
        identifiers.append(
            PatientIdentifier(
                institution_id=ctx.institution_id,
                system=key[0],
                value=key[1],
                type=ident.type[:20],
            )
        )
    current = {(i.system, i.value, i.type) for i in obj.identifiers}
    if current != {(i.system, i.value, i.type) for i in identifiers}:
        obj.identifiers = identifiers


def _apply_encounter(obj: Encounter, rec: EncounterIn, std: Standard | None) -> None:
    obj.encounter_class = _enum(EncounterClass, rec.encounter_class, EncounterClass.OTHER)
    obj.status = _enum(EncounterStatus, rec.status, EncounterStatus.UNKNOWN)
    obj.start_at = rec.start_at
    obj.end_at = rec.end_at
    obj.type_text = rec.type_text[:200]
    obj.department_text = rec.department_text[:200]
    obj.department_code = std.department_code if std else None
    obj.location = rec.location[:200]
    obj.last_event = rec.event[:20]
    obj.flags = list(std.flags) if std else []


def _apply_report(obj: DiagnosticReport, rec: ReportIn, std: Standard | None) -> None:
    first = rec.codings[0] if rec.codings else None
    obj.status = _enum(ResultStatus, rec.status, ResultStatus.UNKNOWN)
    obj.loinc_code = std.loinc if std else None
    obj.display = ((std.display if std else "") or rec.text or (first.text if first else ""))[:300]
    obj.original_system = (first.system if first else "")[:200]
    obj.original_code = (first.code if first else "")[:200]
    obj.original_text = (first.text if first else rec.text)[:300]
    obj.category = rec.category[:60]
    obj.effective_at = rec.effective_at
    obj.issued_at = rec.issued_at
    obj.conclusion = rec.conclusion
    obj.flags = list(std.flags) if std else []


def apply_observation_standard(obj: Observation, std: ObservationStandard) -> bool:
    """Set an observation's standard form; True when anything changed (re-apply uses this)."""
    new = {
        "loinc_code": std.loinc,
        "display": (std.display or "")[:300],
        "value": std.value,
        "unit": std.unit,
        "ref_low": std.ref_low,
        "ref_high": std.ref_high,
        "flags": list(std.flags),
        "note": std.note[:500],
    }
    changed = any(getattr(obj, k) != v for k, v in new.items())
    if changed:
        for k, v in new.items():
            setattr(obj, k, v)
        obj.standardised_at = utcnow()
    return changed


def _apply_observation(obj: Observation, rec: ObservationIn, std: Standard | None) -> None:
    ostd = std.observation if std else None
    original = next((c for c in rec.codings if c.code), rec.codings[0] if rec.codings else None)
    obj.codings = [[c.system, c.code, c.text] for c in rec.codings]
    obj.status = _enum(ResultStatus, rec.status, ResultStatus.UNKNOWN)
    obj.category = rec.category[:60]
    obj.original_system = (original.system if original else "")[:200]
    obj.original_code = (original.code if original else "")[:200]
    obj.original_text = ((original.text if original else "") or rec.text)[:300]
    obj.value_type = rec.value_type
    obj.original_value = rec.value_text
    obj.original_unit = rec.unit[:100]
    obj.original_number = rec.value_number
    obj.original_ref_low = rec.ref_low
    obj.original_ref_high = rec.ref_high
    obj.reference_text = rec.ref_text[:200]
    obj.value_code = rec.value_code[:100]
    obj.value_code_system = rec.value_code_system[:200]
    obj.interpretation = rec.interpretation[:20]
    obj.effective_at = rec.effective_at
    obj.issued_at = rec.issued_at
    if ostd is not None:
        apply_observation_standard(obj, ostd)


def _apply_order(obj: ClinicalOrder, rec: OrderIn, std: Standard | None) -> None:
    first = rec.codings[0] if rec.codings else None
    obj.placer_number = rec.placer_number[:100]
    obj.filler_number = rec.filler_number[:100]
    obj.status = _enum(OrderStatus, rec.status, OrderStatus.UNKNOWN)
    obj.loinc_code = std.loinc if std else None
    obj.original_system = (first.system if first else "")[:200]
    obj.original_code = (first.code if first else "")[:200]
    obj.original_text = ((first.text if first else "") or rec.text)[:300]
    obj.priority = rec.priority[:20]
    obj.ordered_at = rec.ordered_at


_MODELS: dict[str, Any] = {
    "patient": Patient,
    "encounter": Encounter,
    "report": DiagnosticReport,
    "observation": Observation,
    "order": ClinicalOrder,
    "other": OtherRecord,
}


@dataclass
class _Planned:
    record: RecordIn
    key: str
    id: str
    content_hash: str


_PARENTS = (("patient", Patient), ("encounter", Encounter), ("report", DiagnosticReport))


class RecordStore:
    """Stores incoming records of one member in the caller's transaction, fast.

    `prefetch` looks up, in one query per kind, which of a batch's records and referenced
    parents exist and with which content hash; `store` then decides insert / update / duplicate
    without a query per record. Nothing is flushed here: relationships on the models let the
    unit of work insert parents before children when the caller flushes or commits.
    """

    def __init__(self, session: Session, ctx: StoreContext) -> None:
        self.session = session
        self.ctx = ctx
        self.known: dict[str, str] = {}  # record id -> content hash in the database or session
        self.seen: set[tuple[str, str]] = set()  # (record id, content hash) received before
        self.objects: dict[str, Any] = {}  # strong references to what this store touched
        self._plans: dict[int, _Planned] = {}
        self._looked_up: set[str] = set()
        self.stubs = 0

    def plan(self, record: RecordIn) -> _Planned:
        planned = self._plans.get(id(record))
        if planned is None:
            content_hash = record.content_hash()
            key = _key_of(self.ctx, record, content_hash)
            planned = _Planned(record, key, id_for(record.kind, key), content_hash)
            self._plans[id(record)] = planned
        return planned

    def prefetch(self, records: list[RecordIn]) -> None:
        """Learn which of these records (and the parents they refer to) exist already."""
        wanted: dict[str, set[str]] = {}
        for record in records:
            planned = self.plan(record)
            wanted.setdefault(record.kind, set()).add(planned.id)
            for attr in ("patient", "encounter", "report"):
                ref = getattr(record, attr, None)
                if ref is not None:
                    wanted.setdefault(ref.kind, set()).add(ref_id(self.ctx.institution_id, ref))
        changed: list[str] = []
        for kind, ids in wanted.items():
            ids = ids - self._looked_up - set(self.known)
            if not ids:
                continue
            self._looked_up |= ids
            model = _MODELS[kind]
            for chunk in _chunks(sorted(ids), 500):
                rows = self.session.execute(
                    select(model.id, model.content_hash).where(model.id.in_(chunk))
                )
                for rid, content_hash in rows:
                    self.known[rid] = content_hash
        for record in records:
            planned = self.plan(record)
            current = self.known.get(planned.id)
            if current is not None and current != planned.content_hash:
                changed.append(planned.id)
        for chunk in _chunks(sorted(set(changed)), 500):
            rows = self.session.execute(
                select(Provenance.record_id, Provenance.content_hash).where(
                    Provenance.record_id.in_(chunk)
                )
            )
            self.seen.update((rid, h) for rid, h in rows)

    def _exists(self, kind: str, rid: str) -> bool:
        if rid in self.known:
            return True
        if rid not in self._looked_up:
            self._looked_up.add(rid)
            model = _MODELS[kind]
            found = self.session.scalar(select(model.content_hash).where(model.id == rid))
            if found is not None:
                self.known[rid] = found
                return True
        return False

    def _stub(self, kind: str, ref: Ref | None, patient_id: str | None = None) -> str | None:
        """The id of a referenced record, made as a placeholder if it has not arrived yet."""
        if ref is None:
            return None
        rid = ref_id(self.ctx.institution_id, ref)
        if self._exists(kind, rid):
            return rid
        key = natural_key(self.ctx.institution_id, kind, ref.system, ref.local_id)
        common = {
            "id": rid,
            "natural_key": key,
            "institution_id": self.ctx.institution_id,
            "id_system": ref.system,
            "local_id": ref.local_id,
            "content_hash": STUB_HASH,
        }
        obj: Any
        if kind == "patient":
            obj = Patient(stub=True, **common)
        elif kind == "encounter":
            obj = Encounter(patient_id=patient_id, flags=["stub"], **common)
        else:
            obj = DiagnosticReport(patient_id=patient_id, flags=["stub"], **common)
        self.session.add(obj)
        self.objects[rid] = obj
        self.known[rid] = STUB_HASH
        self.stubs += 1
        return rid

    def store(
        self,
        record: RecordIn,
        *,
        standard: Standard | None = None,
        message: str = "",
        position: str = "",
        original: str | None = None,
    ) -> Stored:
        """Insert, update or recognise one record (see the module docstring)."""
        planned = self.plan(record)
        rid, kind, content_hash = planned.id, record.kind, planned.content_hash
        if not self._exists(kind, rid):
            obj: Any = None
        else:
            current = self.known[rid]
            if current == content_hash or (rid, content_hash) in self.seen:
                return Stored(Outcome.DUPLICATE, kind, rid)
            obj = self.objects.get(rid) or self.session.get(_MODELS[kind], rid)
        stubs_before = self.stubs
        now = utcnow()
        is_new = obj is None
        if obj is None:
            obj = _MODELS[kind](
                id=rid,
                natural_key=planned.key,
                institution_id=self.ctx.institution_id,
                content_hash=content_hash,
                created_at=now,
                updated_at=now,
            )
            if kind == "other":
                obj.local_id = (record.local_id or "")[:200]
            else:
                obj.id_system = record.system[:200]
                obj.local_id = record.local_id
        else:
            obj.content_hash = content_hash
            obj.updated_at = now
        self.objects[rid] = obj
        self.known[rid] = content_hash
        self.seen.add((rid, content_hash))
        if isinstance(record, PatientIn):
            _apply_patient(obj, record, self.ctx)
        elif isinstance(record, EncounterIn):
            obj.patient_id = self._stub("patient", record.patient)
            _apply_encounter(obj, record, standard)
        elif isinstance(record, ReportIn):
            obj.patient_id = self._stub("patient", record.patient)
            obj.encounter_id = self._stub("encounter", record.encounter, obj.patient_id)
            _apply_report(obj, record, standard)
        elif isinstance(record, ObservationIn):
            obj.patient_id = self._stub("patient", record.patient)
            obj.encounter_id = self._stub("encounter", record.encounter, obj.patient_id)
            obj.report_id = self._stub("report", record.report, obj.patient_id)
            _apply_observation(obj, record, standard)
        elif isinstance(record, OrderIn):
            obj.patient_id = self._stub("patient", record.patient)
            obj.encounter_id = self._stub("encounter", record.encounter, obj.patient_id)
            _apply_order(obj, record, standard)
        elif isinstance(record, OtherIn):
            obj.kind = record.type_name[:80]
            obj.patient_id = self._stub("patient", record.patient)
            obj.body = record.body
        if is_new:
            self.session.add(obj)
        if isinstance(record, ReportIn) and record.results:
            self._link_results(rid, record.results)
        _provenance(self.session, self.ctx, kind, rid, content_hash, message, position, original)
        return Stored(
            Outcome.STORED if is_new else Outcome.UPDATED, kind, rid, self.stubs - stubs_before
        )

    def _link_results(self, report_id: str, results: list[Ref]) -> None:
        """Point already stored observations at the report that lists them."""
        ids = [ref_id(self.ctx.institution_id, r) for r in results]
        pending = [i for i in ids if i in self.objects]
        for i in pending:
            if self.objects[i].report_id is None:
                self.objects[i].report_id = report_id
        stored = [i for i in ids if i not in self.objects]
        if stored:
            self.session.execute(
                update(Observation)
                .where(Observation.id.in_(stored), Observation.report_id.is_(None))
                .values(report_id=report_id)
                .execution_options(synchronize_session=False)
            )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def store_record(
    session: Session,
    *,
    ctx: StoreContext,
    record: RecordIn,
    standard: Standard | None = None,
    message: str = "",
    position: str = "",
    original: str | None = None,
) -> Stored:
    """Store one record (a `RecordStore` of its own; batches should share one store)."""
    store = RecordStore(session, ctx)
    result = store.store(
        record, standard=standard, message=message, position=position, original=original
    )
    session.flush()
    return result


def parse_date(value: str | None) -> date | None:
    """A date from `YYYY-MM-DD` or `YYYYMMDD` (None when empty or unreadable)."""
    if not value:
        return None
    text = value.strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text[: len("2000-01-01") if "-" in text else 8], fmt).date()
        except ValueError:
            continue
    return None
