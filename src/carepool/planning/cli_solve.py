"""`carepool ihtp solve`: run the anytime IHTP solver (placeholder until the solver lands)."""

from __future__ import annotations

import typer


def solve() -> None:
    """Solve an IHTC-2024 instance."""
    raise typer.Exit(3)
