"""The `carepool` command: one Typer app with a sub-command group per context."""

from __future__ import annotations

from typing import Annotated

import typer

from carepool.booking.cli import app as patients_app
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
app.add_typer(patients_app, name="patients")
app.command("demo")(demo)


@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
) -> None:
    """Migrate the database, then serve the API, FHIR and the dashboard."""
    import importlib.util
    import os

    import uvicorn

    # uvloop and httptools (dependencies; no uvloop on Windows) take about a third less CPU per
    # request than asyncio and h11 (bare FastAPI endpoint: 0.26 against 0.41 ms). uvloop also
    # sets TCP_NODELAY on every accepted connection with --workers N, where asyncio does not
    # (the workers' listening socket has proto 0) and every response waits ~40 ms for the
    # client's delayed ACK.
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    if loop == "asyncio" and workers > 1:
        typer.echo(
            "warning: uvloop is not installed; with asyncio and --workers > 1 responses wait "
            "for delayed ACKs (TCP_NODELAY is not set)",
            err=True,
        )

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
        loop=loop,
        http=http,
        log_level="info",
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
