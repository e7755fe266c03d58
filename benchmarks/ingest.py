"""Ingest throughput end to end (FHIR R4 and HL7 v2, SQLite and PostgreSQL) next to parse-only
speed of the same input, and FHIR Observation search latency over a million observations.

    .venv/bin/python benchmarks/ingest.py [--patients 2000] [--messages 6000]
        [--observations 1000000] [--searches 1000] [--workers 0] [--fhir PATH ...] [--hl7 PATH ...]
    .venv/bin/python benchmarks/ingest.py --search-only [--observations 1000000] [--searches 1000]

Input: the project's own generators write it (demo/feeds.py and quality/demo_defects.py): the
county hospital's FHIR R4 feed (Patient, Encounter, eight Observations and a DiagnosticReport per
person, in transaction bundles, collection bundles and bulk-export NDJSON) and a township health
centre's HL7 v2 feed (ADT^A04 and ORU^R01 with six OBX, Chinese local names, conventional units,
plus a batch with planted defects). `--fhir` / `--hl7` measure files of your own instead.

End to end is `carepool.ingest.actions.do_ingest`, the function `carepool ingest` calls, with the
CLI's worker setting: connectors, terminology, the clinical store's write with provenance and
dedup, dead letters, the run row and its audit record, committed batch by batch, into a fresh
SQLite file and a fresh PostgreSQL database (migrated with the real schema and the demo
catalogue). Each input is ingested twice; the second run must store nothing (idempotency).
Parse-only is the same input without a database: for FHIR, the connector's JSON parse, R4
validation (fhir.resources R4B) and mapping to records, in one process; for HL7 v2, python-hl7's
`hl7.parse` of the same messages (split the way the connector splits them), in one process.

Search: a scratch PostgreSQL database gets a million observations in bulk (`INSERT ... SELECT
generate_series`, not through ingest) for patient records at eight members, linked to persons
(two records per person on average, at different members), tens to hundreds of results each; a
clinician of one member searches `GET /fhir/Observation?patient=...&code=...&date=...` for their
own patients through the real API (uvicorn, bearer token), and the CPU time the API process and
the database spend per search is measured alongside. Prints tables and writes docs/benchmarks.md
between `<!-- ingest:begin -->` and `<!-- ingest:end -->`; `--search-only` runs the search part
alone and only prints it.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hl7
import httpx
import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import event, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    OBSERVATION_INSERT,
    PG_ADMIN,
    bench_token,
    machine,
    percentile,
    scratch_pg,
    server,
    write_section,
)
from carepool.catalog import actions as catalog_actions
from carepool.core import auth, migrate
from carepool.core.auth import Principal
from carepool.core.db import make_engine, make_session_factory
from carepool.core.errors import InvalidInput
from carepool.demo import feeds as demo_feeds
from carepool.demo.generator import generate
from carepool.ingest import actions
from carepool.ingest.actions import Input
from carepool.ingest.connectors import ParseOptions, connector_for, detect_format
from carepool.ingest.connectors.base import decode
from carepool.ingest.connectors.hl7v2 import split_messages
from carepool.ingest.models import IngestRun
from carepool.quality.demo_defects import DEMO_PROFILES, hl7_feed
from carepool.terminology import units as term_units

console = Console(stderr=True)
FHIR_MEMBER = "ch"
HL7_MEMBER = "thc-baisha"
SEED = 20261128
NOW = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
ACTOR = Principal.system_actor("bench")
_PANEL = {"system": "http://loinc.org", "code": "58410-2", "display": "CBC panel - Blood"}
_LAB = {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}


# -- input ----------------------------------------------------------------------------------------


def _report(entries: list[dict[str, Any]], key: int, observed: datetime) -> dict[str, Any]:
    """A DiagnosticReport over a patient's observations (the demo hospital sends none)."""
    pid, enc = f"ch-p-{key:05d}", f"ch-e-{key:05d}"
    results = [
        {"reference": e["fullUrl"]}
        for e in entries
        if e["resource"]["resourceType"] == "Observation"
    ]
    return {
        "fullUrl": f"urn:uuid:ch-r-{key:05d}",
        "resource": {
            "resourceType": "DiagnosticReport",
            "id": f"ch-r-{key:05d}",
            "status": "final",
            "category": [{"coding": [_LAB]}],
            "code": {"coding": [_PANEL]},
            "subject": {"reference": f"urn:uuid:{pid}"},
            "encounter": {"reference": f"urn:uuid:{enc}"},
            "effectiveDateTime": observed.isoformat(),
            "issued": (observed + timedelta(hours=2)).isoformat(),
            "result": results,
        },
        "request": {"method": "POST", "url": "DiagnosticReport"},
    }


_TYPES = {"p": "Patient", "e": "Encounter", "o": "Observation", "r": "DiagnosticReport"}


def _relative(value: Any) -> Any:
    """References as a bulk export writes them (`Patient/<id>`, not `urn:uuid:<id>`)."""
    if isinstance(value, dict):
        out = {k: _relative(v) for k, v in value.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref.startswith("urn:uuid:"):
            rid = ref.removeprefix("urn:uuid:")
            out["reference"] = f"{_TYPES[rid.split('-')[1]]}/{rid}"
        return out
    if isinstance(value, list):
        return [_relative(v) for v in value]
    return value


def fhir_inputs(patients: int, seed: int) -> list[Input]:
    """The county hospital's feed for `patients` people: Patient, Encounter, eight Observations
    (CBC and chemistry, LOINC and UCUM) and a DiagnosticReport each; half of them in transaction
    bundles of 60 patients, a quarter in collection bundles of 20, a quarter as bulk-export NDJSON
    (one file per resource type)."""
    rng = random.Random(f"bench-fhir:{seed}")
    per_person = []
    for k in range(1, patients + 1):
        p = replace(demo_feeds._person(rng, k), hospital_id=f"ZY{2026_00000 + k * 7:d}")
        observed = NOW - timedelta(minutes=rng.randrange(180, 60 * 24 * 30))
        entries = demo_feeds._fhir_entries(rng, p, observed=observed)
        entries.append(_report(entries, p.key, observed))
        per_person.append(entries)
    half, three_q = patients // 2, patients * 3 // 4
    out: list[Input] = []
    for b in range(0, half, 60):
        entries = [e for group in per_person[b : min(b + 60, half)] for e in group]
        doc = {"resourceType": "Bundle", "id": f"tx-{b}", "type": "transaction", "entry": entries}
        out.append(Input(f"ch-transaction-{b // 60:04d}.json", _json(doc), "fhir"))
    for b in range(half, three_q, 20):
        entries = [
            {"fullUrl": e["fullUrl"], "resource": e["resource"]}
            for group in per_person[b : min(b + 20, three_q)]
            for e in group
        ]
        doc = {"resourceType": "Bundle", "id": f"col-{b}", "type": "collection", "entry": entries}
        out.append(Input(f"ch-collection-{b // 20:04d}.json", _json(doc), "fhir"))
    by_type: dict[str, list[str]] = {}
    for group in per_person[three_q:]:
        for e in group:
            res = _relative(e["resource"])
            by_type.setdefault(res["resourceType"], []).append(json.dumps(res, ensure_ascii=False))
    for rtype in ("Patient", "Encounter", "Observation", "DiagnosticReport"):
        if by_type.get(rtype):
            data = ("\n".join(by_type[rtype]) + "\n").encode()
            out.append(Input(f"ch-{rtype}.ndjson", data, "fhir"))
    return out


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def hl7_inputs(messages: int, seed: int) -> list[Input]:
    """A township health centre's feed of `messages` HL7 v2 messages: per patient an ADT^A04 when
    they register and an ORU^R01 with a CBC and two chemistry results (six OBX, Chinese local
    names, conventional units), plus the centre's batch with planted defects (missing units,
    unmapped codes, re-sent duplicates); files of 500 messages."""
    rng = random.Random(f"bench-hl7:{seed}")
    facility = HL7_MEMBER.upper()
    profile = DEMO_PROFILES["township"]
    batch = hl7_feed(HL7_MEMBER, profile, patients=max(messages // 20, 1), seed=seed, now=NOW)
    defects = batch.decode().strip().split("\n")
    texts: list[str] = []
    k = 0
    while len(texts) + len(defects) < messages:
        k += 1
        p = demo_feeds._person(rng, 50_000 + k)
        seen = NOW - timedelta(minutes=rng.randrange(180, 60 * 24 * 30))
        pid = demo_feeds._hl7_pid(p, f"T{k:06d}", facility, p.phone, nid=True)
        texts.append(
            demo_feeds._hl7_adt(
                facility=facility, control=f"{facility}-A{k:06d}", pid=pid, when=seen,
                department="内科",
            )
        )  # fmt: skip
        texts.append(
            demo_feeds._hl7_oru(
                rng, facility=facility, control=f"{facility}-R{k:06d}", pid=pid,
                observed=seen + timedelta(minutes=30), now=seen + timedelta(hours=2),
                department="内科", tests=demo_feeds._CBC + demo_feeds._CHEM[:2],
            )
        )  # fmt: skip
    texts = texts[: max(messages - len(defects), 0)] + defects
    return [
        Input(
            f"{HL7_MEMBER}-lis-{i // 500:04d}.hl7",
            ("\n".join(texts[i : i + 500]) + "\n").encode(),
            "hl7v2",
        )
        for i in range(0, len(texts), 500)
    ]


def _files(paths: list[str], fmt: str) -> list[Input]:
    """The files of `fmt` among `paths` (folders are searched; other formats are skipped)."""
    out = []
    for raw in paths:
        path = Path(raw)
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if not f.is_file():
                continue
            data = f.read_bytes()
            try:
                if detect_format(f.name, data) == fmt:
                    out.append(Input(f.name, data, fmt))
            except InvalidInput:
                continue
    return out


# -- parse-only -----------------------------------------------------------------------------------


@contextmanager
def _as_in_a_run() -> Iterator[None]:
    """Parse-only runs with the collector settings an ingest run uses (a fair comparison)."""
    with actions._fewer_collections(large=True):
        yield


def fhir_parse_only(inputs: list[Input]) -> tuple[int, float]:
    """(resources, seconds): the FHIR connector's JSON parse, R4 validation and mapping."""
    connector = connector_for("fhir")
    options = ParseOptions()
    with _as_in_a_run():
        t0 = time.perf_counter()
        # resources, not units: a transaction bundle is one unit of many resources
        n = sum(
            u.received
            for i in inputs
            for u in connector.units(i.data, source=i.name, options=options)
        )
        return n, time.perf_counter() - t0


def json_only(inputs: list[Input]) -> float:
    t0 = time.perf_counter()
    for i in inputs:
        text = i.data.decode()
        if text.lstrip().startswith("{") and "\n{" not in text.strip():
            json.loads(text)
        else:
            for line in text.splitlines():
                if line.strip():
                    json.loads(line)
    return time.perf_counter() - t0


def hl7_parse_only(inputs: list[Input]) -> tuple[int, int, float]:
    """(messages, failed, seconds): python-hl7's `hl7.parse` of each message of the inputs."""
    messages = ["\r".join(segments) for i in inputs for segments in split_messages(decode(i.data))]
    failed = 0
    with _as_in_a_run():
        t0 = time.perf_counter()
        for m in messages:
            try:
                hl7.parse(m)
            except Exception:
                failed += 1
        return len(messages), failed, time.perf_counter() - t0


def connector_parse_only(inputs: list[Input], fmt: str) -> tuple[int, float]:
    connector = connector_for(fmt)
    with _as_in_a_run():
        t0 = time.perf_counter()
        n = sum(
            1
            for i in inputs
            for _u in connector.units(i.data, source=i.name, options=ParseOptions())
        )
        return n, time.perf_counter() - t0


def parse_only_rate(feed: str, inputs: list[Input]) -> float:
    """Parse-only units/s of a feed's input (see the module docstring), measured now."""
    if feed == "FHIR R4":
        n, seconds = fhir_parse_only(inputs)
    else:
        n, _failed, seconds = hl7_parse_only(inputs)
    return n / seconds


# -- end to end -----------------------------------------------------------------------------------


@dataclass
class Run:
    feed: str
    backend: str
    workers: int
    units: int
    received: int
    stored: int
    duplicates: int
    rejected: int
    seconds: float
    cpu: float  # CPU seconds of this process
    worker_cpu: float  # of the parse worker processes
    server_cpu: float  # of the PostgreSQL server processes of the run's database
    statements: int
    again_seconds: float
    again_stored: int
    again_duplicates: int
    again_balanced: bool
    balanced: bool
    parse_rate: float = float("nan")  # parse-only units/s, measured just before this run

    @property
    def rate(self) -> float:
        return self.units / self.seconds

    @property
    def again_rate(self) -> float:
        return self.units / self.again_seconds

    @property
    def cpu_per_unit(self) -> float:
        """Microseconds of CPU per unit, all processes together (load-independent)."""
        return (self.cpu + self.worker_cpu + self.server_cpu) / self.units * 1e6


def server_cpu(url: str) -> float:
    """CPU seconds so far of the PostgreSQL backends serving `url`'s database (same machine)."""
    if not url.startswith("postgresql"):
        return 0.0
    name = url.rsplit("/", 1)[1].encode()
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            if not cmd.startswith(b"postgres:") or b" " + name + b" " not in cmd:
                continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return total


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh, migrated database with the demo catalogue: its URL."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="carepool-bench-ingest-") as tmp:
            url = f"sqlite:///{tmp}/carepool.db"
            _setup(url)
            yield url
        return
    with scratch_pg("carepool_bench_ingest") as (_name, url):
        _setup(url)
        yield url


def _setup(url: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as s, s.begin():
        catalog_actions.do_import_catalog(s, actor=ACTOR, raw=generate(SEED))
    engine.dispose()


def ingest_twice(
    url: str,
    feed: str,
    backend: str,
    member: str,
    inputs: list[Input],
    workers: int,
    progress: Progress,
    task: TaskID,
) -> Run:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    statements = [0]

    def count(*_a: Any, **_k: Any) -> None:
        statements[0] += 1

    event.listen(engine, "before_cursor_execute", count)

    def once() -> tuple[actions.RunSummary, float, tuple[float, float, float]]:
        total = sum(len(i.data) for i in inputs)
        progress.update(task, completed=0, total=total)
        kids0, server0 = os.times(), server_cpu(url)
        c0, t0 = time.process_time(), time.perf_counter()
        summary = actions.do_ingest(
            factory,
            actor=ACTOR,
            institution_id=member,
            inputs=inputs,
            channel="bench",
            workers=workers,
            progress=lambda done, all_: progress.update(task, completed=done, total=all_),
        )
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        kids = os.times()
        workers_cpu = (kids.children_user + kids.children_system) - (
            kids0.children_user + kids0.children_system
        )
        return summary, seconds, (cpu, workers_cpu, server_cpu(url) - server0)

    first, seconds, (cpu, worker_cpu, server_seconds) = once()
    first_statements = statements[0]
    again, again_seconds, _cpu = once()
    with factory() as s:
        units = s.scalar(select(IngestRun.units_done).where(IngestRun.id == first.run_id)) or 0
    if feed.startswith("FHIR"):
        # FHIR is measured in resources (a transaction bundle is one unit of many resources)
        units = first.received
    engine.dispose()
    return Run(
        feed=feed,
        backend=backend,
        workers=workers,
        units=units,
        received=first.received,
        stored=first.stored,
        duplicates=first.duplicates,
        rejected=first.rejected,
        seconds=seconds,
        cpu=cpu,
        worker_cpu=worker_cpu,
        server_cpu=server_seconds,
        statements=first_statements,
        again_seconds=again_seconds,
        again_stored=again.stored,
        again_duplicates=again.duplicates,
        again_balanced=again.balanced,
        balanced=first.balanced and first.status == "succeeded",
    )


# -- where the time goes --------------------------------------------------------------------------

# (label, a part of the function's file path, its names): cumulative seconds of each.
_PHASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("parse and validate (connector)", "ingest/connectors/", ("units",)),
    ("  of which FHIR R4 validation", "pydantic/main.py", ("model_validate",)),
    ("standardise (terminology)", "ingest/actions.py", ("standardise",)),
    ("content hashes (dedup keys)", "records/actions.py", ("content_hash_of",)),
    ("store decisions and rows", "records/actions.py", ("store",)),
    ("dedup look-ups (one query per kind)", "records/actions.py", ("prefetch",)),
    ("multi-row inserts (SQL)", "records/actions.py", ("write",)),
    ("commit", "sqlalchemy/orm/session.py", ("commit",)),
    ("dead letters, unmapped-term queue", "", ("_dead_letter", "note_unmapped")),
]


def profile_run(
    url: str, member: str, inputs: list[Input]
) -> tuple[list[tuple[str, float]], float]:
    """Shares of a one-process run's time (cProfile, cumulative per phase) and its GC time."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    gc_time = [0.0, 0.0]

    def gc_clock(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_time[1]

    gc.callbacks.append(gc_clock)
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    try:
        actions.do_ingest(factory, actor=ACTOR, institution_id=member, inputs=inputs, workers=1)
    finally:
        profiler.disable()
        gc.callbacks.remove(gc_clock)
        engine.dispose()
    total = time.perf_counter() - t0
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    out = []
    for label, path, names in _PHASES:
        seconds = sum(v[3] for (f, _l, name), v in stats.items() if path in f and name in names)
        out.append((label, seconds / total))
    out.append(("garbage collection", gc_time[0] / total))
    return out, total


# -- search ---------------------------------------------------------------------------------------

ANALYTES = ("718-7", "26464-8", "26453-1", "26515-7", "14749-6", "14682-9", "2823-3", "1742-6")
UNITS = ("g/L", "10*9/L", "10*12/L", "10*9/L", "mmol/L", "umol/L", "mmol/L", "U/L")


def fill_search(url: str, n_obs: int, members: list[str]) -> dict[str, int]:
    """Persons with records at one to three members, tens to hundreds of results per record."""
    m = len(members)
    member_arr = "ARRAY[" + ",".join(f"'{x}'" for x in members) + "]"
    loinc_arr = "ARRAY[" + ",".join(f"'{x}'" for x in ANALYTES) + "]"
    unit_arr = "ARRAY[" + ",".join(f"'{x}'" for x in UNITS) + "]"
    # Record r belongs to person (r - 1) / 3 + 1 (the first of every three always, the others
    # four times in seven), at member r * 31 mod m, with 10 + (r * 7919 mod 190) results.
    n_records = total = 0
    while total < n_obs:
        n_records += 1
        r = n_records
        if (r - 1) % 3 == 0 or r % 7 < 4:
            total += 10 + (r * 7919 % 190)
    sql = [
        f"""CREATE TEMP TABLE rec AS
        SELECT r, 'pat-' || r AS id, ({member_arr})[((r * 31) % {m}) + 1] AS member,
               'per-' || ((r - 1) / 3 + 1) AS person, 10 + (r * 7919 % 190) AS n
        FROM generate_series(1, {n_records}) AS r
        WHERE (r - 1) % 3 = 0 OR (r % 7) < 4""",
        """INSERT INTO patient (id, natural_key, institution_id, id_system, local_id, name, family,
            given, name_pinyin, sex, birth_date, national_id, phone, address, deceased, stub,
            content_hash, created_at, updated_at)
        SELECT id, member || '|patient|mrn|' || r, member, 'mrn', r::text, 'P' || r, 'P',
            r::text, 'p ' || r, CASE WHEN r % 2 = 0 THEN 'female' ELSE 'male' END,
            DATE '1940-01-01' + (r * 37 % 25000), NULL, '', '', false, false, 'h', now(), now()
        FROM rec""",
        """INSERT INTO identity_person (id, status, merged_into, created_at, updated_at)
        SELECT DISTINCT person, 'active', NULL, now(), now() FROM rec""",
        """INSERT INTO identity_link (patient_id, person_id, institution_id, source,
            match_probability, linked_by, linked_at)
        SELECT id, person, member, 'auto', 0.999, 'bench', now() FROM rec""",
        f"""{OBSERVATION_INSERT}
        SELECT 'obs-' || r || '-' || k, rec.member || '|observation|lis|' || r || '/' || k,
            rec.member, 'lis', r || '/' || k, rec.id, NULL, NULL, 'final', 'laboratory',
            ({loinc_arr})[(k % 8) + 1], '', 100 + (k % 50), ({unit_arr})[(k % 8) + 1], NULL,
            NULL, 'lis', 'L' || (k % 8), '', '[]'::jsonb, 'quantity', (100 + (k % 50))::text,
            ({unit_arr})[(k % 8) + 1], 100 + (k % 50), NULL, NULL, '', '', '', 'N',
            TIMESTAMPTZ '2026-03-01 00:00+00' - ((k / 8) * 9 + r % 7) * INTERVAL '1 day'
                - (r * 13 % 1440) * INTERVAL '1 minute',
            NULL, '[]'::jsonb, '', 'h', now(), now(), now()
        FROM rec CROSS JOIN LATERAL generate_series(1, rec.n) AS k""",
        "VACUUM ANALYZE",
    ]
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for stmt in sql:
            conn.execute(stmt)  # type: ignore[call-overload]
        counts = {}
        for table in ("patient", "identity_person", "identity_link", "observation"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[call-overload]
            counts[table] = int(row[0]) if row else 0
    return counts


def search_targets(url: str, member: str, limit: int) -> list[tuple[str, int]]:
    """(patient record id, observations of the person) for the member's linked patients."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """SELECT l.patient_id, count(o.id) FROM identity_link l
               JOIN identity_link other ON other.person_id = l.person_id
               JOIN observation o ON o.patient_id = other.patient_id
               WHERE l.institution_id = %s
               GROUP BY l.patient_id HAVING count(DISTINCT other.institution_id) > 1
               ORDER BY l.patient_id LIMIT %s""",
            (member, limit),
        ).fetchall()
    return [(r[0], int(r[1])) for r in rows]


@dataclass
class Search:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    rows: list[int] = field(default_factory=list)
    plan: str = ""
    api_cpu_ms: float = float("nan")  # CPU of the uvicorn process per search
    db_cpu_ms: float = float("nan")  # CPU of the PostgreSQL backends per search

    def all(self) -> list[float]:
        return [x for v in self.latencies.values() for x in v]


def search_benchmark(
    url: str, n_obs: int, searches: int, progress: Progress, task: TaskID
) -> tuple[Search, dict[str, int], float, int, str]:
    doc = generate(SEED)
    members = [i["id"] for i in doc["institutions"]][:8]
    member = HL7_MEMBER  # a township health centre's doctor
    progress.update(task, description=f"bulk-load {n_obs:,} observations", total=None)
    t0 = time.perf_counter()
    counts = fill_search(url, n_obs, members)
    fill_seconds = time.perf_counter() - t0
    engine = make_engine(url)
    with make_session_factory(engine)() as s, s.begin():
        token = bench_token(s, "bench-doctor", "bench doctor", auth.Role.CLINICIAN, member)
    engine.dispose()
    targets = search_targets(url, member, 5000)
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {token}"}
    shapes: dict[str, Callable[[str], list[tuple[str, str]]]] = {
        "patient+code+date": lambda pid: [
            ("patient", f"Patient/{pid}"),
            ("code", f"http://loinc.org|{rng.choice(ANALYTES)}"),
            ("date", "ge2025-06-01"),
            ("date", "lt2026-03-01"),
        ],
        "patient+code": lambda pid: [
            ("patient", f"Patient/{pid}"),
            ("code", f"http://loinc.org|{rng.choice(ANALYTES)}"),
        ],
        "patient+date": lambda pid: [("patient", pid), ("date", "ge2026-01")],
    }
    result = Search()
    with server("carepool.api.asgi:app", {"CAREPOOL_DATABASE_URL": url}, workers=1) as base:
        progress.update(task, description="searches", total=searches, completed=0)
        api_pid = _uvicorn_pid(base)
        with httpx.Client(base_url=base, timeout=60, headers=headers) as client:
            for i in range(searches + 50):
                if i == 50:
                    api0, db0 = _process_cpu(api_pid), server_cpu(url)
                shape = list(shapes)[i % len(shapes)]
                pid, _n = rng.choice(targets)
                t0 = time.perf_counter()
                r = client.get("/fhir/Observation", params=shapes[shape](pid))
                elapsed = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise RuntimeError(f"search failed: {r.status_code} {r.text[:300]}")
                if i >= 50:  # the first 50 warm the server up
                    result.latencies.setdefault(shape, []).append(elapsed)
                    result.rows.append(int(r.json().get("total", 0)))
                    progress.update(task, completed=i - 49)
            result.api_cpu_ms = (_process_cpu(api_pid) - api0) / searches * 1000
            result.db_cpu_ms = (server_cpu(url) - db0) / searches * 1000
    result.plan = explain(url, targets[0][0])
    return result, counts, fill_seconds, len(targets), member


def _uvicorn_pid(base: str) -> int | None:
    """The uvicorn process serving `base` (one worker: the server process itself)."""
    port = base.rsplit(":", 1)[1].encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if b"uvicorn" in args and b"--port" in args and port in args:
            return int(pid)
    return None


def _process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of one process so far; NaN if unknown."""
    if pid is None:
        return float("nan")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def explain(url: str, patient_id: str) -> str:
    """The plan PostgreSQL picks for the search's main query (patient's person, code, dates)."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                """SELECT patient_id FROM identity_link WHERE person_id =
                   (SELECT person_id FROM identity_link WHERE patient_id = %s)""",
                (patient_id,),
            ).fetchall()
        ]
        rows = conn.execute(
            """EXPLAIN (ANALYZE, BUFFERS OFF, TIMING OFF, SUMMARY ON)
               SELECT * FROM observation WHERE patient_id = ANY(%s)
               AND loinc_code IN ('718-7') AND effective_at >= '2025-06-01' AND
               effective_at < '2026-03-01' ORDER BY effective_at DESC NULLS LAST, id LIMIT 50""",
            (ids,),
        ).fetchall()
    return "\n".join(r[0] for r in rows)


# -- report ---------------------------------------------------------------------------------------


def pg_version() -> str:
    with psycopg.connect(PG_ADMIN) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0].split()[0]}" if row else "PostgreSQL"


def _measured(
    loads: tuple[tuple[float, float, float], tuple[float, float, float]], command: str
) -> list[str]:
    """The opening lines of a report: when and where it was measured, and the command."""
    (b1, b5, _b15), (a1, a5, _a15) = loads
    return [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}, {pg_version()} on "
        f"the same machine. Load average (1 / 5 min) {b1:.1f} / {b5:.1f} before, "
        f"{a1:.1f} / {a5:.1f} after.",
        "",
        "```",
        command.strip(),
        "```",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--patients", type=int, default=2000, help="FHIR: people (11 resources each)")
    ap.add_argument("--messages", type=int, default=6000, help="HL7 v2: messages")
    ap.add_argument("--observations", type=int, default=1_000_000, help="search: stored results")
    ap.add_argument("--searches", type=int, default=1000)
    ap.add_argument(
        "--workers", type=int, default=0, help="parse processes (0: as `carepool ingest`)"
    )
    ap.add_argument("--fhir", nargs="*", default=None, help="FHIR files or folders instead")
    ap.add_argument("--hl7", nargs="*", default=None, help="HL7 v2 files or folders instead")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument(
        "--repeat", type=int, default=1, help="ingest runs per setting; the fastest is reported"
    )
    ap.add_argument("--skip-search", action="store_true")
    ap.add_argument(
        "--search-only",
        action="store_true",
        help="only the million-observation search (no ingest runs, no profile)",
    )
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    command = "python benchmarks/ingest.py " + " ".join(sys.argv[1:] if argv is None else argv)
    workers = args.workers or actions.default_workers()
    backends = [b for b in args.backends.split(",") if b]
    if args.search_only:
        return search_only(args, command)
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    term_units._ureg()  # building the UCUM registry (a new process skips it for known units)
    ucum_seconds = time.perf_counter() - t0
    fhir = _files(args.fhir, "fhir") if args.fhir is not None else fhir_inputs(args.patients, SEED)
    hl7_in = _files(args.hl7, "hl7v2") if args.hl7 is not None else hl7_inputs(args.messages, SEED)
    feeds = [(name, member, inputs) for name, member, inputs in (
        ("FHIR R4", FHIR_MEMBER, fhir), ("HL7 v2", HL7_MEMBER, hl7_in)) if inputs]  # fmt: skip
    sizes = {name: sum(len(i.data) for i in inputs) for name, _m, inputs in feeds}

    console.print("[bold]parse-only[/] (one process)")
    parse: dict[str, dict[str, float]] = {}
    if fhir:
        fhir_parse_only(fhir[:2])  # load the FHIR model classes
        n, seconds = fhir_parse_only(fhir)
        parse["FHIR R4"] = {"units": n, "rate": n / seconds, "json": n / json_only(fhir)}
    if hl7_in:
        n, failed, seconds = hl7_parse_only(hl7_in)
        cn, cseconds = connector_parse_only(hl7_in, "hl7v2")
        parse["HL7 v2"] = {"units": n, "rate": n / seconds, "failed": failed, "own": cn / cseconds}
    for name, p in parse.items():
        console.print(f"  {name}: {p['units']:,.0f} units, {p['rate']:,.0f}/s")

    runs: list[Run] = []
    checks: list[Run] = []  # every run, for the idempotency and balance checks
    where: list[tuple[str, list[tuple[str, float]], float]] = []
    search: Search | None = None
    search_info: dict[str, Any] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("ingest", total=None)
        for backend in backends:
            for w in sorted({1, workers}):
                tries: dict[str, list[Run]] = {}
                for attempt in range(1, args.repeat + 1):
                    with database(backend) as url:
                        for name, member, inputs in feeds:
                            progress.update(
                                task, description=f"{name} → {backend}, {w} worker(s) #{attempt}"
                            )
                            parse_rate = parse_only_rate(name, inputs)
                            run = ingest_twice(
                                url, name, backend, member, inputs, w, progress, task
                            )
                            run.parse_rate = parse_rate
                            tries.setdefault(name, []).append(run)
                            console.print(
                                f"  {name:8} {backend:10} workers {w}: {run.rate:8,.0f}/s "
                                f"({run.units:,} in {run.seconds:.1f} s; again "
                                f"{run.again_rate:,.0f}/s, stored {run.again_stored})"
                            )
                runs += [max(t, key=lambda r: r.rate) for t in tries.values()]
                checks += [r for t in tries.values() for r in t]
        if not args.no_profile and "postgresql" in backends:
            for name, member, inputs in feeds:
                progress.update(task, description=f"profile {name}", total=None)
                # A part (the profiler slows a run down 2-3 times), as large as a run that
                # gets the large-run settings (`PARALLEL_MIN_BYTES`).
                part, size = [], 0
                for item in inputs:
                    if size >= max(2 * actions.PARALLEL_MIN_BYTES, sizes[name] // 4):
                        break
                    part.append(item)
                    size += len(item.data)
                with database("postgresql") as url:
                    shares, total = profile_run(url, member, part)
                where.append((name, shares, total))
        if not args.skip_search:
            with scratch_pg("carepool_bench_search") as (_n, url):
                migrate.upgrade(url)
                _setup_catalogue_only(url)
                search, counts, fill_seconds, n_targets, member = search_benchmark(
                    url, args.observations, args.searches, progress, task
                )
                search_info = {
                    "counts": counts,
                    "fill": fill_seconds,
                    "targets": n_targets,
                    "member": member,
                }
    load_after = os.getloadavg()

    body = report(
        command=command,
        runs=runs,
        parse=parse,
        sizes=sizes,
        where=where,
        search=search,
        search_info=search_info,
        ucum_seconds=ucum_seconds,
        loads=(load_before, load_after),
        workers=workers,
        own_input=args.fhir is not None or args.hl7 is not None,
        repeat=args.repeat,
    )
    print(body)
    if not args.no_write:
        write_section("ingest", body)
    ok = all(r.balanced and r.again_balanced and r.again_stored == 0 for r in checks)
    return 0 if ok else 1


def search_only(args: argparse.Namespace, command: str) -> int:
    """`--search-only`: the million-observation search alone, printed (and written with the
    other figures of the section kept as they are only when `--no-write` is absent)."""
    load_before = os.getloadavg()
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("search", total=None)
        with scratch_pg("carepool_bench_search") as (_n, url):
            migrate.upgrade(url)
            _setup_catalogue_only(url)
            search, counts, fill_seconds, n_targets, member = search_benchmark(
                url, args.observations, args.searches, progress, task
            )
    loads = (load_before, os.getloadavg())
    info = {"counts": counts, "fill": fill_seconds, "targets": n_targets, "member": member}
    target, lines = _search_report(search, info)
    body = "\n".join(
        [
            *_measured(loads, command),
            "",
            target,
            "",
            *lines,
        ]
    )
    print(body)
    if not args.no_write:
        console.print("--search-only does not rewrite docs/benchmarks.md; run without it")
    return 0


def _setup_catalogue_only(url: str) -> None:
    engine = make_engine(url)
    with make_session_factory(engine)() as s, s.begin():
        catalog_actions.do_import_catalog(s, actor=ACTOR, raw=generate(SEED))
    engine.dispose()


def _search_report(search: Search, search_info: dict[str, Any]) -> tuple[str, list[str]]:
    """The search target line and the search section of the report."""
    all_ms = search.all()
    p50, p99 = percentile(all_ms, 50), percentile(all_ms, 99)
    met = "met" if p99 < 50 else "**not met**"
    target = f"- Observation search p99 < 50 ms with 1M observations: {p99:.1f} ms — {met}"
    c = search_info["counts"]
    search_lines = [
        "### FHIR Observation search",
        "",
        f"Store: {c['observation']:,} observations of {c['patient']:,} patient records "
        f"({c['identity_person']:,} persons, records linked across 8 members; "
        f"bulk-loaded in {search_info['fill']:.0f} s). A clinician of "
        f"`{search_info['member']}` searches {len(all_ms):,} times (after 50 warm-up "
        f"searches) for one of {search_info['targets']:,} of their own patients whose "
        "person also has records at other members; each search answers for the whole "
        f"person (median {percentile([float(x) for x in search.rows], 50):.0f} matches, "
        f"most {max(search.rows):,}; first page of 50). One client, uvicorn with one "
        "worker on the same machine, token auth, consent check and audit row included.",
        "",
        f"**p50 {p50:.1f} ms, p99 {p99:.1f} ms** over all searches; CPU per search: API "
        f"(uvicorn) {search.api_cpu_ms:.1f} ms, PostgreSQL {search.db_cpu_ms:.2f} ms.",
        "",
        "| query | searches | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for shape, values in search.latencies.items():
        search_lines.append(
            f"| `{shape}` | {len(values):,} | {percentile(values, 50):.1f} | "
            f"{percentile(values, 99):.1f} |"
        )
    search_lines += [
        "",
        "The query is not where the time goes: the plan below runs in under a millisecond "
        "on the observation index (patient, code, time). A request is the token check "
        "(cached per process for a few seconds), one query for what the caller may see "
        "(patient → person → the person's records → consent, with the consortium's time "
        "zone), one page query that carries the total (`count(*) OVER ()`), the rows "
        "written as FHIR JSON without model objects, and the audit row with its commit "
        "(`records/fhir.py`): three statements, plus BEGIN and COMMIT (a pooled connection "
        "is pinged only after 10 s idle). "
        "CPU per search is the uvicorn process's and the PostgreSQL backends' CPU time over "
        "the measured searches divided by their number; unlike the latencies it hardly "
        "depends on what else the machine is doing.",
        "",
        "The main query's plan (`EXPLAIN ANALYZE`, one person, one code, nine months):",
        "",
        "```",
        *search.plan.splitlines(),
        "```",
    ]
    return target, search_lines


def report(
    *,
    command: str,
    runs: list[Run],
    parse: dict[str, dict[str, float]],
    sizes: dict[str, int],
    where: list[tuple[str, list[tuple[str, float]], float]],
    search: Search | None,
    search_info: dict[str, Any],
    ucum_seconds: float,
    loads: tuple[tuple[float, float, float], tuple[float, float, float]],
    workers: int,
    own_input: bool,
    repeat: int,
) -> str:
    table = Table(title="Ingest end to end")
    heads = (
        "feed",
        "database",
        "workers",
        "units",
        "records",
        "seconds",
        "units/s",
        "parse-only/s",
        "e2e / parse-only",
        "re-ingest units/s",
        "SQL statements",
        "CPU µs/unit (main + workers + server)",
    )
    for h in heads:
        table.add_column(h, justify="left" if h in ("feed", "database") else "right")
    lines = ["| " + " | ".join(heads) + " |", "|---|---|" + "---:|" * (len(heads) - 2)]
    for r in runs:
        p = r.parse_rate
        cells = [
            r.feed,
            "PostgreSQL" if r.backend == "postgresql" else "SQLite",
            str(r.workers),
            f"{r.units:,}",
            f"{r.received:,}",
            f"{r.seconds:.1f}",
            f"**{r.rate:,.0f}**",
            f"{p:,.0f}",
            f"{r.rate / p:.0%}",
            f"{r.again_rate:,.0f}",
            f"{r.statements:,}",
            f"{r.cpu_per_unit:,.0f} ({r.cpu / r.units * 1e6:,.0f} + "
            f"{r.worker_cpu / r.units * 1e6:,.0f} + {r.server_cpu / r.units * 1e6:,.0f})",
        ]
        table.add_row(*[c.replace("**", "") for c in cells])
        lines.append("| " + " | ".join(cells) + " |")
    Console(width=200).print(table)

    def best(feed: str, backend: str) -> Run | None:
        cands = [r for r in runs if r.feed == feed and r.backend == backend]
        return max(cands, key=lambda r: r.rate) if cands else None

    def one_process(feed: str, backend: str) -> Run | None:
        same = (r for r in runs if (r.feed, r.backend, r.workers) == (feed, backend, 1))
        return next(same, None)

    cpus = os.cpu_count() or 1

    def ceiling(r: Run) -> str:
        return f"{cpus * 1e6 / r.cpu_per_unit:,.0f}/s"

    targets = []
    fhir_pg = best("FHIR R4", "postgresql")
    if fhir_pg:
        met = "met" if fhir_pg.rate >= 3000 else "**not met**"
        targets.append(
            f"- FHIR R4 into PostgreSQL ≥ 3,000 resources/s: {fhir_pg.rate:,.0f}/s with "
            f"{fhir_pg.workers} worker(s) — {met} (CPU ceiling of this machine with both "
            f"CPUs free: {ceiling(fhir_pg)})"
        )
    for r in (best("HL7 v2", "postgresql"), one_process("HL7 v2", "postgresql")):
        if r is None or "HL7 v2" not in parse:
            continue
        share = r.rate / r.parse_rate
        met = "met" if share >= 0.5 else "**not met**"
        line = (
            f"- HL7 v2 into PostgreSQL ≥ 50 % of python-hl7 parse-only: {share:.0%} "
            f"({r.rate:,.0f} vs {r.parse_rate:,.0f} messages/s, {r.workers} "
            f"worker(s)) — {met} (CPU ceiling: {ceiling(r)})"
        )
        if line not in targets:
            targets.append(line)
    search_lines: list[str] = []
    if search is not None:
        target, search_lines = _search_report(search, search_info)
        targets.append(target)
    where_lines: list[str] = []
    for feed, shares, total in where:
        where_lines += [
            f"{feed}, part of the input, one process into PostgreSQL under cProfile ({total:.1f} "
            "s with the profiler's overhead); cumulative share of the run per phase (phases "
            "nest):",
            "",
            "| phase | share |",
            "|---|---:|",
            *[f"| {label.strip()} | {share:.0%} |" for label, share in shares],
            "",
        ]
    inputs_text = (
        "the files given on the command line"
        if own_input
        else (
            "the project's generated feeds: FHIR R4 "
            f"{sizes.get('FHIR R4', 0) / 1e6:.1f} MB (Patient, Encounter, 8 Observations and a "
            "DiagnosticReport per person; transaction and collection bundles and NDJSON), "
            f"HL7 v2 {sizes.get('HL7 v2', 0) / 1e6:.1f} MB (ADT^A04 and ORU^R01 with six OBX, "
            "Chinese local names and conventional units, plus a batch with planted defects)"
        )
    )
    return "\n".join(
        [
            "## Ingest and results search",
            "",
            *_measured(loads, command),
            "",
            f"Input: {inputs_text}. End to end is `do_ingest`, the function `carepool ingest` "
            "calls (connectors → terminology → record store with dedup and provenance → dead "
            f"letters, run row and audit), batches of {actions.BATCH_RECORDS:,} records "
            "committed one by one, into a "
            "fresh migrated database with the demo catalogue; `workers` is the number of "
            f"processes parsing while the main one stores (`carepool ingest` uses {workers}, one "
            "per CPU, for inputs of 1 MB and more; 1 means everything in one process). A unit "
            "is a FHIR resource or an HL7 v2 message; records are what they hold (a message's "
            "patient, visit, report and results). Re-ingest is the same input again: nothing "
            "new is stored. Parse-only, one process: FHIR = the FHIR connector's JSON parse, "
            "R4 validation (fhir.resources R4B) and mapping to records, without terminology or "
            "database; HL7 v2 = python-hl7 `hl7.parse` of each message of the same input; "
            "measured just before each run, so that both see the same machine. "
            "Timings are for a warm process: a new process first loads the FHIR model classes, "
            f"and builds the UCUM unit registry ({ucum_seconds:.1f} s) only when it meets a unit "
            "that the registry's answers kept on disk do not cover (`terminology/units.py`)."
            + (
                f" Each row is the fastest of {repeat} runs, each into a fresh database (the "
                "machine is shared; every run's counts are checked)."
                if repeat > 1
                else ""
            ),
            "",
            *lines,
            "",
            "CPU µs/unit adds up the CPU time of every process of a run (this one, the parse "
            "workers, the PostgreSQL backends of the run's database; SQLite runs in-process), so "
            "unlike the rates it does not depend on what else the machine is doing; the CPU "
            f"ceiling below is {cpus} CPUs × 10⁶ / (CPU µs/unit), the rate with every CPU free.",
            "",
            "Parse-only for comparison: "
            + "; ".join(
                (
                    f"FHIR R4 JSON parse alone {p['json']:,.0f} resources/s"
                    if name == "FHIR R4"
                    else f"HL7 v2 connector's own parse (fields read, records built) "
                    f"{p['own']:,.0f} messages/s"
                    + (f", python-hl7 failed on {p['failed']:.0f}" if p.get("failed") else "")
                )
                for name, p in parse.items()
            )
            + ".",
            "",
            "Targets:",
            "",
            *targets,
            "",
            *search_lines,
            "",
            "### Where the time goes",
            "",
            *where_lines,
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
