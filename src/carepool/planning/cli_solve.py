"""`carepool ihtp solve`: run the anytime IHTP solver on an instance file.

Why this module exists: planners and benchmarks need one command that reads an instance, searches
for the given time, always leaves the best feasible plan it found in the output file, and says
plainly when it found none. Progress (best cost over time) goes to stderr so stdout stays clean
for ``--json``.

Reproducibility: for a given seed and thread count the search is deterministic in its moves (the
threads meet at fixed iteration epochs, random numbers come from per-thread seeded generators, the
CP-SAT start runs on a deterministic-time budget). With ``--max-iterations`` the result is
therefore identical run after run; with only ``--time-limit`` the final cooling round is fitted
to the time left, so the result depends on machine speed and load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from carepool.planning.ihtp.errors import IhtpFormatError
from carepool.planning.ihtp.models import load_instance

EXIT_FOUND = 0
EXIT_NONE_FOUND = 1
EXIT_MALFORMED = 2


def _read_json(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {what} {path}: {exc}") from None


def solve(
    instance: Annotated[Path, typer.Argument(help="Instance JSON file (competition format).")],
    time_limit: Annotated[
        float, typer.Option("--time-limit", "-t", min=0.0, help="Wall-clock seconds, all in.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the solution.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    threads: Annotated[
        int, typer.Option("--threads", min=1, max=64, help="Parallel search threads.")
    ] = 1,
    max_iterations: Annotated[
        int | None,
        typer.Option(
            "--max-iterations",
            min=1,
            help="Stop after this many moves (all threads): an exactly reproducible budget.",
        ),
    ] = None,
    initial: Annotated[
        Path | None, typer.Option("--initial", help="Warm start from this solution file.")
    ] = None,
    fixed: Annotated[
        Path | None,
        typer.Option(
            "--fixed", help="Decisions to keep (solution format; every given key is pinned)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with the outcome on stdout.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Solve an IHTC-2024 instance within a time limit and write the best feasible solution.

    Exit code 0 when a feasible solution was written, 1 when none was found (nothing is
    written), 2 when an input file is malformed. Same seed, thread count and --max-iterations
    give the same solution; with only --time-limit the last cooling round is fitted to the time
    left, so results vary with machine load. Ctrl-C stops early and still writes the
    best solution found. The first run on a machine compiles the numba kernels (~30 s, counted
    in the time limit); later runs load them from the cache.
    """
    from carepool.planning.ihtp.solver import ProgressPoint
    from carepool.planning.ihtp.solver import solve as run_solver

    err = Console(stderr=True)
    try:
        inst = load_instance(instance)
    except (IhtpFormatError, OSError, UnicodeDecodeError) as exc:
        err.print(f"[bold red]error:[/bold red] instance {instance}: {exc}")
        if as_json:
            typer.echo(json.dumps({"error": str(exc)}))
        raise typer.Exit(EXIT_MALFORMED) from None
    init_doc = _read_json(initial, "initial solution")
    fixed_doc = _read_json(fixed, "fixed decisions")

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[iters]:>12} moves"),
        TextColumn("best {task.fields[best]}"),
        console=err,
        transient=False,
        disable=quiet,
    )
    task = progress.add_task(f"solving {instance.name}", total=time_limit, iters="0", best="-")

    def on_progress(pt: ProgressPoint) -> None:
        progress.update(
            task,
            completed=min(pt.seconds, time_limit),
            iters=f"{pt.iterations:,}",
            best="-" if pt.cost is None else str(pt.cost),
        )

    try:
        with progress:
            result = run_solver(
                inst,
                time_limit=time_limit,
                seed=seed,
                threads=threads,
                initial=init_doc,
                fixed=fixed_doc,
                on_progress=on_progress,
                max_iterations=max_iterations,
            )
    except (KeyError, ValueError) as exc:
        err.print(f"[bold red]error:[/bold red] {exc}")
        if as_json:
            typer.echo(json.dumps({"error": str(exc)}))
        raise typer.Exit(EXIT_MALFORMED) from None

    if result.feasible:
        output.write_text(json.dumps(result.solution, indent=1) + "\n", encoding="utf-8")
        err.print(
            f"[green]feasible[/green] cost {result.cost} after {result.seconds:.1f} s "
            f"({result.iterations:,} moves, {result.compile_seconds:.1f} s compile/cache load)"
            f" -> {output}"
        )
    else:
        err.print(
            f"[bold red]no feasible solution found[/bold red] in {result.seconds:.1f} s "
            f"(best state has {result.violations} violations); nothing written"
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "instance": str(instance),
                    "feasible": result.feasible,
                    "cost": result.cost if result.feasible else None,
                    "violations": result.violations,
                    "seconds": round(result.seconds, 3),
                    "compile_seconds": round(result.compile_seconds, 3),
                    "iterations": result.iterations,
                    "seed": seed,
                    "threads": result.threads,
                    "output": str(output) if result.feasible else None,
                    "soft": result.soft,
                    "hard": result.hard,
                }
            )
        )
    raise typer.Exit(EXIT_FOUND if result.feasible else EXIT_NONE_FOUND)
