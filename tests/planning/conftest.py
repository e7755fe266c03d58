"""Fixtures for the IHTP tests: the organisers' reference solutions and their official scores."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def official_scores(ihtc_dir: Path) -> dict[str, tuple[int, int]]:
    """``official_scores.tsv`` as {instance: (violations, cost)}."""
    path = ihtc_dir / "solutions" / "test" / "official_scores.tsv"
    with path.open(newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        return {r["instance"]: (int(r["violations"]), int(r["cost"])) for r in rows}
