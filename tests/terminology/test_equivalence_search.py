"""A FHIR search for one LOINC code finds its analyte's equivalence group; `code:exact` finds
that code only; the CapabilityStatement says so."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from carepool.core.auth import Role
from tests.conftest import Tokens
from tests.ingest import feeds
from tests.ingest.conftest import Ingest
from tests.terminology.feeds import HL7_LOINC


def _codes(client: TestClient, headers: dict[str, str], query: str) -> list[str]:
    """The standard code of each result found (the first coding is the standard one)."""
    response = client.get(f"/fhir/Observation?{query}&_count=100", headers=headers)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json().get("entry", [])
    return sorted(e["resource"]["code"]["coding"][0]["code"] for e in entries)


def test_a_code_search_finds_the_equivalent_codes_and_exact_does_not(
    client: TestClient, tokens: Tokens, ingest: Ingest
) -> None:
    ingest(feeds.hl7_file(HL7_LOINC), "lis.hl7", source="hosp")
    doctor = tokens.headers(Role.CLINICIAN, "hosp")
    glucose = _codes(client, doctor, "code=http://loinc.org|2345-7")
    assert glucose == ["14749-6", "15074-8"]  # serum and whole blood, each under its own code
    assert _codes(client, doctor, "code=http://loinc.org|15074-8") == glucose
    exact = _codes(client, doctor, "code:exact=http://loinc.org|2339-0")
    assert exact == ["15074-8"]  # sent as 2339-0
    assert _codes(client, doctor, "code:exact=http://loinc.org|14749-6") == ["14749-6"]
    potassium = _codes(client, doctor, "code=http://loinc.org|2823-3")
    assert potassium == ["6298-4"]
    bad = client.get("/fhir/Observation?code:below=http://loinc.org|2345-7", headers=doctor)
    assert bad.status_code == 400


def test_the_capability_statement_documents_the_expansion(client: TestClient) -> None:
    cap = client.get("/fhir/metadata").json()
    (obs,) = [r for r in cap["rest"][0]["resource"] if r["type"] == "Observation"]
    (code,) = [p for p in obs["searchParam"] if p["name"] == "code"]
    assert "equivalence group" in code["documentation"]
    assert "code:exact" in code["documentation"]
