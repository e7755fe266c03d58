"""Booking fixtures: the small catalogue loaded, and a fake clock on Tuesday 1 December 2026."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carepool.core.time import FakeClock
from tests.conftest import Tokens
from tests.factories import small_catalog

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 12, 1, 0, 0, tzinfo=CST)  # a Tuesday, midnight in Shanghai


def at(day: int, hour: int, minute: int = 0) -> str:
    return datetime(2026, 12, day, hour, minute, tzinfo=CST).isoformat()


@pytest.fixture()
def clock(app: Any) -> FakeClock:
    fake = FakeClock(T0)
    app.state.clock = fake
    return fake


@pytest.fixture()
def pool(client: TestClient, tokens: Tokens, clock: FakeClock) -> dict[str, dict[str, str]]:
    admin = tokens.admin()
    response = client.post("/api/v1/catalog/import", json=small_catalog(), headers=admin)
    assert response.status_code == 200, response.text
    return {
        "admin": admin,
        "hosp_doctor": tokens.headers("clinician", "hosp"),
        "clinic_doctor": tokens.headers("clinician", "clinic"),
        "viewer": tokens.headers("viewer", "hosp"),
    }


@pytest.fixture()
def flows(client: TestClient, tokens: Tokens, clock: FakeClock) -> dict[str, dict[str, str]]:
    """The referral/order catalogue (tests/booking/factories_flows.py) and callers per member."""
    from tests.booking.factories_flows import flows_catalog

    admin = tokens.admin()
    response = client.post("/api/v1/catalog/import", json=flows_catalog(), headers=admin)
    assert response.status_code == 200, response.text
    return {
        "admin": admin,
        "clinic_doctor": tokens.headers("clinician", "clinic"),
        "hosp_doctor": tokens.headers("clinician", "hosp"),
        "hosp_lab": tokens.headers("lab_coordinator", "hosp"),
        "town_doctor": tokens.headers("clinician", "town"),
        "east_doctor": tokens.headers("clinician", "east"),
    }


@pytest.fixture()
def wards(client: TestClient, tokens: Tokens, clock: FakeClock) -> dict[str, dict[str, str]]:
    """The inpatient and surgery catalogue (tests/booking/factories_inpatient.py) and callers."""
    from tests.booking.factories_inpatient import ward_catalog

    admin = tokens.admin()
    response = client.post("/api/v1/catalog/import", json=ward_catalog(), headers=admin)
    assert response.status_code == 200, response.text
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
