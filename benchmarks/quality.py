"""The full quality suite over a million observations, on PostgreSQL and on DuckDB over Parquet.

    .venv/bin/python benchmarks/quality.py [--observations 1000000] [--members 8]

Fills a scratch PostgreSQL database (migrated with the real schema) with synthetic records in
bulk, server-side (`INSERT ... SELECT generate_series`, not through ingest): patients,
encounters, reports, orders, observations with per-member defect rates (unmapped codes, missing
units, implausible values, late arrivals, duplicates, records after a recorded death, results
before the order they are linked to) and their provenance. Then it times the
whole check suite on PostgreSQL, the Parquet export, and the suite on DuckDB over that export,
prints a table per check and writes it to docs/benchmarks.md between `<!-- quality:begin -->`
and `<!-- quality:end -->`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OBSERVATION_INSERT, scratch_pg, write_section
from carepool.core import migrate
from carepool.quality import checks, evaluate, scoring, sources
from carepool.quality.checks import Params

console = Console(stderr=True)
AS_OF = datetime(2026, 3, 5, tzinfo=UTC)

# analyte: (LOINC, local code, unit, typical value, spread, ref low, ref high)
ANALYTES = [
    ("718-7", "HGB", "g/L", 135.0, 15.0, 120.0, 160.0),
    ("26464-8", "WBC", "10*9/L", 6.5, 2.0, 4.0, 10.0),
    ("26515-7", "PLT", "10*9/L", 220.0, 60.0, 100.0, 300.0),
    ("14749-6", "GLU", "mmol/L", 5.2, 1.0, 3.9, 6.1),
    ("2823-3", "K", "mmol/L", 4.2, 0.4, 3.5, 5.3),
    ("2951-2", "NA", "mmol/L", 140.0, 3.0, 137.0, 147.0),
]


def _arr(i: int) -> str:
    return (
        "ARRAY["
        + ",".join(repr(a[i]) if isinstance(a[i], str) else str(a[i]) for a in ANALYTES)
        + "]"
    )


def fill(url: str, n_obs: int, members: int) -> dict[str, int]:
    """Bulk-insert synthetic records; returns rows per table."""
    n_pat = max(n_obs // 20, 100)
    n_enc = max(n_obs // 10, 100)
    n_rep = max(n_obs // 4, 100)
    n_ana = len(ANALYTES)

    def member(patient: str) -> str:
        return f"'m' || lpad((({patient} % {members}) + 1)::text, 2, '0')"

    def rate(patient: str) -> str:
        """Defect rate of member k (1..members): k * 0.4 % per defect kind."""
        return f"((({patient} % {members}) + 1) * 0.004)"

    # One patient in 41 has died: after all their records, except k * 4 % of member k's dead,
    # whose death falls inside the period, so that their later records come after it.
    died = f"""CASE WHEN i % 41 <> 0 THEN NULL
            WHEN (i / 41) % 100 < ((i % {members}) + 1) * 4
                THEN TIMESTAMPTZ '2026-01-01 00:00+00' + (i * 7919 % 5000000) * INTERVAL '1 second'
            ELSE TIMESTAMPTZ '2026-03-01 00:00+00' END"""

    sql = [
        "SET synchronous_commit = off",
        f"""INSERT INTO patient (id, natural_key, institution_id, id_system, local_id, name, family,
            given, name_pinyin, sex, birth_date, national_id, phone, address, deceased,
            deceased_at, stub, content_hash, created_at, updated_at)
        SELECT 'pat-' || i, 'pat|' || i, {member("i")}, 'mrn', i::text, 'P' || i, 'P', i::text,
            'p ' || i, CASE WHEN i % 2 = 0 THEN 'female' ELSE 'male' END,
            DATE '1940-01-01' + (i * 37 % 25000),
            CASE WHEN i % 10 = 0 THEN NULL
                 ELSE 'N' || (CASE WHEN i % 997 = 0 THEN i - {members} ELSE i END) END,
            '', '', i % 41 = 0, {died}, false, 'h', now(), now()
        FROM generate_series(1, {n_pat}) AS i""",
        f"""INSERT INTO encounter (id, natural_key, institution_id, id_system, local_id,
            patient_id, class, status, start_at, end_at, type_text, department_text,
            department_code, location, last_event, flags, content_hash, created_at, updated_at)
        SELECT 'enc-' || e, 'enc|' || e, {member(f"(((e - 1) % {n_pat}) + 1)")}, 'v',
            e::text, 'pat-' || (((e - 1) % {n_pat}) + 1), 'outpatient', 'finished',
            TIMESTAMPTZ '2026-01-01 00:00+00' + (e * 53 % 5000000) * INTERVAL '1 second',
            TIMESTAMPTZ '2026-01-01 00:00+00' + (e * 53 % 5000000 + CASE WHEN e % 2000 = 0
                THEN -3600 ELSE 7200 END) * INTERVAL '1 second',
            '', CASE WHEN e % 500 = 0 THEN '中医馆' ELSE '内科' END,
            CASE WHEN e % 500 = 0 THEN NULL ELSE '03' END, '', '',
            CASE WHEN e % 500 = 0 THEN '["unmapped-department"]' ELSE '[]' END::jsonb,
            'h', now(), now()
        FROM generate_series(1, {n_enc}) AS e""",
        f"""INSERT INTO diagnostic_report (id, natural_key, institution_id, id_system, local_id,
            patient_id, encounter_id, status, loinc_code, display, original_system,
            original_code, original_text, category, effective_at, issued_at, conclusion,
            order_id, placer_number, flags, content_hash, created_at, updated_at)
        SELECT 'rep-' || r, 'rep|' || r, {member(f"(((r - 1) % {n_pat}) + 1)")}, 'f',
            r::text, 'pat-' || (((r - 1) % {n_pat}) + 1), NULL, 'final', '58410-2', 'CBC', '',
            'CBC', '血常规', 'LAB',
            TIMESTAMPTZ '2026-01-01 00:00+00' + (r * 97 % 5000000) * INTERVAL '1 second',
            TIMESTAMPTZ '2026-01-01 03:00+00' + (r * 97 % 5000000) * INTERVAL '1 second',
            '',
            -- linked to order r: by its id (a quarter), by its placer number (half), or not
            CASE WHEN r % 4 = 1 THEN 'ord-' || r END,
            CASE WHEN r % 2 = 0 THEN r::text ELSE '' END,
            '[]'::jsonb, 'h', now(), now()
        FROM generate_series(1, {n_rep}) AS r""",
        f"""INSERT INTO clinical_order (id, natural_key, institution_id, id_system, local_id,
            patient_id, encounter_id, placer_number, filler_number, status, loinc_code,
            original_system, original_code, original_text, priority, ordered_at, content_hash,
            created_at, updated_at)
        SELECT 'ord-' || r, 'ord|' || r, {member(f"(((r - 1) % {n_pat}) + 1)")}, 'p',
            r::text, 'pat-' || (((r - 1) % {n_pat}) + 1), NULL, r::text, '', 'completed',
            '58410-2', '', 'CBC', '血常规', 'R',
            TIMESTAMPTZ '2026-01-01 00:00+00' + (r * 97 % 5000000 +
                CASE WHEN r % 3000 = 0 THEN 600 ELSE -1800 END) * INTERVAL '1 second',
            'h', now(), now()
        FROM generate_series(1, {n_rep}) AS r""",
        f"""CREATE TEMP TABLE gen AS
        SELECT o, ((o - 1) % {n_pat}) + 1 AS p, (o % {n_ana}) + 1 AS a, random() AS u,
            random() AS v, {rate(f"(((o - 1) % {n_pat}) + 1)")} AS rate,
            TIMESTAMPTZ '2026-01-01 00:00+00' + (o * 13 % 5000000) * INTERVAL '1 second' AS t
        FROM generate_series(1, {n_obs}) AS o""",
        f"""{OBSERVATION_INSERT}
        SELECT 'obs-' || o, 'obs|' || o, {member("p")}, 'f', o::text, 'pat-' || p,
            'enc-' || (((o - 1) % {n_enc}) + 1), 'rep-' || (((o - 1) % {n_rep}) + 1), 'final',
            'laboratory',
            CASE WHEN u < rate THEN NULL ELSE ({_arr(0)})[a] END, '',
            CASE WHEN u < 3 * rate THEN NULL
                 ELSE round((({_arr(3)})[a] + ({_arr(4)})[a] * (v - 0.5) * 2)::numeric, 2) END,
            CASE WHEN u >= rate AND u < 2 * rate THEN NULL ELSE ({_arr(2)})[a] END,
            ({_arr(5)})[a], ({_arr(6)})[a], 'lis',
            CASE WHEN u < rate THEN 'ZZ' || a ELSE ({_arr(1)})[a] END, '', '[]'::jsonb,
            'quantity', round((({_arr(3)})[a] + ({_arr(4)})[a] * (v - 0.5) * 2)::numeric, 2)::text,
            CASE WHEN u >= rate AND u < 2 * rate THEN '' ELSE ({_arr(2)})[a] END,
            round((({_arr(3)})[a] + ({_arr(4)})[a] * (v - 0.5) * 2)::numeric, 2), NULL, NULL, '',
            '', '', 'N', t, t + INTERVAL '3 hours',
            (CASE WHEN u < rate THEN '["unmapped-code"]'
                  WHEN u < 2 * rate THEN '["unmapped-unit"]'
                  WHEN u < 3 * rate THEN '["implausible"]' ELSE '[]' END)::jsonb,
            '', 'h', now(), now(), now()
        FROM gen""",
        f"""{OBSERVATION_INSERT}
        SELECT 'obs-d' || substr(id, 5), 'dup|' || natural_key, institution_id, id_system,
            local_id || 'd', patient_id, encounter_id, report_id, status, category, loinc_code,
            display, value, unit, ref_low, ref_high, original_system, original_code,
            original_text, codings, value_type, original_value, original_unit, original_number,
            original_ref_low, original_ref_high, reference_text, value_code, value_code_system,
            interpretation, effective_at, issued_at, flags, note, content_hash, standardised_at,
            created_at, updated_at
        FROM observation JOIN gen ON id = 'obs-' || gen.o WHERE gen.v < gen.rate / 2""",
        """INSERT INTO provenance (record_type, record_id, institution_id, run_id, feed, source,
            message, position, received_at, content_hash)
        SELECT 'observation', o.id, o.institution_id, NULL, 'hl7v2', '', '', '',
            o.effective_at + CASE WHEN g.v > 1 - g.rate THEN INTERVAL '5 days'
                                  ELSE INTERVAL '2 hours' END, 'h'
        FROM observation o JOIN gen g ON o.id = 'obs-' || g.o""",
        f"""INSERT INTO provenance (record_type, record_id, institution_id, run_id, feed, source,
            message, position, received_at, content_hash)
        SELECT 'patient', 'pat-' || i, {member("i")}, NULL,
            CASE WHEN i % {members} = {members - 1} THEN 'csv' ELSE 'hl7v2' END, '', '', '',
            TIMESTAMPTZ '2026-03-04 00:00+00' - (i % 100) * INTERVAL '1 hour', 'h'
        FROM generate_series(1, {n_pat}) AS i""",
        f"""INSERT INTO feed_schedule (institution_id, feed, every_minutes, note, updated_at,
            updated_by)
        SELECT 'm' || lpad(k::text, 2, '0'), 'hl7v2', 1440, '', now(), 'bench'
        FROM generate_series(1, {members}) AS k""",
        # Set hint bits and statistics now, so the first check does not pay for the load.
        "VACUUM ANALYZE",
    ]
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for stmt in sql[1:]:
            conn.execute(stmt)  # type: ignore[call-overload]
        counts = {}
        for table in (
            "patient",
            "encounter",
            "diagnostic_report",
            "clinical_order",
            "observation",
            "provenance",
        ):
            counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
    return counts


def suite(tables: checks.Tables) -> tuple[list[evaluate.CheckResult], dict[str, float], float]:
    started = time.perf_counter()
    params = Params(
        now=AS_OF, analytes=evaluate.seed_analytes(), valid_units=evaluate.valid_units(tables)
    )
    seconds: dict[str, float] = {}

    def tick(check: checks.Check, results: list[evaluate.CheckResult]) -> None:
        seconds[check.id] = results[-1].seconds
        console.print(f"    {check.id:<38} {results[-1].seconds:7.2f} s", highlight=False)

    results = evaluate.run_suite(checks.all_checks(), tables, params, progress=tick)
    return results, seconds, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--observations", type=int, default=1_000_000)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)

    with scratch_pg("carepool_bench_quality") as (_name, url), tempfile.TemporaryDirectory() as tmp:
        console.print(f"[bold]migrate[/] {url}")
        migrate.upgrade(url)
        t0 = time.perf_counter()
        counts = fill(url, args.observations, args.members)
        fill_s = time.perf_counter() - t0
        console.print(f"[bold]filled[/] {counts} in {fill_s:.1f} s")

        console.print("[bold]suite on PostgreSQL[/]")
        pg_results, pg_seconds, pg_total = suite(sources.load_tables(sources.connect(url)))

        console.print("[bold]export to Parquet[/]")
        t0 = time.perf_counter()
        exported = sources.export_parquet(
            sources.load_tables(sources.connect(url)), Path(tmp) / "pq"
        )
        export_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in (Path(tmp) / "pq").iterdir())

        console.print("[bold]suite on DuckDB over Parquet[/]")
        dk_results, dk_seconds, dk_total = suite(sources.read_parquet(Path(tmp) / "pq"))

    errors = [r for r in [*pg_results, *dk_results] if r.error]
    totals_pg = {r.check.id: r for r in pg_results if r.member == "*"}
    totals_dk = {r.check.id: r for r in dk_results if r.member == "*"}
    agree = all(
        (totals_pg[k].failing, totals_pg[k].denominator)
        == (totals_dk[k].failing, totals_dk[k].denominator)
        for k in totals_pg
    )
    ranking = scoring.ranking(scoring.scores(dk_results))

    table = Table(title="quality suite")
    for col in ("check", "rows", "failing", "PostgreSQL s", "DuckDB s"):
        table.add_column(col, justify="left" if col == "check" else "right")
    lines = [
        "| check | rows | failing | PostgreSQL s | DuckDB s |",
        "|---|---:|---:|---:|---:|",
    ]
    for check_id, r in totals_dk.items():
        cells = [
            check_id,
            f"{r.denominator:,}",
            f"{r.failing:,}",
            f"{pg_seconds.get(check_id, float('nan')):.2f}",
            f"{dk_seconds.get(check_id, float('nan')):.2f}",
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"| **whole suite** | | | **{pg_total:.1f}** | **{dk_total:.1f}** |")
    console.print(table)
    cpu = platform.processor() or platform.machine()
    body = "\n".join(
        [
            "## Data-quality suite (1M observations)",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {cpu}, {os.cpu_count()} logical "
            f"CPUs, Python {platform.python_version()}; {len(totals_dk)} checks, "
            f"{args.members} members. The machine (2 cores) was shared with other engineers' "
            f"work (1-minute load average {os.getloadavg()[0]:.1f} at the end), so timings "
            "are noisy.",
            "",
            "```",
            f"python benchmarks/quality.py --observations {args.observations} "
            f"--members {args.members}",
            "```",
            "",
            f"- rows: {', '.join(f'{k} {v:,}' for k, v in counts.items())} "
            f"(bulk `INSERT ... SELECT generate_series` in {fill_s:.0f} s)",
            f"- whole suite on PostgreSQL: **{pg_total:.1f} s**; on DuckDB over Parquet: "
            f"**{dk_total:.1f} s** (target: under 30 s)",
            f"- Parquet export of the normalised tables: {export_s:.1f} s, "
            f"{sum(exported.values()):,} rows, {size / 1e6:.0f} MB",
            f"- both backends give identical counts for every check: {'yes' if agree else 'NO'}; "
            f"errors: {len(errors)}",
            "- members ranked by overall score (defect rates grow with the member number): "
            + ", ".join(f"{s.member} {s.score:.2f}" for s in ranking),
            "",
            *lines,
        ]
    )
    print(body)
    if not args.no_write:
        write_section("quality", body)
    return 0 if agree and not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
