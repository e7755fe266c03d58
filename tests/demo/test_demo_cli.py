"""`carepool demo --no-serve --json`: builds the demo, reports it, and can run twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from carepool.catalog import service as catalog_service
from carepool.catalog.actions import do_import_catalog
from carepool.core import auth
from carepool.core.auth import Principal
from carepool.core.db import make_engine, make_session_factory
from carepool.demo.build import DEMO_USERS
from carepool.demo.cli import demo
from tests.factories import small_catalog

runner = CliRunner()


def _app() -> typer.Typer:
    """The `carepool` command once `demo` is registered there; until then, a stand-in."""
    from carepool.cli import app

    if any(c.name == "demo" for c in app.registered_commands):
        return app
    standalone = typer.Typer()
    standalone.command("demo")(demo)
    standalone.callback()(lambda: None)
    return standalone


def _run(*args: str) -> Any:
    return runner.invoke(_app(), ["demo", "--no-serve", "--json", *args])


def test_demo_is_a_subcommand_of_carepool() -> None:
    from carepool.cli import app

    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0, result.output
    assert "--no-serve" in result.output and "--seed" in result.output


@pytest.mark.slow
def test_demo_builds_reports_and_runs_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    first = _run("--db", url, "--seed", "7")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)

    assert summary["seed"] == 7 and summary["database_url"] == url
    assert summary["url"] == "http://127.0.0.1:8000"
    counts = summary["counts"]
    assert 600 <= counts["resource.bed"] <= 900
    assert counts["resource.theatre"] >= 8 and counts["service"] >= 30
    kinds = [m["kind"] for m in summary["members"]]
    assert kinds.count("general_hospital") == 1 and kinds.count("branch_hospital") == 3
    assert sum(m["beds"] for m in summary["members"]) == counts["resource.bed"]
    assert [u["username"] for u in summary["users"]] == [s.username for s in DEMO_USERS]
    assert summary["users_created"] == [s.username for s in DEMO_USERS]
    # the feeds land although the simulated bookings registered walk-in patients first
    assert summary["feeds"]["ingested"] is not False, summary["feeds"]
    assert summary["feeds"]["totals"]["stored"] > 0

    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            assert catalog_service.counts(session) == counts
            for user in summary["users"]:
                caller = auth.authenticate(session, token=user["token"])
                assert caller.role is not None and caller.role.value == user["role"]
                assert caller.institution_id == user["institution_id"]
            dr_li = next(u for u in summary["users"] if u["username"] == "dr.li")
            clinic = catalog_service.get(session, kind="institution", id=dr_li["institution_id"])
            assert clinic.kind.value == "village_clinic"
    finally:
        engine.dispose()

    second = _run("--db", url, "--seed", "7")
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert again["users_created"] == []
    assert again["imported"]["created"] == {}
    assert again["counts"] == counts
    assert again["feeds"]["ingested"] is False  # the second run adds no feeds
    assert {u["token"] for u in again["users"]}.isdisjoint(u["token"] for u in summary["users"])
    with make_session_factory(make_engine(url))() as session:
        assert len(auth.get_all_users(session)) == len(DEMO_USERS)


def test_demo_refuses_a_database_with_another_catalogue(engine: Any, db_url: str) -> None:
    with make_session_factory(engine)() as session, session.begin():
        do_import_catalog(session, actor=Principal.system_actor("test"), raw=small_catalog())
    result = _run("--db", db_url)
    assert result.exit_code == 1
    error = json.loads(result.stdout)
    assert "another catalogue" in error["error"] and "--db" in error["error"]
    with make_session_factory(engine)() as session:
        assert catalog_service.counts(session)["institution"] == 2  # nothing was added
        assert auth.get_all_users(session) == []


def test_human_report_lists_members_users_and_a_curl_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from carepool.demo.build import DemoSummary, DemoUser
    from carepool.demo.cli import _report

    summary = DemoSummary(
        database_url="sqlite:///x.db",
        seed=1,
        start_date="2026-11-30",
        consortium={"id": "c", "name": "Test County", "name_zh": "测试县"},
        counts={"resource.bed": 12, "institution": 2},
        members=[
            {"id": "ch", "name": "County", "name_zh": "县医院", "kind": "general_hospital",
             "beds": 12, "theatres": 1, "modalities": 2, "staff": 5},
            {"id": "vc-a", "name": "A", "name_zh": "甲村卫生室", "kind": "village_clinic",
             "beds": 0, "theatres": 0, "modalities": 0, "staff": 1},
        ],
        users=[DemoUser("bed.manager", "Bed manager", "bed_manager", "ch", "cpt_secret")],
        imported={},
    )  # fmt: skip
    _report(summary, "http://127.0.0.1:8000", serving=True)
    text = capsys.readouterr().out
    assert "县医院" in text and "1 个村卫生室" in text
    assert 'curl -H "Authorization: Bearer cpt_secret"' in text
    assert "/api/v1/resources?kind=bed" in text
    assert "carepool auth token --user bed.manager --db 'sqlite:///x.db'" in text
    assert "http://127.0.0.1:8000" in text
