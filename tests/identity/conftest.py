"""Fixtures for identity and results-across-members tests: two members' feeds, ingested."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session, sessionmaker

from carepool.records import service as records_service
from tests.identity import feeds
from tests.ingest.conftest import SYSTEM, Ingest, ingest, members

__all__ = ["SYSTEM", "Fed", "fed", "ingest", "members"]


@dataclass(frozen=True)
class Fed:
    """Record ids of the patients in the feeds."""

    sessions: sessionmaker[Session]
    zhang_hosp: str  # 张三 at the hospital (with national id)
    zhang_clinic: str  # Zhang San at the clinic (pinyin, phone typo): the same person
    other_zhang: str  # another 张三 at the hospital: a different person
    li_si: str
    zhao_hosp: str
    zhao_clinic: str  # the review pair
    wang_wu: str


def _record(session: Session, system: str, value: str) -> str:
    (patient,) = records_service.get_patients_by_identifier(session, system=system, value=value)
    return patient.id


@pytest.fixture()
def fed(ingest: Ingest, members: sessionmaker[Session]) -> Fed:
    """Both members' feeds ingested (nothing linked yet)."""
    hosp = ingest(feeds.hospital_feed(), "hosp.hl7", source="hosp")
    clinic = ingest(feeds.clinic_feed(extra_hb=3), "clinic.hl7", source="clinic")
    assert hosp.rejected == 0 and clinic.rejected == 0, (hosp.as_dict(), clinic.as_dict())
    with members() as session:
        return Fed(
            sessions=members,
            zhang_hosp=_record(session, "HOSP", "H001"),
            zhang_clinic=_record(session, "CLINIC", "C-77"),
            other_zhang=_record(session, "HOSP", "H002"),
            li_si=_record(session, "HOSP", "H003"),
            zhao_hosp=_record(session, "HOSP", "H004"),
            zhao_clinic=_record(session, "CLINIC", "C-99"),
            wang_wu=_record(session, "CLINIC", "C-88"),
        )
