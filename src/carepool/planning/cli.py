"""`carepool ihtp ...`: validate and solve IHTC-2024 instances (pure, no database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from carepool.planning.cli_solve import solve
from carepool.planning.ihtp.errors import IhtpFormatError
from carepool.planning.ihtp.models import Instance, Solution, load_instance, load_solution
from carepool.planning.ihtp.validator import Report, validate

app = typer.Typer(
    help="IHTC-2024 integrated healthcare timetabling: validate and solve.",
    no_args_is_help=True,
)
app.command("solve")(solve)

EXIT_FEASIBLE = 0
EXIT_INFEASIBLE = 1
EXIT_MALFORMED = 2


def _load(instance_path: Path, solution_path: Path) -> tuple[Instance, Solution]:
    """Load both files; errors are re-raised with the file they come from."""
    try:
        instance = load_instance(instance_path)
    except (IhtpFormatError, OSError, UnicodeDecodeError) as exc:
        raise _Malformed(f"instance {instance_path}: {exc}") from exc
    try:
        solution = load_solution(solution_path, instance)
    except (IhtpFormatError, OSError, UnicodeDecodeError) as exc:
        raise _Malformed(f"solution {solution_path}: {exc}") from exc
    return instance, solution


class _Malformed(Exception):
    """An input file that cannot be scored (exit code 2)."""


def _print_report(console: Console, report: Report) -> None:
    hard = Table(title="Hard constraints", title_justify="left")
    hard.add_column("constraint")
    hard.add_column("violations", justify="right")
    for name, count in report.hard.items():
        hard.add_row(name, str(count), style="bold red" if count else None)
    soft = Table(title="Soft components", title_justify="left")
    soft.add_column("component")
    soft.add_column("count", justify="right")
    soft.add_column("weight", justify="right")
    soft.add_column("cost", justify="right")
    for name, comp in report.soft.items():
        soft.add_row(name, str(comp.count), str(comp.weight), str(comp.cost))
    console.print(hard)
    console.print(soft)
    console.print(f"Total violations = {report.violations}")
    console.print(f"Total cost = {report.cost}")
    if report.feasible:
        console.print("[green]feasible[/green]")
    else:
        console.print("[bold red]infeasible[/bold red]: the solution violates hard constraints")


@app.command("validate")
def validate_command(
    instance: Annotated[Path, typer.Argument(help="Instance JSON file.")],
    solution: Annotated[Path, typer.Argument(help="Solution JSON file.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
) -> None:
    """Score a solution exactly as the official IHTC-2024 validator does.

    Exit code 0 when feasible, 1 when hard constraints are violated, 2 when a file is malformed.
    """
    try:
        inst, sol = _load(instance, solution)
    except _Malformed as exc:
        typer.echo(f"error: {exc}", err=True)
        if as_json:
            typer.echo(json.dumps({"error": str(exc)}))
        raise typer.Exit(EXIT_MALFORMED) from None
    report = validate(inst, sol)
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    else:
        _print_report(Console(), report)
    raise typer.Exit(EXIT_FEASIBLE if report.feasible else EXIT_INFEASIBLE)
