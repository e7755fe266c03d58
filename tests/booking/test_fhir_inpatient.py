"""FHIR Encounter for admissions and live bed status on Location, valid R4, access-checked."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.location import Location

from tests.booking.conftest import pid
from tests.booking.test_inpatient import _admit, _do, _request

Headers = dict[str, dict[str, str]]


def _location(client: TestClient, h: dict[str, str], bed: str) -> dict[str, Any]:
    response = client.get(f"/fhir/Location/{bed}", headers=h)
    assert response.status_code == 200, response.text
    Location.model_validate(response.json())
    return dict(response.json())


def test_encounter_follows_the_admission(client: TestClient, wards: Headers) -> None:
    a = _admit(client, wards["bed_manager"], "hosp-r2-1", patient="p-enc")
    enc = client.get(f"/fhir/Encounter/{a['id']}", headers=wards["bed_manager"])
    assert enc.status_code == 200, enc.text
    parsed = Encounter.model_validate(enc.json())
    assert parsed.status == "in-progress" and parsed.class_fhir.code == "IMP"
    assert enc.json()["location"][0]["location"]["reference"] == "Location/hosp-r2-1"
    assert enc.json()["subject"]["reference"] == f"Patient/{pid('p-enc')}"

    moved = _do(client, wards["bed_manager"], a["id"], "transfer", bed_id="hosp-r2-2")
    assert moved.status_code == 200, moved.text
    done = _do(client, wards["bed_manager"], a["id"], "discharge")
    assert done.status_code == 200, done.text
    enc = client.get(f"/fhir/Encounter/{a['id']}", headers=wards["bed_manager"]).json()
    assert enc["status"] == "finished" and "end" in enc["period"]
    assert [loc["location"]["reference"] for loc in enc["location"]] == [
        "Location/hosp-r2-1",
        "Location/hosp-r2-2",
    ]

    found = client.get(
        "/fhir/Encounter",
        params={"patient": f"Patient/{pid('p-enc')}", "status": "finished"},
        headers=wards["bed_manager"],
    )
    assert found.status_code == 200
    bundle = Bundle.model_validate(found.json())
    assert bundle.total == 1


def test_other_member_cannot_read_the_encounter(client: TestClient, wards: Headers) -> None:
    a = _request(client, wards["bed_manager"], patient="p-priv")
    assert (
        client.get(f"/fhir/Encounter/{a['id']}", headers=wards["branch_manager"]).status_code == 403
    )
    listed = client.get("/fhir/Encounter", headers=wards["branch_manager"]).json()
    assert listed["total"] == 0


def test_bed_location_shows_live_state(client: TestClient, wards: Headers) -> None:
    h = wards["bed_manager"]
    assert _location(client, h, "hosp-r2-1")["operationalStatus"]["code"] == "U"
    a = _admit(client, h, "hosp-r2-1", patient="p-live")
    occupied = _location(client, h, "hosp-r2-1")
    assert occupied["operationalStatus"]["code"] == "O"
    assert {"url": "urn:carepool:extension:bed-state", "valueCode": "occupied"} in occupied[
        "extension"
    ]
    _do(client, h, a["id"], "discharge")
    assert _location(client, h, "hosp-r2-1")["operationalStatus"]["code"] == "H"
    assert client.post("/api/v1/beds/hosp-r2-1/cleaned", headers=h).status_code == 200
    assert _location(client, h, "hosp-r2-1")["operationalStatus"]["code"] == "U"
    beds = client.get(
        "/fhir/Location", params={"physical-type": "bd", "_count": "50"}, headers=h
    ).json()
    Bundle.model_validate(beds)
    assert all(e["resource"]["operationalStatus"]["code"] in "UOHC" for e in beds["entry"])
