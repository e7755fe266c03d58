"""Ingest runs: feed bytes through a connector, standardise, store, count, dead-letter.

A run is a long job, so unlike other actions it takes a session *factory* and commits in
batches (it opens those transactions itself): progress is visible while it runs, memory stays
flat, and a crash loses at most one batch (re-running is safe: storing is idempotent). A batch
is first stored in one go (records validated by the connector, looked up in one query per kind,
inserted with one statement per table, COPY on PostgreSQL); if the database refuses any of it,
the batch is rolled back and stored again unit by unit, each in a savepoint, and a failing unit
record by record, so one bad record never takes its batch down. A unit with a rejected record
goes to the dead-letter store with the reason and its original bytes. A record that exists
under another patient is rejected as a conflict (never moved), with the records that depend on
it; the rest of its unit is stored. No input can abort a run: whatever a connector raises while
parsing an input keeps the units parsed before and dead-letters the input's bytes with the
input, the position and the error. Large runs parse in worker processes while this one stores
(`_parallel`). The run writes one audit row (the records carry provenance), and one per updated
patient. Invariant: received = stored + duplicates + rejected.
"""

from __future__ import annotations

import codecs
import gc
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.catalog import service as catalog_service
from carepool.catalog.codes import DEPARTMENT_CODES
from carepool.core import audit, events
from carepool.core.audit import AuditAction, AuditOutcome
from carepool.core.auth import Principal
from carepool.core.db import transaction
from carepool.core.errors import Conflict, FieldError, InvalidInput, NotFound
from carepool.core.time import utcnow
from carepool.identity import actions as identity_actions
from carepool.ingest import _parallel
from carepool.ingest import service as ingest_service
from carepool.ingest.connectors import ParseOptions, Unit, connector_for, detect_format
from carepool.ingest.connectors.tabular import load_mapping, parse_mapping
from carepool.ingest.models import DeadLetter, DeadLetterStatus, IngestRun, RunStatus
from carepool.records import service as records_service
from carepool.records.actions import (
    Outcome,
    PatientConflict,
    RecordStore,
    StoreContext,
    content_hash_of,
    pinyin_of,
)
from carepool.records.schemas import (
    EncounterIn,
    ObservationIn,
    ObservationStandard,
    OrderIn,
    PatientIn,
    RecordIn,
    ReportIn,
    Standard,
)
from carepool.terminology import actions as terminology_actions
from carepool.terminology import service as terminology_service
from carepool.terminology.resolver import DEPARTMENT, Terminology, UnmappedTerm
from carepool.terminology.seed import norm_text

ProgressFn = Callable[[int, int], None]

FLAG_UNMAPPED_DEPARTMENT = "unmapped-department"


@dataclass(frozen=True)
class Input:
    """One input of a run: a name (file name, `request`), its bytes, its format if known."""

    name: str
    data: bytes
    format: str | None = None


@dataclass
class RunSummary:
    run_id: str
    institution_id: str
    status: str = RunStatus.RUNNING.value
    received: int = 0
    stored: int = 0
    updated: int = 0
    duplicates: int = 0
    rejected: int = 0
    stubs: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    # Parts kept but not modelled, by type (`segment:AL1`: the sum of the units' `unmodelled`).
    unmodelled: dict[str, int] = field(default_factory=dict)
    # What the run noticed without rejecting anything (an empty input); the run still succeeds.
    warnings: list[str] = field(default_factory=list)
    dead_letters: list[int] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def balanced(self) -> bool:
        return self.received == self.stored + self.duplicates + self.rejected

    def count(self, kind: str, what: str, n: int = 1) -> None:
        per = self.by_kind.setdefault(kind, {})
        per[what] = per.get(what, 0) + n

    def as_dict(self) -> dict[str, Any]:
        seconds = (
            (self.finished_at - self.started_at).total_seconds()
            if self.finished_at and self.started_at
            else None
        )
        return {
            "run_id": self.run_id,
            "source": self.institution_id,
            "status": self.status,
            "received": self.received,
            "stored": self.stored,
            "updated": self.updated,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "stubs": self.stubs,
            "balanced": self.balanced,
            "by_kind": self.by_kind,
            "flags": self.flags,
            "unmodelled": self.unmodelled,
            "warnings": self.warnings,
            "dead_letters": self.dead_letters,
            "inputs": self.inputs,
            "seconds": seconds,
        }


# -- standardisation ------------------------------------------------------------------------------


def standardise(
    terminology: Terminology, member: str, record: RecordIn
) -> tuple[Standard | None, list[UnmappedTerm]]:
    """The standard form terminology gives a record, and the terms it did not know."""
    if isinstance(record, ObservationIn):
        std = terminology.standardise(
            member,
            record.codings,
            text=record.text,
            value=record.value_number,
            unit=record.unit or None,
            ref_low=record.ref_low,
            ref_high=record.ref_high,
        )
        return (
            Standard(
                observation=ObservationStandard(
                    loinc=std.loinc,
                    display=std.display,
                    original=std.original,
                    value=std.value,
                    unit=std.unit,
                    ref_low=std.ref_low,
                    ref_high=std.ref_high,
                    flags=std.flags,
                    note=std.note,
                )
            ),
            std.unmapped,
        )
    if isinstance(record, EncounterIn):
        code = record.department_code if record.department_code in DEPARTMENT_CODES else None
        code = code or terminology.resolve_department(member, record.department_text)
        if record.department_text and code is None:
            term = UnmappedTerm(
                DEPARTMENT, "", norm_text(record.department_text), record.department_text, "name"
            )
            return Standard(department_code=None, flags=[FLAG_UNMAPPED_DEPARTMENT]), [term]
        return Standard(department_code=code), []
    if isinstance(record, ReportIn | OrderIn):
        result = terminology.resolve_code(member, record.codings, record.text)
        flags = [] if result.loinc or not record.codings else ["unmapped-code"]
        return Standard(loinc=result.loinc, display=result.display, flags=flags), []
    return None, []


# -- the run --------------------------------------------------------------------------------------


@dataclass
class _Plan:
    inputs: list[tuple[Input, str]]  # with their format
    options: ParseOptions
    dl_options: dict[str, Any]


def _prepare(
    session: Session,
    *,
    actor: Principal,
    institution_id: str,
    inputs: list[Input],
    format: str | None,
    mapping: str | None,
    mapping_doc: dict[str, Any] | None,
    encoding: str | None = None,
) -> _Plan:
    actor.require_scope("Ingest", "write")
    try:
        catalog_service.get(session, kind="institution", id=institution_id)
    except NotFound as exc:
        raise InvalidInput(
            f"source member {institution_id!r} is not an institution of the catalogue",
            [FieldError("source", "not an institution id")],
        ) from exc
    actor.require_institution(institution_id, f"the records of {institution_id}")
    if not inputs:
        raise InvalidInput("nothing to ingest: give at least one input")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise InvalidInput(
                f"unknown character set {encoding!r}",
                [FieldError("encoding", "a character set name such as gb18030, utf-8, latin-1")],
            ) from exc
    planned = []
    for item in inputs:
        fmt = item.format or format
        if fmt is None:
            try:
                fmt = detect_format(item.name, item.data)
            except InvalidInput:
                if item.data:
                    raise
                fmt = EMPTY  # nothing to parse: the run warns about it
        if fmt != EMPTY:
            connector_for(fmt)
        planned.append((item, fmt))
    if mapping:
        load_mapping(mapping)  # refuse a bad mapping before the run starts
    if mapping_doc is not None:
        parse_mapping(mapping_doc, "the mapping document")
    tz = ZoneInfo(catalog_service.consortium_timezone(session))
    options = ParseOptions(timezone=tz, mapping=mapping, mapping_doc=mapping_doc, encoding=encoding)
    dl_options: dict[str, Any] = {}
    if mapping:
        dl_options["mapping"] = mapping
    if mapping_doc is not None:
        dl_options["mapping_doc"] = mapping_doc
    if encoding is not None:
        dl_options["encoding"] = encoding  # a retry decodes the bytes the same way
    return _Plan(planned, options, dl_options)


EMPTY = "empty"  # the format of an empty input whose format cannot be told


@dataclass(slots=True)
class _Prepared:
    """A unit parsed and standardised: the pure part of ingest, done in worker processes when a
    run is large (see `_parallel`)."""

    input: int  # index into the plan's inputs
    unit: Unit
    records: list[tuple[RecordIn, Standard | None, str, str | None, list[str]]]
    hashes: list[str]  # each record's content hash
    unmapped: list[UnmappedTerm]
    flags: list[str]


def _prepare_input(
    plan: _Plan, index: int, terminology: Terminology, institution_id: str
) -> Iterator[_Prepared]:
    """Parse one input and standardise its records (no database). Never raises for the input's
    sake: what the connector raises ends the input with a unit that dead-letters its bytes (the
    units before it are kept); a unit that cannot be standardised is rejected whole."""
    item, fmt = plan.inputs[index]
    if fmt == EMPTY or not item.data:
        return
    units = connector_for(fmt).units(item.data, source=item.name, options=plan.options)
    done, last = 0, ""
    while True:
        try:
            unit = next(units)
        except StopIteration:
            return
        except Exception as exc:
            yield _input_failed(index, item, exc, done, last)
            return
        done, last = done + 1, unit.position
        try:
            prepared = _standardised(index, unit, terminology, institution_id)
        except Exception as exc:
            prepared = _unit_failed(index, unit, exc)
        yield prepared


def _standardised(
    index: int, unit: Unit, terminology: Terminology, institution_id: str
) -> _Prepared:
    records = []
    unmapped: list[UnmappedTerm] = []
    flags: list[str] = []
    for parsed in unit.records:
        std, terms = standardise(terminology, institution_id, parsed.record)
        if std is None and isinstance(parsed.record, PatientIn):
            std = Standard(name_pinyin=pinyin_of(parsed.record.name))
        unmapped += terms
        flags += _flags(std)
        if parsed.flags:
            flags += parsed.flags
        records.append((parsed.record, std, parsed.position, parsed.original, parsed.flags))
    hashes = [content_hash_of(record) for record, *_rest in records]
    return _Prepared(index, unit, records, hashes, unmapped, flags)


def _error_text(exc: BaseException) -> str:
    """An error as a dead letter's reason says it: `KeyError: 'x'` (a domain error's detail)."""
    if isinstance(exc, InvalidInput):
        return exc.detail
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}"[:500] if detail else type(exc).__name__


def _input_failed(index: int, item: Input, exc: BaseException, done: int, last: str) -> _Prepared:
    """A unit for the rest of an input the connector could not read: the input's bytes (what a
    retry feeds back; the units before are duplicates then), and where and why it stopped."""
    where = f"after {last} (unit {done + 1})" if done else "at its start"
    position = item.name if not done else f"{item.name} after {last}"
    unit = Unit(position=position, raw=item.data, message=item.name)
    if isinstance(exc, InvalidInput) and not done:
        unit.errors.append((item.name, exc.detail))
    else:
        unit.errors.append((item.name, f"cannot read the input {where}: {_error_text(exc)}"))
    return _Prepared(index, unit, [], [], [], [])


def _unit_failed(index: int, unit: Unit, exc: BaseException) -> _Prepared:
    """A unit whose records could not be standardised: each is rejected with the error."""
    reason = f"cannot standardise: {_error_text(exc)}"
    failed = Unit(position=unit.position, raw=unit.raw, message=unit.message)
    failed.errors = list(unit.errors) + [(p.position, reason) for p in unit.records]
    failed.unmodelled = unit.unmodelled
    return _Prepared(index, failed, [], [], [], [])


def _worker_failed(plan: _Plan, index: int, exc: BaseException) -> Iterator[_Prepared]:
    """What `_parallel` gives for an input whose parse worker failed (it died, say): the units
    it sent before are kept (a retry finds them as duplicates), the input is dead-lettered."""
    item = plan.inputs[index][0]
    unit = Unit(position=item.name, raw=item.data, message=item.name)
    reason = f"cannot read the input: its parse worker failed ({_error_text(exc)})"
    unit.errors.append((item.name, reason))
    yield _Prepared(index, unit, [], [], [], [])


def _batches(prepared: Iterator[_Prepared], batch_size: int) -> Iterator[list[_Prepared]]:
    """Units in batches of about `batch_size` received records."""
    batch: list[_Prepared] = []
    size = 0
    for item in prepared:
        batch.append(item)
        size += max(item.unit.received, 1)
        if size >= batch_size:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# What storing a record can raise for reasons of that record (a value the database refuses, a
# field the store cannot take): the batch is stored again unit by unit, a failing unit record by
# record, so that only the records that fail are rejected.
_STORE_ERRORS = (Exception,)


def _store_unit(
    store: RecordStore,
    unit: Unit,
    prepared: list[tuple[RecordIn, Standard | None, str, str | None, list[str]]],
    counts: RunSummary,
    *,
    safe: bool,
) -> tuple[list[str], bool]:
    """Store a unit's records; returns the reasons for rejected ones and whether the store's
    caches are still valid (False after a savepoint was rolled back).

    The fast path (`safe=False`) writes straight into the batch's transaction; the safe path
    wraps the unit in a savepoint and, if that fails, retries record by record so that only the
    records that fail are rejected. A patient conflict rejects that record (the store refused
    it before writing anything) and the unit's other records go on.
    """
    session = store.session
    conflicts: list[str] = []

    def one(
        record: RecordIn,
        std: Standard | None,
        position: str,
        original: str | None,
        flags: list[str],
    ) -> None:
        try:
            stored = store.store(
                record,
                standard=std,
                message=unit.message,
                position=position,
                original=original,
                flags=flags,
            )
        except PatientConflict as exc:
            counts.rejected += 1
            counts.count(record.kind, "rejected")
            counts.count(record.kind, "conflicts")
            conflicts.append(f"{position}: {exc.detail}")
            return
        counts.stubs += stored.stubs
        if stored.outcome is Outcome.DUPLICATE:
            counts.duplicates += 1
            counts.count(stored.kind, "duplicates")
        else:
            counts.stored += 1
            counts.count(stored.kind, "stored")
            if stored.outcome is Outcome.UPDATED:
                counts.updated += 1
                counts.count(stored.kind, "updated")

    if not safe:
        for item in prepared:
            one(*item)
        return conflicts, True  # the caller flushes the whole batch
    snapshot = _counters(counts)
    try:
        with session.begin_nested():
            for item in prepared:
                one(*item)
            store.flush()
        return conflicts, True
    except _STORE_ERRORS:
        store.discard()
        _restore(counts, snapshot)
        conflicts.clear()
    reasons: list[str] = conflicts
    for record, std, position, original, flags in prepared:
        fresh = RecordStore(session, store.ctx)
        snapshot = _counters(counts)
        try:
            with session.begin_nested():
                store = fresh
                one(record, std, position, original, flags)
                store.flush()
        except _STORE_ERRORS as exc:
            store.discard()
            _restore(counts, snapshot)
            counts.rejected += 1
            counts.count(record.kind, "rejected")
            reasons.append(f"{position}: cannot store the {record.kind}: {_short(exc)}")
    return reasons, False


def _counters(counts: RunSummary) -> tuple[Any, ...]:
    return (
        counts.stored,
        counts.updated,
        counts.duplicates,
        counts.rejected,
        counts.stubs,
        {k: dict(v) for k, v in counts.by_kind.items()},
    )


def _restore(counts: RunSummary, snapshot: tuple[Any, ...]) -> None:
    (
        counts.stored,
        counts.updated,
        counts.duplicates,
        counts.rejected,
        counts.stubs,
        counts.by_kind,
    ) = snapshot


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _dead_letter(
    session: Session,
    *,
    run_id: str,
    institution_id: str,
    fmt: str,
    source: str,
    unit: Unit,
    reasons: list[str],
    rejected: int,
    options: dict[str, Any],
    retry_of: int | None,
) -> int:
    raw_hash = hashlib.sha256(unit.raw).hexdigest()
    now = utcnow()
    existing = session.scalar(
        select(DeadLetter).where(
            DeadLetter.institution_id == institution_id,
            DeadLetter.format == fmt,
            DeadLetter.raw_hash == raw_hash,
        )
    )
    reason = "; ".join(reasons)
    if existing is not None:
        if retry_of is None:
            existing.occurrences += 1
        existing.last_seen_at = now
        existing.reason = reason
        existing.rejected = rejected
        if existing.status is DeadLetterStatus.RESOLVED:
            existing.status = DeadLetterStatus.OPEN
        return existing.id
    row = DeadLetter(
        run_id=run_id,
        institution_id=institution_id,
        format=fmt,
        source=source[:300],
        position=unit.position[:300],
        reason=reason,
        rejected=rejected,
        raw=unit.raw,
        raw_hash=raw_hash,
        options=options,
        created_at=now,
        last_seen_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def _process(
    factory: sessionmaker[Session],
    *,
    run_id: str,
    institution_id: str,
    plan: _Plan,
    batch: list[_Prepared],
    summary: RunSummary,
    retry_of: int | None,
    actor: Principal | None = None,
    channel: str = "cli",
) -> int:
    """Store one batch in one transaction; if the database refuses it, again unit by unit."""
    common: dict[str, Any] = {
        "run_id": run_id,
        "institution_id": institution_id,
        "plan": plan,
        "batch": batch,
        "summary": summary,
        "retry_of": retry_of,
        "actor": actor,
        "channel": channel,
    }
    try:
        return _process_batch(factory, safe=False, **common)
    except _STORE_ERRORS:
        return _process_batch(factory, safe=True, **common)


def _process_batch(
    factory: sessionmaker[Session],
    *,
    run_id: str,
    institution_id: str,
    plan: _Plan,
    batch: list[_Prepared],
    summary: RunSummary,
    retry_of: int | None,
    safe: bool,
    actor: Principal | None,
    channel: str,
) -> int:
    received_at = utcnow()
    consumed = 0
    counts = RunSummary(run_id=run_id, institution_id=institution_id)
    dead_letters: list[int] = []
    with transaction(factory) as session:
        unmapped: list[UnmappedTerm] = []
        contexts: dict[int, StoreContext] = {}
        for p in batch:
            unmapped += p.unmapped
            for flag in p.flags:
                counts.flags[flag] = counts.flags.get(flag, 0) + 1
            for part, n in p.unit.unmodelled.items():
                counts.unmodelled[part] = counts.unmodelled.get(part, 0) + n
            if p.input not in contexts:
                item, fmt = plan.inputs[p.input]
                contexts[p.input] = StoreContext(
                    institution_id=institution_id,
                    run_id=run_id,
                    feed=fmt,
                    source=item.name,
                    received_at=received_at,
                    actor=actor,
                    channel=channel,
                )
        # One store per batch (its caches span the batch's inputs); its context names the input.
        store = RecordStore(session, contexts[batch[0].input])
        for p in batch:
            for (record, *_rest), content_hash in zip(p.records, p.hashes, strict=True):
                store.plan(record, content_hash=content_hash)
        with session.no_autoflush:
            store.prefetch([r[0] for p in batch for r in p.records])
        for p in batch:
            item, fmt = plan.inputs[p.input]
            unit, prepared = p.unit, p.records
            consumed += len(unit.raw)
            counts.received += unit.received
            reasons = [f"{pos}: {why}" for pos, why in unit.errors]
            counts.rejected += len(unit.errors)
            if unit.errors:
                counts.count("unit", "rejected", len(unit.errors))
            rejected_before = counts.rejected - len(unit.errors)
            if prepared:
                store.ctx = contexts[p.input]
                more, still_valid = _store_unit(store, unit, prepared, counts, safe=safe)
                reasons += more
                if not still_valid:
                    store = RecordStore(session, contexts[p.input])
            if reasons:
                dl_id = _dead_letter(
                    session,
                    run_id=run_id,
                    institution_id=institution_id,
                    fmt=fmt,
                    source=item.name,
                    unit=unit,
                    reasons=reasons,
                    rejected=counts.rejected - rejected_before,
                    options=plan.dl_options,
                    retry_of=retry_of,
                )
                if dl_id not in dead_letters and dl_id not in summary.dead_letters:
                    dead_letters.append(dl_id)
        store.flush()  # the batch's new records: one multi-row insert per table
        terminology_actions.note_unmapped(
            session, institution_id=institution_id, terms=unmapped, seen_at=received_at
        )
        run = session.get(IngestRun, run_id)
        assert run is not None
        total = _merged(summary, counts)
        _copy_counts(run, total)
        run.units_done += len(batch)
        run.bytes_done = min(run.bytes_total, run.bytes_done + consumed)
        done = run.bytes_done
    # Committed: only now do this batch's counts join the run's.
    _merge_into(summary, counts)
    summary.dead_letters.extend(dead_letters)
    return done


def _merged(summary: RunSummary, counts: RunSummary) -> RunSummary:
    total = RunSummary(run_id=summary.run_id, institution_id=summary.institution_id)
    _merge_into(total, summary)
    _merge_into(total, counts)
    return total


def _merge_into(target: RunSummary, extra: RunSummary) -> None:
    target.received += extra.received
    target.stored += extra.stored
    target.updated += extra.updated
    target.duplicates += extra.duplicates
    target.rejected += extra.rejected
    target.stubs += extra.stubs
    for kind, per in extra.by_kind.items():
        for what, n in per.items():
            target.count(kind, what, n)
    for flag, n in extra.flags.items():
        target.flags[flag] = target.flags.get(flag, 0) + n
    for part, n in extra.unmodelled.items():
        target.unmodelled[part] = target.unmodelled.get(part, 0) + n
    target.warnings.extend(extra.warnings)


def _flags(std: Standard | None) -> Iterable[str]:
    if std is None:
        return ()
    if std.observation is not None:
        return std.observation.flags
    return std.flags


def _copy_counts(run: IngestRun, summary: RunSummary) -> None:
    run.received = summary.received
    run.stored = summary.stored
    run.updated = summary.updated
    run.duplicates = summary.duplicates
    run.rejected = summary.rejected
    run.stubs = summary.stubs
    run.by_kind = {k: dict(v) for k, v in summary.by_kind.items()}
    run.flags = dict(summary.flags)
    run.unmodelled = dict(summary.unmodelled)
    run.warnings = list(summary.warnings)


# Records per batch (one transaction). A batch costs its look-ups, a COPY per table, the run row
# and a commit: with 500, HL7 v2 ingest took about a fifth more main-process CPU and a quarter
# more PostgreSQL CPU per message than with 5,000. A crash loses at most one batch (re-running
# is safe); the store holds the batch's rows (some 10 MB) until it commits.
BATCH_RECORDS = 5000

# Below this much input a run stays in one process (forking costs more than it saves).
PARALLEL_MIN_BYTES = 1_000_000


def default_workers() -> int:
    """Parse processes for a command-line run: one per CPU this process may use (the API and
    the MLLP listener parse in-process)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


_gc_lock = threading.Lock()
_gc_runs = 0
_gc_threshold: tuple[int, int, int] = gc.get_threshold()
_gc_was_frozen = False


@contextmanager
def _fewer_collections(*, large: bool) -> Iterator[None]:
    """Keep the garbage collector out of a large run's way.

    A run allocates millions of short-lived objects (parsed JSON, records, rows), which makes
    the collector run often, and each full collection also walks every object the process
    already holds (the FHIR model classes alone are tens of thousands): up to a quarter of a
    run's time went there. So while large runs are going, what exists is frozen (not walked)
    and the first generation is collected less often; the last run to finish restores both.
    """
    global _gc_runs, _gc_threshold, _gc_was_frozen
    if not large:
        yield
        return
    with _gc_lock:
        if _gc_runs == 0:
            _gc_threshold = gc.get_threshold()
            _gc_was_frozen = gc.get_freeze_count() > 0
            gc.freeze()
            gc.set_threshold(max(_gc_threshold[0], 50_000), *_gc_threshold[1:])
        _gc_runs += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs -= 1
            if _gc_runs == 0:
                gc.set_threshold(*_gc_threshold)
                gc.unfreeze()
                if _gc_was_frozen:
                    # a server froze its start-up heap (`api.app.settle_heap`): collect the
                    # run's garbage once, then freeze what is left again
                    gc.collect()
                    gc.freeze()


def do_ingest(
    factory: sessionmaker[Session],
    *,
    actor: Principal,
    institution_id: str,
    inputs: list[Input],
    format: str | None = None,
    mapping: str | None = None,
    mapping_doc: dict[str, Any] | None = None,
    channel: str = "cli",
    progress: ProgressFn | None = None,
    batch_size: int = BATCH_RECORDS,
    retry_of: int | None = None,
    workers: int = 1,
    encoding: str | None = None,
) -> RunSummary:
    """Ingest `inputs` as member `institution_id` (see the module docstring).

    Refusals (scope, member, unknown format, mapping or character set) raise before the run
    starts; after it has started every problem with a record or an input is counted as rejected
    and dead-lettered, and the run ends `succeeded` with balanced counters (with a warning for an
    input that holds nothing), or `failed` with the error when the database itself fails.
    `encoding` is the character set the source declared (None: detected). With `workers` > 1
    and at least `PARALLEL_MIN_BYTES` of input, inputs are parsed in up to that many worker
    processes (one per input at most) while this one stores: the same result as one process.
    """
    run_id = uuid.uuid4().hex
    with transaction(factory) as session:
        plan = _prepare(
            session,
            actor=actor,
            institution_id=institution_id,
            inputs=inputs,
            format=format,
            mapping=mapping,
            mapping_doc=mapping_doc,
            encoding=encoding,
        )
        total = sum(len(item.data) for item, _fmt in plan.inputs)
        described = [
            {"name": item.name, "format": fmt, "bytes": len(item.data)} for item, fmt in plan.inputs
        ]
        run = IngestRun(
            id=run_id,
            institution_id=institution_id,
            actor=actor.username,
            channel=channel,
            inputs=described,
            bytes_total=total,
            started_at=utcnow(),
        )
        session.add(run)
    summary = RunSummary(
        run_id=run_id, institution_id=institution_id, inputs=described, started_at=run.started_at
    )
    try:
        with factory() as session:
            terminology = terminology_service.snapshot(session)
        if total < PARALLEL_MIN_BYTES:
            workers = 1
        with (
            _fewer_collections(large=total >= PARALLEL_MIN_BYTES),
            closing(
                _parallel.ordered(
                    lambda index: _prepare_input(plan, index, terminology, institution_id),
                    len(plan.inputs),
                    workers=workers,
                    recover=lambda index, exc: _worker_failed(plan, index, exc),
                )
            ) as prepared,
        ):
            seen: set[int] = set()
            for batch in _batches(prepared, batch_size):
                seen.update(p.input for p in batch)
                done = _process(
                    factory,
                    run_id=run_id,
                    institution_id=institution_id,
                    plan=plan,
                    batch=batch,
                    summary=summary,
                    retry_of=retry_of,
                    actor=actor,
                    channel=channel,
                )
                if progress is not None:
                    progress(done, total)
            summary.warnings.extend(_empty_inputs(plan, seen))
    except Exception as exc:
        _finish(factory, actor, summary, channel, error=f"{type(exc).__name__}: {exc}")
        raise
    _finish(factory, actor, summary, channel)
    if progress is not None:
        progress(total, total)
    return summary


def _empty_inputs(plan: _Plan, seen: set[int]) -> Iterator[str]:
    """A warning for every input that held nothing: an empty delivery is not silence."""
    for index, (item, fmt) in enumerate(plan.inputs):
        if index in seen:
            continue
        if not item.data:
            yield f"{item.name}: the input is empty (0 bytes); nothing was received"
        else:
            yield (
                f"{item.name}: no records found in {len(item.data)} bytes read as {fmt}; "
                "nothing was received"
            )


def _finish(
    factory: sessionmaker[Session],
    actor: Principal,
    summary: RunSummary,
    channel: str,
    *,
    error: str = "",
) -> None:
    if not error and not summary.balanced:
        error = (
            f"counters do not add up: received {summary.received} != stored {summary.stored} "
            f"+ duplicates {summary.duplicates} + rejected {summary.rejected}"
        )
    summary.status = (RunStatus.FAILED if error else RunStatus.SUCCEEDED).value
    summary.finished_at = utcnow()
    with transaction(factory) as session:
        run = session.get(IngestRun, summary.run_id)
        assert run is not None
        _copy_counts(run, summary)
        run.status = RunStatus(summary.status)
        run.finished_at = summary.finished_at
        run.bytes_done = run.bytes_total if not error else run.bytes_done
        run.error = error
        audit.record(
            session,
            actor=actor,
            action=AuditAction.EXECUTE,
            entity_type="ingest_run",
            entity_id=summary.run_id,
            entity_institution=summary.institution_id,
            outcome=AuditOutcome.FAILED if error else AuditOutcome.SUCCESS,
            after=summary.as_dict(),
            detail=error or f"ingested {summary.received} records",
            source=channel,
        )
        events.emit(
            session,
            type="ingest.run.finished",
            entity_type="ingest_run",
            entity_id=summary.run_id,
            institution_id=summary.institution_id,
            payload={
                "status": summary.status,
                "received": summary.received,
                "stored": summary.stored,
                "duplicates": summary.duplicates,
                "rejected": summary.rejected,
            },
        )


# -- linking what a run stored ---------------------------------------------------------------------

# Linking on arrival is the platform's follow-up of a run, not the caller's act: a member's
# user may ingest, and the index it feeds is consortium-wide (identity audits each merge).
LINK_ACTOR = Principal.system_actor("identity")


def do_link_run(factory: sessionmaker[Session], *, run_id: str) -> dict[str, Any] | None:
    """Match on arrival the patient records run `run_id` stored or updated
    (`identity.actions.do_link_records`: a changed record's links are re-evaluated, a new one
    is linked or queued for review), in a transaction of its own; None when the run stored no
    patient. The CLI, the API and the MLLP listener call it after each run."""
    with factory() as session:
        ids = records_service.patient_ids_of_run(session, run_id=run_id)
    if not ids:
        return None
    return identity_actions.do_link_records(
        factory, actor=LINK_ACTOR, record_ids=ids, channel="ingest"
    )


# -- dead letters ---------------------------------------------------------------------------------


def do_retry_dead_letter(
    factory: sessionmaker[Session],
    *,
    actor: Principal,
    id: int,
    channel: str = "cli",
) -> tuple[DeadLetter, RunSummary]:
    """Feed a dead letter's bytes through its connector again, as a run of its own.

    Resolved when nothing is rejected this time; otherwise it stays open with the new reason.
    """
    with factory() as session:
        letter = ingest_service.get_dead_letter(session, id=id)
        actor.require_scope("Ingest", "write")
        actor.require_institution(letter.institution_id, f"dead letter {id}")
        if letter.status is not DeadLetterStatus.OPEN:
            raise Conflict(f"dead letter {id} is {letter.status.value}; only open ones are retried")
        data, fmt, source = letter.raw, letter.format, letter.source
        institution_id, options = letter.institution_id, dict(letter.options or {})
    summary = do_ingest(
        factory,
        actor=actor,
        institution_id=institution_id,
        inputs=[Input(name=source, data=data, format=fmt)],
        mapping=options.get("mapping"),
        mapping_doc=options.get("mapping_doc"),
        encoding=options.get("encoding"),
        channel=channel,
        retry_of=id,
    )
    with transaction(factory) as session:
        letter = ingest_service.get_dead_letter(session, id=id)
        before = ingest_service.dead_letter_to_dict(letter)
        letter.retry_count += 1
        letter.retried_at = utcnow()
        if summary.rejected == 0:
            letter.status = DeadLetterStatus.RESOLVED
            letter.resolved_at = letter.retried_at
            letter.resolved_by_run = summary.run_id
        audit.record(
            session,
            actor=actor,
            action=AuditAction.UPDATE,
            entity_type="dead_letter",
            entity_id=str(id),
            entity_institution=letter.institution_id,
            before=before,
            after=ingest_service.dead_letter_to_dict(letter),
            detail=f"retried as run {summary.run_id}",
            source=channel,
        )
    return letter, summary


def do_discard_dead_letter(
    session: Session, *, actor: Principal, id: int, channel: str = "cli"
) -> DeadLetter:
    """Mark a dead letter as not to be retried (it stays, with its bytes, for the record)."""
    letter = ingest_service.get_dead_letter(session, id=id)
    actor.require_scope("Ingest", "write")
    actor.require_institution(letter.institution_id, f"dead letter {id}")
    before = ingest_service.dead_letter_to_dict(letter)
    letter.status = DeadLetterStatus.DISCARDED
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="dead_letter",
        entity_id=str(id),
        entity_institution=letter.institution_id,
        before=before,
        after=ingest_service.dead_letter_to_dict(letter),
        source=channel,
    )
    return letter


__all__ = [
    "Input",
    "RunSummary",
    "do_discard_dead_letter",
    "do_ingest",
    "do_link_run",
    "do_retry_dead_letter",
    "standardise",
]


# -- refused transport frames -----------------------------------------------------------------


def do_dead_letter_frame(
    factory: sessionmaker[Session],
    *,
    actor: Principal,
    institution_id: str,
    source: str,
    raw: bytes,
    reason: str,
    channel: str = "mllp",
) -> int:
    """Keep bytes a listener refused before parsing (a frame too large, broken framing) as a
    dead letter of a one-item run of their own, audited; returns the dead letter's id. A retry
    feeds them through the HL7 v2 connector like any other dead letter."""
    now = utcnow()
    run_id = uuid.uuid4().hex
    with transaction(factory) as session:
        session.add(
            IngestRun(
                id=run_id,
                institution_id=institution_id,
                actor=actor.username,
                channel=channel,
                status=RunStatus.SUCCEEDED,
                inputs=[{"name": source, "format": "hl7v2", "bytes": len(raw)}],
                started_at=now,
                finished_at=now,
                received=1,
                rejected=1,
                bytes_total=len(raw),
                bytes_done=len(raw),
                units_done=1,
            )
        )
        session.flush()
        letter = _dead_letter(
            session,
            run_id=run_id,
            institution_id=institution_id,
            fmt="hl7v2",
            source=source,
            unit=Unit(position=source, raw=raw),
            reasons=[f"{source}: {reason}"],
            rejected=1,
            options={},
            retry_of=None,
        )
        audit.record(
            session,
            actor=actor,
            action=AuditAction.EXECUTE,
            entity_type="ingest_run",
            entity_id=run_id,
            entity_institution=institution_id,
            outcome=AuditOutcome.FAILED,
            after={"dead_letter": letter, "bytes": len(raw)},
            detail=f"refused: {reason}"[:500],
            source=channel,
        )
    return letter


__all__.append("do_dead_letter_frame")
