"""The `carepool` command: one Typer app with a sub-command group per context."""

from __future__ import annotations

import typer

from carepool.planning.cli import app as ihtp_app

app = typer.Typer(
    name="carepool",
    help="carepool — a hospital middle platform for a medical consortium.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(ihtp_app, name="ihtp")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
