"""The catalogue document through the CLI: round trip, atomic refusal, errors that say where."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from carepool.catalog.models import Resource
from carepool.cli import app
from carepool.core.audit import AuditRecord
from tests.factories import small_catalog

runner = CliRunner()


def _write(tmp_path: Path, doc: dict, name: str = "catalog.yaml") -> Path:
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(doc, ensure_ascii=False))
    else:
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def test_export_import_export_round_trip(
    engine, db_url: str, new_db_url: str, tmp_path: Path
) -> None:
    first = runner.invoke(
        app, ["catalog", "import", str(_write(tmp_path, small_catalog())), "--db", db_url, "--json"]
    )
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["created"]["resource"] == 6

    exported = runner.invoke(app, ["catalog", "export", "--json", "--db", db_url])
    assert exported.exit_code == 0, exported.output
    doc = json.loads(exported.stdout)
    assert doc["resources"][0]["id"] == "hosp-b501-1"  # sorted by id
    assert doc["services"][0]["price"] == "180.00"

    again = runner.invoke(
        app, ["catalog", "import", str(_write(tmp_path, doc, "exported.json")), "--db", new_db_url]
    )
    assert again.exit_code == 0, again.output
    second = runner.invoke(app, ["catalog", "export", "--json", "--db", new_db_url])
    assert json.loads(second.stdout) == doc


def test_reimport_of_same_document_changes_nothing(engine, db_url: str, tmp_path: Path) -> None:
    path = _write(tmp_path, small_catalog())
    assert runner.invoke(app, ["catalog", "import", str(path), "--db", db_url]).exit_code == 0
    result = runner.invoke(app, ["catalog", "import", str(path), "--db", db_url, "--json"])
    summary = json.loads(result.stdout)
    assert summary["created"] == {} and summary["updated"] == {}
    assert summary["unchanged"]["resource"] == 6


def test_import_updates_changed_entries_and_audits_before_after(
    engine, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    doc = small_catalog()
    assert (
        runner.invoke(
            app, ["catalog", "import", str(_write(tmp_path, doc)), "--db", db_url]
        ).exit_code
        == 0
    )
    doc["resources"][3]["status"] = "maintenance"
    result = runner.invoke(
        app, ["catalog", "import", str(_write(tmp_path, doc)), "--db", db_url, "--json"]
    )
    assert json.loads(result.stdout)["updated"] == {"resource": 1}
    with sessions() as s:
        row = s.scalars(
            select(AuditRecord).where(
                AuditRecord.entity_id == "hosp-ct1", AuditRecord.action == "U"
            )
        ).one()
    assert row.before["status"] == "in_service" and row.after["status"] == "maintenance"
    assert row.agent == "cli"


def test_bad_document_is_refused_whole_and_names_entry_and_field(
    engine, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    doc = small_catalog()
    doc["resources"][1]["gender_policy"] = "whoever"
    result = runner.invoke(app, ["catalog", "import", str(_write(tmp_path, doc)), "--db", db_url])
    assert result.exit_code == 1
    assert "resources[1] (id=hosp-b501-1).gender_policy" in result.output
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Resource)) == 0


def test_dangling_reference_rolls_back_everything(
    engine, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    doc = small_catalog()
    doc["resources"][-1]["department_id"] = "no-such-dept"  # valid shape, bad reference, last entry
    result = runner.invoke(
        app, ["catalog", "import", str(_write(tmp_path, doc)), "--db", db_url, "--json"]
    )
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["errors"] == [
        {
            "location": "resources[5] (id=hosp-nurse1).department_id",
            "message": "department 'no-such-dept' does not exist",
        }
    ]
    with sessions() as s:  # the earlier, valid entries were not kept either
        assert s.scalar(select(func.count()).select_from(Resource)) == 0


def test_reference_across_members_is_refused(engine, db_url: str, tmp_path: Path) -> None:
    doc = small_catalog()
    doc["wards"][0]["institution_id"] = "clinic"  # a clinic's ward in the hospital's department
    result = runner.invoke(app, ["catalog", "import", str(_write(tmp_path, doc)), "--db", db_url])
    assert result.exit_code == 1
    assert "wards[0] (id=hosp-cardio-w1).department_id" in result.output
    assert "belongs to 'hosp'" in result.output


def test_unreadable_yaml_is_a_clear_error(engine, db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("consortium: [unclosed\n")
    result = runner.invoke(app, ["catalog", "import", str(path), "--db", db_url])
    assert result.exit_code == 1
    assert "is not valid YAML" in result.output
