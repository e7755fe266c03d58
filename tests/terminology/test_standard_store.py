"""One standard through ingest: unknown LOINC codes and unit spellings reach the queue, each
result keeps its own code and specimen."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.records.models import Observation
from carepool.terminology.models import UnmappedTerm
from tests.ingest import feeds
from tests.ingest.conftest import Ingest
from tests.terminology.feeds import HL7_LOINC


def _observations(members: sessionmaker[Session]) -> dict[str, Observation]:
    with members() as s:
        rows = s.scalars(select(Observation).where(Observation.institution_id == "hosp"))
        return {o.original_code: o for o in rows}


def test_ingest_flags_unknown_codes_and_units_and_queues_them(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    summary = ingest(feeds.hl7_file(HL7_LOINC), "lis.hl7", source="hosp")
    assert summary.balanced
    obs = _observations(members)
    assert (obs["2345-7"].loinc_code, obs["2339-0"].loinc_code) == ("14749-6", "15074-8")
    assert obs["6298-4"].loinc_code == "6298-4" and obs["6298-4"].unit == "mmol/L"
    assert (obs["2276-4"].unit, round(obs["2276-4"].value, 1)) == ("ug/L", 100.0)
    for code in ("77777-1", "2823-8"):
        assert obs[code].loinc_code is None
        assert {"unknown-loinc", "unmapped-code"} <= set(obs[code].flags)
    assert obs["14682-9"].value is None and "unmapped-unit" in obs["14682-9"].flags
    with members() as s:
        queued = {
            (t.kind.value, t.source_system, t.term)
            for t in s.scalars(select(UnmappedTerm).where(UnmappedTerm.institution_id == "hosp"))
        }
    assert ("code", "LN", "77777-1") in queued and ("code", "LN", "2823-8") in queued
    assert ("unit", "", "umol/ll") in queued
