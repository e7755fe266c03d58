"""Writes to the clinical store: idempotent upserts of incoming records, with provenance.

`store_record` works inside the caller's transaction and never commits. A record whose natural
key is known with the same content hash is a duplicate: nothing is written. A changed one is
updated in place and gets a new provenance row, and its previous content is kept in
`record_version`; a new one is inserted. References to records not received yet (an observation
of an unknown patient) create a placeholder (`stub`) that the real record fills in when it
arrives. A record is never moved to another patient: one that exists under another patient, or
that refers to an encounter, report or order of another patient, is refused (`PatientConflict`)
before anything is written. Auditing is mostly the caller's job (ingest audits one row per run;
one audit row per result would double the store's size and say nothing more than provenance);
an update of a patient is audited here, one row per patient, when the context names an actor.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from sqlalchemy import JSON, String, Table, any_, bindparam, event, func, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from carepool.catalog import service as catalog_service
from carepool.core import audit, events
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal
from carepool.core.db import UtcDateTime
from carepool.core.errors import Conflict, FieldError, InvalidInput
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
    RecordVersion,
    ResultStatus,
    Sex,
)
from carepool.records.schemas import (
    EncounterIn,
    Identifier,
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
    # Who the records come from (an update of a patient is audited in their name; None: the
    # caller audits) and through which channel.
    actor: Principal | None = None
    channel: str = "ingest"


class PatientConflict(Conflict):
    """A record that exists under one patient arrived under another (or refers to a record of
    another patient): refused, never moved. `detail` names the record and both patients."""

    code = "patient-conflict"


class Stored(NamedTuple):
    """What `store` did with a record (a tuple: made once per record, it is cheaper)."""

    outcome: Outcome
    kind: str
    id: str
    stubs: int = 0


class _Identifier(NamedTuple):
    """A new patient's identifier, inserted with it (no ORM object for a row not loaded)."""

    institution_id: str
    system: str
    value: str
    type: str


def content_hash_of(record: RecordIn) -> str:
    """`record.content_hash()` (the dedup key; kept under this name for the store's callers)."""
    return record.content_hash()


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


@functools.lru_cache(maxsize=65_536)  # a feed names each patient in every message
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


_PROVENANCE_COLUMNS = (
    "record_type",
    "record_id",
    "institution_id",
    "run_id",
    "feed",
    "source",
    "message",
    "position",
    "received_at",
    "content_hash",
    "original",
)


def _provenance(
    ctx: StoreContext,
    kind: str,
    record_id: str,
    content_hash: str,
    message: str,
    position: str,
    original: str | None,
) -> tuple[Any, ...]:
    """A provenance row (values of `_PROVENANCE_COLUMNS`), written with the batch's records."""
    return (
        kind,
        record_id,
        ctx.institution_id,
        ctx.run_id,
        ctx.feed,
        ctx.source[:300],
        message[:300],
        position[:200],
        ctx.received_at or utcnow(),
        content_hash,
        original,
    )


def _aware(value: datetime | None) -> datetime | None:
    """`UtcDateTime` for rows sent with COPY: an aware timestamp goes as it is (with its offset
    the server stores the same instant); anything else gets the type's own treatment."""
    if value is not None and value.utcoffset() is None:
        return UtcDateTime().process_bind_param(value, postgresql.dialect())
    return value


def _insert_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Any],
    *,
    keys: Sequence[str] | None = None,
) -> None:
    """Insert `rows` in one go: with COPY on PostgreSQL (one stream instead of a statement per
    row), with one executemany elsewhere. A row is a tuple of the values of `columns`, in that
    order, or with `keys` a dict holding them under those keys. Values go through the columns'
    types as they would in an INSERT (timestamps: see `_aware`)."""
    dialect = conn.dialect
    if dialect.name != "postgresql" or dialect.driver != "psycopg":
        if keys is not None:
            rows = [tuple(row[k] for k in keys) for row in rows]
        conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    sql, write_rows = _copy_writer(table, tuple(columns), tuple(keys) if keys else None, dialect)
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            write_rows(copy.write_row, rows)
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error) from exc


_COPY_WRITERS: dict[tuple[Any, ...], tuple[str, Any]] = {}


def _json_list(value: Any) -> Any:
    """What psycopg sends for a JSON(B) column's value (`json.dumps`), lists of text
    (flags) remembered: most rows carry the same few."""
    if value.__class__ is not list or not all(v.__class__ is str for v in value):
        return json.dumps(value)
    key = tuple(value)
    text = _JSON_LISTS.get(key)
    if text is None:
        text = json.dumps(value)
        if len(_JSON_LISTS) >= 10_000:
            _JSON_LISTS.clear()
        _JSON_LISTS[key] = text
    return text


_JSON_LISTS: dict[tuple[str, ...], str] = {}


def _copy_writer(
    table: Table, columns: tuple[str, ...], keys: tuple[str, ...] | None, dialect: Any
) -> tuple[str, Any]:
    """The COPY statement for `columns` of `table` and a function writing rows to it, each
    value converted as its column's type would (built once per table and column list: one
    expression per column instead of a loop over converters for every row)."""
    cache_key = (table, columns, keys, dialect.name, dialect.driver)
    found = _COPY_WRITERS.get(cache_key)
    if found is not None:
        return found
    scope: dict[str, Any] = {"A": _aware, "UTC": UTC, "J": _json_list}
    parts = []
    for i, name in enumerate(columns):
        value = f"r[{keys[i]!r}]" if keys is not None else f"r[{i}]"
        column_type = table.c[name].type
        impl = column_type.dialect_impl(dialect)
        if isinstance(column_type, UtcDateTime):
            # The type's own check, without its conversion to UTC: COPY sends the offset and
            # the server stores the same instant.
            parts.append(f"(v if (v := {value}) is None or v.tzinfo is UTC else A(v))")
        elif isinstance(column_type, JSON) and not column_type.none_as_null:
            parts.append(f"J({value})")  # None included: JSON `null`, as psycopg's Json sends
        elif (process := impl.bind_processor(dialect)) is not None:
            scope[f"P{i}"] = process
            parts.append(f"P{i}({value})")
        else:
            parts.append(value)
    code = (
        "def write_rows(write_row, rows):\n"
        "    for r in rows:\n"
        f"        write_row(({', '.join(parts)},))\n"
    )
    exec(code, scope)
    quote = dialect.identifier_preparer.quote
    sql = (
        f"COPY {dialect.identifier_preparer.format_table(table)} "
        f"({', '.join(quote(table.c[name].name) for name in columns)}) FROM STDIN"
    )
    found = _COPY_WRITERS[cache_key] = (sql, scope["write_rows"])
    return found


def _apply_patient(obj: Patient, rec: PatientIn, std: Standard | None, ctx: StoreContext) -> None:
    """Fill a patient; a loaded patient's identifiers are reconciled row by row (kept rows stay,
    so the unique (patient, system, value) constraint holds at every statement)."""
    pinyin = std.name_pinyin if std is not None else None
    obj.name = rec.name[:200]
    obj.family = rec.family[:100]
    obj.given = rec.given[:100]
    obj.name_pinyin = (pinyin_of(rec.name) if pinyin is None else pinyin)[:300]
    obj.sex = _enum(Sex, rec.sex, Sex.UNKNOWN)
    obj.birth_date = rec.birth_date
    obj.national_id = rec.national_id[:40] if rec.national_id else None
    obj.phone = rec.phone[:40]
    obj.address = rec.address[:400]
    obj.deceased = rec.deceased or rec.deceased_at is not None
    obj.deceased_at = rec.deceased_at
    obj.stub = False
    seen: set[tuple[str, str]] = set()
    identifiers = []
    for ident in rec.identifiers:
        key = (ident.system[:200], ident.value[:200])
        if not ident.value or key in seen:
            continue
        seen.add(key)
        identifiers.append((key[0], key[1], ident.type[:20]))
    row: Any = obj
    if isinstance(row, _Row):  # new: `write` inserts these with the patient
        row.identifiers = [_Identifier(ctx.institution_id, *i) for i in identifiers]
        return
    current = {(i.system, i.value): i for i in obj.identifiers}
    wanted = {(s, v): t for s, v, t in identifiers}
    for key, row in current.items():
        if key not in wanted:
            obj.identifiers.remove(row)
        elif row.type != wanted[key]:
            row.type = wanted[key]
    for (system, value), kind in wanted.items():
        if (system, value) not in current:
            obj.identifiers.append(
                PatientIdentifier(
                    institution_id=ctx.institution_id, system=system, value=value, type=kind
                )
            )


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


def _apply_report(
    obj: DiagnosticReport, rec: ReportIn, std: Standard | None, ctx: StoreContext
) -> None:
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
    # The order's id is known before the order arrives (ids derive from natural keys).
    obj.order_id = ref_id(ctx.institution_id, rec.order) if rec.order is not None else None
    obj.placer_number = rec.placer_number[:100]
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
    row: Any = obj
    if isinstance(row, _Row):  # a new record's values: no attribute machinery needed
        values = row.__dict__
        changed = any(values[k] != v for k, v in new.items())
        if changed:
            values.update(new)
            values["standardised_at"] = utcnow()
        return changed
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
    obj.comparator = rec.comparator[:2]
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


# The references to parents each record class has (a failed `getattr` costs an exception).
_PARENT_REFS: dict[type, tuple[str, ...]] = {
    PatientIn: (),
    EncounterIn: ("patient",),
    ReportIn: ("patient", "encounter", "order"),
    ObservationIn: ("patient", "encounter", "report"),
    OrderIn: ("patient", "encounter"),
    OtherIn: ("patient",),
}
# The records of a patient that a record may refer to: each must belong to the record's patient.
_OWNED_REFS: dict[type, tuple[str, ...]] = {
    cls: tuple(a for a in refs if a != "patient") for cls, refs in _PARENT_REFS.items()
}
# (member, kind, system, local id) -> record id: `ref_id`, remembered across batches.
_REF_IDS: dict[tuple[str, str, str, str], str] = {}
_REF_IDS_MAX = 20_000  # about 5 MB; a batch names a few thousand records


def _remember_ref(key: tuple[str, str, str, str], rid: str) -> str:
    """Keep `rid` as the id of the record `key` names (the memo starts again when full)."""
    if len(_REF_IDS) >= _REF_IDS_MAX:
        _REF_IDS.clear()
    _REF_IDS[key] = rid
    return rid


# Parents before children, so foreign keys hold at every insert.
_INSERT_ORDER = ("patient", "encounter", "report", "observation", "order", "other")
_STORES = "carepool.record_stores"  # Session.info key: the stores with rows to write


class _Row:
    """A new record's values by attribute name, inserted in bulk when its store writes.

    Not a mapped object: building and flushing one ORM object per record cost more than parsing,
    standardising and hashing together. The `_apply_*` functions fill rows and loaded objects
    alike, and columns added to a model are picked up with their defaults.
    """

    id: str
    report_id: str | None
    identifiers: list[Any]  # `_Identifier`s

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


@dataclass(frozen=True)
class _Table:
    table: Table
    columns: list[tuple[str, str]]  # (attribute, column key)
    defaults: dict[str, Any]  # attribute -> scalar default (None when the column has none)
    factories: list[tuple[str, Any]]  # attribute -> callable default (`utcnow`, `list`)


@functools.cache
def _table(model: Any) -> _Table:
    columns, defaults, factories = [], {}, []
    for prop in sa_inspect(model).column_attrs:
        column = prop.columns[0]
        columns.append((prop.key, column.key))
        default = column.default
        if default is not None and getattr(default, "is_callable", False):
            factories.append((prop.key, default.arg))
        else:
            defaults[prop.key] = getattr(default, "arg", None)
    return _Table(model.__table__, columns, defaults, factories)


def _new_row(kind: str, values: dict[str, Any]) -> _Row:
    spec = _table(_MODELS[kind])
    out = dict(spec.defaults)
    for name, factory in spec.factories:
        if name not in values:
            out[name] = factory(None)
    out.update(values)
    if kind == "patient":
        out["identifiers"] = []
    return _Row(out)


def _write_pending(session: Session) -> None:
    """Session hook: every store writes its pending rows before the ORM flushes or commits."""
    for store in session.info.get(_STORES, ()):
        store.write()


class RecordStore:
    """Stores incoming records of one member in the caller's transaction, fast.

    `prefetch` looks up, in one query per kind, which of a batch's records and referenced
    parents exist and with which content hash; `store` then decides insert / update / duplicate
    without a query per record. New records and their provenance are kept as rows and inserted
    in bulk (one multi-row statement per table, parents first) by `write`, which runs when the
    caller calls `flush` and, at the latest, before the session flushes or commits; changes to
    records that exist go through the ORM as before. The same look-ups tell each record's
    patient, so a record arriving under another patient is refused without a query of its own.
    """

    def __init__(self, session: Session, ctx: StoreContext) -> None:
        self.session = session
        self.ctx = ctx
        self.known: dict[str, str] = {}  # record id -> content hash in the database or session
        self.owner: dict[str, str | None] = {}  # record id -> its patient's id (not patients)
        self._patient_names: dict[str, str] = {}  # patient id -> `system|local id` (conflicts)
        self.seen: set[tuple[str, str]] = set()  # (record id, content hash) received before
        self.objects: dict[str, Any] = {}  # strong references to what this store touched
        self._plans: dict[int, _Planned] = {}
        self._looked_up: set[str] = set()
        self.stubs = 0
        self._rows: dict[str, list[_Row]] = {}  # kind -> new records not yet written
        self._provenance: list[tuple[Any, ...]] = []
        self._links: list[tuple[str, str]] = []  # (report id, observation id) to link
        stores = session.info.get(_STORES)
        if stores is None:
            stores = session.info[_STORES] = []
            event.listen(session, "before_flush", lambda s, _ctx, _objs: _write_pending(s))
            event.listen(session, "before_commit", _write_pending)
        stores.append(self)

    def plan(self, record: RecordIn, *, content_hash: str | None = None) -> _Planned:
        """The record's natural key, id and content hash (`content_hash` if the caller has it)."""
        planned = self._plans.get(id(record))
        if planned is None:
            content_hash = content_hash or content_hash_of(record)
            key = _key_of(self.ctx, record, content_hash)
            if record.local_id and record.kind != "other":
                # Its id is the one references to it get: remembered for them (`_ref_id`).
                ref_key = (self.ctx.institution_id, record.kind, record.system, record.local_id)
                rid = _REF_IDS.get(ref_key) or _remember_ref(ref_key, id_for(record.kind, key))
            else:
                rid = id_for(record.kind, key)
            planned = _Planned(record, key, rid, content_hash)
            self._plans[id(record)] = planned
        return planned

    def prefetch(self, records: list[RecordIn]) -> None:
        """Learn which of these records (and the parents they refer to) exist already."""
        wanted: dict[str, set[str]] = {}
        known = self._plans
        plans = [known.get(id(record)) or self.plan(record) for record in records]
        for record, planned in zip(records, plans, strict=True):
            wanted.setdefault(record.kind, set()).add(planned.id)
            attrs = _PARENT_REFS.get(type(record))
            if attrs is None:
                attrs = tuple(a for a in ("patient", "encounter", "report") if hasattr(record, a))
            for attr in attrs:
                ref = getattr(record, attr)
                if ref is not None:
                    wanted.setdefault(ref.kind, set()).add(self._ref_id(ref))
        changed: list[str] = []
        for kind, ids in wanted.items():
            ids = ids - self._looked_up - set(self.known)
            if not ids:
                continue
            self._looked_up |= ids
            model = _MODELS[kind]
            owned = kind != "patient"
            columns = (model.id, model.content_hash, model.patient_id if owned else model.id)
            for chunk in _chunks(sorted(ids), 500):
                rows = self.session.execute(select(*columns).where(self._among(model.id, chunk)))
                for rid, content_hash, patient_id in rows:
                    self.known[rid] = content_hash
                    if owned:
                        self.owner[rid] = patient_id
        for planned in plans:
            current = self.known.get(planned.id)
            if current is not None and current != planned.content_hash:
                changed.append(planned.id)
        for chunk in _chunks(sorted(set(changed)), 500):
            rows = self.session.execute(
                select(Provenance.record_id, Provenance.content_hash).where(
                    self._among(Provenance.record_id, chunk)
                )
            )
            self.seen.update((rid, h) for rid, h in rows)

    def _among(self, column: Any, ids: list[str]) -> Any:
        """`column IN ids`; on PostgreSQL `= ANY(array)`: one parameter instead of hundreds, so
        the server parses and plans the same short statement for every batch. The array goes
        as one comma-separated text (record ids have no commas): psycopg adapts a list of
        thousands of strings one by one."""
        if self.session.get_bind().dialect.name == "postgresql":
            joined = ",".join(ids)
            return column == any_(func.string_to_array(bindparam("ids", joined, String), ","))
        return column.in_(ids)

    def _exists(self, kind: str, rid: str) -> bool:
        if rid in self.known:
            return True
        if rid not in self._looked_up:
            self._looked_up.add(rid)
            model = _MODELS[kind]
            owned = kind != "patient"
            columns = (model.content_hash, model.patient_id if owned else model.id)
            found = self.session.execute(select(*columns).where(model.id == rid)).first()
            if found is not None:
                self.known[rid] = found[0]
                if owned:
                    self.owner[rid] = found[1]
                return True
        return False

    def _check_patient(self, record: RecordIn, rid: str, exists: bool) -> str | None:
        """The id of the record's patient; raises `PatientConflict` if the record exists under
        another patient or refers to an encounter, report or order of another patient."""
        ref = getattr(record, "patient", None) if record.kind != "patient" else None
        if ref is None:
            return None
        pid = self._ref_id(ref)
        owner = self.owner
        if exists:
            stored = owner.get(rid)
            if stored is not None and stored != pid:
                raise self._conflict(record.kind, record.system, record.local_id, stored, ref)
        for attr in _OWNED_REFS[type(record)]:
            parent = getattr(record, attr)
            if parent is None:
                continue
            parent_id = self._ref_id(parent)
            stored = owner.get(parent_id)
            if stored is None and parent_id not in self.known:
                self._exists(parent.kind, parent_id)  # prefetch asked already: no query
                stored = owner.get(parent_id)
            if stored is not None and stored != pid:
                raise self._conflict(
                    parent.kind,
                    parent.system,
                    parent.local_id,
                    stored,
                    ref,
                    via=f"the {record.kind} {record.system}|{record.local_id or '(no id)'}",
                )
        return pid

    def _conflict(
        self,
        kind: str,
        system: str,
        local_id: str | None,
        stored: str,
        new: Ref,
        via: str = "",
    ) -> PatientConflict:
        name = self._patient_names.get(stored)
        if name is None:
            pending = self.objects.get(stored)  # a patient of this batch, not written yet
            row = (
                (pending.id_system, pending.local_id)
                if pending is not None
                else self.session.execute(
                    select(Patient.id_system, Patient.local_id).where(Patient.id == stored)
                ).first()
            )
            name = f"{row[0]}|{row[1]}" if row is not None else "(unknown)"
            self._patient_names[stored] = name
        subject = f"{via} refers to the {kind}" if via else f"the {kind}"
        return PatientConflict(
            f"patient conflict: {subject} {system}|{local_id or '(no id)'} belongs to patient "
            f"{name} ({stored}) at this member, but this input names patient "
            f"{new.system}|{new.local_id} ({self._ref_id(new)}); nothing was moved (the stored "
            f"record is unchanged; an explicit merge is not modelled yet)",
            kind=kind,
            natural_id=f"{system}|{local_id}",
            stored_patient=stored,
            new_patient=self._ref_id(new),
        )

    def _ref_id(self, ref: Ref) -> str:
        """`ref_id` for this store's member, remembered (a message names its patient often;
        keyed by the reference's text, which hashes in C, unlike a `Ref`)."""
        key = (self.ctx.institution_id, ref.kind, ref.system, ref.local_id)
        return _REF_IDS.get(key) or _remember_ref(key, ref_id(self.ctx.institution_id, ref))

    def _stub(self, kind: str, ref: Ref | None, patient_id: str | None = None) -> str | None:
        """The id of a referenced record, made as a placeholder if it has not arrived yet."""
        if ref is None:
            return None
        rid = self._ref_id(ref)
        if rid in self.known or self._exists(kind, rid):
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
        if kind == "patient":
            obj = _new_row(kind, {"stub": True, **common})
        else:
            obj = _new_row(kind, {"patient_id": patient_id, "flags": ["stub"], **common})
            self.owner[rid] = patient_id
        self._rows.setdefault(kind, []).append(obj)
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
        flags: Sequence[str] = (),
    ) -> Stored:
        """Insert, update or recognise one record (see the module docstring); `flags` are the
        quality flags the connector found (kept with the record, not part of its content)."""
        planned = self._plans.get(id(record)) or self.plan(record)
        rid, kind, content_hash = planned.id, record.kind, planned.content_hash
        exists = self._exists(kind, rid)
        if kind != "patient":
            self._check_patient(record, rid, exists)
        if not exists:
            obj: Any = None
        else:
            current = self.known[rid]
            if current == content_hash or (rid, content_hash) in self.seen:
                return Stored(Outcome.DUPLICATE, kind, rid)
            obj = self.objects.get(rid) or self.session.get(_MODELS[kind], rid)
        stubs_before = self.stubs
        now = utcnow()
        is_new = obj is None
        before: dict[str, Any] | None = None
        if obj is None:
            obj = _new_row(
                kind,
                {
                    "id": rid,
                    "natural_key": planned.key,
                    "institution_id": self.ctx.institution_id,
                    "content_hash": content_hash,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            if kind == "other":
                obj.local_id = (record.local_id or "")[:200]
            else:
                obj.id_system = record.system[:200]
                obj.local_id = record.local_id
        else:
            before = self._keep_version(kind, obj, now)
            obj.content_hash = content_hash
            obj.updated_at = now
        self.objects[rid] = obj
        self.known[rid] = content_hash
        self.seen.add((rid, content_hash))
        if isinstance(record, PatientIn):
            _apply_patient(obj, record, standard, self.ctx)
        elif isinstance(record, EncounterIn):
            obj.patient_id = self._stub("patient", record.patient)
            _apply_encounter(obj, record, standard)
        elif isinstance(record, ReportIn):
            obj.patient_id = self._stub("patient", record.patient)
            obj.encounter_id = self._stub("encounter", record.encounter, obj.patient_id)
            _apply_report(obj, record, standard, self.ctx)
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
        if kind != "other":
            if flags:
                current_flags = obj.flags if kind in _STANDARD_FLAGGED else []
                obj.flags = list(current_flags) + [f for f in flags if f not in current_flags]
            elif kind not in _STANDARD_FLAGGED:
                obj.flags = []
        if kind != "patient":
            self.owner[rid] = obj.patient_id
        if is_new:
            self._rows.setdefault(kind, []).append(obj)
        elif kind == "patient" and before is not None:
            self._audit_patient(obj, before)
        if isinstance(record, ReportIn) and record.results:
            self._link_results(rid, record.results)
        self._provenance.append(
            _provenance(self.ctx, kind, rid, content_hash, message, position, original)
        )
        return Stored(
            Outcome.STORED if is_new else Outcome.UPDATED, kind, rid, self.stubs - stubs_before
        )

    def _keep_version(self, kind: str, obj: Any, now: datetime) -> dict[str, Any] | None:
        """Keep a stored record's content before an update replaces it (`record_version`);
        returns it (None for a placeholder or a row of this batch, which have no version)."""
        if isinstance(obj, _Row) or obj.content_hash == STUB_HASH:
            return None
        content = _content_of(obj)
        self.session.add(
            RecordVersion(
                record_type=kind,
                record_id=obj.id,
                institution_id=obj.institution_id,
                content_hash=obj.content_hash,
                content=content,
                replaced_at=now,
                replaced_by_run=self.ctx.run_id,
            )
        )
        return content

    def _audit_patient(self, obj: Patient, before: dict[str, Any]) -> None:
        """One audit row per updated patient: what changed (identifiers, name, birth date...)."""
        actor = self.ctx.actor
        if actor is None:
            return
        after = _content_of(obj)
        changed = sorted(k for k in after if k not in _UNAUDITED and after[k] != before.get(k))
        audit.record(
            self.session,
            actor=actor,
            action=AuditAction.UPDATE,
            entity_type="patient",
            entity_id=obj.id,
            entity_institution=obj.institution_id,
            before={k: before.get(k) for k in changed},
            after={k: after[k] for k in changed},
            detail=f"updated by ingest run {self.ctx.run_id}: {', '.join(changed) or 'content'}",
            source=self.ctx.channel,
        )

    def _link_results(self, report_id: str, results: list[Ref]) -> None:
        """Point the observations a report lists at it (those stored before it, too)."""
        for ref in results:
            self._links.append((report_id, self._ref_id(ref)))

    def write(self) -> None:
        """Insert the pending new records (parents first) and their provenance, then link
        results to their reports. Runs inside the caller's transaction; commits nothing."""
        links, self._links = self._links, []
        later: list[dict[str, str]] = []
        for report_id, obs_id in links:
            obj = self.objects.get(obs_id)
            if obj is None:
                later.append({"b_obs": obs_id, "b_report": report_id})
            elif obj.report_id is None:
                obj.report_id = report_id
        rows, self._rows = self._rows, {}
        provenance, self._provenance = self._provenance, []
        if not rows and not provenance and not later:
            return
        conn = self.session.connection()
        for kind in _INSERT_ORDER:
            pending = rows.get(kind)
            if not pending:
                continue
            spec = _table(_MODELS[kind])
            _insert_rows(
                conn,
                spec.table,
                [key for _name, key in spec.columns],
                [r.__dict__ for r in pending],
                keys=[name for name, _key in spec.columns],
            )
            if kind == "patient":
                identifiers = [
                    (r.id, i.institution_id, i.system, i.value, i.type)
                    for r in pending
                    for i in r.identifiers
                ]
                if identifiers:
                    _insert_rows(
                        conn,
                        _table(PatientIdentifier).table,
                        ("patient_id", "institution_id", "system", "value", "type"),
                        identifiers,
                    )
            for r in pending:
                if self.objects.get(r.id) is r:
                    del self.objects[r.id]  # in the database now: a change loads it
        if provenance:
            _insert_rows(conn, _table(Provenance).table, _PROVENANCE_COLUMNS, provenance)
        if later:
            table = _table(Observation).table
            conn.execute(
                update(table)
                .where(table.c.id == bindparam("b_obs"), table.c.report_id.is_(None))
                .values(report_id=bindparam("b_report")),
                later,
            )

    def flush(self) -> None:
        """Write everything this store holds, then the ORM's changes to existing records."""
        self.write()
        self.session.flush()

    def discard(self) -> None:
        """Forget what has not been written (after the savepoint it was meant for failed)."""
        self._rows, self._provenance, self._links = {}, [], []


# Kinds whose `flags` the standard form sets (parse flags are added to them); the others' flags
# are the parse flags alone.
_STANDARD_FLAGGED = frozenset({"encounter", "report", "observation"})
# Columns a patient's audit row leaves out (bookkeeping, not what the member said).
_UNAUDITED = frozenset({"content_hash", "updated_at", "created_at", "stub", "name_pinyin"})


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN or infinity
    return value


def _content_of(obj: Any) -> dict[str, Any]:
    """A loaded record's columns as JSON (a patient's with its identifiers)."""
    out = {
        prop.key: _json_safe(getattr(obj, prop.key)) for prop in sa_inspect(type(obj)).column_attrs
    }
    if isinstance(obj, Patient):
        out["identifiers"] = sorted([i.system, i.value, i.type] for i in obj.identifiers)
    return out


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
    store.flush()
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


def do_register_patient(
    session: Session,
    *,
    actor: Principal,
    institution_id: str,
    local_id: str,
    system: str | None = None,
    name: str = "",
    family: str = "",
    given: str = "",
    sex: str = "unknown",
    birth_date: date | None = None,
    national_id: str | None = None,
    phone: str = "",
    address: str = "",
) -> tuple[Patient, bool]:
    """Register a walk-in patient at a member: the records `Patient` bookings then name.

    The record gets the natural key a feed of that member gives the same MRN (`system` is the
    identifier's assigning authority as the feed sends it, HL7 PID-3.4; default: the member's
    id, which the HL7 connector falls back to), so a later feed updates it instead of adding a
    second record, and the index links it like any other. A patient already registered (or
    received) under that key is returned unchanged (created False); a placeholder left by a
    result that named it is filled in. Scoped to the caller's member; audited; one event.
    """
    actor.require_scope("Booking", "write")
    actor.require_institution(institution_id, f"patients of {institution_id}")
    catalog_service.get(session, kind="institution", id=institution_id)  # 404 if unknown
    mrn, authority = local_id.strip(), (system or institution_id).strip()
    if not mrn or not authority:
        raise InvalidInput(
            "a patient needs a medical record number",
            [FieldError("body:local_id", "the member's MRN of the patient (not empty)")],
        )
    key = natural_key(institution_id, "patient", authority, mrn)
    existing = session.scalar(select(Patient).where(Patient.natural_key == key))
    if existing is not None and not existing.stub:
        return existing, False
    record = PatientIn(
        system=authority,
        local_id=mrn,
        identifiers=[Identifier(system=authority, value=mrn, type="MR")],
        name=name or " ".join(p for p in (family, given) if p),
        family=family,
        given=given,
        sex=sex,
        birth_date=birth_date,
        national_id=national_id or None,
        phone=phone,
        address=address,
    )
    ctx = StoreContext(
        institution_id=institution_id, feed="register", source=f"register:{actor.username}"
    )
    store = RecordStore(session, ctx)
    stored = store.store(record)
    store.flush()
    session.info[_STORES].remove(store)  # done: a desk registering many keeps no list of stores
    patient = session.get(Patient, stored.id)
    assert patient is not None
    after = {
        "id": patient.id,
        "institution_id": institution_id,
        "system": authority,
        "local_id": mrn,
        "name": patient.name,
        "sex": patient.sex.value,
        "birth_date": birth_date.isoformat() if birth_date else None,
    }
    audit.record(
        session,
        actor=actor,
        action=AuditAction.CREATE,
        entity_type="patient",
        entity_id=patient.id,
        entity_institution=institution_id,
        after=after,
        detail="register",
    )
    events.emit(
        session,
        type="records.patient.registered",
        entity_type="patient",
        entity_id=patient.id,
        institution_id=institution_id,
        payload={"system": authority, "local_id": mrn},
    )
    return patient, True
