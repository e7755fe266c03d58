"""The third-party sample feeds in ../shared/data: every file ingests, the counts add up, a second
ingest stores nothing new, and one complete blood count from three sources lands under the same
LOINC codes in the same UCUM units. (Skips without ../shared.)

The large sets run on SQLite only (a fresh file per module); the HL7 v2 set and the CBC check
also run on PostgreSQL.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.ingest import actions
from carepool.ingest.models import DeadLetter
from carepool.records.models import Observation, Provenance
from tests.ingest.conftest import SYSTEM, Ingest

SETS = {
    "hl7v2-messages": "*.hl7",
    "synthea-csv": "*.csv",
    "synthea-fhir-ndjson": "*.ndjson",
    "synthea-fhir-bundles-localcodes": "*.json",
    "fhir-r4-examples": "*.json",
}


def _inputs(folder: Path, pattern: str) -> list[actions.Input]:
    files = sorted(folder.glob(pattern))
    assert files, f"no {pattern} in {folder}"
    return [actions.Input(name=p.name, data=p.read_bytes()) for p in files]


def _ingest_twice(factory: sessionmaker[Session], inputs: list[actions.Input]) -> None:
    first = actions.do_ingest(factory, actor=SYSTEM, institution_id="hosp", inputs=inputs)
    second = actions.do_ingest(factory, actor=SYSTEM, institution_id="hosp", inputs=inputs)
    for run in (first, second):
        assert run.status == "succeeded"
        assert run.received == run.stored + run.duplicates + run.rejected
    assert first.received > 0 and first.stored > 0
    # The samples come from unrelated sources that reuse visit and order numbers for different
    # patients: under one member those are patient conflicts, refused and named (never moved).
    conflicts = sum(per.get("conflicts", 0) for per in first.by_kind.values())
    bad = first.rejected - conflicts
    assert bad <= first.received // 50, first.by_kind  # a few genuinely bad records
    assert second.stored == 0 and second.updated == 0
    assert second.rejected == first.rejected
    assert second.duplicates == first.received - first.rejected
    with factory() as session:
        letters = session.scalars(select(DeadLetter)).all()
        assert sum(d.rejected for d in letters if d.run_id == first.run_id) == first.rejected
        assert all(d.reason and d.raw for d in letters)
        named = [d for d in letters if d.run_id == first.run_id and "patient conflict" in d.reason]
        assert bool(named) == bool(conflicts)
        assert all("belongs to patient" in d.reason and "names patient" in d.reason for d in named)


@pytest.mark.parametrize("name", sorted(SETS))
def test_every_file_of_the_set_ingests_twice_on_sqlite(
    name: str, shared_dir: Path, sqlite_members: sessionmaker[Session]
) -> None:
    _ingest_twice(sqlite_members, _inputs(shared_dir / "data" / name, SETS[name]))


def test_hl7_set_on_every_backend(shared_dir: Path, members: sessionmaker[Session]) -> None:
    _ingest_twice(members, _inputs(shared_dir / "data" / "hl7v2-messages", "*.hl7"))


CBC_UNITS = {
    "718-7": "g/L",
    "26453-1": "10*12/L",
    "26464-8": "10*9/L",
    "26515-7": "10*9/L",
    "20570-8": "%",
    "30428-7": "fL",
    "28539-5": "pg",
    "28540-3": "g/L",
}
SHARED_CODES = {"718-7", "26453-1", "26464-8", "26515-7", "20570-8", "30428-7", "28539-5"}


def _results(session: Session, source: str) -> list[Observation]:
    ids = select(Provenance.record_id).where(
        Provenance.source == source, Provenance.record_type == "observation"
    )
    return list(session.scalars(select(Observation).where(Observation.id.in_(ids))))


def test_one_cbc_from_three_sources_under_the_same_loinc_codes_and_units(
    shared_dir: Path, ingest: Ingest, members: sessionmaker[Session]
) -> None:
    data = shared_dir / "data"
    nist = data / "hl7v2-messages" / "LRI_2.0-NG_CBC_Typ_Message.hl7"
    example = data / "fhir-r4-examples" / "diagnosticreport-example.json"
    synthea = data / "synthea-csv"
    ingest(nist.read_bytes(), nist.name, source="hosp")
    ingest(example.read_bytes(), example.name, source="clinic")
    ingest((synthea / "observations.csv").read_bytes(), "observations.csv", source="hosp")
    with members() as s:
        by_source = {src: _results(s, src) for src in (nist.name, example.name, "observations.csv")}
    for src, rows in by_source.items():
        filed = {o.loinc_code for o in rows if o.loinc_code in CBC_UNITS}
        assert filed >= SHARED_CODES, (src, SHARED_CODES - filed)
        for o in rows:
            if o.loinc_code in CBC_UNITS and o.value is not None:
                assert o.unit == CBC_UNITS[o.loinc_code], (src, o.original_code, o.unit)

    nist_rows = {o.loinc_code: o for o in by_source[nist.name]}
    assert nist_rows["26453-1"].value == pytest.approx(4.41)  # 10*6/uL -> 10*12/L
    assert nist_rows["26464-8"].value == pytest.approx(105.6)  # {cells}/uL -> 10*9/L
    assert nist_rows["26515-7"].value == pytest.approx(210.0)
    assert nist_rows["28540-3"].value == pytest.approx(324.0)  # g/dL -> g/L
    assert nist_rows["28539-5"].value == pytest.approx(29.0)  # pg/{cell} -> pg
    hb = nist_rows["718-7"]
    assert (hb.value, hb.unit, hb.flags) == (None, None, ["implausible"])
    assert (hb.original_value, hb.original_unit) == ("12.5", "g/mL")

    fhir_rows = {o.original_code: o for o in by_source[example.name]}
    assert (fhir_rows["718-7"].value, fhir_rows["718-7"].unit) == (176.0, "g/L")
    assert (fhir_rows["789-8"].loinc_code, fhir_rows["789-8"].value) == ("26453-1", 5.9)
    assert (fhir_rows["6690-2"].loinc_code, fhir_rows["6690-2"].value) == ("26464-8", 4.6)
    assert (fhir_rows["4544-3"].loinc_code, fhir_rows["4544-3"].value) == ("20570-8", 55.0)
    assert fhir_rows["718-7"].report_id is not None

    factor = {"718-7": 10.0, "786-4": 10.0, "789-8": 1.0, "6690-2": 1.0, "777-3": 1.0}
    expected: dict[str, list[float]] = {}
    with (synthea / "observations.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["CODE"] in factor:
                expected.setdefault(row["CODE"], []).append(
                    float(row["VALUE"]) * factor[row["CODE"]]
                )
    stored: dict[str, list[float]] = {}
    for o in by_source["observations.csv"]:
        if o.original_code in factor and o.value is not None:
            stored.setdefault(o.original_code, []).append(o.value)
    assert expected
    for code, values in expected.items():
        assert sorted(stored[code]) == pytest.approx(sorted(values)), code


def test_fhir_samples_are_rejected_only_for_what_is_wrong(shared_dir: Path) -> None:
    """Every FHIR sample through the connector: what is rejected, and why. The one rejection is
    the R4 example `bundle-questionnaire.json`, whose nested items lack the required `linkId`
    (1..1 in R4): invalid R4, rightly refused. Unmodelled types are counted, not dropped."""
    from carepool.ingest.connectors import ParseOptions, connector_for

    connector = connector_for("fhir")
    rejected: dict[str, str] = {}
    unmodelled: dict[str, int] = {}
    received = 0
    for folder in ("fhir-r4-examples", "synthea-fhir-ndjson", "synthea-fhir-bundles-localcodes"):
        for path in sorted((shared_dir / "data" / folder).glob("*json")):
            for unit in connector.units(
                path.read_bytes(), source=path.name, options=ParseOptions()
            ):
                received += unit.received
                for position, why in unit.errors:
                    rejected[position] = why
                for key, n in unit.unmodelled.items():
                    unmodelled[key] = unmodelled.get(key, 0) + n
    assert list(rejected) == ["bundle-questionnaire.json"]
    assert (
        "linkId: Value for the field 'linkId' is required" in rejected["bundle-questionnaire.json"]
    )
    assert received > 6000
    assert unmodelled.get("resource:Condition", 0) > 0 and unmodelled.get("resource:Claim", 0) > 0
