"""`carepool ihtp ...`: validate and solve IHTC-2024 instances (pure, no database)."""

from __future__ import annotations

import typer

from carepool.planning.cli_solve import solve

app = typer.Typer(
    help="IHTC-2024 integrated healthcare timetabling: validate and solve.",
    no_args_is_help=True,
)
app.command("solve")(solve)
