"""How often the unmapped-term queue's top suggestion is the right LOINC code.

    .venv/bin/python benchmarks/suggest.py [--misses] [--shared DIR]

Runs `terminology.suggest` over the labelled set of the test suite (`tests/terminology/
labelled.py`: Chinese HIS names and abbreviations, English and OpenMRS/CIEL report names, and
every seed analyte's names with the decorations laboratory systems add) and prints top-1 and
top-3 accuracy per part. A suggestion is right when it is filed under the same code as the
truth (a mass code and its substance code are one). With `--shared`, the Synthea bundles with
OpenMRS/CIEL codes in `DIR/synthea-fhir-bundles-localcodes` are read too: their observation
names, with the LOINC code each CIEL concept means, are a further set nobody tuned on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the labelled set is in tests/
from tests.terminology.labelled import CIEL_TRUTH, Labelled, labelled_set

from carepool.terminology import service as terminology_service
from carepool.terminology.suggest import suggest

console = Console()


def _shared(directory: Path) -> list[Labelled]:
    """The CIEL-coded observation names of the Synthea bundles, with their LOINC code."""
    names: dict[str, str] = {}
    for path in sorted((directory / "synthea-fhir-bundles-localcodes").glob("*.json")):
        bundle = json.loads(path.read_text("utf-8"))
        for entry in bundle.get("entry", []):
            resource = entry.get("resource", {})
            if resource.get("resourceType") != "Observation":
                continue
            for coding in resource.get("code", {}).get("coding", []):
                concept = str(coding.get("code", "")).rstrip("A")
                if concept in CIEL_TRUTH and coding.get("display"):
                    names[coding["display"]] = CIEL_TRUTH[concept]
    return [Labelled(name, code, "synthea-ciel") for name, code in sorted(names.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--misses", action="store_true", help="list every wrong top suggestion")
    parser.add_argument("--shared", type=Path, help="the shared data directory (optional)")
    args = parser.parse_args()
    items = labelled_set()
    if args.shared:
        items += _shared(args.shared)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    misses: list[tuple[Labelled, list[str]]] = []
    suggest("warm-up")
    started = time.perf_counter()
    for item in items:
        got = [terminology_service.filed_code(s.target) for s in suggest(item.term, limit=3)]
        truth = terminology_service.filed_code(item.loinc)
        for key in (item.source, "all"):
            counts[key][0] += 1
            counts[key][1] += got[:1] == [truth]
            counts[key][2] += truth in got
        if got[:1] != [truth]:
            misses.append((item, got))
    per_term = (time.perf_counter() - started) / max(len(items), 1) * 1000
    table = Table(title=f"suggestions: top-1 and top-3 accuracy ({per_term:.1f} ms a term)")
    for column in ("set", "terms", "top-1", "top-3"):
        table.add_column(column, justify="left" if column == "set" else "right")
    for key, (n, top1, top3) in sorted(counts.items(), key=lambda kv: kv[0] == "all"):
        table.add_row(key, str(n), f"{top1 / n:.1%}", f"{top3 / n:.1%}")
    console.print(table)
    if args.misses:
        for item, got in misses:
            console.print(f"{item.source}: {item.term!r} is {item.loinc}; suggested {got}")


if __name__ == "__main__":
    main()
