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
from typer.core import TyperGroup

from carepool.core.auth import Principal
from carepool.core.cli import (
    CLI_ACTOR,
    DbOption,
    JsonOption,
    SourceOption,
    cli_session,
    command_session,
    err_console,
    exit_on_error,
    fail,
    migrated_url,
    print_json,
    print_result,
    print_rows,
    progress_bar,
    session_factory,
    status_filter,
)
from carepool.core.errors import InvalidInput
from carepool.ingest import actions, service
from carepool.ingest.models import DeadLetterStatus


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

DeadLetterArg = Annotated[int, typer.Argument(help="Dead letter id")]


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
    if summary["unmodelled"]:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(summary["unmodelled"].items()))
        typer.echo(f"  kept, not modelled: {parts}")
    for warning in summary["warnings"]:
        typer.echo(f"  warning: {warning}")
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
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding",
            help="The character set the source declared (gb18030, utf-8, latin-1; default: "
            "detected)",
        ),
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
    link: Annotated[
        bool,
        typer.Option(
            "--link/--no-link",
            help="Match the patients the run stored against the index on arrival (default)",
        ),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Ingest PATHS as member SOURCE; prints received / stored / duplicates / rejected, then
    links the patients it stored or changed (identity, on arrival)."""
    try:
        inputs = [actions.Input(name=p.name, data=p.read_bytes()) for p in paths]
    except OSError as exc:
        raise fail(InvalidInput(f"cannot read input: {exc}"), as_json=as_json) from exc
    url = migrated_url(db)  # before the run opens its own transactions
    progress = progress_bar("ingest", quiet=as_json)
    with exit_on_error(as_json=as_json), session_factory(url) as factory, progress:
        task = progress.add_task(source, total=sum(len(i.data) for i in inputs) or 1)
        summary = actions.do_ingest(
            factory,
            actor=CLI_ACTOR,
            institution_id=source,
            inputs=inputs,
            format=format,
            mapping=mapping,
            encoding=encoding,
            channel="cli",
            progress=lambda done, total: progress.update(task, completed=done, total=total),
            workers=workers or actions.default_workers(),
        )
    result = summary.as_dict()
    if link and summary.status == "succeeded":
        with exit_on_error(as_json=as_json), session_factory(url) as factory:
            result["linking"] = actions.do_link_run(factory, run_id=summary.run_id)
    if as_json:
        print_json(result)
    else:
        _print_summary(result)
        if result.get("linking"):
            linked = result["linking"]
            typer.echo(
                "  linked on arrival: "
                + "  ".join(f"{k} {v}" for k, v in linked.items() if isinstance(v, int))
            )
    if summary.status != "succeeded":
        raise typer.Exit(1)


@app.command("mllp")
def mllp(
    source: Annotated[str, typer.Option("--source", help="The member whose feed this is")],
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 2575,
    max_message_size: Annotated[
        int,
        typer.Option(
            "--max-message-size",
            min=1024,
            help="The largest frame accepted, in bytes (larger ones are refused and kept)",
        ),
    ] = 16 * 1024 * 1024,
    encoding: Annotated[
        str | None,
        typer.Option("--encoding", help="The character set the sender uses when MSH-18 is empty"),
    ] = None,
) -> None:
    """Listen for HL7 v2 over MLLP; every message is ingested and answered with ACK/NACK."""
    import asyncio
    import contextlib

    from carepool.ingest.mllp import MllpServer

    with session_factory(migrated_url(db)) as factory:
        server = MllpServer(
            factory,
            actor=Principal.system_actor("mllp"),
            institution_id=source,
            host=host,
            port=port,
            max_message=max_message_size,
            encoding=encoding,
        )

        async def main() -> None:
            bound = await server.start()
            err_console.print(
                f"MLLP listener for {source} on {bound[0]}:{bound[1]} (Ctrl-C stops it)"
            )
            await server.serve_forever()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())


@app.command("runs")
def runs(
    db: DbOption = None,
    source: SourceOption = None,
    limit: int = 20,
    as_json: JsonOption = False,
) -> None:
    """List ingest runs, newest first."""
    with cli_session(db) as session:
        items, _total = service.get_runs(session, institution_id=source, limit=limit)
        rows = [service.run_to_dict(r) for r in items]
    print_rows(
        rows,
        lambda r: (
            f"{r['run_id']}  {r['started_at'][:19]}  {r['source']:<16} {r['status']:<10} "
            f"recv {r['received']:>7} stored {r['stored']:>7} dup {r['duplicates']:>7} "
            f"rej {r['rejected']:>5}"
        ),
        as_json=as_json,
    )


@dead_app.command("list")
def dead_list(
    db: DbOption = None,
    source: SourceOption = None,
    status: Annotated[
        str, typer.Option("--status", help="open, resolved, discarded or all")
    ] = "open",
    limit: int = 50,
    as_json: JsonOption = False,
) -> None:
    """List dead letters (open ones by default)."""
    wanted = status_filter(DeadLetterStatus, status, as_json=as_json)
    with cli_session(db) as session:
        items, total = service.get_dead_letters(
            session, institution_id=source, status=wanted, limit=limit
        )
        rows = [service.dead_letter_to_dict(r) for r in items]
    print_rows(
        rows,
        lambda r: (
            f"{r['id']:>6}  {r['status']:<9} {r['source']:<14} {r['format']:<6} "
            f"{r['position'][:40]:<40}  {r['reason'][:80]}"
        ),
        as_json=as_json,
        total=total,
        noun="dead letter(s)",
    )


@dead_app.command("show")
def dead_show(
    id: DeadLetterArg,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one dead letter with its reason and original bytes."""
    with command_session(db, as_json=as_json) as session:
        row = service.dead_letter_to_dict(service.get_dead_letter(session, id=id), with_raw=True)
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
    results = []
    with exit_on_error(as_json=as_json), session_factory(migrated_url(db)) as factory:
        for id in ids:
            letter, summary = actions.do_retry_dead_letter(
                factory, actor=CLI_ACTOR, id=id, channel="cli"
            )
            results.append(
                {"dead_letter": service.dead_letter_to_dict(letter), "run": summary.as_dict()}
            )
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
    id: DeadLetterArg,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Mark a dead letter as not to be retried (kept for the record)."""
    with command_session(db, as_json=as_json) as session:
        row = actions.do_discard_dead_letter(session, actor=CLI_ACTOR, id=id, channel="cli")
        out = service.dead_letter_to_dict(row)
    print_result(out, f"dead letter {id}: {out['status']}", as_json=as_json)
