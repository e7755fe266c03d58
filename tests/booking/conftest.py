"""Booking fixtures: the small catalogue loaded, and a fake clock on Tuesday 1 December 2026."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from carepool.core.auth import Principal
from carepool.core.time import FakeClock
from carepool.identity.models import LinkSource, Person, PersonLink
from carepool.records import actions as records_actions
from carepool.records.actions import id_for, natural_key
from tests.conftest import Tokens
from tests.factories import small_catalog

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 12, 1, 0, 0, tzinfo=CST)  # a Tuesday, midnight in Shanghai


def at(day: int, hour: int, minute: int = 0) -> str:
    return datetime(2026, 12, day, hour, minute, tzinfo=CST).isoformat()


# Patients every booking fixture registers at every member of its catalogue, each MRN one person
# of the index (linked across the members), so any member's caller may book for `pid(mrn)`.
MRNS = (
    *("p", "x", "c1", "p-live", "p-enc", "p-priv", "p-ref-1", "p-ref-2", "p-ord-1"),
    *(f"p{i}" for i in range(17)),
    *(f"{sex}{i}" for sex in ("m", "f", "male", "female") for i in range(4)),
)


def pid(mrn: str, member: str = "hosp") -> str:
    """The FHIR id of patient `mrn` registered at `member` (MRN system: the member id)."""
    return id_for("patient", natural_key(member, "patient", member, mrn))


def register_patients(
    sessions: sessionmaker[Session], members: list[str], mrns: tuple[str, ...] = MRNS
) -> None:
    """Register `mrns` at every member (`do_register_patient`), each MRN linked as one person."""
    actor = Principal.system_actor("test")
    with sessions() as session, session.begin():
        for n, mrn in enumerate(mrns):
            person = Person(id=f"per-test-{n:04d}")
            session.add(person)
            session.flush()
            for member in members:
                patient, _ = records_actions.do_register_patient(
                    session, actor=actor, institution_id=member, local_id=mrn, name=mrn
                )
                session.add(
                    PersonLink(
                        patient_id=patient.id,
                        person_id=person.id,
                        institution_id=member,
                        source=LinkSource.REVIEW,
                    )
                )


@pytest.fixture()
def clock(app: Any) -> FakeClock:
    fake = FakeClock(T0)
    app.state.clock = fake
    return fake


@pytest.fixture()
def pool(
    client: TestClient, tokens: Tokens, clock: FakeClock, sessions: sessionmaker[Session]
) -> dict[str, dict[str, str]]:
    admin = tokens.admin()
    doc = small_catalog()
    response = client.post("/api/v1/catalog/import", json=doc, headers=admin)
    assert response.status_code == 200, response.text
    register_patients(sessions, [i["id"] for i in doc["institutions"]])
    return {
        "admin": admin,
        "hosp_doctor": tokens.headers("clinician", "hosp"),
        "clinic_doctor": tokens.headers("clinician", "clinic"),
        "viewer": tokens.headers("viewer", "hosp"),
    }


@pytest.fixture()
def flows(
    client: TestClient, tokens: Tokens, clock: FakeClock, sessions: sessionmaker[Session]
) -> dict[str, dict[str, str]]:
    """The referral/order catalogue (tests/booking/factories_flows.py) and callers per member."""
    from tests.booking.factories_flows import flows_catalog

    admin = tokens.admin()
    doc = flows_catalog()
    response = client.post("/api/v1/catalog/import", json=doc, headers=admin)
    assert response.status_code == 200, response.text
    register_patients(sessions, [i["id"] for i in doc["institutions"]])
    return {
        "admin": admin,
        "clinic_doctor": tokens.headers("clinician", "clinic"),
        "hosp_doctor": tokens.headers("clinician", "hosp"),
        "hosp_lab": tokens.headers("lab_coordinator", "hosp"),
        "town_doctor": tokens.headers("clinician", "town"),
        "east_doctor": tokens.headers("clinician", "east"),
    }


@pytest.fixture()
def wards(
    client: TestClient, tokens: Tokens, clock: FakeClock, sessions: sessionmaker[Session]
) -> dict[str, dict[str, str]]:
    """The inpatient and surgery catalogue (tests/booking/factories_inpatient.py) and callers."""
    from tests.booking.factories_inpatient import ward_catalog

    admin = tokens.admin()
    doc = ward_catalog()
    response = client.post("/api/v1/catalog/import", json=doc, headers=admin)
    assert response.status_code == 200, response.text
    register_patients(sessions, [i["id"] for i in doc["institutions"]])
    return {
        "admin": admin,
        "bed_manager": tokens.headers("bed_manager", "hosp"),
        "theatre": tokens.headers("theatre_coordinator", "hosp"),
        "hosp_doctor": tokens.headers("clinician", "hosp"),
        "hosp_reader": tokens.headers("administrator", "hosp"),  # Booking.read, no patient data
        "branch_manager": tokens.headers("bed_manager", "branch"),
        "branch_theatre": tokens.headers("theatre_coordinator", "branch"),
        "clinic_doctor": tokens.headers("clinician", "clinic"),
    }
