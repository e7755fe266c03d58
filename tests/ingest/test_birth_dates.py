"""A birth date is a calendar day: FHIR feeds store it as written, whatever the zone."""

from __future__ import annotations

from datetime import date

from carepool.ingest.connectors.fhir import _birth_date


def test_fhir_birth_date_is_not_shifted_by_the_time_zone() -> None:
    assert _birth_date("1990-03-07") == date(1990, 3, 7)
    assert _birth_date("1990-03") is None and _birth_date("1990") is None
    assert _birth_date("not a date") is None and _birth_date(None) is None
