"""Benchmark the IHTP solver on the IHTC-2024 instances and record the figures in the docs.

Every result is re-scored by the independent validator (`carepool.planning.ihtp.validate`), not
by the solver's own evaluation. The table goes to the terminal and, unless ``--no-docs``, into
docs/benchmarks.md between ``<!-- ihtp:begin -->`` and ``<!-- ihtp:end -->`` (other sections of
the file are kept as they are), together with the exact command used.

    python benchmarks/ihtp.py --instances i01,i05 --time-limit 60 --seeds 0,1 --threads 2
    python benchmarks/ihtp.py --instances i --time-limit 600      # i01-i20
    python benchmarks/ihtp.py --instances i16,i08 --time-limit 600 --append "600 s, hardest"
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine
from carepool.planning.ihtp import load_instance, load_solution, validate
from carepool.planning.ihtp.solver import ProgressPoint, solve

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "benchmarks" / "ihtc2024"
DOCS = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- ihtp:begin -->"
END = "<!-- ihtp:end -->"
I_SET = [f"i{i:02d}" for i in range(1, 21)]
TEST_SET = [f"test{i:02d}" for i in range(1, 11)]


@dataclass
class Row:
    instance: str
    seed: int
    cost: int | None
    best_known: int | None
    feasible: bool
    violations: int
    seconds: float
    iterations: int

    @property
    def gap(self) -> float | None:
        if self.cost is None or not self.best_known:
            return None
        return 100.0 * (self.cost - self.best_known) / self.best_known


def parse_instances(spec: str, data_dir: Path) -> list[str]:
    names: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        if part == "all":
            names += TEST_SET + I_SET
        elif part == "i":
            names += I_SET
        elif part == "test":
            names += TEST_SET
        elif part:
            names.append(part)
    missing = [n for n in names if not (data_dir / "instances" / f"{n}.json").is_file()]
    if missing:
        raise SystemExit(f"unknown instance(s): {', '.join(missing)} (looked in {data_dir})")
    return names


def read_best_known(data_dir: Path) -> dict[str, int]:
    path = data_dir / "best_known.tsv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {r["instance"]: int(r["best_value"]) for r in csv.DictReader(f, delimiter="\t")}


def fmt_gap(g: float | None) -> str:
    return "-" if g is None else f"{g:.2f}"


def summary_lines(rows: list[Row]) -> list[str]:
    lines = []
    for label, subset in (
        ("i01–i20", [r for r in rows if r.instance in I_SET]),
        ("all", rows),
    ):
        gaps = [r.gap for r in subset if r.gap is not None and r.feasible]
        if not gaps:
            continue
        infeas = sum(1 for r in subset if not r.feasible)
        lines.append(
            f"{label}: {len(subset)} runs, {infeas} without a feasible solution; gap to best "
            f"known: median {statistics.median(gaps):.2f} %, mean {statistics.fmean(gaps):.2f} %, "
            f"max {max(gaps):.2f} %"
        )
        if label == "i01–i20" and len(subset) == len(rows):
            break
    return lines


def markdown(rows: list[Row], command: str, args: argparse.Namespace) -> str:
    """The docs section of a run (with ``--append LABEL``: a labelled subsection, no markers)."""
    head = [BEGIN, "## IHTP solver (IHTC-2024)"]
    if args.append:
        head = [f"### {args.append}"]
    out = [
        *head,
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine()}; time limit "
        f"{args.time_limit:g} s per run (wall clock, including parsing and numba cache load), "
        f"{args.threads} thread(s). Costs re-scored by `carepool.planning.ihtp.validate`; gap "
        "= (cost − best known) / best known. The machine was shared with other work, so "
        "timings are noisy.",
        "",
        "```",
        command,
        "```",
        "",
        "| instance | seed | cost | best known | gap % | feasible | seconds | moves |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.instance} | {r.seed} | {r.cost if r.cost is not None else '-'} | "
            f"{r.best_known or '-'} | {fmt_gap(r.gap)} | {'yes' if r.feasible else 'NO'} | "
            f"{r.seconds:.1f} | {r.iterations:,} |"
        )
    out.append("")
    out += [f"- {line}" for line in summary_lines(rows)]
    if not args.append:
        out.append(END)
    return "\n".join(out) + "\n"


def update_docs(path: Path, section: str, append: bool = False) -> None:
    """Replace the ihtp section of the docs page (or, with `append`, add to its end)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    if append and BEGIN in text and END in text:
        head, rest = text.split(END, 1)
        text = head.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n" + END + rest
    elif append:
        text = text.rstrip("\n") + "\n\n" + BEGIN + "\n" + section.rstrip("\n") + "\n" + END + "\n"
    elif BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--instances", default="i", help="comma list; 'i' = i01-i20, 'test', 'all'")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--seeds", default="0", help="comma list of seeds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-iterations", type=int, default=None)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ihtc2024 folder")
    ap.add_argument("--docs", type=Path, default=DOCS)
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    ap.add_argument("--save", type=Path, default=None, help="folder for the solution files")
    ap.add_argument(
        "--append",
        metavar="LABEL",
        default=None,
        help="add the results as a subsection LABEL to the docs section instead of replacing it",
    )
    args = ap.parse_args(argv)
    console = Console(stderr=True)
    if not (args.data / "instances").is_dir():
        console.print(f"[red]no IHTC-2024 data at {args.data}[/red]")
        return 2
    names = parse_instances(args.instances, args.data)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    best_known = read_best_known(args.data)
    command = "python benchmarks/ihtp.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )

    rows: list[Row] = []
    runs = [(n, s) for n in names for s in seeds]
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    )
    with progress:
        overall = progress.add_task("runs", total=len(runs), status="")
        for name, seed in runs:
            inst = load_instance(args.data / "instances" / f"{name}.json")
            current = progress.add_task(
                f"{name} seed {seed}", total=args.time_limit, status="best -"
            )

            def on_progress(pt: ProgressPoint, task: TaskID = current) -> None:
                progress.update(
                    task,
                    completed=min(pt.seconds, args.time_limit),
                    status=f"best {pt.cost if pt.cost is not None else '-'}",
                )

            res = solve(
                inst,
                time_limit=args.time_limit,
                seed=seed,
                threads=args.threads,
                on_progress=on_progress,
                max_iterations=args.max_iterations,
            )
            report = validate(inst, load_solution(res.solution, inst))
            if report.feasible != res.feasible or (report.feasible and report.cost != res.cost):
                console.print(
                    f"[red]{name}: solver says {res.cost}/{res.violations}, validator says "
                    f"{report.cost}/{report.violations}[/red]"
                )
            if args.save is not None:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"{name}_seed{seed}.json").write_text(json.dumps(res.solution))
            row = Row(
                instance=name,
                seed=seed,
                cost=report.cost if report.feasible else None,
                best_known=best_known.get(name),
                feasible=report.feasible,
                violations=report.violations,
                seconds=res.seconds,
                iterations=res.iterations,
            )
            rows.append(row)
            progress.remove_task(current)
            progress.update(
                overall, advance=1, status=f"{name}: {row.cost} (gap {fmt_gap(row.gap)} %)"
            )

    table = Table(title=f"IHTP solver, {args.time_limit:g} s, {args.threads} thread(s)")
    for col in ("instance", "seed", "cost", "best known", "gap %", "feasible", "seconds"):
        table.add_column(col, justify="left" if col == "instance" else "right")
    for r in rows:
        table.add_row(
            r.instance,
            str(r.seed),
            "-" if r.cost is None else str(r.cost),
            "-" if r.best_known is None else str(r.best_known),
            fmt_gap(r.gap),
            "yes" if r.feasible else "[red]NO[/red]",
            f"{r.seconds:.1f}",
        )
    out = Console()
    out.print(table)
    for line in summary_lines(rows):
        out.print(line)
    if not args.no_docs:
        update_docs(args.docs, markdown(rows, command, args), append=bool(args.append))
        out.print(f"updated {args.docs}")
    return 0 if all(r.feasible for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
