"""POST /api/v1/ingest and the run and dead-letter routes: access rules, audit, summaries."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.core.audit import AuditOutcome, AuditRecord
from tests.conftest import Tokens
from tests.ingest import feeds


def test_ingest_through_the_api_with_summary_progress_and_audit(
    client: TestClient, tokens: Tokens, members: sessionmaker[Session]
) -> None:
    admin = tokens.admin()
    response = client.post(
        "/api/v1/ingest",
        params={"source": "clinic", "filename": "cbc.hl7"},
        content=feeds.hl7_file(feeds.HL7_CBC, feeds.HL7_BROKEN),
        headers={**admin, "content-type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["received"] == body["stored"] + body["duplicates"] + body["rejected"] == 16
    assert body["rejected"] == 2 and body["status"] == "succeeded"
    run = client.get(response.headers["location"], headers=admin).json()
    assert (run["progress"], run["status"], run["received"]) == (1.0, "succeeded", 16)

    again = client.post(
        "/api/v1/ingest",
        params={"source": "clinic", "format": "hl7v2"},
        content=feeds.hl7_file(feeds.HL7_CBC, feeds.HL7_BROKEN),
        headers=admin,
    ).json()
    assert again["stored"] == 0 and again["duplicates"] == 14

    letters = client.get("/api/v1/ingest/dead-letters", headers=admin).json()
    assert letters["total"] == 2
    one = client.get(f"/api/v1/ingest/dead-letters/{letters['items'][1]['id']}", headers=admin)
    assert one.status_code == 200 and one.json()["raw"].startswith("MSH|")
    retried = client.post(
        f"/api/v1/ingest/dead-letters/{letters['items'][1]['id']}/retry", headers=admin
    ).json()
    assert retried["dead_letter"]["status"] == "open" and retried["dead_letter"]["retry_count"] == 1
    discarded = client.post(
        f"/api/v1/ingest/dead-letters/{letters['items'][0]['id']}/discard", headers=admin
    )
    assert discarded.json()["status"] == "discarded"
    assert client.get("/api/v1/ingest/dead-letters", headers=admin).json()["total"] == 1

    with members() as s:
        audited = s.scalars(
            select(AuditRecord).where(AuditRecord.entity_type.in_(["ingest_run", "dead_letter"]))
        ).all()
    assert [a.entity_type for a in audited].count("ingest_run") == 3  # two posts and one retry
    assert {a.source for a in audited} == {"api"}


def test_ingest_without_the_scope_is_403_and_audited(
    client: TestClient, tokens: Tokens, members: sessionmaker[Session]
) -> None:
    clinician = tokens.headers("clinician", "clinic")
    response = client.post(
        "/api/v1/ingest",
        params={"source": "clinic"},
        content=feeds.hl7_file(feeds.HL7_CBC),
        headers=clinician,
    )
    assert response.status_code == 403
    assert response.json()["missing_scope"] == "user/Ingest.write"
    assert client.get("/api/v1/ingest/runs", headers=clinician).status_code == 403
    with members() as s:
        denied = s.scalars(
            select(AuditRecord).where(AuditRecord.outcome == AuditOutcome.DENIED)
        ).all()
        assert any(d.entity_id == "POST /api/v1/ingest" for d in denied)
        from carepool.records.models import Observation

        assert s.scalars(select(Observation)).first() is None


def test_ingest_refusals_name_the_problem(
    client: TestClient, tokens: Tokens, members: sessionmaker[Session]
) -> None:
    admin = tokens.admin()
    unknown = client.post(
        "/api/v1/ingest", params={"source": "atlantis"}, content=b"MSH|^~\\&|", headers=admin
    )
    assert unknown.status_code == 422 and "atlantis" in unknown.json()["detail"]
    empty = client.post("/api/v1/ingest", params={"source": "hosp"}, content=b"", headers=admin)
    assert empty.status_code == 422
    assert client.post("/api/v1/ingest", content=b"MSH|", headers=admin).status_code == 422
