"""`carepool quality ...`: run with --json, export to Parquet and run there, report, scorecard,
thresholds, feed schedules, the periodic schedule, config errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carepool.cli import app
from carepool.quality.cli import parse_duration
from carepool.quality.demo_defects import DEMO_PROFILES, hl7_feed
from tests.quality.conftest import Feed

runner = CliRunner()
NOW = datetime.now(UTC)


def _invoke(*args: str) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else {"out": result.stdout}


def test_cli_run_export_report_and_scorecard(feed: Feed, db_url: str, tmp_path: Path) -> None:
    feed(hl7_feed("hosp", DEMO_PROFILES["county"], patients=8, now=NOW), source="hosp")
    feed(hl7_feed("clinic", DEMO_PROFILES["village"], patients=8, now=NOW), source="clinic")
    _invoke("quality", "feed", "set", "clinic", "*", "--every", "1d", "--db", db_url)
    out = _invoke("quality", "run", "--db", db_url, "--json")
    run = out["run"]
    assert run["status"] == "succeeded" and run["backend"] in ("sqlite", "postgres")
    assert {r["member"] for r in out["results"]} == {"hosp", "clinic", "*"}

    pq = tmp_path / "pq"
    exported = _invoke("quality", "export", "--parquet", str(pq), "--db", db_url, "--json")
    assert exported["rows"]["observation"] > 0 and (pq / "observation.parquet").exists()
    on_duckdb = _invoke("quality", "run", "--db", db_url, "--parquet", str(pq), "--json")
    assert on_duckdb["run"]["backend"] == "duckdb"

    html = tmp_path / "run.html"
    _invoke("quality", "report", run["run_id"], "--out", str(html), "--db", db_url)
    assert "数据质量" in html.read_text(encoding="utf-8")

    card = _invoke("quality", "scorecard", "--db", db_url, "--json")
    assert [m["member"] for m in card["members"]] == ["hosp", "clinic"]
    text = _invoke("quality", "show", run["run_id"], "--db", db_url)["out"]
    assert "observation.code_mapped" in text and "scorecard" in text
    runs = _invoke("quality", "runs", "--db", db_url, "--json")
    assert len(runs) == 2


def test_cli_threshold_checks_config_and_schedule(
    db_url: str, tmp_path: Path, members: object
) -> None:
    _invoke("quality", "threshold", "observation.duplicates", "3", "--db", db_url)
    _invoke("quality", "threshold", "observation.sex_plausible", "--disable", "--db", db_url)
    checks = _invoke("quality", "checks", "--db", db_url, "--json")
    dup = next(c for c in checks if c["id"] == "observation.duplicates")
    assert dup["threshold"] == 3 and dup["default_threshold"] == 1
    assert not next(c for c in checks if c["id"] == "observation.sex_plausible")["enabled"]
    bad = runner.invoke(app, ["quality", "threshold", "nope", "3", "--db", db_url])
    assert bad.exit_code == 1

    config = tmp_path / "q.yaml"
    config.write_text("thresholds: {nope: 3}\nparams: {stale_days: -1}\n", encoding="utf-8")
    result = runner.invoke(
        app, ["quality", "run", "--db", db_url, "--config", str(config), "--json"]
    )
    assert result.exit_code == 1
    errors = {e["location"] for e in json.loads(result.stdout)["errors"]}
    assert errors == {"thresholds.nope", "params.stale_days"}

    out = _invoke("quality", "schedule", "--every", "1s", "--times", "2", "--db", db_url)["out"]
    assert out.count(" succeeded: ") == 2


def test_parse_duration() -> None:
    assert [parse_duration(x) for x in ("90", "30s", "15m", "6h", "1d")] == [
        90,
        30,
        900,
        21600,
        86400,
    ]
    from carepool.core.errors import InvalidInput

    with pytest.raises(InvalidInput):
        parse_duration("soon")
