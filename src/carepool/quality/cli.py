"""`carepool quality ...`: run the checks, read scorecards and alerts, set thresholds and schedules.

Scheduled runs: `carepool quality schedule --every 6h` runs the suite in a loop (one process; put
it under systemd or supervisord), or use cron, which survives restarts on its own:

    0 */6 * * *  carepool quality run --db postgresql://... --json >> /var/log/carepool-quality.log
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session, sessionmaker

from carepool.core.cli import (
    CLI_ACTOR,
    DbOption,
    JsonOption,
    cli_session,
    command_session,
    err_console,
    exit_on_error,
    migrated_url,
    print_json,
    print_result,
    print_rows,
    progress_bar,
    session_factory,
    status_filter,
)
from carepool.core.errors import InvalidInput
from carepool.quality import actions, service
from carepool.quality.models import AlertStatus, QualityRunStatus

app = typer.Typer(
    help="Data quality: checks (conformance, completeness, plausibility, timeliness, "
    "consistency), runs, scorecards per member, alerts.",
    no_args_is_help=True,
)
feed_app = typer.Typer(help="Agreed feed schedules (how often each member's feed delivers).")
app.add_typer(feed_app, name="feed")

MemberOption = Annotated[
    str | None, typer.Option("--member", help="Only this member (institution id)")
]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in `90`, `30s`, `15m`, `6h` or `1d`."""
    match = _DURATION.match(text)
    if not match:
        raise InvalidInput(f"not a duration: {text!r} (use 30s, 15m, 6h or 1d)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def _config(path: Path | None) -> Any:
    from carepool.quality.checks import REGISTRY
    from carepool.quality.config import RunConfig, load_config

    return load_config(path, set(REGISTRY)) if path else RunConfig()


def _print_run(
    run: dict[str, Any], results: list[dict[str, Any]], scores: list[dict[str, Any]]
) -> None:
    typer.echo(
        f"quality run {run['run_id']} ({run['status']}, {run['backend']}): "
        f"{run['checks_total']} checks, {run['checks_failed']} failed"
    )
    if run["error"]:
        typer.echo(f"  error: {run['error']}")
    for r in results:
        if r["member"] != "*":
            continue
        mark = "ERROR" if r["error"] else ("pass" if r["passed"] else "FAIL")
        typer.echo(
            f"  {mark:<5} {r['check_id']:<38} {r['failing']:>9} / {r['denominator']:<9} "
            f"{r['percent']:>7.2f}% (≤ {r['threshold']:g}%)"
        )
    overall = sorted(
        (s for s in scores if s["category"] == service.OVERALL and s["member"] != "*"),
        key=lambda s: (-s["score"], s["member"]),
    )
    if overall:
        typer.echo("  scorecard (overall):")
        for i, s in enumerate(overall, start=1):
            typer.echo(f"    {i:>2}. {s['member']:<20} {s['score']:6.2f}")


def _run_once(
    factory: sessionmaker[Session],
    *,
    member: str | None,
    config: Any,
    parquet: Path | None,
    as_of: datetime | None,
    as_json: bool,
) -> dict[str, Any]:
    tables = backend = None
    if parquet is not None:
        from carepool.quality import sources

        tables, backend = sources.read_parquet(parquet), "duckdb"
    progress = progress_bar("quality", quiet=as_json, counter="{task.completed}/{task.total}")
    with progress:
        task = progress.add_task("checks", total=None)
        run = actions.do_run_quality(
            factory,
            actor=CLI_ACTOR,
            member=member,
            channel="cli",
            config=config,
            tables=tables,
            backend=backend,
            as_of=as_of,
            progress=lambda done, total, check_id: progress.update(
                task, completed=done, total=total, description=check_id
            ),
        )
    with factory() as session:
        return {
            "run": service.run_to_dict(run),
            "results": [
                service.result_to_dict(r) for r in service.get_results(session, run_id=run.id)
            ],
            "scores": [
                service.score_to_dict(s) for s in service.get_run_scores(session, run_id=run.id)
            ],
        }


@app.command("run")
def run(
    db: DbOption = None,
    member: MemberOption = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML: thresholds, disabled, params")
    ] = None,
    parquet: Annotated[
        Path | None,
        typer.Option("--parquet", help="Run on DuckDB over this export instead of the store"),
    ] = None,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="Measure timeliness at this UTC time")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run every check now; stores the run, its results and scores, and raises alerts."""
    from datetime import UTC

    with exit_on_error(as_json=as_json):
        cfg = _config(config)
        url = migrated_url(db)  # before the run opens its own transactions
        with session_factory(url) as factory:
            out = _run_once(
                factory,
                member=member,
                config=cfg,
                parquet=parquet,
                as_of=as_of.replace(tzinfo=UTC) if as_of and as_of.tzinfo is None else as_of,
                as_json=as_json,
            )
    if as_json:
        print_json(out)
    else:
        _print_run(out["run"], out["results"], out["scores"])
    if out["run"]["status"] != QualityRunStatus.SUCCEEDED.value:
        raise typer.Exit(1)


@app.command("schedule")
def schedule(
    every: Annotated[str, typer.Option("--every", help="Interval: 30m, 6h, 1d")] = "6h",
    times: Annotated[
        int, typer.Option("--times", help="Stop after this many runs (0: run until stopped)")
    ] = 0,
    db: DbOption = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config")] = None,
) -> None:
    """Run the suite every INTERVAL until stopped (Ctrl-C).

    Or let cron start one run at a time, which survives restarts:
    `0 */6 * * * carepool quality run --db URL --json >> quality.log`
    """
    with exit_on_error(as_json=False):
        seconds = parse_duration(every)
        cfg = _config(config)
        url = migrated_url(db)
    n = 0
    try:
        while True:
            started = time.monotonic()
            with session_factory(url) as factory:
                out = _run_once(
                    factory, member=None, config=cfg, parquet=None, as_of=None, as_json=True
                )
            r = out["run"]
            typer.echo(
                f"{r['started_at'][:19]} run {r['run_id']} {r['status']}: "
                f"{r['checks_failed']} of {r['checks_total']} checks failed",
            )
            n += 1
            if times and n >= times:
                return
            time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return


@app.command("checks")
def checks(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the checks with their category, target, threshold in force and severity."""
    from carepool.quality.checks import all_checks

    with cli_session(db) as session:
        cfg = service.get_threshold_config(session)
    rows = []
    for c in all_checks():
        item = c.as_dict(cfg.thresholds.get(c.id))
        item["enabled"] = c.id not in cfg.disabled
        rows.append(item)
    print_rows(
        rows,
        lambda r: (
            f"{r['id']:<38} {r['category']:<13} {r['subcategory']:<13} {r['target']:<14} "
            f"≤{r['threshold']:>5g}%  {r['severity']}{'' if r['enabled'] else '  (disabled)'}"
        ),
        as_json=as_json,
    )


@app.command("runs")
def runs(db: DbOption = None, limit: int = 20, as_json: JsonOption = False) -> None:
    """List quality runs, newest first."""
    with cli_session(db) as session:
        items, _total = service.get_runs(session, limit=limit)
        rows = [service.run_to_dict(r) for r in items]
    print_rows(
        rows,
        lambda r: (
            f"{r['run_id']}  {r['started_at'][:19]}  {r['member'] or '(all)':<14} "
            f"{r['status']:<10} {r['backend']:<9} failed {r['checks_failed']}/{r['checks_total']}"
        ),
        as_json=as_json,
    )


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    db: DbOption = None,
    member: MemberOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one run's results (the consortium totals, or one member's) and its scorecard."""
    with command_session(db, as_json=as_json) as session:
        run_row = service.run_to_dict(service.get_run(session, id=run_id))
        results = [
            service.result_to_dict(r)
            for r in service.get_results(
                session, run_id=run_id, members={member} if member else None
            )
        ]
        scores = [service.score_to_dict(s) for s in service.get_run_scores(session, run_id=run_id)]
    if as_json:
        print_json({"run": run_row, "results": results, "scores": scores})
        return
    if member:
        results = [{**r, "member": "*"} for r in results]
    _print_run(run_row, results, scores)


@app.command("report")
def report(
    run_id: Annotated[str, typer.Argument(help="Run id")],
    out: Annotated[Path, typer.Option("--out", help="HTML file to write")],
    db: DbOption = None,
) -> None:
    """Write a run as a self-contained HTML report."""
    from carepool.quality.report import render_run

    with command_session(db, as_json=False) as session:
        run_row = service.get_run(session, id=run_id)
        html = render_run(
            run_row,
            service.get_results(session, run_id=run_id),
            service.get_run_scores(session, run_id=run_id),
        )
    out.write_text(html, encoding="utf-8")
    typer.echo(f"wrote {out}")


@app.command("scorecard")
def scorecard(
    db: DbOption = None,
    member: MemberOption = None,
    limit: int = 30,
    as_json: JsonOption = False,
) -> None:
    """The members ranked by their latest score, or one member's scores over time."""
    with cli_session(db) as session:
        data = (
            service.get_scorecard(session, institution_id=member, limit=limit)
            if member
            else service.get_consortium_scorecard(session)
        )
    if as_json:
        print_json(data)
        return
    if member:
        for entry in data["history"]:
            cats = "  ".join(
                f"{k} {v['score']:.1f}" for k, v in sorted(entry["categories"].items())
            )
            typer.echo(f"{entry['measured_at'][:19]}  {entry['run_id']}  {cats}")
        return
    for entry in data["members"]:
        cats = "  ".join(f"{k} {v:.1f}" for k, v in sorted(entry["categories"].items()))
        typer.echo(f"{entry['rank']:>3}. {entry['member']:<20} {cats}")


@app.command("alerts")
def alerts(
    db: DbOption = None,
    member: MemberOption = None,
    status: Annotated[str, typer.Option(help="open, acknowledged, resolved or all")] = "open",
    as_json: JsonOption = False,
) -> None:
    """List alerts: score drops, late feeds, stale members."""
    wanted = status_filter(AlertStatus, status, as_json=as_json)
    with cli_session(db) as session:
        rows = [
            service.alert_to_dict(a)
            for a in service.get_alerts(session, institution_id=member, status=wanted)
        ]
    print_rows(
        rows,
        lambda a: (
            f"{a['id']:>5}  {a['status']:<12} {a['kind']:<13} {a['member']:<16} {a['message']}"
        ),
        as_json=as_json,
    )


@app.command("threshold")
def threshold(
    check_id: Annotated[str, typer.Argument(help="Check id (see `carepool quality checks`)")],
    percent: Annotated[float | None, typer.Argument(help="Percent of rows allowed to fail")] = None,
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Switch the check on or off")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Override a check's threshold (or switch it off) for every future run."""
    with command_session(db, as_json=as_json) as session:
        row = actions.do_set_threshold(
            session,
            actor=CLI_ACTOR,
            check_id=check_id,
            threshold=percent,
            enabled=enable,
            source="cli",
        )
        out = {"check_id": row.check_id, "threshold": row.threshold, "enabled": row.enabled}
    text = f"{check_id}: threshold {out['threshold']}, enabled {out['enabled']}"
    print_result(out, text, as_json=as_json)


@feed_app.command("set")
def feed_set(
    member: Annotated[str, typer.Argument(help="Member (institution id)")],
    feed: Annotated[str, typer.Argument(help="Feed: hl7v2, fhir, csv, or * for any")],
    every: Annotated[str, typer.Option("--every", help="Agreed interval: 15m, 6h, 1d")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Agree that MEMBER's FEED delivers at least every INTERVAL (late beyond 1.5x)."""
    with exit_on_error(as_json=as_json):
        minutes = max(1, round(parse_duration(every) / 60))
    with command_session(db, as_json=as_json) as session:
        row = actions.do_set_feed_schedule(
            session,
            actor=CLI_ACTOR,
            institution_id=member,
            feed=feed,
            every_minutes=minutes,
            source="cli",
        )
        out = service.schedule_to_dict(row) if row else {}
    print_result(out, f"{member}/{feed}: every {minutes} min", as_json=as_json)


@feed_app.command("remove")
def feed_remove(
    member: Annotated[str, typer.Argument(help="Member (institution id)")],
    feed: Annotated[str, typer.Argument(help="Feed")],
    db: DbOption = None,
) -> None:
    """Drop a feed's schedule."""
    with cli_session(db) as session:
        actions.do_set_feed_schedule(
            session,
            actor=CLI_ACTOR,
            institution_id=member,
            feed=feed,
            every_minutes=None,
            source="cli",
        )
    typer.echo(f"{member}/{feed}: no schedule")


@feed_app.command("list")
def feed_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the agreed feed schedules."""
    with cli_session(db) as session:
        rows = [service.schedule_to_dict(r) for r in service.get_feed_schedules(session)]
    print_rows(
        rows,
        lambda r: f"{r['member']:<20} {r['feed']:<8} every {r['every_minutes']} min",
        as_json=as_json,
    )


@app.command("export")
def export(
    parquet: Annotated[Path, typer.Option("--parquet", help="Directory for the Parquet files")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export the record tables (normalised as the checks read them) to Parquet for DuckDB/Spark.

    The files hold record ids, codes, values and times, and a pseudonymous patient
    de-duplication key (national id or name|birth|sex): keep them under the same access rules.
    """
    counts = actions.export_parquet(
        migrated_url(db),
        parquet,
        progress=None if as_json else lambda name, n: err_console.print(f"  {name}: {n} rows"),
    )
    out = {"directory": str(parquet), "rows": counts}
    print_result(out, f"wrote {sum(counts.values())} rows to {parquet}", as_json=as_json)
