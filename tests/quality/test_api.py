"""The quality API: scopes (403 without, audited), member-bound visibility, runs, the HTML
report, scorecards, thresholds, feed schedules and alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.core.audit import AuditOutcome, AuditRecord
from carepool.quality.demo_defects import DefectProfile, hl7_feed
from tests.conftest import Tokens
from tests.quality.conftest import Feed

NOW = datetime.now(UTC)


def _load(feed: Feed) -> None:
    feed(hl7_feed("hosp", DefectProfile(), patients=6, now=NOW), source="hosp")
    feed(
        hl7_feed("clinic", DefectProfile(unmapped_codes=0.5), patients=6, now=NOW), source="clinic"
    )


def test_reading_needs_the_quality_scope_and_refusals_are_audited(
    client: TestClient, tokens: Tokens, members: sessionmaker[Session]
) -> None:
    viewer = tokens.headers("viewer", "hosp")
    for path in ("/api/v1/quality/checks", "/api/v1/quality/runs", "/api/v1/quality/scorecard"):
        r = client.get(path, headers=viewer)
        assert r.status_code == 403, path
        assert r.json()["missing_scope"] == "user/Quality.read"
    assert client.get("/api/v1/quality/runs").status_code == 401
    r = client.post(
        "/api/v1/quality/runs", json={}, headers=tokens.headers("administrator", "hosp")
    )
    assert r.status_code == 403  # administrators read, they do not run
    with members() as s:
        denied = s.scalars(
            select(AuditRecord).where(AuditRecord.outcome == AuditOutcome.DENIED)
        ).all()
        assert len(denied) == 4
        assert {d.entity_id for d in denied} >= {
            "GET /api/v1/quality/runs",
            "POST /api/v1/quality/runs",
        }


def test_run_read_report_and_scorecard(
    client: TestClient, tokens: Tokens, feed: Feed, members: sessionmaker[Session]
) -> None:
    _load(feed)
    admin = tokens.admin()
    r = client.post("/api/v1/quality/runs", json={}, headers=admin)
    assert r.status_code == 201, r.text
    run: dict[str, Any] = r.json()
    assert run["status"] == "succeeded" and run["progress"] == 1.0
    run_id = run["run_id"]

    # a member's data steward sees its own member's rows and the consortium totals
    steward = tokens.headers("data_steward", "clinic")
    body = client.get(f"/api/v1/quality/runs/{run_id}", headers=steward).json()
    assert {x["member"] for x in body["results"]} == {"clinic", "*"}
    mapped = next(
        x
        for x in body["results"]
        if x["check_id"] == "observation.code_mapped" and x["member"] == "clinic"
    )
    assert mapped["failing"] > 0 and mapped["sample"] and not mapped["passed"]
    r = client.get(f"/api/v1/quality/runs/{run_id}?member=hosp", headers=steward)
    assert r.status_code == 403
    everyone = client.get(f"/api/v1/quality/runs/{run_id}", headers=admin).json()
    assert {x["member"] for x in everyone["results"]} == {"hosp", "clinic", "*"}
    with members() as s:
        reads = s.scalars(
            select(AuditRecord).where(
                AuditRecord.entity_type == "quality_run",
                AuditRecord.action == "R",
                AuditRecord.entity_id == run_id,
            )
        ).all()
        assert len(reads) == 2

    html = client.get(f"/api/v1/quality/runs/{run_id}/report.html", headers=admin)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "observation.code_mapped" in html.text and mapped["sample"][0] in html.text
    assert "http://" not in html.text and "https://" not in html.text and "<script" not in html.text

    card = client.get("/api/v1/quality/scorecard", headers=tokens.headers("administrator", "hosp"))
    assert card.status_code == 200
    assert [m["member"] for m in card.json()["members"]] == ["hosp", "clinic"]
    history = client.get("/api/v1/quality/scorecard/clinic", headers=steward).json()
    assert history["latest"]["run_id"] == run_id
    assert client.get("/api/v1/quality/scorecard/hosp", headers=steward).status_code == 403


def test_thresholds_schedules_and_alerts(client: TestClient, tokens: Tokens, feed: Feed) -> None:
    _load(feed)
    admin = tokens.admin()
    steward = tokens.headers("data_steward", "clinic")
    r = client.put(
        "/api/v1/quality/checks/observation.code_mapped", json={"threshold": 80}, headers=steward
    )
    assert r.status_code == 403  # thresholds are consortium-wide
    r = client.put(
        "/api/v1/quality/checks/observation.code_mapped", json={"threshold": 80}, headers=admin
    )
    assert r.status_code == 200 and r.json()["threshold"] == 80
    checks = client.get("/api/v1/quality/checks", headers=steward).json()["items"]
    assert next(c for c in checks if c["id"] == "observation.code_mapped")["threshold"] == 80
    assert (
        client.put("/api/v1/quality/checks/nope", json={"threshold": 1}, headers=admin).status_code
        == 422
    )

    r = client.put(
        "/api/v1/quality/feed-schedules/clinic/fhir", json={"every_minutes": 60}, headers=steward
    )
    assert r.status_code == 200 and r.json()["every_minutes"] == 60
    r = client.put(
        "/api/v1/quality/feed-schedules/hosp/hl7v2", json={"every_minutes": 60}, headers=steward
    )
    assert r.status_code == 403
    r = client.post("/api/v1/quality/runs", json={"member": "clinic"}, headers=steward)
    assert r.status_code == 201, r.text
    alerts = client.get("/api/v1/quality/alerts", headers=steward).json()["items"]
    assert [(a["kind"], a["key"]) for a in alerts] == [("feed-late", "clinic/fhir")]
    r = client.post(f"/api/v1/quality/alerts/{alerts[0]['id']}/acknowledge", headers=steward)
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    assert (
        client.post("/api/v1/quality/runs", json={"member": "hosp"}, headers=steward).status_code
        == 403
    )
