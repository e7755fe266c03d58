"""FHIR R4 read and search of the catalogue over HTTP, every answer validated with R4B models."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from sqlalchemy.orm import Session, sessionmaker

from carepool.api.fhir import REGISTRY
from carepool.core import auth
from tests.factories import small_catalog

CATALOG_TYPES = {
    "Organization",
    "Location",
    "Device",
    "PractitionerRole",
    "HealthcareService",
    "Schedule",
}
LOCATION_PHYSICAL = {"room": "ro", "theatre": "ro", "bed": "bd", "lab_section": "area"}
DEVICE_KINDS = {"modality", "analyser"}
STAFF_LICENCE = "urn:carepool:staff-licence"


def catalogue() -> dict[str, Any]:
    """The small catalogue plus a theatre suite, a closed analyser, a bed under maintenance
    without a room, a lab section on a campus, a surgeon, and services with several offerers."""
    doc = small_catalog()
    doc["departments"].append(
        {
            "id": "hosp-surg",
            "institution_id": "hosp",
            "campus_id": "hosp-main",
            "code": "04.01",
            "local_name": "",
            "local_name_zh": "普外科",
        }
    )
    doc["wards"].append(
        {
            "id": "hosp-ts",
            "institution_id": "hosp",
            "department_id": "hosp-surg",
            "kind": "theatre_suite",
            "name": "Theatre suite",
            "name_zh": "手术部",
            "building": "B",
        }
    )
    doc["resources"] += [
        {
            "id": "hosp-or1",
            "kind": "theatre",
            "type_code": "theatre.general",
            "name": "OR 1",
            "name_zh": "一号手术间",
            "institution_id": "hosp",
            "campus_id": "hosp-main",
            "department_id": "hosp-surg",
            "ward_id": "hosp-ts",
        },
        {
            "id": "hosp-b502-1",
            "kind": "bed",
            "type_code": "bed.general",
            "name": "Bed 502-1",
            "institution_id": "hosp",
            "campus_id": "hosp-main",
            "department_id": "hosp-cardio",
            "ward_id": "hosp-cardio-w1",
            "gender_policy": "mixed",
            "status": "maintenance",
        },
        {
            "id": "hosp-lab-chem",
            "kind": "lab_section",
            "type_code": "lab.chemistry",
            "name": "Chemistry",
            "institution_id": "hosp",
            "campus_id": "hosp-main",
        },
        {
            "id": "hosp-an1",
            "kind": "analyser",
            "type_code": "analyser.chemistry",
            "name": "Chemistry analyser",
            "institution_id": "hosp",
            "campus_id": "hosp-main",
            "status": "closed",
            "manufacturer": "Mindray",
            "model": "BS-2000M",
        },
        {
            "id": "hosp-surgeon1",
            "kind": "staff",
            "type_code": "staff.surgeon",
            "name": "Zhao Lei",
            "name_zh": "赵雷",
            "institution_id": "hosp",
            "department_id": "hosp-surg",
            "ward_id": "hosp-ts",
            "role": "surgeon",
            "skill_level": 3,
            "specialties": ["04.01"],
            "license_no": "L-123",
        },
        {
            "id": "clinic-gp1",
            "kind": "staff",
            "type_code": "staff.physician",
            "name": "Sun Mei",
            "institution_id": "clinic",
            "department_id": "clinic-gp",
            "role": "physician",
            "skill_level": 1,
            "status": "closed",
        },
    ]
    doc["calendar_rules"] += [
        {
            "id": "hosp-or1-2030",
            "resource_id": "hosp-or1",
            "days": [0, 1, 2, 3, 4],
            "start": "08:00",
            "end": "18:00",
            "valid_from": "2030-01-01",
        },
        {
            "id": "hosp-surgeon1-days",
            "resource_id": "hosp-surgeon1",
            "days": [1, 3],
            "start": "08:00",
            "end": "16:00",
        },
        {
            "id": "clinic-gp1-days",
            "resource_id": "clinic-gp1",
            "days": [0, 2, 4],
            "start": "08:30",
            "end": "11:30",
        },
    ]
    doc["services"] += [
        {
            "id": "appendectomy",
            "name": "Laparoscopic appendectomy",
            "name_zh": "腹腔镜阑尾切除术",
            "category": "surgery",
            "department_code": "04.01",
            "duration_min": 90,
            "price": "4200.00",
            "requirements": [
                {"kind": "theatre", "count": 1},
                {"kind": "staff", "role": "surgeon", "min_skill": 2, "specialty": "04.01"},
                {"kind": "staff", "role": "nurse"},
            ],
            "offered_by": ["hosp"],
            "codes": {"loinc": "12345-6"},
        },
        {
            "id": "consult-gp",
            "name": "General practice consultation",
            "category": "consultation",
            "department_code": "02",
            "duration_min": 10,
            "price": "10.00",
            "requirements": [{"kind": "staff", "role": "physician"}],
            "offered_by": ["hosp", "clinic"],
            "orderable_by_kinds": ["village_clinic"],
        },
    ]
    return doc


@pytest.fixture()
def doc() -> dict[str, Any]:
    return catalogue()


@pytest.fixture()
def headers(client, tokens, doc) -> dict[str, str]:
    """A clinician of the county hospital, after the catalogue is loaded."""
    loaded = client.post("/api/v1/catalog/import", json=doc, headers=tokens.admin())
    assert loaded.status_code == 200, loaded.text
    return tokens.headers("clinician", "hosp")


def model_of(resource_type: str) -> Any:
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    return getattr(module, resource_type)


def search(client, headers, query: str) -> dict[str, Any]:
    """A search that must succeed; the Bundle and every resource in it validated."""
    response = client.get(f"/fhir/{query}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    Bundle.model_validate(body)
    assert body["type"] == "searchset"
    for entry in body.get("entry", []):
        model_of(entry["resource"]["resourceType"]).model_validate(entry["resource"])
        assert entry["fullUrl"].endswith(
            f"/{entry['resource']['resourceType']}/{entry['resource']['id']}"
        )
    return body


def ids(bundle: dict[str, Any]) -> set[str]:
    found = [e["resource"]["id"] for e in bundle.get("entry", [])]
    assert len(found) == len(set(found)), f"duplicates in {found}"
    return set(found)


def outcome(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    OperationOutcome.model_validate(body)
    return body


def codes(concepts: list[dict[str, Any]] | dict[str, Any], system: str | None = None) -> set[str]:
    if isinstance(concepts, dict):
        concepts = [concepts]
    return {
        c["code"]
        for concept in concepts
        for c in concept.get("coding", [])
        if system is None or c["system"] == system
    }


def expected_ids(doc: dict[str, Any], resource_type: str) -> set[str]:
    """Which catalogue rows should surface as `resource_type`, derived from the document."""
    resources = doc["resources"]
    if resource_type == "Organization":
        return {i["id"] for i in doc["institutions"]} | {d["id"] for d in doc["departments"]}
    if resource_type == "Location":
        return (
            {c["id"] for c in doc["campuses"]}
            | {w["id"] for w in doc["wards"]}
            | {r["id"] for r in resources if r["kind"] in LOCATION_PHYSICAL}
        )
    if resource_type == "Device":
        return {r["id"] for r in resources if r["kind"] in DEVICE_KINDS}
    if resource_type == "PractitionerRole":
        return {r["id"] for r in resources if r["kind"] == "staff"}
    if resource_type == "HealthcareService":
        return {s["id"] for s in doc["services"]}
    if resource_type == "Schedule":
        return {r["resource_id"] for r in doc["calendar_rules"]}
    raise AssertionError(resource_type)


# --- read and search of every type -------------------------------------------------------


@pytest.mark.parametrize("resource_type", sorted(CATALOG_TYPES))
def test_search_lists_every_row_and_read_returns_the_same_resource(
    client, headers, doc, resource_type: str
) -> None:
    bundle = search(client, headers, f"{resource_type}?_count=500")
    assert ids(bundle) == expected_ids(doc, resource_type)
    assert bundle["total"] == len(expected_ids(doc, resource_type))
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert resource["resourceType"] == resource_type
        read = client.get(f"/fhir/{resource_type}/{resource['id']}", headers=headers)
        assert read.status_code == 200, read.text
        assert read.headers["content-type"].startswith("application/fhir+json")
        model_of(resource_type).model_validate(read.json())
        assert read.json() == resource


def test_institution_and_department_organizations(client, headers) -> None:
    hosp = client.get("/fhir/Organization/hosp", headers=headers).json()
    assert codes(hosp["type"], "urn:carepool:institution-kind") == {"general_hospital"}
    assert codes(hosp["type"], "urn:carepool:institution-grade") == {"3A"}
    assert "partOf" not in hosp
    assert hosp["alias"] == ["县人民医院"]
    geo = hosp["address"][0]["extension"][0]
    assert {e["url"]: e["valueDecimal"] for e in geo["extension"]} == {
        "latitude": 30.1,
        "longitude": 120.2,
    }
    clinic = client.get("/fhir/Organization/clinic", headers=headers).json()
    assert clinic["partOf"]["reference"] == "Organization/hosp"
    surgery = client.get("/fhir/Organization/hosp-surg", headers=headers).json()
    assert surgery["partOf"]["reference"] == "Organization/hosp"
    assert codes(surgery["type"], "urn:carepool:department-code") == {"04.01"}
    assert codes(surgery["type"], "http://terminology.hl7.org/CodeSystem/organization-type") == {
        "dept"
    }
    assert surgery["name"] == "General surgery"  # no local name: the standard name


def test_organization_searches(client, headers, doc) -> None:
    below_hosp = {"clinic"} | {d["id"] for d in doc["departments"] if d["institution_id"] == "hosp"}
    assert ids(search(client, headers, "Organization?partof=hosp")) == below_hosp
    assert ids(search(client, headers, "Organization?partof=Organization/hosp")) == below_hosp
    assert ids(search(client, headers, "Organization?partof=Location/hosp")) == set()
    assert ids(search(client, headers, "Organization?type=dept")) == {
        d["id"] for d in doc["departments"]
    }
    assert ids(search(client, headers, "Organization?type=prov")) == {"hosp", "clinic"}
    assert ids(
        search(client, headers, "Organization?type=urn:carepool:institution-kind|village_clinic")
    ) == {"clinic"}
    assert (
        ids(
            search(
                client, headers, "Organization?type=urn:carepool:institution-grade|village_clinic"
            )
        )
        == set()
    )
    assert ids(search(client, headers, "Organization?type=no-such-kind")) == set()
    assert ids(search(client, headers, "Organization?type=urn:carepool:department-code|03.04")) == {
        "hosp-cardio"
    }
    # by name: local names, Chinese names, and the standard name of unnamed departments
    assert ids(search(client, headers, "Organization?name=CARDIO")) == {"hosp-cardio"}
    assert ids(search(client, headers, "Organization?name=心内")) == {"hosp-cardio"}
    assert ids(search(client, headers, "Organization?name=general surgery")) == {"hosp-surg"}
    assert ids(search(client, headers, "Organization?name:exact=Cardio")) == {"hosp-cardio"}
    assert ids(search(client, headers, "Organization?name:exact=cardio")) == set()
    assert ids(
        search(client, headers, "Organization?identifier=urn:carepool:id:institution|hosp")
    ) == {"hosp"}
    assert (
        ids(search(client, headers, "Organization?identifier=urn:carepool:id:department|hosp"))
        == set()
    )
    assert ids(search(client, headers, "Organization?_id=hosp,clinic-gp,nope")) == {
        "hosp",
        "clinic-gp",
    }


# --- Location ----------------------------------------------------------------------------


def test_location_part_of_chains_bed_room_ward_campus(client, headers) -> None:
    chain = []
    current: str | None = "Location/hosp-b501-1"
    while current:
        response = client.get(f"/fhir/{current}", headers=headers)
        assert response.status_code == 200, response.text
        resource = response.json()
        chain.append((resource["id"], codes(resource["physicalType"]).pop()))
        current = resource.get("partOf", {}).get("reference")
    assert chain == [
        ("hosp-b501-1", "bd"),
        ("hosp-r501", "ro"),
        ("hosp-cardio-w1", "wa"),
        ("hosp-main", "si"),
    ]
    roomless = client.get("/fhir/Location/hosp-b502-1", headers=headers).json()
    assert roomless["partOf"]["reference"] == "Location/hosp-cardio-w1"
    lab = client.get("/fhir/Location/hosp-lab-chem", headers=headers).json()
    assert lab["partOf"]["reference"] == "Location/hosp-main"
    assert codes(lab["physicalType"]) == {"area"}


@pytest.mark.parametrize("physical", ["si", "wa", "ro", "bd", "area"])
def test_location_physical_type_filter(client, headers, doc, physical: str) -> None:
    expected = {r["id"] for r in doc["resources"] if LOCATION_PHYSICAL.get(r["kind"]) == physical}
    if physical == "si":
        expected = {c["id"] for c in doc["campuses"]}
    if physical == "wa":
        expected = {w["id"] for w in doc["wards"]}
    bundle = search(client, headers, f"Location?physical-type={physical}")
    assert expected and ids(bundle) == expected
    for entry in bundle["entry"]:
        assert codes(entry["resource"]["physicalType"]) == {physical}


def test_location_searches_by_part_of_organization_type_and_status(client, headers, doc) -> None:
    assert ids(search(client, headers, "Location?partof=hosp-r501")) == {
        "hosp-b501-1",
        "hosp-b501-2",
    }
    assert ids(search(client, headers, "Location?partof=hosp-cardio-w1")) == {
        "hosp-r501",
        "hosp-b502-1",
    }
    assert ids(search(client, headers, "Location?partof=Location/hosp-main")) == {
        "hosp-cardio-w1",
        "hosp-ts",
        "hosp-lab-chem",
    }
    # organization: the managing department, or the institution for everything in it
    assert ids(search(client, headers, "Location?organization=hosp-surg")) == {
        "hosp-ts",
        "hosp-or1",
    }
    hosp_locations = expected_ids(doc, "Location") - {"clinic-site"}
    assert ids(search(client, headers, "Location?organization=hosp")) == hosp_locations
    # type: resource type codes, ward kinds, v3 codes
    assert ids(search(client, headers, "Location?type=theatre.general")) == {"hosp-or1"}
    assert ids(search(client, headers, "Location?type=urn:carepool:ward-kind|theatre_suite")) == {
        "hosp-ts"
    }
    assert ids(
        search(
            client, headers, "Location?type=http://terminology.hl7.org/CodeSystem/v3-RoleCode|HU"
        )
    ) == {"hosp-cardio-w1"}
    # beds: operational status from the catalogue status; Location.status alongside
    assert ids(search(client, headers, "Location?operational-status=U")) == {
        "hosp-b501-1",
        "hosp-b501-2",
    }
    assert ids(search(client, headers, "Location?operational-status=C")) == {"hosp-b502-1"}
    maintenance = client.get("/fhir/Location/hosp-b502-1", headers=headers).json()
    assert maintenance["status"] == "suspended" and maintenance["operationalStatus"]["code"] == "C"
    assert ids(search(client, headers, "Location?status=suspended")) == {"hosp-b502-1"}
    active = search(client, headers, "Location?status=active&_count=500")
    assert ids(active) == expected_ids(doc, "Location") - {"hosp-b502-1"}


def test_location_or_values_and_and_parameters(client, headers) -> None:
    either = search(client, headers, "Location?physical-type=bd,si")
    assert ids(either) == {"hosp-b501-1", "hosp-b501-2", "hosp-b502-1", "hosp-main", "clinic-site"}
    both = search(client, headers, "Location?physical-type=bd&partof=hosp-r501&name=501-2")
    assert ids(both) == {"hosp-b501-2"}
    twice = search(client, headers, "Location?name=bed&name=502")
    assert ids(twice) == {"hosp-b502-1"}


def test_location_read_of_another_types_id_is_not_found(client, headers) -> None:
    body = outcome(client.get("/fhir/Location/hosp-ct1", headers=headers), 404)
    assert body["issue"][0]["code"] == "not-found"
    assert client.get("/fhir/Device/hosp-ct1", headers=headers).status_code == 200


# --- Device, PractitionerRole, HealthcareService ----------------------------------------


def test_devices(client, headers) -> None:
    ct = client.get("/fhir/Device/hosp-ct1", headers=headers).json()
    assert codes(ct["type"], "http://dicom.nema.org/resources/ontology/DCM") == {"CT"}
    assert ct["status"] == "active" and ct["manufacturer"] == "United Imaging"
    assert ct["owner"]["reference"] == "Organization/hosp-ct"
    analyser = client.get("/fhir/Device/hosp-an1", headers=headers).json()
    assert (
        analyser["status"] == "inactive"
        and analyser["location"]["reference"] == "Location/hosp-main"
    )
    assert ids(search(client, headers, "Device?status=inactive")) == {"hosp-an1"}
    assert ids(
        search(client, headers, "Device?type=http://dicom.nema.org/resources/ontology/DCM|CT")
    ) == {"hosp-ct1"}
    assert ids(search(client, headers, "Device?type=analyser.chemistry")) == {"hosp-an1"}
    assert ids(search(client, headers, "Device?device-name=ct一号")) == {"hosp-ct1"}
    assert ids(search(client, headers, "Device?device-name:exact=ct一号机")) == set()
    assert ids(search(client, headers, "Device?device-name:exact=CT一号机")) == {"hosp-ct1"}
    assert ids(search(client, headers, "Device?organization=hosp-ct")) == {"hosp-ct1"}


def test_practitioner_roles(client, headers) -> None:
    surgeon = client.get("/fhir/PractitionerRole/hosp-surgeon1", headers=headers).json()
    assert surgeon["practitioner"]["display"] == "Zhao Lei"
    assert surgeon["organization"]["reference"] == "Organization/hosp"
    assert codes(surgeon["code"], "urn:carepool:staff-role") == {"surgeon"}
    assert codes(surgeon["code"], "http://terminology.hl7.org/CodeSystem/practitioner-role") == {
        "doctor"
    }
    assert codes(surgeon["specialty"]) == {"04.01"}
    skill = [e for e in surgeon["extension"] if e["url"].endswith("skill-level")]
    assert skill == [{"url": "urn:carepool:extension:skill-level", "valueInteger": 3}]
    assert {"system": STAFF_LICENCE, "value": "L-123"} in surgeon["identifier"]
    # specialty: own specialties and the department's code
    assert ids(search(client, headers, "PractitionerRole?specialty=04.01")) == {"hosp-surgeon1"}
    assert ids(
        search(client, headers, "PractitionerRole?specialty=urn:carepool:department-code|32.02")
    ) == {"hosp-tech1"}
    assert ids(search(client, headers, "PractitionerRole?specialty=02")) == {"clinic-gp1"}
    assert ids(search(client, headers, "PractitionerRole?role=doctor")) == {
        "hosp-surgeon1",
        "clinic-gp1",
    }
    assert ids(
        search(
            client,
            headers,
            "PractitionerRole?role=http://terminology.hl7.org/CodeSystem/practitioner-role|nurse",
        )
    ) == {"hosp-nurse1"}
    assert (
        ids(search(client, headers, "PractitionerRole?role=urn:carepool:staff-role|doctor"))
        == set()
    )
    assert ids(search(client, headers, "PractitionerRole?organization=clinic")) == {"clinic-gp1"}
    assert ids(search(client, headers, "PractitionerRole?active=false")) == {"clinic-gp1"}
    assert ids(search(client, headers, f"PractitionerRole?identifier={STAFF_LICENCE}|L-123")) == {
        "hosp-surgeon1"
    }
    assert ids(search(client, headers, "PractitionerRole?name=赵")) == {"hosp-surgeon1"}


def test_healthcare_services(client, headers) -> None:
    ct = client.get("/fhir/HealthcareService/ct-head", headers=headers).json()
    assert ct["providedBy"]["reference"] == "Organization/hosp"
    assert codes(ct["category"]) == {"imaging"} and codes(ct["specialty"]) == {"32.02"}
    assert [loc["reference"] for loc in ct["location"]] == ["Location/hosp-main"]
    price = [e["valueMoney"] for e in ct["extension"] if e["url"].endswith(":price")]
    assert price == [{"value": 180.0, "currency": "CNY"}]
    gp = client.get("/fhir/HealthcareService/consult-gp", headers=headers).json()
    assert "providedBy" not in gp  # two members offer it: both in the extension
    offered = {
        e["valueReference"]["reference"] for e in gp["extension"] if e["url"].endswith("offered-by")
    }
    assert offered == {"Organization/hosp", "Organization/clinic"}
    assert {loc["reference"] for loc in gp["location"]} == {
        "Location/hosp-main",
        "Location/clinic-site",
    }
    surgery = client.get("/fhir/HealthcareService/appendectomy", headers=headers).json()
    assert codes(surgery["type"], "http://loinc.org") == {"12345-6"}
    assert surgery["_name"]["extension"][0]["extension"][1]["valueString"] == "腹腔镜阑尾切除术"

    assert ids(search(client, headers, "HealthcareService?organization=clinic")) == {"consult-gp"}
    assert ids(search(client, headers, "HealthcareService?location=clinic-site")) == {"consult-gp"}
    assert ids(search(client, headers, "HealthcareService?organization=hosp")) == {
        "ct-head",
        "appendectomy",
        "consult-gp",
    }
    assert ids(search(client, headers, "HealthcareService?service-category=surgery")) == {
        "appendectomy"
    }
    assert ids(search(client, headers, "HealthcareService?service-category=nonsense")) == set()
    assert ids(search(client, headers, "HealthcareService?specialty=04.01")) == {"appendectomy"}
    assert ids(search(client, headers, "HealthcareService?name=阑尾")) == {"appendectomy"}
    assert ids(search(client, headers, "HealthcareService?active=false")) == set()


# --- Schedule ----------------------------------------------------------------------------


def test_schedules_name_their_actor_and_the_services_they_can_serve(client, headers) -> None:
    bundle = search(client, headers, "Schedule?_count=500")
    by_id = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    assert by_id["hosp-ct1"]["actor"][0]["reference"] == "Device/hosp-ct1"
    assert by_id["hosp-or1"]["actor"][0]["reference"] == "Location/hosp-or1"
    assert by_id["hosp-nurse1"]["actor"][0]["reference"] == "PractitionerRole/hosp-nurse1"
    # every actor can be read
    for schedule in by_id.values():
        assert (
            client.get(f"/fhir/{schedule['actor'][0]['reference']}", headers=headers).status_code
            == 200
        )
    assert codes(by_id["hosp-ct1"].get("serviceType", [])) == {"ct-head"}
    assert codes(by_id["hosp-or1"].get("serviceType", [])) == {"appendectomy"}
    assert codes(by_id["hosp-surgeon1"].get("serviceType", [])) == {"appendectomy"}
    assert codes(by_id["hosp-nurse1"].get("serviceType", [])) == {"appendectomy"}
    assert codes(by_id["clinic-gp1"].get("serviceType", [])) == {"consult-gp"}
    assert by_id["clinic-gp1"]["active"] is False
    assert "Mon,Wed,Fri 08:30-11:30" in by_id["clinic-gp1"]["comment"]
    # the search agrees with the mapping
    assert ids(search(client, headers, "Schedule?service-type=appendectomy")) == {
        "hosp-or1",
        "hosp-surgeon1",
        "hosp-nurse1",
    }
    assert ids(
        search(client, headers, "Schedule?service-type=urn:carepool:service|consult-gp")
    ) == {"clinic-gp1"}


def test_schedule_skill_and_specialty_decide_who_can_serve(client, tokens, doc) -> None:
    doc["resources"][-2]["skill_level"] = 1  # the surgeon is below the appendectomy's minimum
    assert (
        client.post("/api/v1/catalog/import", json=doc, headers=tokens.admin()).status_code == 200
    )
    headers = tokens.headers("viewer", "hosp")
    assert ids(search(client, headers, "Schedule?service-type=appendectomy")) == {
        "hosp-or1",
        "hosp-nurse1",
    }
    surgeon = client.get("/fhir/Schedule/hosp-surgeon1", headers=headers).json()
    assert "serviceType" not in surgeon


def test_schedule_searches_by_actor_active_and_specialty(client, headers) -> None:
    assert ids(search(client, headers, "Schedule?actor=PractitionerRole/hosp-nurse1")) == {
        "hosp-nurse1"
    }
    assert ids(search(client, headers, "Schedule?actor=Location/hosp-nurse1")) == set()
    assert ids(search(client, headers, "Schedule?actor=hosp-ct1")) == {"hosp-ct1"}
    assert ids(search(client, headers, "Schedule?active=false")) == {"clinic-gp1"}
    assert ids(search(client, headers, "Schedule?specialty=04.01")) == {"hosp-or1", "hosp-surgeon1"}
    # a resource without calendar rules has no Schedule
    assert client.get("/fhir/Schedule/hosp-tech1", headers=headers).status_code == 404


def test_schedule_planning_horizon_defaults_to_28_days_or_follows_date(client, headers) -> None:
    now = datetime.now(UTC)
    default = client.get("/fhir/Schedule/hosp-ct1", headers=headers).json()["planningHorizon"]
    start, end = datetime.fromisoformat(default["start"]), datetime.fromisoformat(default["end"])
    assert start <= now < end and end - start == timedelta(days=28)

    window = search(client, headers, "Schedule?date=ge2031-03-02&date=lt2031-03-09")
    horizon = window["entry"][0]["resource"]["planningHorizon"]
    assert datetime.fromisoformat(horizon["start"]) == datetime.fromisoformat(
        "2031-03-02T00:00:00+08:00"
    )
    assert datetime.fromisoformat(horizon["end"]) == datetime.fromisoformat(
        "2031-03-09T00:00:00+08:00"
    )
    # the theatre's hours start in 2030: not in a 2029 window, in a 2031 one
    assert "hosp-or1" in ids(window)
    assert "hosp-or1" not in ids(
        search(client, headers, "Schedule?date=ge2029-01-01&date=lt2029-02-01")
    )
    assert "hosp-or1" not in ids(search(client, headers, "Schedule?date=lt2030-01-01"))
    assert "hosp-or1" in ids(search(client, headers, "Schedule?date=le2030-01-01"))
    bad = outcome(client.get("/fhir/Schedule?date=tomorrow", headers=headers), 400)
    assert "date" in bad["issue"][0]["diagnostics"]
    backwards = client.get("/fhir/Schedule?date=ge2031-03-09&date=lt2031-03-02", headers=headers)
    outcome(backwards, 400)


# --- paging ------------------------------------------------------------------------------


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == relation), None)


def _relative(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@pytest.mark.parametrize(
    "resource_type,filters", [("Location", ""), ("Organization", "&type=dept,prov")]
)
def test_paging_with_next_links_reaches_every_match_once(
    client, headers, resource_type: str, filters: str
) -> None:
    everything = ids(search(client, headers, f"{resource_type}?_count=500{filters}"))
    query = f"{resource_type}?_count=2{filters}"
    page = search(client, headers, query)
    seen: list[str] = []
    pages = 0
    previous_seen = False
    while True:
        pages += 1
        assert page["total"] == len(everything)
        entries = [e["resource"]["id"] for e in page.get("entry", [])]
        assert 1 <= len(entries) <= 2
        seen += entries
        previous_seen = previous_seen or _link(page, "previous") is not None
        nxt = _link(page, "next")
        if nxt is None:
            break
        assert parse_qs(urlsplit(nxt).query)["_count"] == ["2"]
        response = client.get(_relative(nxt), headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        Bundle.model_validate(page)
    assert len(seen) == len(set(seen)) and set(seen) == everything
    assert pages == (len(everything) + 1) // 2 and previous_seen
    assert _link(page, "self") == _link(page, "last")
    first = client.get(_relative(_link(page, "first") or ""), headers=headers).json()
    assert [e["resource"]["id"] for e in first["entry"]] == seen[:2]


def test_count_zero_gives_the_total_only_and_count_is_capped(client, headers, doc) -> None:
    only_total = search(client, headers, "Location?_count=0")
    assert only_total["total"] == len(expected_ids(doc, "Location")) and "entry" not in only_total
    capped = search(client, headers, "Location?_count=100000")
    assert parse_qs(urlsplit(_link(capped, "self") or "").query)["_count"] == ["500"]
    beyond = search(client, headers, "Location?_offset=1000")
    assert beyond["total"] == len(expected_ids(doc, "Location")) and "entry" not in beyond
    outcome(client.get("/fhir/Location?_count=many", headers=headers), 400)
    outcome(client.get("/fhir/Location?_offset=-1", headers=headers), 400)


# --- errors, auth, formats ---------------------------------------------------------------


def test_unknown_search_parameter_and_modifier_are_refused_by_name(client, headers) -> None:
    body = outcome(client.get("/fhir/Location?physical-type=bd&colour=blue", headers=headers), 400)
    assert "colour" in body["issue"][0]["diagnostics"]
    assert body["issue"][1]["expression"] == ["query:colour"]
    body = outcome(client.get("/fhir/Location?partof:missing=true", headers=headers), 400)
    assert "partof:missing" in body["issue"][0]["diagnostics"]
    # a parameter of another type is unknown here
    body = outcome(client.get("/fhir/Organization?physical-type=bd", headers=headers), 400)
    assert "physical-type" in body["issue"][0]["diagnostics"]
    outcome(client.get("/fhir/PractitionerRole?active=yes", headers=headers), 400)
    outcome(client.get("/fhir/Location/hosp-main?name=x", headers=headers), 400)


def test_unknown_type_and_unknown_id_give_operation_outcomes(client, headers) -> None:
    body = outcome(client.get("/fhir/Medication", headers=headers), 404)
    assert body["issue"][0]["code"] == "not-supported"
    body = outcome(client.get("/fhir/Medication/m1", headers=headers), 404)
    assert body["issue"][0]["code"] == "not-supported"
    body = outcome(client.get("/fhir/Organization/no-such-org", headers=headers), 404)
    assert body["issue"][0]["code"] == "not-found"
    assert "no-such-org" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("path", ["/fhir/Location", "/fhir/Location/hosp-main", "/fhir/Schedule"])
def test_without_token_401_and_without_catalog_scope_403(
    client, headers, sessions: sessionmaker[Session], path: str
) -> None:
    body = outcome(client.get(path), 401)
    assert body["issue"][0]["code"] == "login"
    with sessions() as session, session.begin():
        auth.create_user(
            session,
            username="no-catalog",
            display_name="n",
            role=auth.Role.CLINICIAN,
            institution_id="hosp",
        )
        token = auth.issue_token(
            session, username="no-catalog", ttl=timedelta(hours=1), scopes=["user/Booking.read"]
        )
    body = outcome(client.get(path, headers={"Authorization": f"Bearer {token}"}), 403)
    assert "user/Catalog.read" in body["issue"][0]["diagnostics"]


def test_format_and_pretty_are_honoured_harmlessly(client, headers) -> None:
    plain = client.get("/fhir/Location/hosp-main?_format=json", headers=headers)
    pretty = client.get(
        "/fhir/Location/hosp-main?_format=application/fhir%2Bjson&_pretty=true", headers=headers
    )
    assert plain.status_code == pretty.status_code == 200
    assert plain.json() == pretty.json()
    assert "\n" not in plain.text and "\n  " in pretty.text
    bundle = search(client, headers, "Location?_pretty=true&_count=1")
    assert "_pretty=true" in (_link(bundle, "next") or "")
    outcome(client.get("/fhir/Location?_format=xml", headers=headers), 400)


# --- CapabilityStatement -----------------------------------------------------------------


def test_capability_statement_validates_and_lists_exactly_the_registered_types(client) -> None:
    response = client.get("/fhir/metadata")  # open, as SMART clients expect
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    CapabilityStatement.model_validate(body)
    assert body["fhirVersion"] == "4.0.1" and body["kind"] == "instance"
    resources = body["rest"][0]["resource"]
    listed = [r["type"] for r in resources]
    assert listed == REGISTRY.types() and set(listed) >= CATALOG_TYPES
    for resource in resources:
        provider = REGISTRY.get(resource["type"])
        assert provider is not None
        assert [p["name"] for p in resource["searchParam"]] == [
            p.name for p in provider.search_params
        ]
        expected = {"read", "search-type"} | ({"create"} if hasattr(provider, "create") else set())
        assert {i["code"] for i in resource["interaction"]} == expected
    assert body["implementation"]["url"].endswith("/fhir")


def test_the_base_url_follows_the_host_the_caller_used(client) -> None:
    for host in ("hospital.example:8443", "clinic.example", "hospital.example:8443"):
        body = client.get("/fhir/metadata", headers={"host": host}).json()
        assert body["implementation"]["url"] == f"http://{host}/fhir"


def test_every_advertised_search_parameter_is_accepted(client, headers) -> None:
    statement = client.get("/fhir/metadata").json()
    samples = {"date": "ge2030-01-01", "token": "x", "string": "x", "reference": "x"}
    for resource in statement["rest"][0]["resource"]:
        if resource["type"] not in CATALOG_TYPES:
            continue  # other contexts' types have their own tests (Slot needs a service)
        for param in resource["searchParam"]:
            value = samples[param["type"]]
            if param["name"] == "active":
                value = "true"
            response = client.get(
                f"/fhir/{resource['type']}", params={param["name"]: value}, headers=headers
            )
            assert response.status_code == 200, (resource["type"], param["name"], response.text)
            Bundle.model_validate(response.json())


def test_search_results_are_json_with_chinese_text_intact(client, headers) -> None:
    response = client.get("/fhir/Organization/hosp", headers=headers)
    assert "县人民医院" in response.content.decode("utf-8")
    assert json.loads(response.content)["alias"] == ["县人民医院"]
