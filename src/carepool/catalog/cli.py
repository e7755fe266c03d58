"""`carepool catalog ...`: import and export the catalogue document, and look things up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from carepool.catalog import actions
from carepool.catalog import service as catalog_service
from carepool.core.auth import Principal
from carepool.core.cli import DbOption, JsonOption, cli_session, fail, print_json
from carepool.core.errors import CarepoolError, FieldError, InvalidInput

app = typer.Typer(help="The Product Capability Center's catalogue.", no_args_is_help=True)


def read_document(path: Path) -> dict[str, Any]:
    """Load a catalogue document from YAML or JSON; unreadable files become `InvalidInput`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}",
            [FieldError(str(path), str(exc))],
        ) from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} does not hold a catalogue document (a mapping of sections)")
    return data


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="Catalogue document (.yaml, .yml or .json)")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate FILE, then create or update every entry in one transaction (all or nothing)."""
    actor = Principal.system_actor("cli")
    try:
        raw = read_document(file)
        with cli_session(db) as session:
            summary = actions.do_import_catalog(session, actor=actor, raw=raw, source="cli")
    except CarepoolError as exc:
        raise fail(exc, as_json=as_json) from exc
    if as_json:
        print_json(summary.as_dict())
        return
    kinds = sorted({*summary.created, *summary.updated, *summary.unchanged})
    for kind in kinds:
        typer.echo(
            f"{kind:<20} created {summary.created.get(kind, 0):>6}  "
            f"updated {summary.updated.get(kind, 0):>6}  "
            f"unchanged {summary.unchanged.get(kind, 0):>6}"
        )


@app.command("export")
def export(
    db: DbOption = None,
    as_json: JsonOption = False,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file")
    ] = None,
) -> None:
    """Print the whole catalogue as one document (YAML, or JSON with --json)."""
    try:
        with cli_session(db) as session:
            doc = catalog_service.export_document(session)
    except CarepoolError as exc:
        raise fail(exc, as_json=as_json) from exc
    text = (
        json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
        if as_json
        else yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    )
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)


@app.command("summary")
def summary(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Count the catalogue's entries by kind."""
    with cli_session(db) as session:
        counts = catalog_service.counts(session)
    if as_json:
        print_json(counts)
        return
    for k, v in counts.items():
        typer.echo(f"{k:<24} {v:>7}")
