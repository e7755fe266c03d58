"""Where checks run: Ibis connections to the operational store or to a Parquet export.

`load_tables(con)` turns the record tables of any backend into the normalised shape the checks
read (`SCHEMAS`): times become integer epoch seconds (every backend agrees on those, where
timestamp types and time zones differ: SQLite keeps text, PostgreSQL `timestamptz`), JSON flags
become text, and patient identity becomes one de-duplication key. `export_parquet` writes those
normalised tables, so a DuckDB (or Spark) run reads exactly what a run on the database reads.
`memtables` builds them from plain rows: the fake store the unit tests use.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
from ibis.backends import BaseBackend
from sqlalchemy.engine import make_url

from carepool.quality.checks import Tables, memtable

# Ibis's SQLite backend fetches through pandas and trips a pandas 4 deprecation on every query.
warnings.filterwarnings("ignore", message="The 'future.infer_string' option is deprecated")
warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated")

# The normalised tables: name -> (source table in the store, columns and their types).
SCHEMAS: dict[str, dict[str, str]] = {
    "patient": {
        "id": "string",
        "member": "string",
        "sex": "string",
        "birth_s": "int64",
        "death_s": "int64",
        "name_present": "boolean",
        "dedup_key": "string",
        "stub": "boolean",
    },
    "encounter": {
        "id": "string",
        "member": "string",
        "patient_id": "string",
        "start_s": "int64",
        "end_s": "int64",
        "department_text": "string",
        "department_code": "string",
        "flags": "string",
    },
    "report": {
        "id": "string",
        "member": "string",
        "patient_id": "string",
        "loinc_code": "string",
        "original_code": "string",
        "effective_s": "int64",
        "issued_s": "int64",
        "order_id": "string",
        "placer_number": "string",
        "flags": "string",
    },
    "observation": {
        "id": "string",
        "member": "string",
        "patient_id": "string",
        "encounter_id": "string",
        "report_id": "string",
        "status": "string",
        "loinc_code": "string",
        "original_code": "string",
        "value": "float64",
        "unit": "string",
        "ref_low": "float64",
        "ref_high": "float64",
        "value_type": "string",
        "original_value": "string",
        "original_unit": "string",
        "original_number": "float64",
        "interpretation": "string",
        "effective_s": "int64",
        "issued_s": "int64",
        "flags": "string",
    },
    "order": {
        "id": "string",
        "member": "string",
        "patient_id": "string",
        "loinc_code": "string",
        "original_code": "string",
        "placer_number": "string",
        "ordered_s": "int64",
    },
    "provenance": {
        "record_type": "string",
        "record_id": "string",
        "member": "string",
        "feed": "string",
        "received_s": "int64",
    },
    "feed_schedule": {"member": "string", "feed": "string", "every_minutes": "int64"},
}

STORE_TABLES = {
    "patient": "patient",
    "encounter": "encounter",
    "report": "diagnostic_report",
    "observation": "observation",
    "order": "clinical_order",
    "provenance": "provenance",
    "feed_schedule": "feed_schedule",
}


def _epoch(col: ir.Value) -> ir.IntegerValue:
    if col.type().is_date():
        col = col.cast("timestamp")
    return col.epoch_seconds().cast("int64")


def _text(col: ir.Value) -> ir.StringValue:
    return col.cast("string")


def _patient(t: ir.Table) -> ir.Table:
    birth = _epoch(t.birth_date)
    fallback = ibis.ifelse(
        (t.name_pinyin.strip() != "") & t.birth_date.notnull(),
        t.name_pinyin.concat("|", birth.cast("string"), "|", t.sex),
        ibis.null().cast("string"),
    )
    key = ibis.ifelse(
        t.national_id.notnull() & (t.national_id.strip() != ""), "id:" + t.national_id, fallback
    )
    return t.select(
        id=t.id,
        member=t.institution_id,
        sex=t.sex,
        birth_s=birth,
        death_s=_epoch(t.deceased_at),
        name_present=t.name.strip() != "",
        dedup_key=key,
        stub=t.stub.cast("boolean"),
    )


def _encounter(t: ir.Table) -> ir.Table:
    return t.select(
        id=t.id,
        member=t.institution_id,
        patient_id=t.patient_id,
        start_s=_epoch(t.start_at),
        end_s=_epoch(t.end_at),
        department_text=t.department_text,
        department_code=t.department_code,
        flags=_text(t.flags),
    )


def _report(t: ir.Table) -> ir.Table:
    return t.select(
        id=t.id,
        member=t.institution_id,
        patient_id=t.patient_id,
        loinc_code=t.loinc_code,
        original_code=t.original_code,
        effective_s=_epoch(t.effective_at),
        issued_s=_epoch(t.issued_at),
        order_id=t.order_id,
        placer_number=t.placer_number,
        flags=_text(t.flags),
    )


def _observation(t: ir.Table) -> ir.Table:
    return t.select(
        id=t.id,
        member=t.institution_id,
        patient_id=t.patient_id,
        encounter_id=t.encounter_id,
        report_id=t.report_id,
        status=t.status,
        loinc_code=t.loinc_code,
        original_code=t.original_code,
        value=t.value.cast("float64"),
        unit=t.unit,
        ref_low=t.ref_low.cast("float64"),
        ref_high=t.ref_high.cast("float64"),
        value_type=t.value_type,
        original_value=t.original_value,
        original_unit=t.original_unit,
        original_number=t.original_number.cast("float64"),
        interpretation=t.interpretation,
        effective_s=_epoch(t.effective_at),
        issued_s=_epoch(t.issued_at),
        flags=_text(t.flags),
    )


def _order(t: ir.Table) -> ir.Table:
    return t.select(
        id=t.id,
        member=t.institution_id,
        patient_id=t.patient_id,
        loinc_code=t.loinc_code,
        original_code=t.original_code,
        placer_number=t.placer_number,
        ordered_s=_epoch(t.ordered_at),
    )


def _provenance(t: ir.Table) -> ir.Table:
    return t.select(
        record_type=t.record_type,
        record_id=t.record_id,
        member=t.institution_id,
        feed=t.feed,
        received_s=_epoch(t.received_at),
    )


def _feed_schedule(t: ir.Table) -> ir.Table:
    return t.select(
        member=t.institution_id, feed=t.feed, every_minutes=t.every_minutes.cast("int64")
    )


NORMALISE: dict[str, Callable[[ir.Table], ir.Table]] = {
    "patient": _patient,
    "encounter": _encounter,
    "report": _report,
    "observation": _observation,
    "order": _order,
    "provenance": _provenance,
    "feed_schedule": _feed_schedule,
}


# Record ids that checks join on. They are text in every store and are left as the store has
# them (a cast would only drop a length or a NOT NULL): a CAST around a primary key hides its
# index from SQLite's planner, which then joins by scanning the table once per row
# (observation.feed_lag took tens of seconds on the demo's few thousand results).
_JOIN_KEYS = frozenset({"id", "record_id", "patient_id", "encounter_id", "report_id", "order_id"})


def _typed(name: str, t: ir.Table) -> ir.Table:
    """Cast to the declared schema, so every backend hands checks the same types."""
    schema = SCHEMAS[name]
    out: dict[str, ir.Value] = {}
    for c, typ in schema.items():
        col = t[c]
        keep = c in _JOIN_KEYS and col.type().is_string()
        out[c] = col if keep else col.cast(typ)
    return t.select(**out)


def connect(url: str) -> BaseBackend:
    """An Ibis backend for a SQLAlchemy-style URL (`sqlite:///f.db`, `postgresql://...`)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return ibis.sqlite.connect(parsed.database or ":memory:")
    if backend == "postgresql":
        return ibis.postgres.connect(
            host=parsed.host or "localhost",
            port=parsed.port or 5432,
            user=parsed.username,
            password=parsed.password,
            database=parsed.database,
        )
    if backend == "duckdb":
        return ibis.duckdb.connect(parsed.database or ":memory:")
    raise ValueError(f"quality checks cannot run on {backend!r}; use SQLite, PostgreSQL or DuckDB")


def backend_name(con: BaseBackend) -> str:
    return str(con.name)


def load_tables(con: BaseBackend) -> Tables:
    """The normalised record tables of a migrated store (lazy expressions, nothing read yet)."""
    out = {
        name: _typed(name, NORMALISE[name](con.table(table)))
        for name, table in STORE_TABLES.items()
    }
    return Tables(**out)


def read_parquet(directory: Path, con: BaseBackend | None = None) -> Tables:
    """The normalised tables from an export directory, on DuckDB (a missing file: no rows)."""
    con = con or ibis.duckdb.connect()
    out: dict[str, ir.Table] = {}
    for name, schema in SCHEMAS.items():
        path = directory / f"{name}.parquet"
        if path.exists():
            t = con.read_parquet(str(path), table_name=f"q_{name}")
            out[name] = _typed(name, t)
        else:
            out[name] = memtable({}, schema)
    return Tables(**out)


def export_parquet(
    tables: Tables, directory: Path, *, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Write each normalised table to `DIR/<name>.parquet`; returns rows written per table."""
    directory.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for name in SCHEMAS:
        t: ir.Table = getattr(tables, name)
        path = directory / f"{name}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        import pyarrow.parquet as pq

        rows = 0
        writer: Any = None
        try:
            for batch in t.to_pyarrow_batches(chunk_size=250_000):
                if writer is None:
                    writer = pq.ParquetWriter(str(tmp), batch.schema)
                writer.write_batch(batch)
                rows += batch.num_rows
            if writer is None:
                pq.write_table(t.schema().to_pyarrow().empty_table(), str(tmp))
        finally:
            if writer is not None:
                writer.close()
        tmp.replace(path)
        counts[name] = rows
        if progress is not None:
            progress(name, rows)
    return counts


def memtables(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> Tables:
    """Normalised tables from plain rows (missing columns are null; missing tables are empty).

    Times may be given as aware datetimes or dates under their store names (`effective_at`,
    `birth_date`, ...) or directly as epoch seconds (`effective_s`); flags as a list.
    """
    import json
    from datetime import UTC, date, datetime

    renames = {
        "effective_at": "effective_s",
        "issued_at": "issued_s",
        "start_at": "start_s",
        "end_at": "end_s",
        "ordered_at": "ordered_s",
        "received_at": "received_s",
        "birth_date": "birth_s",
        "deceased_at": "death_s",
        "institution_id": "member",
    }

    def seconds(v: Any) -> Any:
        if isinstance(v, datetime):
            if v.tzinfo is None:
                raise ValueError(f"naive datetime {v!r}")
            return int(v.timestamp())
        if isinstance(v, date):
            return int(datetime(v.year, v.month, v.day, tzinfo=UTC).timestamp())
        return v

    out: dict[str, ir.Table] = {}
    for name, schema in SCHEMAS.items():
        cols: dict[str, list[Any]] = {c: [] for c in schema}
        for row in rows.get(name, ()):
            clean = {renames.get(k, k): v for k, v in row.items()}
            unknown = set(clean) - set(schema)
            if unknown:
                raise KeyError(f"{name} has no column(s) {sorted(unknown)}")
            for c, typ in schema.items():
                v = clean.get(c)
                if c == "flags":
                    v = json.dumps(list(v or []))
                elif typ == "int64":
                    v = seconds(v)
                elif typ == "boolean" and v is None:
                    v = False
                elif v is None and c in _DEFAULTS:
                    v = _DEFAULTS[c]
                cols[c].append(v)
        out[name] = memtable(cols, schema)
    return Tables(**out)


# Columns the store declares NOT NULL with a default: memtables fill them the same way.
_DEFAULTS: dict[str, str] = {
    "sex": "unknown",
    "status": "unknown",
    "value_type": "none",
    "department_text": "",
    "original_code": "",
    "original_value": "",
    "original_unit": "",
    "interpretation": "",
    "feed": "",
    "record_type": "",
    "placer_number": "",
}
