"""`carepool terminology ...`: edit the maps, work the unmapped-term queue, re-apply, convert."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from carepool.core.cli import (
    CLI_ACTOR,
    DbOption,
    JsonOption,
    SourceOption,
    cli_session,
    command_session,
    exit_on_error,
    fail,
    print_json,
    print_result,
    print_rows,
)
from carepool.core.errors import CarepoolError, InvalidInput
from carepool.terminology import actions, service
from carepool.terminology.models import TermStatus
from carepool.terminology.resolver import GLOBAL
from carepool.terminology.seed import load_seed
from carepool.terminology.suggest import suggest as suggest_terms
from carepool.terminology.units import UnitError, to_ucum
from carepool.terminology.units import convert as convert_units

app = typer.Typer(
    help="Codes, units and department names: maps (versioned), unmapped terms, re-apply.",
    no_args_is_help=True,
)
KindArg = Annotated[str, typer.Argument(help="code, unit or department")]
ScopeOption = Annotated[
    str, typer.Option("--scope", help="A member's institution id, or * for the consortium")
]
TermArg = Annotated[str, typer.Argument(help="The local code, name or unit")]
SystemOption = Annotated[str, typer.Option("--system", help="The local code system")]


@app.command("maps")
def maps(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the stored maps with their versions (the shipped seed lies under them)."""
    with cli_session(db) as session:
        rows = [service.map_to_dict(m) for m in service.get_all_maps(session)]
    if as_json:
        print_json({"seed_version": load_seed().version, "maps": rows})
        return
    typer.echo(f"seed {load_seed().version}")
    for r in rows:
        typer.echo(f"{r['kind']:<11} {r['scope']:<16} v{r['version']:<4} {r['updated_by']}")


@app.command("show")
def show(
    kind: KindArg,
    db: DbOption = None,
    scope: ScopeOption = GLOBAL,
    version: Annotated[int | None, typer.Option(help="The map as it was at this version")] = None,
    history: Annotated[bool, typer.Option("--history", help="Every entry ever")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show a stored map's entries (current, at a version, or its whole history)."""
    with exit_on_error(as_json=as_json):
        k = service.parse_kind(kind)
    with command_session(db, as_json=as_json) as session:
        rows = [
            service.entry_to_dict(e)
            for e in service.get_entries(
                session, kind=k, scope=scope, version=version, history=history
            )
        ]
    print_rows(rows, _entry_line, as_json=as_json)


def _entry_line(r: dict[str, Any]) -> str:
    until = f"-v{r['valid_to']}" if r["valid_to"] else ""
    system = f"{r['source_system']}|" if r["source_system"] else ""
    return f"v{r['valid_from']}{until:<5} {system}{r['source_display']:<30} -> {r['target']}"


@app.command("set")
def set_mapping(
    kind: KindArg,
    term: TermArg,
    target: Annotated[str, typer.Argument(help="LOINC code, UCUM unit or department code")],
    db: DbOption = None,
    scope: ScopeOption = GLOBAL,
    system: SystemOption = "",
    match: Annotated[
        str | None, typer.Option("--match", help="code or name (default: code with --system)")
    ] = None,
    note: str = "",
    as_json: JsonOption = False,
) -> None:
    """Map TERM to TARGET (a new version of the map; the old entry stays in the history)."""
    with exit_on_error(as_json=as_json):
        k = service.parse_kind(kind)
    with command_session(db, as_json=as_json) as session:
        row = actions.do_set_mapping(
            session,
            actor=CLI_ACTOR,
            kind=k,
            term=term,
            target=target,
            scope=scope,
            source_system=system,
            match=match,
            note=note,
            channel="cli",
        )
        out = service.entry_to_dict(row)
    text = f"{kind} map {scope} v{out['valid_from']}: {term} -> {target}"
    print_result(out, text, as_json=as_json)


@app.command("remove")
def remove_mapping(
    kind: KindArg,
    term: TermArg,
    db: DbOption = None,
    scope: ScopeOption = GLOBAL,
    system: SystemOption = "",
    match: Annotated[str | None, typer.Option("--match", help="code or name")] = None,
    as_json: JsonOption = False,
) -> None:
    """Remove TERM from a stored map (a new version; the seed applies again)."""
    with exit_on_error(as_json=as_json):
        k = service.parse_kind(kind)
    with command_session(db, as_json=as_json) as session:
        term_map = actions.do_retire_mapping(
            session,
            actor=CLI_ACTOR,
            kind=k,
            term=term,
            scope=scope,
            source_system=system,
            match=match,
            channel="cli",
        )
        out = service.map_to_dict(term_map)
    print_result(out, f"{kind} map {scope} v{out['version']}: {term} removed", as_json=as_json)


@app.command("unmapped")
def unmapped(
    db: DbOption = None,
    kind: Annotated[str | None, typer.Option(help="code, unit or department")] = None,
    source: SourceOption = None,
    status: Annotated[str, typer.Option(help="open, mapped, ignored or all")] = "open",
    limit: int = 20,
    as_json: JsonOption = False,
) -> None:
    """The unmapped-term queue, most frequent first, with ranked suggestions."""
    try:
        k = service.parse_kind(kind) if kind else None
        wanted = None if status == "all" else TermStatus(status)
    except (CarepoolError, ValueError) as exc:
        err = exc if isinstance(exc, CarepoolError) else InvalidInput(str(exc))
        raise fail(err, as_json=as_json) from exc
    with cli_session(db) as session:
        items, total = service.get_unmapped(
            session, kind=k, institution_id=source, status=wanted, limit=limit
        )
        rows = [service.term_to_dict(t) for t in items]
    print_rows(rows, _term_line, as_json=as_json, total=total, noun="term(s)")


def _term_line(r: dict[str, Any]) -> str:
    best = ", ".join(f"{s['target']} ({s['score']:.0f})" for s in r["suggestions"][:3])
    system = f"{r['source_system']}|" if r["source_system"] else ""
    return (
        f"{r['id']:>5} {r['kind']:<10} {r['institution_id']:<12} x{r['count']:<5} "
        f"{system}{r['display'][:40]:<40} -> {best}"
    )


@app.command("suggest")
def suggest(
    term: Annotated[str, typer.Argument(help="A local name, code text or unit")],
    kind: Annotated[str, typer.Option(help="code, unit or department")] = "code",
    limit: int = 5,
    as_json: JsonOption = False,
) -> None:
    """Ranked candidates for TERM (fuzzy over names, Chinese, pinyin)."""
    found = [s.__dict__ for s in suggest_terms(term, kind, limit=limit)]
    print_rows(
        found,
        lambda s: (
            f"{s['score']:>5.1f}  {s['target']:<10} {s['display']}  (matched {s['matched']!r})"
        ),
        as_json=as_json,
    )


@app.command("reapply")
def reapply(
    db: DbOption = None,
    source: Annotated[
        str | None, typer.Option("--source", help="Only this member's records")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-standardise stored observations and encounters with the current maps."""
    with command_session(db, as_json=as_json) as session:
        result = actions.do_reapply_maps(
            session, actor=CLI_ACTOR, institution_id=source, channel="cli"
        )
    print_result(result, "\n".join(f"{k:<24} {v}" for k, v in result.items()), as_json=as_json)


@app.command("convert")
def convert(
    value: Annotated[float, typer.Argument(help="The number")],
    source: Annotated[str, typer.Argument(help="Its unit (local spellings accepted)")],
    target: Annotated[str, typer.Argument(help="The UCUM unit wanted")],
    loinc: Annotated[
        str | None, typer.Option(help="The analyte (for its molar mass: mg/dL <-> mmol/L)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Convert VALUE from SOURCE to TARGET (UCUM)."""
    seed = load_seed()
    molar_mass = seed.equivalents.get(loinc, (None, None))[1] if loinc else None
    src = to_ucum(source, seed.units)
    try:
        if src is None:
            raise UnitError(f"{source!r} is not a unit carepool knows")
        result = convert_units(value, src, target, molar_mass)
    except UnitError as exc:
        raise fail(InvalidInput(str(exc)), as_json=as_json) from exc
    out = {"value": value, "unit": src, "result": result, "target": target}
    print_result(out, f"{value:g} {src} = {result:.6g} {target}", as_json=as_json)
