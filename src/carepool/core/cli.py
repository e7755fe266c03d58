"""Shared pieces of the command line: the common options, sessions, JSON or text output, errors,
progress bars, and the `db`/`auth` commands.

Every context's `cli.py` builds its commands from these, so that `--db`, `--json`, the error
messages and the exit codes read the same in every `carepool` sub-command.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session, sessionmaker

from carepool.core import auth, migrate
from carepool.core.db import make_engine, make_session_factory
from carepool.core.errors import CarepoolError, InvalidInput
from carepool.core.settings import get_settings

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $CAREPOOL_DATABASE_URL or ./carepool.db)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]
SourceOption = Annotated[str | None, typer.Option("--source", help="Only this member's")]

err_console = Console(stderr=True, soft_wrap=True)
# Every `carepool` command acts as the system: consortium-wide, every scope.
CLI_ACTOR = auth.Principal.system_actor("cli")

E = TypeVar("E", bound=Enum)
Row = TypeVar("Row")


def resolve_url(db: str | None) -> str:
    return db or get_settings().database_url


def migrated_url(db: str | None) -> str:
    """The URL of `db`, migrated to the newest schema (for commands that open their own engine)."""
    url = resolve_url(db)
    migrate.upgrade(url)
    return url


@contextmanager
def session_factory(url: str) -> Iterator[sessionmaker[Session]]:
    """A session factory on `url` for actions that open their own transactions (long runs)."""
    engine = make_engine(url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


@contextmanager
def cli_session(db: str | None, *, migrate_first: bool = True) -> Iterator[Session]:
    """A session on `db` for one command: migrated, committed on success, rolled back on error."""
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


@contextmanager
def exit_on_error(*, as_json: bool) -> Iterator[None]:
    """A domain error raised inside (not found, invalid input, ...) exits 1 with its message."""
    try:
        yield
    except CarepoolError as exc:
        raise fail(exc, as_json=as_json) from exc


@contextmanager
def command_session(db: str | None, *, as_json: bool) -> Iterator[Session]:
    """`cli_session` for one command whose domain errors exit 1 with their message."""
    with exit_on_error(as_json=as_json), cli_session(db) as session:
        yield session


def status_filter(enum: type[E], status: str, *, as_json: bool) -> E | None:
    """`status` as a member of `enum`, or None for "all"; any other word exits 1."""
    try:
        return None if status == "all" else enum(status)
    except ValueError as exc:
        raise fail(InvalidInput(f"unknown status {status!r}"), as_json=as_json) from exc


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def print_result(data: Any, text: str, *, as_json: bool) -> None:
    """A command's result: `data` as JSON with `--json`, otherwise the human-readable `text`."""
    if as_json:
        print_json(data)
    else:
        typer.echo(text)


def print_rows(
    rows: Sequence[Row],
    line: Callable[[Row], str],
    *,
    as_json: bool,
    total: int | None = None,
    noun: str = "item(s)",
) -> None:
    """A listing: with `--json` the rows, or `{"total", "items"}` for a page of `total` rows;
    otherwise `line(row)` for each row, then "`total` `noun`" under a page."""
    if as_json:
        print_json(list(rows) if total is None else {"total": total, "items": list(rows)})
        return
    for row in rows:
        typer.echo(line(row))
    if total is not None:
        typer.echo(f"{total} {noun}")


def progress_bar(label: str, *, quiet: bool, counter: str = "{task.percentage:>3.0f}%") -> Progress:
    """A transient bar on stderr for a long run; off with `--json` (`quiet`) or off a terminal."""
    return Progress(
        TextColumn(f"[bold]{label}[/] {{task.description}}"),
        BarColumn(),
        TextColumn(counter),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=quiet or not err_console.is_terminal,
    )


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
    """Print a bearer token for USER (for scripts and integrations); audited."""
    from carepool.core.users import do_issue_token

    with command_session(db, as_json=as_json) as session:
        token, described = do_issue_token(
            session, actor=CLI_ACTOR, username=user, hours=hours, scopes=scope, source="cli"
        )
    ttl = auth.token_lifetime(hours)
    out = {
        "token": token,
        "user": user,
        "id": described["id"],
        "expires_at": described["expires_at"],
        "expires_in_hours": ttl.total_seconds() / 3600,
    }
    print_result(out, token, as_json=as_json)


@auth_app.command("tokens")
def auth_tokens(
    user: Annotated[str, typer.Option("--user", help="An existing user's name")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List USER's tokens: id, expiry, revoked (the tokens themselves are never stored)."""
    from carepool.core.users import get_tokens

    with cli_session(db) as session:
        rows = get_tokens(session, actor=CLI_ACTOR, username=user)
    print_rows(
        rows,
        lambda t: (
            f"{t['id']}  expires {t['expires_at']}  " + ("revoked" if t["revoked"] else "active")
        ),
        as_json=as_json,
    )


@auth_app.command("revoke")
def auth_revoke(
    token: Annotated[str | None, typer.Argument(help="The token itself")] = None,
    token_id: Annotated[str | None, typer.Option("--id", help="The token's id instead")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a token (stops working at once here, within 5 s on every other node); audited."""
    from carepool.core.users import do_revoke_token

    with command_session(db, as_json=as_json) as session:
        out = do_revoke_token(session, actor=CLI_ACTOR, id=token_id, token=token, source="cli")
    print_result(out, f"revoked token {out['id']} of {out['username']}", as_json=as_json)


def _set_active(user: str, active: bool, db: str | None, as_json: bool) -> None:
    from carepool.core.users import do_set_user_active

    with command_session(db, as_json=as_json) as session:
        do_set_user_active(session, actor=CLI_ACTOR, username=user, active=active, source="cli")
    word = "activated" if active else "deactivated (its tokens revoked)"
    print_result({"username": user, "active": active}, f"{user} {word}", as_json=as_json)


@auth_app.command("deactivate")
def auth_deactivate(
    user: Annotated[str, typer.Argument(help="The user's name")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deactivate an account and revoke its tokens; audited."""
    _set_active(user, False, db, as_json)


@auth_app.command("activate")
def auth_activate(
    user: Annotated[str, typer.Argument(help="The user's name")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reactivate an account (its old tokens stay revoked); audited."""
    _set_active(user, True, db, as_json)


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
    print_rows(
        users,
        lambda u: f"{u['username']:<24} {u['role']:<20} {u['institution_id'] or '(consortium)'}",
        as_json=as_json,
    )


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

    with command_session(db, as_json=as_json) as session:
        do_create_user(
            session,
            actor=CLI_ACTOR,
            username=username,
            display_name=name or username,
            role=role,
            institution_id=institution,
            source="cli",
        )
    out = {"username": username, "role": role.value, "institution_id": institution}
    print_result(out, f"created {username} ({role.value})", as_json=as_json)
