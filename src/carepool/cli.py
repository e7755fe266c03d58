"""The `carepool` command: one Typer app with a sub-command group per context."""

from __future__ import annotations

from typing import Annotated

import typer

from carepool.catalog.cli import app as catalog_app
from carepool.core import migrate
from carepool.core.cli import DbOption, auth_app, db_app, resolve_url
from carepool.core.settings import get_settings
from carepool.demo.cli import demo
from carepool.identity.cli import app as identity_app
from carepool.ingest.cli import app as ingest_app
from carepool.planning.cli import app as ihtp_app
from carepool.quality.cli import app as quality_app
from carepool.terminology.cli import app as terminology_app

app = typer.Typer(
    name="carepool",
    help="carepool — a hospital middle platform for a medical consortium.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(db_app, name="db")
app.add_typer(auth_app, name="auth")
app.add_typer(catalog_app, name="catalog")
app.add_typer(ihtp_app, name="ihtp")
app.add_typer(ingest_app, name="ingest")
app.add_typer(terminology_app, name="terminology")
app.add_typer(quality_app, name="quality")
app.add_typer(identity_app, name="identity")
app.command("demo")(demo)


@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
) -> None:
    """Migrate the database, then serve the API, FHIR and the dashboard."""
    import os

    import uvicorn

    settings = get_settings()
    url = resolve_url(db)
    migrate.upgrade(url)
    os.environ["CAREPOOL_DATABASE_URL"] = url
    get_settings.cache_clear()  # the app (built on import below) must see --db
    uvicorn.run(
        "carepool.api.asgi:app",
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
