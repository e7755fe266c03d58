"""Headers and limits every answer shares: no caching of patient data, no framing or sniffing,
413 for bodies over the limit, and the bearer scheme declared in the OpenAPI."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from carepool.api.app import create_app
from carepool.core.settings import get_settings
from tests.conftest import Tokens


def test_patient_data_answers_are_not_stored(client: TestClient, tokens: Tokens) -> None:
    admin = tokens.admin()
    for path in ("/api/v1/me", "/fhir/Patient", "/fhir/metadata"):
        response = client.get(path, headers=admin)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    refused = client.get("/api/v1/me")
    assert refused.status_code == 401 and refused.headers["cache-control"] == "no-store"
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "no-store" not in page.headers.get("cache-control", "")


def test_bodies_over_the_limit_are_refused(
    db_url: str, engine: Any, monkeypatch: pytest.MonkeyPatch, tokens: Tokens
) -> None:
    monkeypatch.setenv("CAREPOOL_MAX_REQUEST_BYTES", "1000")
    get_settings.cache_clear()
    try:
        app = create_app(db_url)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    with TestClient(app) as client:
        admin = tokens.admin()
        big = client.post("/api/v1/ingest?source=hosp", content=b"x" * 5000, headers=admin)
        assert big.status_code == 413
        assert big.json()["type"] == "/problems/too-large" and "1000 bytes" in big.json()["detail"]
        fhir = client.post("/fhir/Patient", content=b"{" + b" " * 5000 + b"}", headers=admin)
        assert fhir.status_code == 413 and fhir.json()["resourceType"] == "OperationOutcome"

        def chunks() -> Any:  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b"y" * 500

        streamed = client.post("/api/v1/ingest?source=hosp", content=chunks(), headers=admin)
        assert streamed.status_code == 413
        small = client.post("/api/v1/ingest?source=nowhere", content=b"MSH|", headers=admin)
        assert small.status_code != 413
    app.state.engine.dispose()
    app.state.audit_engine.dispose()


def test_openapi_declares_the_bearer_scheme(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    paths = schema["paths"]
    assert paths["/api/v1/me"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/health"]["get"]
    assert "security" not in paths["/fhir/metadata"]["get"]
