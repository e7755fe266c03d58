"""Terminology through the API and the CLI: versioned maps, access, the queue, re-apply."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from carepool.cli import app as cli_app
from carepool.core.audit import AuditOutcome, AuditRecord
from carepool.core.events import OutboxEvent
from carepool.records.models import Encounter, Observation
from tests.conftest import Tokens
from tests.ingest import feeds
from tests.ingest.conftest import Ingest

runner = CliRunner()
CODE_Q = {"kind": "code"}


def test_an_unmapped_term_is_queued_suggested_mapped_and_reapplied(
    client: TestClient, tokens: Tokens, ingest: Ingest, members: sessionmaker[Session]
) -> None:
    ingest(feeds.hl7_file(feeds.HL7_CBC), "lis.hl7", source="clinic")
    steward = tokens.headers("data_steward", "clinic")
    queue = client.get("/api/v1/terminology/unmapped", params=CODE_Q, headers=steward).json()
    assert [(t["term"], t["display"], t["count"]) for t in queue["items"]] == [
        ("XYZ", "神秘指标", 1)
    ]
    term = queue["items"][0]
    assert term["suggestions"] and all("target" in s for s in term["suggestions"])

    put = client.put(
        "/api/v1/terminology/maps/code/entries",
        json={"term": "XYZ", "source_system": "L", "target": "2345-7", "scope": "clinic"},
        headers=steward,
    )
    assert put.status_code == 200, put.text
    assert (put.json()["valid_from"], put.json()["match"]) == (1, "code")
    after = client.get("/api/v1/terminology/unmapped", params=CODE_Q, headers=steward).json()
    assert after["total"] == 0

    with members() as s:
        assert (
            s.scalars(select(Observation).where(Observation.original_code == "XYZ"))
            .one()
            .loinc_code
            is None
        )
    reapplied = client.post(
        "/api/v1/terminology/reapply", params={"source": "clinic"}, headers=steward
    ).json()
    assert reapplied["observations_changed"] == 1
    with members() as s:
        fixed = s.scalars(select(Observation).where(Observation.original_code == "XYZ")).one()
        assert (fixed.loinc_code, fixed.unit, fixed.flags) == ("14749-6", "mmol/L", [])
        assert fixed.value == 1.0
    again = client.post(
        "/api/v1/terminology/reapply", params={"source": "clinic"}, headers=steward
    ).json()
    assert again["observations_changed"] == 0


def test_maps_are_versioned_with_history_audit_and_events(
    client: TestClient, tokens: Tokens, members: sessionmaker[Session]
) -> None:
    admin = tokens.admin()
    for target in ("718-7", "20509-6"):
        r = client.put(
            "/api/v1/terminology/maps/code/entries",
            json={"term": "血色素测定", "target": target},
            headers=admin,
        )
        assert r.status_code == 200, r.text
    now = client.get("/api/v1/terminology/maps/code", headers=admin).json()
    assert now["version"] == 2
    assert [(e["source"], e["target"]) for e in now["entries"]] == [("血色素测定", "20509-6")]
    then = client.get("/api/v1/terminology/maps/code", params={"version": 1}, headers=admin)
    assert [e["target"] for e in then.json()["entries"]] == ["718-7"]
    history = client.get("/api/v1/terminology/maps/code", params={"history": True}, headers=admin)
    assert [(e["valid_from"], e["valid_to"]) for e in history.json()["entries"]] == [
        (1, 2),
        (2, None),
    ]
    removed = client.request(
        "DELETE",
        "/api/v1/terminology/maps/code/entries",
        params={"term": "血色素测定"},
        headers=admin,
    )
    assert removed.status_code == 200 and removed.json()["version"] == 3
    bad = client.put(
        "/api/v1/terminology/maps/code/entries",
        json={"term": "x", "target": "718-8"},
        headers=admin,
    )
    assert bad.status_code == 422 and "check digit" in bad.json()["detail"]
    bad_unit = client.put(
        "/api/v1/terminology/maps/unit/entries",
        json={"term": "gm/100ml", "target": "grams"},
        headers=admin,
    )
    assert bad_unit.status_code == 422
    with members() as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.entity_type == "term_mapping")).all()
        events = s.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "terminology.map.changed")
        ).all()
    assert [r.action.value for r in rows] == ["C", "U", "D"]
    assert rows[1].before["target"] == "718-7" and rows[1].after["target"] == "20509-6"
    assert [e.payload["version"] for e in events] == [1, 2, 3]


def test_terminology_access_rules(
    client: TestClient, tokens: Tokens, members: sessionmaker[Session]
) -> None:
    viewer = tokens.headers("viewer", "clinic")
    entry = {"term": "HGB", "target": "718-7", "scope": "clinic"}
    denied = client.put("/api/v1/terminology/maps/code/entries", json=entry, headers=viewer)
    assert denied.status_code == 403
    assert client.get("/api/v1/terminology/maps", headers=viewer).status_code == 403
    steward = tokens.headers("data_steward", "clinic")
    assert (
        client.put("/api/v1/terminology/maps/code/entries", json=entry, headers=steward).status_code
        == 200
    )
    other = client.put(
        "/api/v1/terminology/maps/code/entries", json={**entry, "scope": "hosp"}, headers=steward
    )
    assert other.status_code == 403
    consortium = client.put(
        "/api/v1/terminology/maps/code/entries", json={**entry, "scope": "*"}, headers=steward
    )
    assert consortium.status_code == 403
    with members() as s:
        refusals = s.scalars(
            select(AuditRecord).where(AuditRecord.outcome == AuditOutcome.DENIED)
        ).all()
    assert len(refusals) == 4


def test_department_maps_fix_encounters_on_reapply(
    ingest: Ingest, members: sessionmaker[Session], db_url: str
) -> None:
    ingest(
        feeds.CSV_VISITS.encode(),
        "willow-visits.csv",
        source="clinic",
        mapping_doc=feeds.CSV_MAPPING,
    )
    with members() as s:
        codes = {e.local_id: e.department_code for e in s.scalars(select(Encounter))}
    assert codes == {"E1": "02", "E2": None}  # 中医馆 is not a name anyone knows yet
    queue = runner.invoke(
        cli_app, ["terminology", "unmapped", "--kind", "department", "--db", db_url, "--json"]
    )
    item = json.loads(queue.output)["items"][0]
    assert item["display"] == "中医馆" and item["suggestions"][0]["target"] == "50"
    set_it = runner.invoke(
        cli_app,
        ["terminology", "set", "department", "中医馆", "50", "--scope", "clinic", "--db", db_url],
    )
    assert set_it.exit_code == 0, set_it.output
    reapply = runner.invoke(cli_app, ["terminology", "reapply", "--db", db_url, "--json"])
    assert json.loads(reapply.output)["encounters_changed"] == 1
    with members() as s:
        codes = {e.local_id: e.department_code for e in s.scalars(select(Encounter))}
    assert codes == {"E1": "02", "E2": "50"}
    shown = runner.invoke(
        cli_app, ["terminology", "show", "department", "--scope", "clinic", "--db", db_url]
    )
    assert "中医馆" in shown.output and "-> 50" in shown.output


def test_convert_on_the_command_line_and_the_api(client: TestClient, tokens: Tokens) -> None:
    out = runner.invoke(
        cli_app, ["terminology", "convert", "100", "mg/dl", "mmol/L", "--loinc", "2345-7"]
    )
    assert out.exit_code == 0 and "5.55" in out.output
    refused = runner.invoke(cli_app, ["terminology", "convert", "100", "mg/dl", "mmol/L"])
    assert refused.exit_code == 1 and "molar mass" in refused.output
    r = client.get(
        "/api/v1/terminology/convert",
        params={"value": 13.5, "unit": "g/dl", "to": "g/L"},
        headers=tokens.admin(),
    )
    assert r.json()["result"] == 135.0
