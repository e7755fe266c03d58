"""The shared command-line helpers every context's `cli.py` builds on, through a small Typer app."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import pytest
import typer
from rich.progress import TextColumn
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from carepool.core import auth, migrate
from carepool.core.cli import (
    CLI_ACTOR,
    DbOption,
    JsonOption,
    command_session,
    exit_on_error,
    migrated_url,
    print_result,
    print_rows,
    progress_bar,
    session_factory,
    status_filter,
)
from carepool.core.db import make_engine
from carepool.core.errors import FieldError, InvalidInput, NotFound
from carepool.core.users import do_create_user


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


ROWS = [{"id": 1, "name": "甲"}, {"id": 2, "name": "乙"}]

app = typer.Typer()


@app.command("show")
def show(id: int, as_json: JsonOption = False) -> None:
    with exit_on_error(as_json=as_json):
        if id != 1:
            raise NotFound("thing", str(id))
    print_result(ROWS[0], f"thing {id}: {ROWS[0]['name']}", as_json=as_json)


@app.command("check")
def check(as_json: JsonOption = False) -> None:
    with exit_on_error(as_json=as_json):
        raise InvalidInput("2 problems", [FieldError("a", "missing"), FieldError("b.c", "bad")])


@app.command("list")
def list_things(paged: bool = False, as_json: JsonOption = False) -> None:
    print_rows(
        ROWS,
        lambda r: f"{r['id']:>3} {r['name']}",
        as_json=as_json,
        total=len(ROWS) + 5 if paged else None,
        noun="thing(s)",
    )


@app.command("colours")
def colours(
    status: Annotated[str, typer.Option("--status")] = "all", as_json: JsonOption = False
) -> None:
    wanted = status_filter(Colour, status, as_json=as_json)
    typer.echo(repr(wanted))


@app.command("add-user")
def add_user(
    name: str, fail: bool = False, db: DbOption = None, as_json: JsonOption = False
) -> None:
    with command_session(db, as_json=as_json) as session:
        do_create_user(
            session,
            actor=CLI_ACTOR,
            username=name,
            display_name=name,
            role=auth.Role.CONSORTIUM_ADMIN,
            institution_id=None,
            source="cli",
        )
        if fail:
            raise NotFound("ward", "w9")
    print_result({"username": name}, f"created {name}", as_json=as_json)


runner = CliRunner()


def test_print_result_is_json_with_the_switch_and_the_text_without() -> None:
    text = runner.invoke(app, ["show", "1"])
    assert (text.exit_code, text.stdout) == (0, "thing 1: 甲\n")
    data = runner.invoke(app, ["show", "1", "--json"])
    assert data.exit_code == 0 and json.loads(data.stdout) == ROWS[0]
    assert "甲" in data.stdout  # not \\u-escaped


def test_not_found_exits_1_with_the_message_on_stderr_or_as_json() -> None:
    text = runner.invoke(app, ["show", "7"])
    assert (text.exit_code, text.stdout) == (1, "")
    assert text.stderr == "error: thing '7' does not exist\n"
    data = runner.invoke(app, ["show", "7", "--json"])
    assert data.exit_code == 1
    assert json.loads(data.stdout) == {"error": "thing '7' does not exist", "errors": []}


def test_invalid_input_reports_every_field() -> None:
    text = runner.invoke(app, ["check"])
    assert text.exit_code == 1
    assert text.stderr.splitlines() == ["error: 2 problems", "  - a: missing", "  - b.c: bad"]
    data = json.loads(runner.invoke(app, ["check", "--json"]).stdout)
    assert data["errors"] == [
        {"location": "a", "message": "missing"},
        {"location": "b.c", "message": "bad"},
    ]


def test_other_errors_are_not_swallowed() -> None:
    with pytest.raises(ZeroDivisionError), exit_on_error(as_json=False):
        _ = 1 / 0


def test_print_rows_lists_rows_or_a_page_with_its_total() -> None:
    assert json.loads(runner.invoke(app, ["list", "--json"]).stdout) == ROWS
    page = json.loads(runner.invoke(app, ["list", "--paged", "--json"]).stdout)
    assert page == {"total": 7, "items": ROWS}
    assert runner.invoke(app, ["list"]).stdout == "  1 甲\n  2 乙\n"
    assert runner.invoke(app, ["list", "--paged"]).stdout == "  1 甲\n  2 乙\n7 thing(s)\n"


def test_status_filter_all_a_member_or_exit_1() -> None:
    assert runner.invoke(app, ["colours"]).stdout == "None\n"
    assert runner.invoke(app, ["colours", "--status", "red"]).stdout == "<Colour.RED: 'red'>\n"
    bad = runner.invoke(app, ["colours", "--status", "green"])
    assert bad.exit_code == 1 and bad.stderr == "error: unknown status 'green'\n"
    bad_json = runner.invoke(app, ["colours", "--status", "green", "--json"])
    assert json.loads(bad_json.stdout)["error"] == "unknown status 'green'"


def test_command_session_commits_on_success_and_rolls_back_on_a_domain_error(
    db_url: str, engine: Engine
) -> None:
    ok = runner.invoke(app, ["add-user", "dr.wu", "--db", db_url])
    assert (ok.exit_code, ok.stdout) == (0, "created dr.wu\n")
    failed = runner.invoke(app, ["add-user", "dr.ma", "--fail", "--db", db_url, "--json"])
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["error"] == "ward 'w9' does not exist"
    with engine.connect() as conn:
        names = set(conn.scalars(select(auth.User.username)))
    assert names == {"dr.wu"}


def test_migrated_url_brings_a_new_database_to_the_heads(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert migrated_url(url) == url
    with session_factory(url) as factory, factory() as session:
        assert session.scalar(select(func.count()).select_from(auth.User)) == 0
    engine = make_engine(url)
    try:
        assert migrate.current_revisions(engine) == migrate.head_revisions(url)
    finally:
        engine.dispose()


def test_progress_bar_stays_off_under_json_and_off_a_terminal() -> None:
    assert progress_bar("ingest", quiet=True).disable
    # pytest's stderr is not a terminal: a piped or logged command shows no bar either
    assert progress_bar("ingest", quiet=False).disable
    bar = progress_bar("quality", quiet=True, counter="{task.completed}/{task.total}")
    texts = [c.text_format for c in bar.columns if isinstance(c, TextColumn)]
    assert texts == ["[bold]quality[/] {task.description}", "{task.completed}/{task.total}"]
