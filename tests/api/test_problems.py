"""Error mapping at the edge: retryable database aborts become 409, others stay 500."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from carepool.api.app import create_app


class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__("boom")
        self.sqlstate = sqlstate


def _app(tmp_path: Any, sqlstate: str) -> TestClient:
    app = create_app(f"sqlite:///{tmp_path / 'x.db'}")

    @app.get("/api/v1/_boom")
    def boom() -> None:
        raise OperationalError("INSERT ...", {}, _Orig(sqlstate))

    @app.put("/fhir/_boom")  # PUT: GET and POST under /fhir belong to the FHIR router
    def fhir_boom() -> None:
        raise OperationalError("INSERT ...", {}, _Orig(sqlstate))

    return TestClient(app, raise_server_exceptions=False)


def test_deadlock_is_a_retryable_conflict(tmp_path: Any) -> None:
    client = _app(tmp_path, "40P01")
    response = client.get("/api/v1/_boom")
    assert response.status_code == 409
    assert response.json()["type"].endswith("concurrent-change")
    outcome = client.put("/fhir/_boom").json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "transient"


def test_other_database_errors_stay_server_errors(tmp_path: Any) -> None:
    client = _app(tmp_path, "08006")
    assert client.get("/api/v1/_boom").status_code == 500
