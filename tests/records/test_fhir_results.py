"""Results across the consortium through FHIR: a clinic doctor sees the hospital's results of
their own (linked) patient, within scope, institution and consent, every read audited."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

from carepool.catalog import service as catalog_service
from carepool.core.auth import Role
from tests.conftest import Tokens
from tests.identity.conftest import Fed, fed

__all__ = ["fed"]

HGB = "718-7"
RBC = "26453-1"


@pytest.fixture()
def linked(client: TestClient, tokens: Tokens, fed: Fed) -> Fed:
    response = client.post("/api/v1/identity/runs", json={}, headers=tokens.admin())
    assert response.status_code == 201, response.text
    assert response.json()["auto_links"] == 1
    return fed


def _bundle(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    Bundle.model_validate(body)
    return body


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])]


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    for link in bundle["link"]:
        if link["relation"] == relation:
            parts = urlsplit(link["url"])
            return f"{parts.path}?{parts.query}"
    return None


def _audit(client: TestClient, tokens: Tokens, **query: str) -> list[dict[str, Any]]:
    response = client.get(
        "/api/v1/audit", params={"limit": "1000", **query}, headers=tokens.admin()
    )
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_clinic_doctor_sees_hospital_results_of_their_linked_patient(
    client: TestClient, tokens: Tokens, linked: Fed
) -> None:
    doctor = tokens.headers(Role.CLINICIAN, "clinic")
    bundle = _bundle(
        client.get(
            f"/fhir/Observation?patient=Patient/{linked.zhang_clinic}&code=http://loinc.org|{HGB}",
            headers=doctor,
        )
    )
    results = _resources(bundle)
    for r in results:
        Observation.model_validate(r)
    by_member = {r["performer"][0]["reference"].removeprefix("Organization/") for r in results}
    assert by_member == {"hosp", "clinic"}
    assert bundle["total"] == 5  # the hospital's one and the clinic's four
    for r in results:
        assert r["code"]["coding"][0] == {
            "system": "http://loinc.org",
            "code": HGB,
            "display": "Hemoglobin [Mass/volume] in Blood",
        }
        assert r["valueQuantity"]["system"] == "http://unitsofmeasure.org"
        assert r["valueQuantity"]["code"] == "g/L"
    hospital = next(r for r in results if r["subject"]["reference"].endswith(linked.zhang_hosp))
    assert hospital["valueQuantity"]["value"] == 135
    clinic_values = sorted(
        r["valueQuantity"]["value"]
        for r in results
        if r["subject"]["reference"].endswith(linked.zhang_clinic)
    )
    assert clinic_values == [120, 121, 122, 131]  # g/dL converted to g/L
    # the clinic's original code and unit are kept next to the standard
    original = next(r for r in results if r["valueQuantity"]["value"] == 131)
    assert {"code": "HB", "display": "血红蛋白"}.items() <= original["code"]["coding"][1].items()
    assert {"url": "urn:carepool:extension:original-value", "valueString": "13.1 g/dL"} in original[
        "extension"
    ]
    # newest first
    dates = [r["effectiveDateTime"] for r in results]
    assert dates == sorted(dates, reverse=True)

    # Each member's audit trail shows the read of its patient's data.
    rows = _audit(client, tokens, entity_type="Observation")
    assert {r["entity_institution"] for r in rows} == {"hosp", "clinic"}
    assert all(r["agent_institution"] == "clinic" and r["action"] == "R" for r in rows)
    assert all(r["entity_id"] == linked.zhang_clinic for r in rows)


def test_method_specific_loinc_code_finds_the_folded_result(
    client: TestClient, tokens: Tokens, linked: Fed
) -> None:
    doctor = tokens.headers(Role.CLINICIAN, "clinic")
    url = f"/fhir/Observation?patient={linked.zhang_clinic}&code=http://loinc.org|"
    by_method = _resources(_bundle(client.get(url + "789-8", headers=doctor)))
    general = _resources(_bundle(client.get(url + RBC, headers=doctor)))
    assert [r["id"] for r in by_method] == [r["id"] for r in general]
    (rbc,) = general
    codes = [(c.get("system"), c.get("code")) for c in rbc["code"]["coding"]]
    assert codes[0] == ("http://loinc.org", RBC)
    assert ("LN", "789-8") in codes  # what the hospital sent
    assert rbc["valueQuantity"] == {
        "value": 4.5,
        "unit": "10*12/L",
        "system": "http://unitsofmeasure.org",
        "code": "10*12/L",
    }
    # the local code as sent finds it too
    local = _resources(
        _bundle(client.get(url.replace("http://loinc.org|", "L|") + "HGB", headers=doctor))
    )
    assert [r["valueQuantity"]["value"] for r in local] == [135]


def test_without_the_scope_403_and_an_audit_record(
    client: TestClient, tokens: Tokens, linked: Fed
) -> None:
    viewer = tokens.headers(Role.VIEWER, "clinic")
    response = client.get(f"/fhir/Observation?patient={linked.zhang_clinic}", headers=viewer)
    assert response.status_code == 403
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "user/Observation.read" in outcome["issue"][0]["diagnostics"]
    assert client.get(f"/fhir/Patient/{linked.zhang_clinic}", headers=viewer).status_code == 403
    denied = _audit(client, tokens, outcome="denied")
    assert len(denied) == 2
    assert all(r["agent_institution"] == "clinic" for r in denied)
    assert any("Observation.read" in r["detail"] for r in denied)


def test_a_patient_of_another_member_not_linked_to_ours_is_refused(
    client: TestClient, tokens: Tokens, linked: Fed
) -> None:
    doctor = tokens.headers(Role.CLINICIAN, "clinic")
    # The other 张三 is only the hospital's patient.
    for url in (
        f"/fhir/Patient/{linked.other_zhang}",
        f"/fhir/Observation?patient={linked.other_zhang}",
        f"/fhir/DiagnosticReport?patient={linked.other_zhang}",
        f"/fhir/Patient/{linked.other_zhang}/$everything",
    ):
        response = client.get(url, headers=doctor)
        assert response.status_code == 403, url
        assert response.json()["resourceType"] == "OperationOutcome"
    refused = _audit(client, tokens, outcome="denied")
    assert len(refused) == 4
    assert {r["entity_institution"] for r in refused} == {"hosp"}
    # Searches without a patient see only what the member may see.
    everything = _bundle(client.get("/fhir/Observation?_count=500", headers=doctor))
    patients = {r["subject"]["reference"] for r in _resources(everything)}
    assert patients == {f"Patient/{linked.zhang_clinic}", f"Patient/{linked.zhang_hosp}"}
    # The hospital's doctor sees the clinic's record of their patient the same way.
    hosp_doctor = tokens.headers(Role.CLINICIAN, "hosp")
    seen = _bundle(
        client.get(f"/fhir/Observation?patient={linked.zhang_hosp}", headers=hosp_doctor)
    )
    assert f"Patient/{linked.zhang_clinic}" in {r["subject"]["reference"] for r in _resources(seen)}


def test_before_linking_the_hospital_record_is_not_the_clinics_patient(
    client: TestClient, tokens: Tokens, fed: Fed
) -> None:
    doctor = tokens.headers(Role.CLINICIAN, "clinic")
    assert client.get(f"/fhir/Patient/{fed.zhang_hosp}", headers=doctor).status_code == 403
    own = _bundle(client.get(f"/fhir/Observation?patient={fed.zhang_clinic}", headers=doctor))
    assert {r["performer"][0]["reference"] for r in _resources(own)} == {"Organization/clinic"}


def test_consent_denied_means_no_cross_member_results(
    client: TestClient, tokens: Tokens, linked: Fed
) -> None:
    admin = tokens.admin()
    person = client.get(
        f"/api/v1/identity/patients/{linked.zhang_clinic}/person", headers=admin
    ).json()["person_id"]
    assert client.get(f"/api/v1/identity/persons/{person}/consent", headers=admin).json() == {
        "person_id": person,
        "sharing": "allow",
        "default": True,
        "institution_id": None,
        "recorded_by": None,
        "recorded_at": None,
        "note": "",
    }
    denied = client.put(
        f"/api/v1/identity/persons/{person}/consent",
        json={"sharing": "deny", "note": "signed refusal at the county hospital"},
        headers=admin,
    )
    assert denied.status_code == 200, denied.text
    assert denied.json()["sharing"] == "deny"

    doctor = tokens.headers(Role.CLINICIAN, "clinic")
    own = _bundle(client.get(f"/fhir/Observation?patient={linked.zhang_clinic}", headers=doctor))
    assert own["total"] == 4
    assert {r["performer"][0]["reference"] for r in _resources(own)} == {"Organization/clinic"}
    assert client.get(f"/fhir/Patient/{linked.zhang_hosp}", headers=doctor).status_code == 403
    patient = client.get(f"/fhir/Patient/{linked.zhang_clinic}", headers=doctor).json()
    assert "link" not in patient
    everything = _bundle(
        client.get(f"/fhir/Patient/{linked.zhang_clinic}/$everything", headers=doctor)
    )
    assert {r.get("performer", [{}])[0].get("reference") for r in _resources(everything)} <= {
        "Organization/clinic",
        None,
    }
    # Searches without a patient leave the person's other records out as well.
    listed = _bundle(client.get("/fhir/Observation?_count=500", headers=doctor))
    assert f"Patient/{linked.zhang_hosp}" not in {
        r["subject"]["reference"] for r in _resources(listed)
    }
    # The consortium administrator still sees both; the change is audited.
    assert (
        _bundle(client.get(f"/fhir/Observation?patient={linked.zhang_clinic}", headers=admin))[
            "total"
        ]
        == 8
    )
    change = next(r for r in _audit(client, tokens, entity_type="consent") if r["action"] != "R")
    assert change["before"]["sharing"] == "allow" and change["after"]["sharing"] == "deny"

    client.put(
        f"/api/v1/identity/persons/{person}/consent", json={"sharing": "allow"}, headers=admin
    )
    again = _bundle(client.get(f"/fhir/Observation?patient={linked.zhang_clinic}", headers=doctor))
    assert again["total"] == 8


def test_patient_search_by_identifier_and_person(
    client: TestClient, tokens: Tokens, linked: Fed
) -> None:
    doctor = tokens.headers(Role.CLINICIAN, "clinic")
    found = _bundle(client.get("/fhir/Patient?identifier=HOSP|H001", headers=doctor))
    (patient,) = _resources(found)
    Patient.model_validate(patient)
    assert patient["id"] == linked.zhang_hosp
    assert patient["name"][0]["text"] == "张三"
    assert patient["managingOrganization"] == {"reference": "Organization/hosp"}
    assert patient["link"] == [
        {"other": {"reference": f"Patient/{linked.zhang_clinic}"}, "type": "seealso"}
    ]
    person = next(i for i in patient["identifier"] if i["system"] == "urn:carepool:person")
    both = _bundle(
        client.get(
            f"/fhir/Patient?identifier=urn:carepool:person|{person['value']}", headers=doctor
        )
    )
    assert {r["id"] for r in _resources(both)} == {linked.zhang_hosp, linked.zhang_clinic}
    nobody = _bundle(
        client.get("/fhir/Patient?identifier=urn:carepool:person|psn-x", headers=doctor)
    )
    assert nobody["total"] == 0
    # The other 张三 is not the clinic's patient: not found for the clinic's doctor.
    other = _bundle(client.get("/fhir/Patient?identifier=HOSP|H002", headers=doctor))
    assert other["total"] == 0
    by_name = _bundle(client.get("/fhir/Patient?name=zhang", headers=doctor))
    assert {r["id"] for r in _resources(by_name)} == {linked.zhang_hosp, linked.zhang_clinic}
    by_han = _bundle(
        client.get("/fhir/Patient?name=张&birthdate=1990-03-07", headers=tokens.admin())
    )
    assert {r["id"] for r in _resources(by_han)} == {linked.zhang_hosp}
    read = client.get(f"/fhir/Patient/{linked.zhang_hosp}", headers=doctor)
    assert read.status_code == 200
    Patient.model_validate(read.json())
    rows = _audit(client, tokens, entity_type="Patient")
    assert any(r["entity_id"] == linked.zhang_hosp and r["detail"].startswith("read") for r in rows)


def test_diagnostic_reports_across_members(client: TestClient, tokens: Tokens, linked: Fed) -> None:
    doctor = tokens.headers(Role.CLINICIAN, "clinic")
    bundle = _bundle(
        client.get(f"/fhir/DiagnosticReport?patient={linked.zhang_clinic}", headers=doctor)
    )
    reports = _resources(bundle)
    for r in reports:
        DiagnosticReport.model_validate(r)
    assert bundle["total"] == 5  # one CBC at the hospital, four at the clinic
    hospital = next(r for r in reports if r["performer"] == [{"reference": "Organization/hosp"}])
    assert len(hospital["result"]) == 4
    first = hospital["result"][0]["reference"]
    read = client.get(f"/fhir/{first}", headers=doctor)
    assert read.status_code == 200
    assert read.json()["derivedFrom"] == [{"reference": f"DiagnosticReport/{hospital['id']}"}]


def test_everything_pages_through_the_whole_person(
    client: TestClient, tokens: Tokens, linked: Fed
) -> None:
    doctor = tokens.headers(Role.CLINICIAN, "clinic")
    first = _bundle(
        client.get(f"/fhir/Patient/{linked.zhang_clinic}/$everything?_count=4", headers=doctor)
    )
    # 2 patient records, 5 reports, 4 + 4 observations
    assert first["total"] == 15
    seen: list[dict[str, Any]] = []
    page: dict[str, Any] | None = first
    pages = 0
    while page is not None:
        pages += 1
        seen += _resources(page)
        for entry in page.get("entry", []):
            assert entry["fullUrl"].endswith(
                f"/{entry['resource']['resourceType']}/{entry['resource']['id']}"
            )
        nxt = _link(page, "next")
        assert nxt is None or ("/Patient/" in nxt and "$everything" in nxt)
        page = _bundle(client.get(nxt, headers=doctor)) if nxt else None
    assert pages == 4
    assert len(seen) == 15 == len({(r["resourceType"], r["id"]) for r in seen})
    kinds = [r["resourceType"] for r in seen]
    assert kinds[:2] == ["Patient", "Patient"]
    assert kinds.count("DiagnosticReport") == 5 and kinds.count("Observation") == 8
    assert _link(first, "last") is not None and "_offset=12" in (_link(first, "last") or "")
    bad = client.get(f"/fhir/Patient/{linked.zhang_clinic}/$everything?code=x", headers=doctor)
    assert bad.status_code == 400
    unknown = client.get(f"/fhir/Patient/{linked.zhang_clinic}/$summary", headers=doctor)
    assert unknown.status_code == 404
    missing = client.get("/fhir/Patient/pat-nope/$everything", headers=doctor)
    assert missing.status_code == 404
    audited = [
        r for r in _audit(client, tokens, entity_type="Patient") if "$everything" in r["detail"]
    ]
    assert {r["entity_institution"] for r in audited} == {"hosp", "clinic"}


def test_observation_search_pages_with_links(
    client: TestClient, tokens: Tokens, linked: Fed
) -> None:
    doctor = tokens.headers(Role.CLINICIAN, "clinic")
    url = f"/fhir/Observation?patient={linked.zhang_clinic}&date=ge2026-01-01&_count=3"
    first = _bundle(client.get(url, headers=doctor))
    assert first["total"] == 8
    assert _link(first, "previous") is None
    nxt = _link(first, "next")
    assert nxt is not None and "date=ge2026-01-01" in nxt and "_offset=3" in nxt
    second = _bundle(client.get(nxt, headers=doctor))
    third = _bundle(client.get(_link(second, "next") or "", headers=doctor))
    assert _link(third, "next") is None
    ids = [r["id"] for b in (first, second, third) for r in _resources(b)]
    assert len(ids) == 8 == len(set(ids))
    march = _bundle(
        client.get(f"/fhir/Observation?patient={linked.zhang_clinic}&date=2026-03", headers=doctor)
    )
    assert march["total"] == 4  # the hospital's CBC of 1 March
    assert (
        client.get(
            f"/fhir/Observation?patient={linked.zhang_clinic}&date=2026-13-01", headers=doctor
        ).status_code
        == 400
    )


def test_capability_statement_lists_the_result_types(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    types = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"Patient", "Observation", "DiagnosticReport"} <= set(types)
    assert types["Patient"]["operation"][0]["name"] == "everything"
    assert {p["name"] for p in types["Observation"]["searchParam"]} >= {"patient", "code", "date"}


def _entries(client: TestClient, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every resource of a search, following `next` links."""
    out: list[dict[str, Any]] = []
    page = _bundle(client.get(url, headers=headers))
    while True:
        out += _resources(page)
        nxt = _link(page, "next")
        if nxt is None:
            return out
        page = _bundle(client.get(nxt, headers=headers))


def test_result_search_pages_totals_and_reads_agree(
    client: TestClient, tokens: Tokens, linked: Fed
) -> None:
    """A person's search answers its total with each page (also past the end and for
    `_count=0`), pages through the same results in the same order, and serves each result as
    its read does."""
    doctor = tokens.headers(Role.CLINICIAN, "clinic")
    base = f"/fhir/Observation?patient={linked.zhang_clinic}"
    whole = _bundle(client.get(base, headers=doctor))
    assert whole["total"] == 8
    assert len(_resources(whole)) == 8

    first = _bundle(client.get(f"{base}&_count=3", headers=doctor))
    assert first["total"] == 8
    assert len(_resources(first)) == 3
    assert "_offset=6" in (_link(first, "last") or "")
    paged = _entries(client, f"{base}&_count=3", doctor)
    assert [r["id"] for r in paged] == [r["id"] for r in _resources(whole)]
    last = _bundle(client.get(f"{base}&_count=3&_offset=6", headers=doctor))
    assert len(_resources(last)) == 2 and _link(last, "next") is None

    beyond = _bundle(client.get(f"{base}&_count=3&_offset=20", headers=doctor))
    assert beyond["total"] == 8 and "entry" not in beyond
    counted = _bundle(client.get(f"{base}&_count=0", headers=doctor))
    assert counted["total"] == 8 and "entry" not in counted
    nothing = _bundle(client.get(f"{base}&code=http://loinc.org|1742-6", headers=doctor))
    assert nothing["total"] == 0 and "entry" not in nothing

    # The search's rows and the read's record give the same resource.
    for searched in _resources(whole):
        Observation.model_validate(searched)
        read = client.get(f"/fhir/Observation/{searched['id']}", headers=doctor)
        assert read.status_code == 200
        assert read.json() == searched
    reports = _bundle(
        client.get(f"/fhir/DiagnosticReport?patient={linked.zhang_clinic}", headers=doctor)
    )
    for searched in _resources(reports):
        read = client.get(f"/fhir/DiagnosticReport/{searched['id']}", headers=doctor)
        assert read.json() == searched


def test_result_search_dates_are_consortium_days(
    client: TestClient, tokens: Tokens, linked: Fed
) -> None:
    """`date=geYYYY-MM-DD` starts at midnight in the consortium's time zone (read together
    with the access check)."""
    with client.app.state.sessions() as session:  # type: ignore[attr-defined]
        tz = ZoneInfo(catalog_service.consortium_timezone(session))
    doctor = tokens.headers(Role.CLINICIAN, "clinic")
    base = f"/fhir/Observation?patient={linked.zhang_clinic}"
    times = sorted(
        datetime.fromisoformat(r["effectiveDateTime"])
        for r in _resources(_bundle(client.get(base, headers=doctor)))
    )
    day = times[len(times) // 2].astimezone(tz).date()
    expected = sum(1 for t in times if t.astimezone(tz).date() >= day)
    since = _bundle(client.get(f"{base}&date=ge{day.isoformat()}", headers=doctor))
    assert since["total"] == expected
    assert 0 < expected < len(times)
    before = _bundle(client.get(f"{base}&date=lt{day.isoformat()}", headers=doctor))
    assert before["total"] == len(times) - expected
