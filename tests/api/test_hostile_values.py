"""Hostile request values get a 4xx that says what is wrong, never a 500, on both databases:
empty filters, offsets and ids beyond 64 bits, dates at the end of time, NUL bytes, text too long
for its column, FHIR tokens in the wrong case or system (issue 19, point 5)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from carepool.catalog import actions as catalog_actions
from carepool.core.auth import Principal
from tests.conftest import Tokens
from tests.factories import small_catalog

HOSTILE_GETS = [
    "/api/v1/resources?kind=",
    "/api/v1/resources?kind=spaceship",
    "/api/v1/resources?offset=99999999999999999999",
    "/api/v1/resources?offset=9223372036854775808",
    "/api/v1/resources/%00",
    "/api/v1/institutions?kind=",
    "/api/v1/services?category=",
    "/api/v1/audit?offset=9223372036854775808",
    "/api/v1/slots?service=ct-head&start=9999-12-31T23:59:59Z",
    "/fhir/Patient?gender=MALE",
    "/fhir/Patient?gender=bogus",
    "/fhir/Patient?gender=urn:other|male",
    "/fhir/Patient?_offset=9223372036854775808",
    "/fhir/Patient?birthdate=9999-12-31",
    "/fhir/Patient?name=%00",
    "/fhir/Observation?code=%00",
    "/fhir/Patient/%00",
    "/api/v1/ingest/dead-letters/99999999999",
    "/api/v1/ingest/dead-letters/9223372036854775808",
    "/api/v1/quality/runs/%00",
    "/api/v1/bed-board?institution=%00",
]


@pytest.fixture()
def admin(client: TestClient, tokens: Tokens, app: Any) -> dict[str, str]:
    with app.state.sessions() as session, session.begin():
        catalog_actions.do_import_catalog(
            session, actor=Principal.system_actor("test"), raw=small_catalog()
        )
    return tokens.admin()


def test_no_hostile_value_is_a_server_error(client: TestClient, admin: dict[str, str]) -> None:
    failures = []
    for path in HOSTILE_GETS:
        response = client.get(path, headers=admin)
        if response.status_code >= 500 or response.status_code < 400:
            failures.append((path, response.status_code, response.text[:120]))
    for body in ({"name": "x\u0000y"}, {"name": "x" * 100_000}):
        response = client.patch("/api/v1/resources/hosp-ct1", json=body, headers=admin)
        if response.status_code >= 500 or response.status_code < 400:
            failures.append(("PATCH", response.status_code, response.text[:120]))
    assert failures == []


def test_refusals_say_what_is_wrong(client: TestClient, admin: dict[str, str]) -> None:
    empty = client.get("/api/v1/resources?kind=", headers=admin)
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["location"] == "query:kind"
    wrong = client.get("/api/v1/resources?kind=spaceship", headers=admin).json()
    assert "'spaceship' is not one of" in wrong["errors"][0]["message"]
    gender = client.get("/fhir/Patient?gender=MALE", headers=admin)
    assert gender.status_code == 400
    assert gender.json()["resourceType"] == "OperationOutcome"
    assert "'MALE' is not one of male, female" in gender.text
    nul = client.get("/fhir/Patient?name=%00", headers=admin)
    assert nul.status_code == 400 and nul.json()["resourceType"] == "OperationOutcome"


def test_gender_tokens_with_their_system_work(client: TestClient, admin: dict[str, str]) -> None:
    system = "http://hl7.org/fhir/administrative-gender"
    for query in ("male", f"{system}|male", "male,female", "|male"):
        response = client.get("/fhir/Patient", params={"gender": query}, headers=admin)
        assert response.status_code == 200, (query, response.text)
