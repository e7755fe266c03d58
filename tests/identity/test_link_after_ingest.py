"""Linking on arrival is wired into ingest: the CLI and the API match the patients a run stored
against the index, with no `identity link` run (issue 12, point 3)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from carepool.cli import app as cli_app
from carepool.identity import service as identity_service
from tests.conftest import Tokens
from tests.identity import feeds
from tests.identity.conftest import _record

runner = CliRunner()


def test_the_cli_links_what_it_stored(
    db_url: str, members: sessionmaker[Session], tmp_path: object
) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / "hosp.hl7").write_bytes(feeds.hospital_feed())
    (folder / "clinic.hl7").write_bytes(feeds.clinic_feed(extra_hb=1))
    for source, name in (("hosp", "hosp.hl7"), ("clinic", "clinic.hl7")):
        result = runner.invoke(
            cli_app,
            ["ingest", "--db", db_url, "--source", source, str(folder / name), "--json"],
        )
        assert result.exit_code == 0, result.output
    linking = json.loads(result.output)["linking"]
    assert linking["records"] >= 1
    with members() as session:
        hosp = _record(session, "HOSP", "H001")
        clinic = _record(session, "CLINIC", "C-77")
        person = identity_service.person_of(session, patient_id=hosp)
        assert person is not None
        assert identity_service.person_of(session, patient_id=clinic) == person
        other = _record(session, "HOSP", "H002")  # the other 张三 stays apart
        assert identity_service.person_of(session, patient_id=other) != person


def test_no_link_leaves_the_index_alone(
    db_url: str, members: sessionmaker[Session], tmp_path: object
) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "hosp.hl7"
    path.write_bytes(feeds.hospital_feed())
    result = runner.invoke(
        cli_app, ["ingest", "--db", db_url, "--source", "hosp", str(path), "--no-link", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert "linking" not in json.loads(result.output)
    with members() as session:
        hosp = _record(session, "HOSP", "H001")
        assert identity_service.person_of(session, patient_id=hosp) is None


def test_the_api_answer_says_what_was_linked(
    client: TestClient, tokens: Tokens, members: sessionmaker[Session]
) -> None:
    admin = tokens.admin()
    for source, feed in (("hosp", feeds.hospital_feed()), ("clinic", feeds.clinic_feed())):
        answer = client.post(
            "/api/v1/ingest",
            params={"source": source, "filename": f"{source}.hl7"},
            content=feed,
            headers=admin,
        )
        assert answer.status_code in (200, 201), answer.text
    assert answer.json()["linking"]["records"] >= 1
    with members() as session:
        assert identity_service.person_of(
            session, patient_id=_record(session, "HOSP", "H001")
        ) == identity_service.person_of(session, patient_id=_record(session, "CLINIC", "C-77"))
