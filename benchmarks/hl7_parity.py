"""HL7 v2 → FHIR parity with Microsoft's FHIR-Converter, fact by fact (issue 11).

For every sample in ../shared/data/hl7v2-messages/ that has an expected bundle from the
converter, ingest the message into a fresh SQLite database, read the patients back through
`/fhir` and count how many of the converter's facts carepool serves (tests/ingest/parity.py says
what a fact is). Prints a table per file and per category; `--missing` lists what is missing.

    python benchmarks/hl7_parity.py [--shared ../shared] [--missing]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tests.ingest.parity import (  # noqa: E402
    Score,
    expected_facts,
    make_template,
    served_facts,
    served_resources,
)


def template(folder: Path) -> Path:
    path = folder / "template.db"
    make_template(path)
    return path


def score_samples(shared: Path, work: Path) -> dict[str, Score]:
    folder = shared / "data" / "hl7v2-messages"
    base = template(work)
    scores: dict[str, Score] = {}
    for expected in sorted((folder / "expected-fhir-ms-converter").glob("*-expected.json")):
        name = expected.name.removesuffix("-expected.json")
        message = folder / f"{name}.hl7"
        db = work / f"{name}.db"
        shutil.copy(base, db)
        resources, tz = served_resources(f"sqlite:///{db}", message.read_bytes(), message.name)
        score = Score()
        score.add(expected_facts(json.loads(expected.read_text())), served_facts(resources, tz))
        scores[name] = score
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--missing", action="store_true", help="list the facts not served")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scores = score_samples(args.shared, Path(tmp))
    console = Console()
    files = Table(title="HL7 v2 samples: converter facts served by /fhir")
    for col in ("message", "facts", "served", "share"):
        files.add_column(col, justify="right" if col != "message" else "left")
    matched: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for name, score in scores.items():
        m, t = sum(score.matched.values()), sum(score.total.values())
        files.add_row(name, str(t), str(m), f"{score.share:.1%}")
        matched.update(score.matched)
        total.update(score.total)
    all_m, all_t = sum(matched.values()), sum(total.values())
    files.add_row("all", str(all_t), str(all_m), f"{all_m / all_t:.1%}", style="bold")
    console.print(files)
    cats = Table(title="by category")
    for col in ("category", "facts", "served", "share"):
        cats.add_column(col, justify="right" if col != "category" else "left")
    for cat in sorted(total):
        cats.add_row(cat, str(total[cat]), str(matched[cat]), f"{matched[cat] / total[cat]:.1%}")
    console.print(cats)
    if args.missing:
        for name, score in scores.items():
            for fact in score.missing:
                console.print(f"{name}: {fact}")


if __name__ == "__main__":
    main()
