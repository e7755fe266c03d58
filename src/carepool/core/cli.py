"""Shared pieces of the command line: the `--db` option, JSON output, errors, and `db`/`auth`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from sqlalchemy.orm import Session

from carepool.core import auth, migrate
from carepool.core.db import make_engine, make_session_factory
from carepool.core.errors import CarepoolError, InvalidInput
from carepool.core.settings import get_settings

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $CAREPOOL_DATABASE_URL or ./carepool.db)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]

err_console = Console(stderr=True, soft_wrap=True)


def resolve_url(db: str | None) -> str:
    return db or get_settings().database_url


@contextmanager
def cli_session(db: str | None, *, migrate_first: bool = True) -> Iterator[Session]:
    """A session on `db` for one command: migrated, committed on success, typed errors shown."""
    url = resolve_url(db)
    if migrate_first:
        migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
        engine.dispose()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def fail(exc: CarepoolError, *, as_json: bool, code: int = 1) -> typer.Exit:
    """Report a domain error (with every field location) and return the Exit to raise."""
    errors = exc.errors if isinstance(exc, InvalidInput) else []
    if as_json:
        print_json({"error": exc.detail, "errors": [e.as_dict() for e in errors]})
    else:
        err_console.print(f"[bold red]error:[/] {exc.detail}")
        for e in errors[:50]:
            err_console.print(f"  - {e.location}: {e.message}")
        if len(errors) > 50:
            err_console.print(f"  ... and {len(errors) - 50} more")
    return typer.Exit(code)


db_app = typer.Typer(help="Database schema: migrate and inspect.", no_args_is_help=True)
auth_app = typer.Typer(help="Users and bearer tokens.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None, revision: str = "heads") -> None:
    """Apply migrations up to REVISION (default: all the newest)."""
    url = resolve_url(db)
    migrate.upgrade(url, revision)
    engine = make_engine(url)
    try:
        typer.echo(f"database at revision {', '.join(migrate.current_revisions(engine))}")
    finally:
        engine.dispose()


@db_app.command("current")
def db_current(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show the database's revision and whether it is up to date."""
    url = resolve_url(db)
    engine = make_engine(url)
    try:
        current = migrate.current_revisions(engine)
    finally:
        engine.dispose()
    heads = migrate.head_revisions(url)
    if as_json:
        print_json({"current": list(current), "heads": list(heads), "up_to_date": current == heads})
    else:
        typer.echo(f"current: {', '.join(current) or '(empty)'}  heads: {', '.join(heads)}")


@auth_app.command("token")
def auth_token(
    user: Annotated[str, typer.Option("--user", help="An existing user's name")],
    db: DbOption = None,
    hours: Annotated[int | None, typer.Option(help="Lifetime in hours")] = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="Narrow to these scopes (repeatable)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print a bearer token for USER (for scripts and integrations)."""
    ttl = timedelta(hours=hours or get_settings().token_ttl_hours)
    try:
        with cli_session(db) as session:
            token = auth.issue_token(session, username=user, ttl=ttl, scopes=scope)
    except CarepoolError as exc:
        raise fail(exc, as_json=as_json) from exc
    if as_json:
        print_json({"token": token, "user": user, "expires_in_hours": ttl.total_seconds() / 3600})
    else:
        typer.echo(token)


@auth_app.command("users")
def auth_users(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List users with role and institution."""
    with cli_session(db) as session:
        users = [
            {
                "username": u.username,
                "display_name": u.display_name,
                "role": u.role.value,
                "institution_id": u.institution_id,
                "active": u.active,
            }
            for u in auth.get_all_users(session)
        ]
    if as_json:
        print_json(users)
        return
    for u in users:
        typer.echo(f"{u['username']:<24} {u['role']:<20} {u['institution_id'] or '(consortium)'}")


@auth_app.command("add-user")
def auth_add_user(
    username: Annotated[str, typer.Argument(help="Login name")],
    role: Annotated[auth.Role, typer.Option(help="Role (decides the scopes)")],
    institution: Annotated[
        str | None, typer.Option(help="Member institution id (none for consortium admins)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a user account."""
    from carepool.core.users import do_create_user

    try:
        with cli_session(db) as session:
            do_create_user(
                session,
                actor=auth.Principal.system_actor("cli"),
                username=username,
                display_name=name or username,
                role=role,
                institution_id=institution,
                source="cli",
            )
    except CarepoolError as exc:
        raise fail(exc, as_json=as_json) from exc
    if as_json:
        print_json({"username": username, "role": role.value, "institution_id": institution})
    else:
        typer.echo(f"created {username} ({role.value})")
