"""What a run tells: parts kept but not modelled, warnings for empty deliveries, parse flags and
comparators stored and served, the declared character set kept for retries (SQLite and
PostgreSQL; the CLI and the HTTP API where a user sees it)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from carepool.cli import app as cli_app
from carepool.ingest import actions
from carepool.ingest import service as ingest_service
from carepool.ingest.models import DeadLetter
from carepool.records.models import Observation, Patient
from tests.conftest import Tokens
from tests.ingest.conftest import SYSTEM, Ingest

runner = CliRunner()


def _fake(*items: dict[str, object], encoding: str = "utf-8") -> bytes:
    return json.dumps(list(items), ensure_ascii=False).encode(encoding)


def _hb(patient: str, **extra: object) -> dict[str, object]:
    return {"patient": patient, "code": "718-7", "value": 135, "unit": "g/L", **extra}


UNMODELLED = _fake(
    _hb("p1", id="o1", unmodelled={"segment:AL1": 2, "segment:DG1": 1}),
    _hb("p2", id="o2", unmodelled={"segment:AL1": 1}),
)


def test_unmodelled_parts_are_summed_on_the_run_row_and_in_the_cli(
    db_url: str, members: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "feed.fake"
    path.write_bytes(UNMODELLED)
    args = ["ingest", "--db", db_url, "--source", "hosp", "--format", "fake", str(path)]
    text = runner.invoke(cli_app, args)
    assert text.exit_code == 0, text.output
    assert "kept, not modelled: segment:AL1 3, segment:DG1 1" in text.output
    as_json = json.loads(runner.invoke(cli_app, [*args, "--json"]).output)
    assert as_json["unmodelled"] == {"segment:AL1": 3, "segment:DG1": 1}
    assert as_json["warnings"] == [] and as_json["balanced"] is True
    with members() as s:
        row = ingest_service.run_to_dict(ingest_service.get_run(s, id=as_json["run_id"]))
    assert row["unmodelled"] == {"segment:AL1": 3, "segment:DG1": 1}


def test_an_empty_delivery_succeeds_with_a_warning(
    db_url: str, members: sessionmaker[Session], tmp_path: Path
) -> None:
    empty = tmp_path / "nightly.dat"  # zero bytes, and no format to tell from its name
    empty.write_bytes(b"")
    nothing = tmp_path / "bundle.json"
    nothing.write_bytes(b'{"resourceType": "Bundle", "type": "collection", "entry": []}')
    result = runner.invoke(
        cli_app, ["ingest", "--db", db_url, "--source", "hosp", str(empty), str(nothing)]
    )
    assert result.exit_code == 0, result.output
    assert "warning: nightly.dat: the input is empty (0 bytes)" in result.output
    # a bundle without entries is said by the connector: one rejected item, dead-lettered
    with members() as s:
        (run,) = ingest_service.get_runs(s)[0]
        assert run.status.value == "succeeded" and run.received == 1 and run.rejected == 1
        assert len(run.warnings) == 1
        letters = s.scalars(select(DeadLetter).where(DeadLetter.run_id == run.id)).all()
        assert ["the bundle has no entries" in d.reason for d in letters] == [True]


def test_the_api_answer_carries_unmodelled_and_warnings(
    client: TestClient, tokens: Tokens, members: sessionmaker[Session]
) -> None:
    admin = tokens.admin()
    answer = client.post(
        "/api/v1/ingest",
        params={"source": "hosp", "format": "fake"},
        content=UNMODELLED,
        headers=admin,
    ).json()
    assert answer["unmodelled"] == {"segment:AL1": 3, "segment:DG1": 1}
    quiet = client.post(
        "/api/v1/ingest", params={"source": "hosp", "format": "fake"}, content=b"[]", headers=admin
    ).json()
    assert quiet["status"] == "succeeded" and quiet["received"] == 0
    assert quiet["warnings"] == [
        "request: no records found in 2 bytes read as fake; nothing was received"
    ]
    run = client.get(f"/api/v1/ingest/runs/{quiet['run_id']}", headers=admin).json()
    assert run["warnings"] == quiet["warnings"]


def test_parse_flags_are_stored_and_counted(ingest: Ingest, members: sessionmaker[Session]) -> None:
    summary = ingest(
        _fake(
            _hb("p1", id="o1", flags=["invalid-date:OBX-14"], patient_flags=["invalid-date:PID-7"]),
            _hb("p2", id="o2", code="LOCAL-X", system="urn:local", flags=["truncated"]),
        ),
        format="fake",
    )
    assert summary.flags == {
        "invalid-date:OBX-14": 1,
        "invalid-date:PID-7": 1,
        "truncated": 1,
        "unmapped-code": 1,
    }
    with members() as s:
        patients = {p.local_id: p.flags for p in s.scalars(select(Patient))}
        results = {o.local_id: o.flags for o in s.scalars(select(Observation))}
    assert patients == {"p1": ["invalid-date:PID-7"], "p2": []}
    # beside the standard form's own flags
    assert results == {"o1": ["invalid-date:OBX-14"], "o2": ["unmapped-code", "truncated"]}
    # the flags are not content: the same record sent again without them is a duplicate
    again = ingest(_fake(_hb("p1", id="o1")), format="fake")
    assert again.duplicates == 2 and again.stored == 0


def test_a_comparator_is_stored_and_served_never_as_an_exact_value(
    client: TestClient, tokens: Tokens, members: sessionmaker[Session]
) -> None:
    admin = tokens.admin()
    feed = _fake(
        _hb("p1", id="lt", value=0.2, unit="mg/dL", code="1988-5", comparator="<"),
        _hb("p1", id="exact", value=0.4, unit="mg/dL", code="1988-5"),
    )
    body = client.post(
        "/api/v1/ingest", params={"source": "hosp", "format": "fake"}, content=feed, headers=admin
    ).json()
    assert body["stored"] == 3
    with members() as s:
        stored = {o.local_id: (o.comparator, o.id) for o in s.scalars(select(Observation))}
    assert stored["lt"][0] == "<" and stored["exact"][0] == ""
    doctor = tokens.headers("clinician", "hosp")
    bound = client.get(f"/fhir/Observation/{stored['lt'][1]}", headers=doctor)
    assert bound.status_code == 200, bound.text
    assert bound.json()["valueQuantity"]["comparator"] == "<"
    exact = client.get(f"/fhir/Observation/{stored['exact'][1]}", headers=doctor).json()
    assert "comparator" not in exact["valueQuantity"]


def test_a_declared_encoding_decodes_the_input_and_its_retries(
    db_url: str, ingest: Ingest, members: sessionmaker[Session], tmp_path: Path
) -> None:
    first = _fake(_hb("p1", id="o1", name="张三"), encoding="gb18030")
    path = tmp_path / "clinic.fake"
    path.write_bytes(first)
    result = runner.invoke(
        cli_app,
        [
            "ingest",
            "--db",
            db_url,
            "--source",
            "hosp",
            "--format",
            "fake",
            "--encoding",
            "gb18030",
            str(path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    with members() as s:
        assert s.scalars(select(Patient)).one().name == "张三"
    # A unit rejected from a run with a declared encoding keeps it: its retry decodes alike.
    moved = _fake(_hb("p2", id="o1", name="李四"), encoding="gb18030")
    summary = ingest(moved, "clinic.fake", format="fake", encoding="gb18030")
    assert summary.rejected == 1
    with members() as s:
        letter = s.scalars(select(DeadLetter)).one()
        assert letter.options == {"encoding": "gb18030"} and letter.raw == moved
        assert "李四".encode("gb18030") in letter.raw
    shown = runner.invoke(
        cli_app, ["ingest", "dead-letter", "show", str(letter.id), "--db", db_url, "--json"]
    )
    assert "李四" in json.loads(shown.output)["raw"]  # shown in the declared character set
    _letter, again = actions.do_retry_dead_letter(members, actor=SYSTEM, id=letter.id)
    assert again.rejected == 1 and again.stored == 0 and again.duplicates == 1  # p2 as before
    with members() as s:
        assert "patient conflict" in s.scalars(select(DeadLetter)).one().reason


def test_an_unknown_encoding_is_refused_before_the_run(
    db_url: str,
    members: sessionmaker[Session],
    tmp_path: Path,
    client: TestClient,
    tokens: Tokens,
) -> None:
    path = tmp_path / "feed.fake"
    path.write_bytes(b"[]")
    args = ["ingest", "--db", db_url, "--source", "hosp", "--encoding", "klingon", str(path)]
    result = runner.invoke(cli_app, args)
    assert result.exit_code == 1 and "unknown character set 'klingon'" in result.output
    refused = client.post(
        "/api/v1/ingest",
        params={"source": "hosp", "format": "fake", "encoding": "klingon"},
        content=b"[]",
        headers=tokens.admin(),
    )
    assert refused.status_code == 422 and "klingon" in refused.text
