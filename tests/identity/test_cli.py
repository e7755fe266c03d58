"""`carepool identity ...` on a database with two members' feeds."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from carepool.cli import app
from tests.identity.conftest import Fed

runner = CliRunner()


def _json(db_url: str, *args: str) -> Any:
    result = runner.invoke(app, ["identity", *args, "--db", db_url, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_link_review_merge_unmerge_from_the_command_line(db_url: str, fed: Fed) -> None:
    run = _json(db_url, "link")
    assert run["status"] == "succeeded" and run["auto_links"] == 1 and run["review"] == 1
    assert run["phase"] == "done" and run["progress"] == 1.0
    runs = _json(db_url, "runs")
    assert [r["run_id"] for r in runs] == [run["run_id"]]

    queue = _json(db_url, "review", "list")
    assert queue["total"] == 1
    pair = queue["items"][0]
    shown = _json(db_url, "review", "show", str(pair["id"]))
    assert shown["fields"]["dob"]["level"] == "same date"
    accepted = _json(db_url, "review", "accept", str(pair["id"]), "--note", "same woman")
    assert accepted["candidate"]["status"] == "accepted"
    person = _json(db_url, "person", fed.zhao_clinic)
    assert {r["patient_id"] for r in person["records"]} == {fed.zhao_hosp, fed.zhao_clinic}

    merge_id = accepted["merge"]["id"]
    undone = _json(db_url, "unmerge", str(merge_id), "--reason", "not the same after all")
    assert undone["reverses"] == merge_id
    assert _json(db_url, "person", fed.zhao_clinic)["records"][0]["patient_id"] == fed.zhao_clinic

    lonely = _json(db_url, "person", fed.li_si)["person_id"]
    other = _json(db_url, "person", fed.wang_wu)["person_id"]
    merged = _json(db_url, "merge", lonely, other)
    assert merged["patient_ids"] == [fed.wang_wu]
    detached = _json(db_url, "detach", fed.wang_wu)
    assert detached["action"] == "detach"

    text = runner.invoke(app, ["identity", "person", lonely, "--db", db_url])
    assert text.exit_code == 0 and "merge" in text.stdout and "detach" in text.stdout

    bad = runner.invoke(app, ["identity", "review", "accept", "999", "--db", db_url])
    assert bad.exit_code == 1 and "does not exist" in bad.stderr
    bad_thresholds = runner.invoke(
        app, ["identity", "link", "--db", db_url, "--auto", "0.3", "--review", "0.6"]
    )
    assert bad_thresholds.exit_code == 1


def test_relink_from_the_command_line_reports_nothing_changed(db_url: str, fed: Fed) -> None:
    _json(db_url, "link")
    out = _json(db_url, "relink")
    assert out == {"changed": 0, "detached": [], "review": 0, "linked": []}
