"""`carepool ingest ...`: run an ingest, and work the dead-letter store.

`carepool ingest --db URL --source MEMBER PATH... [--json]` runs an ingest (the same as
`carepool ingest run ...`); `carepool ingest dead-letter list|show|retry|discard` works the
dead letters; `carepool ingest runs` lists runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from carepool.core.auth import Principal
from carepool.core.cli import DbOption, JsonOption, cli_session, fail, print_json, resolve_url
from carepool.core.db import make_engine, make_session_factory
from carepool.core.errors import CarepoolError, InvalidInput
from carepool.ingest import actions, service
from carepool.ingest.models import DeadLetterStatus

err = Console(stderr=True, soft_wrap=True)


class _RunByDefault(TyperGroup):
    """A group whose first argument may be a path or an option: then it means `run`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_RunByDefault,
    help=(
        "Feeds into the clinical store: `carepool ingest --source MEMBER PATH...` ingests files "
        "(HL7 v2, FHIR R4 JSON/NDJSON, CSV with a mapping); dead letters are kept for retry."
    ),
    no_args_is_help=True,
)
dead_app = typer.Typer(help="Records that could not be stored: list, show, retry, discard.")
app.add_typer(dead_app, name="dead-letter")


def _print_summary(summary: dict[str, Any]) -> None:
    typer.echo(
        f"run {summary['run_id']} ({summary['status']}): received {summary['received']}  "
        f"stored {summary['stored']} (updated {summary['updated']})  "
        f"duplicates {summary['duplicates']}  rejected {summary['rejected']}"
    )
    for kind, counts in sorted(summary["by_kind"].items()):
        parts = "  ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        typer.echo(f"  {kind:<12} {parts}")
    if summary["flags"]:
        typer.echo("  flags: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["flags"].items())))
    if summary["dead_letters"]:
        ids = ", ".join(str(i) for i in summary["dead_letters"][:20])
        more = " ..." if len(summary["dead_letters"]) > 20 else ""
        typer.echo(f"  dead letters: {ids}{more} (carepool ingest dead-letter show ID)")


@app.command("run")
def run(
    paths: Annotated[
        list[Path], typer.Argument(help="Files to ingest", exists=True, dir_okay=False)
    ],
    source: Annotated[
        str, typer.Option("--source", help="The member (institution id) that sent them")
    ],
    db: DbOption = None,
    format: Annotated[
        str | None, typer.Option("--format", help="hl7v2, fhir or csv (default: detected per file)")
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option("--mapping", help="CSV mapping: a shipped name (synthea) or a YAML file"),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=0,
            help="Processes that parse large multi-file inputs while this one stores "
            "(0: one per CPU; 1: parse here)",
        ),
    ] = 0,
    as_json: JsonOption = False,
) -> None:
    """Ingest PATHS as member SOURCE; prints received / stored / duplicates / rejected."""
    url = resolve_url(db)
    try:
        inputs = [actions.Input(name=p.name, data=p.read_bytes()) for p in paths]
    except OSError as exc:
        raise fail(InvalidInput(f"cannot read input: {exc}"), as_json=as_json) from exc
    with cli_session(db):
        pass  # migrate before the run opens its own transactions
    engine = make_engine(url)
    factory = make_session_factory(engine)
    show_bar = not as_json and err.is_terminal
    progress = Progress(
        TextColumn("[bold]ingest[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not show_bar,
    )
    try:
        with progress:
            task = progress.add_task(source, total=sum(len(i.data) for i in inputs) or 1)
            summary = actions.do_ingest(
                factory,
                actor=Principal.system_actor("cli"),
                institution_id=source,
                inputs=inputs,
                format=format,
                mapping=mapping,
                channel="cli",
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                workers=workers or actions.default_workers(),
            )
    except CarepoolError as exc:
        raise fail(exc, as_json=as_json) from exc
    finally:
        engine.dispose()
    result = summary.as_dict()
    if as_json:
        print_json(result)
    else:
        _print_summary(result)
    if summary.status != "succeeded":
        raise typer.Exit(1)


@app.command("mllp")
def mllp(
    source: Annotated[str, typer.Option("--source", help="The member whose feed this is")],
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 2575,
) -> None:
    """Listen for HL7 v2 over MLLP; every message is ingested and answered with ACK/NACK."""
    import asyncio

    from carepool.ingest.mllp import MllpServer

    url = resolve_url(db)
    with cli_session(db):
        pass
    engine = make_engine(url)
    server = MllpServer(
        make_session_factory(engine),
        actor=Principal.system_actor("mllp"),
        institution_id=source,
        host=host,
        port=port,
    )

    async def main() -> None:
        bound = await server.start()
        err.print(f"MLLP listener for {source} on {bound[0]}:{bound[1]} (Ctrl-C stops it)")
        await server.serve_forever()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        engine.dispose()


@app.command("runs")
def runs(
    db: DbOption = None,
    source: Annotated[str | None, typer.Option("--source", help="Only this member's")] = None,
    limit: int = 20,
    as_json: JsonOption = False,
) -> None:
    """List ingest runs, newest first."""
    with cli_session(db) as session:
        items, _total = service.get_runs(session, institution_id=source, limit=limit)
        rows = [service.run_to_dict(r) for r in items]
    if as_json:
        print_json(rows)
        return
    for r in rows:
        typer.echo(
            f"{r['run_id']}  {r['started_at'][:19]}  {r['source']:<16} {r['status']:<10} "
            f"recv {r['received']:>7} stored {r['stored']:>7} dup {r['duplicates']:>7} "
            f"rej {r['rejected']:>5}"
        )


@dead_app.command("list")
def dead_list(
    db: DbOption = None,
    source: Annotated[str | None, typer.Option("--source", help="Only this member's")] = None,
    status: Annotated[
        str, typer.Option("--status", help="open, resolved, discarded or all")
    ] = "open",
    limit: int = 50,
    as_json: JsonOption = False,
) -> None:
    """List dead letters (open ones by default)."""
    try:
        wanted = None if status == "all" else DeadLetterStatus(status)
    except ValueError as exc:
        raise fail(InvalidInput(f"unknown status {status!r}"), as_json=as_json) from exc
    with cli_session(db) as session:
        items, total = service.get_dead_letters(
            session, institution_id=source, status=wanted, limit=limit
        )
        rows = [service.dead_letter_to_dict(r) for r in items]
    if as_json:
        print_json({"total": total, "items": rows})
        return
    for r in rows:
        typer.echo(
            f"{r['id']:>6}  {r['status']:<9} {r['source']:<14} {r['format']:<6} "
            f"{r['position'][:40]:<40}  {r['reason'][:80]}"
        )
    typer.echo(f"{total} dead letter(s)")


@dead_app.command("show")
def dead_show(
    id: Annotated[int, typer.Argument(help="Dead letter id")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one dead letter with its reason and original bytes."""
    try:
        with cli_session(db) as session:
            row = service.dead_letter_to_dict(
                service.get_dead_letter(session, id=id), with_raw=True
            )
    except CarepoolError as exc:
        raise fail(exc, as_json=as_json) from exc
    if as_json:
        print_json(row)
        return
    for key, value in row.items():
        if key != "raw":
            typer.echo(f"{key:<16} {value}")
    typer.echo("--- original ---")
    sys.stdout.write(row["raw"].replace("\r", "\n").rstrip("\n") + "\n")


@dead_app.command("retry")
def dead_retry(
    ids: Annotated[list[int], typer.Argument(help="Dead letter ids")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Feed dead letters through their connector again; resolved when nothing is rejected."""
    url = resolve_url(db)
    with cli_session(db):
        pass
    engine = make_engine(url)
    factory = make_session_factory(engine)
    results = []
    try:
        for id in ids:
            letter, summary = actions.do_retry_dead_letter(
                factory, actor=Principal.system_actor("cli"), id=id, channel="cli"
            )
            results.append(
                {"dead_letter": service.dead_letter_to_dict(letter), "run": summary.as_dict()}
            )
    except CarepoolError as exc:
        raise fail(exc, as_json=as_json) from exc
    finally:
        engine.dispose()
    if as_json:
        print_json(results)
        return
    for r in results:
        d = r["dead_letter"]
        typer.echo(f"dead letter {d['id']}: {d['status']} (run {r['run']['run_id']})")
        if d["status"] == "open":
            typer.echo(f"  still failing: {d['reason'][:200]}")


@dead_app.command("discard")
def dead_discard(
    id: Annotated[int, typer.Argument(help="Dead letter id")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Mark a dead letter as not to be retried (kept for the record)."""
    try:
        with cli_session(db) as session:
            row = actions.do_discard_dead_letter(
                session, actor=Principal.system_actor("cli"), id=id, channel="cli"
            )
            out = service.dead_letter_to_dict(row)
    except CarepoolError as exc:
        raise fail(exc, as_json=as_json) from exc
    if as_json:
        print_json(out)
    else:
        typer.echo(f"dead letter {id}: {out['status']}")
