"""The catalogue through the HTTP API: CRUD, filters, paging, access rules and audit."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.core.audit import AuditOutcome, AuditRecord
from carepool.core.events import OutboxEvent
from tests.conftest import Tokens
from tests.factories import small_catalog


@pytest.fixture()
def loaded(client: TestClient, tokens: Tokens) -> dict[str, str]:
    admin = tokens.admin()
    response = client.post("/api/v1/catalog/import", json=small_catalog(), headers=admin)
    assert response.status_code == 200, response.text
    return admin


def _bed(**extra: Any) -> dict[str, Any]:
    body = {
        "id": "hosp-b501-3",
        "kind": "bed",
        "type_code": "bed.general",
        "name": "Bed 501-3",
        "institution_id": "hosp",
        "campus_id": "hosp-main",
        "department_id": "hosp-cardio",
        "ward_id": "hosp-cardio-w1",
        "room_id": "hosp-r501",
        "gender_policy": "female",
    }
    body.update(extra)
    return body


def test_requests_without_token_get_401_problem(client: TestClient) -> None:
    response = client.get("/api/v1/resources")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 401 and "Bearer" in body["detail"]


def test_bogus_token_is_401(client: TestClient) -> None:
    response = client.get("/api/v1/resources", headers={"Authorization": "Bearer cpt_nope"})
    assert response.status_code == 401


def test_list_filters_and_pages(client: TestClient, loaded: dict[str, str]) -> None:
    beds = client.get("/api/v1/resources", params={"kind": "bed"}, headers=loaded).json()
    assert beds["total"] == 2
    assert {b["id"] for b in beds["items"]} == {"hosp-b501-1", "hosp-b501-2"}

    page1 = client.get("/api/v1/resources", params={"limit": 4}, headers=loaded).json()
    page2 = client.get("/api/v1/resources", params={"limit": 4, "offset": 4}, headers=loaded).json()
    assert page1["total"] == page2["total"] == 6
    assert len(page1["items"]) == 4 and len(page2["items"]) == 2
    assert not {i["id"] for i in page1["items"]} & {i["id"] for i in page2["items"]}

    found = client.get("/api/v1/institutions", params={"q": "村"}, headers=loaded).json()
    assert [i["id"] for i in found["items"]] == ["clinic"]


def test_unknown_filter_is_refused_with_its_name(
    client: TestClient, loaded: dict[str, str]
) -> None:
    response = client.get("/api/v1/resources", params={"colour": "blue"}, headers=loaded)
    assert response.status_code == 422
    assert response.json()["errors"][0]["location"] == "query:colour"


def test_create_read_update_with_audit_and_event(
    client: TestClient, loaded: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    created = client.post("/api/v1/resources", json=_bed(), headers=loaded)
    assert created.status_code == 201, created.text
    assert (
        client.get("/api/v1/resources/hosp-b501-3", headers=loaded).json()["gender_policy"]
        == "female"
    )

    changed = client.patch(
        "/api/v1/resources/hosp-b501-3", json={"status": "maintenance"}, headers=loaded
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["status"] == "maintenance"

    with sessions() as s:
        rows = s.scalars(
            select(AuditRecord)
            .where(AuditRecord.entity_id == "hosp-b501-3")
            .order_by(AuditRecord.id)
        ).all()
        events = s.scalars(select(OutboxEvent).where(OutboxEvent.entity_id == "hosp-b501-3")).all()
    assert [r.action.value for r in rows] == ["C", "U"]
    assert rows[1].before["status"] == "in_service" and rows[1].after["status"] == "maintenance"
    assert rows[1].agent.startswith("consortium_admin")
    assert [e.type for e in events] == ["catalog.resource.created", "catalog.resource.updated"]


def test_duplicate_id_is_409(client: TestClient, loaded: dict[str, str]) -> None:
    response = client.post("/api/v1/resources", json=_bed(id="hosp-b501-1"), headers=loaded)
    assert response.status_code == 409
    assert "hosp-b501-1" in response.json()["detail"]


def test_invalid_body_names_the_field(client: TestClient, loaded: dict[str, str]) -> None:
    response = client.post("/api/v1/resources", json=_bed(type_code="bed.hammock"), headers=loaded)
    assert response.status_code == 422
    assert "bed.hammock" in response.text

    response = client.post("/api/v1/resources", json=_bed(ward_id="nowhere"), headers=loaded)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"location": "resource(hosp-b501-3).ward_id", "message": "ward 'nowhere' does not exist"}
    ]


def test_patch_that_breaks_the_whole_is_refused(client: TestClient, loaded: dict[str, str]) -> None:
    response = client.patch(
        "/api/v1/resources/hosp-b501-1", json={"room_id": "hosp-ct1"}, headers=loaded
    )
    assert response.status_code == 422
    assert "not a room" in response.text


def test_unknown_id_is_404(client: TestClient, loaded: dict[str, str]) -> None:
    response = client.get("/api/v1/wards/nope", headers=loaded)
    assert response.status_code == 404
    assert response.json()["detail"] == "ward 'nope' does not exist"


def test_village_clinic_cannot_change_hospital_catalogue_403_audited(
    client: TestClient, loaded: dict[str, str], tokens: Tokens, sessions: sessionmaker[Session]
) -> None:
    clinic_admin = tokens.headers("member_admin", "clinic")
    response = client.patch(
        "/api/v1/resources/hosp-ct1", json={"status": "closed"}, headers=clinic_admin
    )
    assert response.status_code == 403
    assert "belongs to 'hosp'" in response.json()["detail"]
    assert client.get("/api/v1/resources/hosp-ct1", headers=loaded).json()["status"] == "in_service"

    created = client.post("/api/v1/resources", json=_bed(), headers=clinic_admin)
    assert created.status_code == 403

    with sessions() as s:
        denied = s.scalars(
            select(AuditRecord)
            .where(AuditRecord.outcome == AuditOutcome.DENIED)
            .order_by(AuditRecord.id)
        ).all()
    assert [(d.entity_id, d.agent_institution, d.entity_institution) for d in denied] == [
        ("PATCH /api/v1/resources/hosp-ct1", "clinic", "hosp"),
        ("POST /api/v1/resources", "clinic", "hosp"),
    ]


def test_member_admin_changes_own_member(
    client: TestClient, loaded: dict[str, str], tokens: Tokens
) -> None:
    clinic_admin = tokens.headers("member_admin", "clinic")
    response = client.patch(
        "/api/v1/institutions/clinic", json={"phone": "0571-555"}, headers=clinic_admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["phone"] == "0571-555"


def test_clinician_has_no_write_scope(
    client: TestClient, loaded: dict[str, str], tokens: Tokens
) -> None:
    doctor = tokens.headers("clinician", "hosp")
    assert client.get("/api/v1/resources/hosp-ct1", headers=doctor).status_code == 200
    response = client.patch("/api/v1/resources/hosp-ct1", json={"name": "x"}, headers=doctor)
    assert response.status_code == 403
    assert response.json()["missing_scope"] == "user/Catalog.write"


def test_member_admin_cannot_import_other_members(
    client: TestClient, loaded: dict[str, str], tokens: Tokens
) -> None:
    doc = small_catalog()
    doc["institutions"][0]["phone"] = "changed"
    response = client.post(
        "/api/v1/catalog/import", json=doc, headers=tokens.headers("member_admin", "clinic")
    )
    assert response.status_code == 422
    assert any(
        e["location"].startswith("institutions[0] (id=hosp)") for e in response.json()["errors"]
    )


def test_availability_applies_rules_exceptions_and_timezone(
    client: TestClient, loaded: dict[str, str]
) -> None:
    # Wednesday 2 December 2026, Asia/Shanghai: open 08:00-17:00 minus maintenance 12:00-14:00.
    response = client.get(
        "/api/v1/resources/hosp-ct1/availability",
        params={"start": "2026-12-02T00:00:00+08:00", "end": "2026-12-03T00:00:00+08:00"},
        headers=loaded,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["intervals"] == [
        {"start": "2026-12-02T00:00:00+00:00", "end": "2026-12-02T04:00:00+00:00"},
        {"start": "2026-12-02T06:00:00+00:00", "end": "2026-12-02T09:00:00+00:00"},
    ]
    assert body["minutes"] == 7 * 60


def test_availability_needs_a_timezone(client: TestClient, loaded: dict[str, str]) -> None:
    response = client.get(
        "/api/v1/resources/hosp-ct1/availability",
        params={"start": "2026-12-02T00:00:00", "end": "2026-12-03T00:00:00"},
        headers=loaded,
    )
    assert response.status_code == 422


def test_audit_listing_is_scoped_to_member(
    client: TestClient, loaded: dict[str, str], tokens: Tokens
) -> None:
    everything = client.get("/api/v1/audit", params={"limit": 1000}, headers=loaded).json()["items"]
    assert {r["entity_institution"] for r in everything} >= {"hosp", "clinic"}
    clinic_admin = tokens.headers("member_admin", "clinic")
    own = client.get("/api/v1/audit", params={"limit": 1000}, headers=clinic_admin).json()["items"]
    assert own and {r["entity_institution"] for r in own} == {"clinic"}


def test_openapi_lists_catalogue_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/v1/resources", "/api/v1/resources/{id}", "/api/v1/catalog/import", "/health"):
        assert p in paths
