"""Ingest runs against the database (SQLite and PostgreSQL): standardise, count, stay idempotent,
keep going past bad records, dead-letter them and retry them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from carepool.cli import app as cli_app
from carepool.core.audit import AuditRecord
from carepool.ingest import actions
from carepool.ingest.models import DeadLetter, IngestRun
from carepool.records import service as records_service
from carepool.records.models import Encounter, Observation, Patient, Provenance
from carepool.terminology.models import UnmappedTerm
from tests.ingest import feeds
from tests.ingest.conftest import SYSTEM, Ingest

runner = CliRunner()


def _by_code(session: Session) -> dict[str, Observation]:
    return {o.original_code: o for o in session.scalars(select(Observation))}


def test_hl7_results_are_filed_under_loinc_in_ucum(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    summary = ingest(feeds.hl7_file(feeds.HL7_CBC), "lis.hl7", source="clinic")
    assert (summary.received, summary.stored, summary.rejected) == (11, 11, 0)
    assert summary.flags == {"unmapped-code": 1, "implausible": 1}
    with members() as s:
        obs = _by_code(s)
        expected = {
            "HGB": ("718-7", 135.0, "g/L", 120.0, 160.0),
            "WBC": ("26464-8", 6.2, "10*9/L", 4.0, 10.0),
            "RBC": ("26453-1", 4.5, "10*12/L", 3.5, 5.5),
            "PLT": ("26515-7", 210.0, "10*9/L", 100.0, 300.0),
            "HCT": ("20570-8", 41.0, "%", 37.0, 50.0),
        }
        for code, (loinc, value, unit, low, high) in expected.items():
            o = obs[code]
            assert (o.loinc_code, o.unit, o.flags) == (loinc, unit, []), code
            assert o.value == pytest.approx(value) and o.ref_low == pytest.approx(low), code
            assert o.ref_high == pytest.approx(high), code
        glucose = obs["GLU"]
        assert glucose.loinc_code == "14749-6" and glucose.unit == "mmol/L"
        assert glucose.value == pytest.approx(99 / 18.0156, rel=1e-6)
        assert (glucose.original_value, glucose.original_unit) == ("99", "mg/dL")
        unknown = obs["XYZ"]
        assert unknown.loinc_code is None and unknown.flags == ["unmapped-code"]
        assert (unknown.value, unknown.unit) == (1.0, "mmol/L")
        slip = obs["HB2"]
        assert (slip.loinc_code, slip.value, slip.unit) == ("718-7", None, None)
        assert slip.flags == ["implausible"] and "12500 g/L" in slip.note
        assert (slip.original_value, slip.original_unit) == ("12.5", "g/mL")

        patient = s.scalars(select(Patient)).one()
        assert (patient.name, patient.name_pinyin, patient.institution_id) == (
            "张三",
            "zhang san",
            "clinic",
        )
        assert {(i.system, i.value) for i in patient.identifiers} == {
            ("TOWNSHIP", "T0001"),
            ("CHN", "110101199003071234"),
        }
        encounter = s.scalars(select(Encounter)).one()
        assert (encounter.department_text, encounter.department_code) == ("全科", "02")
        prov = records_service.provenance_of(s, record_id=obs["HGB"].id)
        assert len(prov) == 1
        assert prov[0].institution_id == "clinic" and prov[0].feed == "hl7v2"
        assert prov[0].source == "lis.hl7" and prov[0].message == "ORU^R01 MSG0001"
        assert prov[0].position == "lis.hl7#1/OBX[4]" and prov[0].original.startswith(
            "OBX|1|NM|HGB"
        )
        assert obs["HGB"].report_id is not None
        queued = s.scalars(select(UnmappedTerm)).one()
        assert (queued.term, queued.display, queued.count) == ("XYZ", "神秘指标", 1)


def test_second_ingest_stores_nothing_new(ingest: Ingest, members: sessionmaker[Session]) -> None:
    data = feeds.hl7_file(
        feeds.HL7_CBC, feeds.HL7_ADT_ADMIT, feeds.HL7_ADT_DISCHARGE, feeds.HL7_BROKEN
    )
    first = ingest(data, "feed.hl7")
    with members() as s:
        provenance = s.scalar(select(func.count()).select_from(Provenance))
    second = ingest(data, "feed.hl7")
    assert first.balanced and second.balanced
    assert first.received == second.received
    assert second.stored == 0 and second.updated == 0
    assert second.duplicates == first.received - first.rejected
    assert second.rejected == first.rejected == 2
    with members() as s:
        assert s.scalar(select(func.count()).select_from(Provenance)) == provenance
        letters = s.scalars(select(DeadLetter).order_by(DeadLetter.id)).all()
        assert [d.occurrences for d in letters] == [2, 2]
        queued = s.scalars(select(UnmappedTerm).where(UnmappedTerm.term == "XYZ")).one()
        assert queued.count == 2


def test_admit_then_discharge_updates_the_encounter(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    ingest(feeds.hl7_file(feeds.HL7_ADT_ADMIT), "a01.hl7")
    summary = ingest(feeds.hl7_file(feeds.HL7_ADT_DISCHARGE), "a03.hl7")
    assert summary.by_kind["encounter"] == {"stored": 1, "updated": 1}
    assert summary.by_kind["patient"] == {"duplicates": 1}
    with members() as s:
        enc = s.scalars(select(Encounter)).one()
        assert (enc.status.value, enc.last_event, enc.department_code) == (
            "finished",
            "ADT^A03",
            "03.04",
        )
        assert len(records_service.provenance_of(s, record_id=enc.id)) == 2


def test_a_run_keeps_going_past_bad_records(ingest: Ingest, members: sessionmaker[Session]) -> None:
    summary = ingest(feeds.hl7_file(feeds.HL7_BROKEN, feeds.HL7_CBC), "mixed.hl7")
    assert (summary.received, summary.rejected, summary.stored) == (16, 2, 14)
    assert summary.balanced and summary.status == "succeeded"
    with members() as s:
        letters = s.scalars(select(DeadLetter).order_by(DeadLetter.id)).all()
        assert [d.position for d in letters] == ["mixed.hl7#1", "mixed.hl7#2"]
        assert "OBX-3" in letters[1].reason and letters[1].rejected == 1
        assert letters[1].raw.startswith(b"MSH|")
        run = s.get(IngestRun, summary.run_id)
        assert run is not None and (run.received, run.rejected) == (16, 2)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_received_is_always_stored_plus_duplicates_plus_rejected(
    ingest: Ingest, members: sessionmaker[Session], seed: int
) -> None:
    rnd = random.Random(seed)
    items: list[dict[str, object]] = []
    for i in range(40):
        roll = rnd.random()
        if roll < 0.15:
            items.append({"fail": f"unreadable item {i}"})
        elif roll < 0.3 and items:
            items.append(dict(rnd.choice(items)))  # the same thing again
        else:
            item = {
                "patient": f"p{rnd.randint(1, 5)}",
                "code": "718-7",
                "value": rnd.randint(90, 180),
                "unit": "g/L",
            }
            if rnd.random() < 0.2:
                item["bad"] = "a record the connector rejected"
            items.append(item)
    data = json.dumps(items).encode()
    first = ingest(data, "fake", format="fake", batch_size=7)
    second = ingest(data, "fake", format="fake", batch_size=13)
    for run in (first, second):
        assert run.received == run.stored + run.duplicates + run.rejected
    assert second.stored == 0 and second.rejected == first.rejected
    with members() as s:
        stored_runs = s.scalars(select(IngestRun)).all()
        assert all(r.received == r.stored + r.duplicates + r.rejected for r in stored_runs)


def test_progress_is_reported_and_the_run_row_follows(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    seen: list[tuple[int, int]] = []
    data = feeds.hl7_file(*[feeds.HL7_CBC.replace("MSG0001", f"M{i}") for i in range(5)])
    summary = ingest(data, "big.hl7", batch_size=10, progress=lambda d, t: seen.append((d, t)))
    assert len(seen) >= 3 and seen[-1] == (len(data), len(data))
    assert [d for d, _t in seen] == sorted(d for d, _t in seen)
    with members() as s:
        run = s.get(IngestRun, summary.run_id)
        assert run is not None and run.bytes_done == run.bytes_total == len(data)
        audit = s.scalars(select(AuditRecord).where(AuditRecord.entity_id == summary.run_id)).one()
        assert audit.action.value == "E" and audit.after["received"] == summary.received


def test_unknown_member_or_format_is_refused_before_a_run(
    members: sessionmaker[Session],
) -> None:
    from carepool.core.errors import InvalidInput

    with pytest.raises(InvalidInput, match="not an institution"):
        actions.do_ingest(
            members,
            actor=SYSTEM,
            institution_id="nowhere",
            inputs=[actions.Input("x.hl7", b"MSH|")],
        )
    with pytest.raises(InvalidInput, match="unknown format"):
        actions.do_ingest(
            members,
            actor=SYSTEM,
            institution_id="hosp",
            inputs=[actions.Input("x", b"x", format="edifact")],
        )
    with members() as s:
        assert s.scalar(select(func.count()).select_from(IngestRun)) == 0


def test_csv_dead_letters_list_show_and_retry_after_fixing_the_mapping(
    members: sessionmaker[Session], db_url: str, tmp_path: Path
) -> None:
    mapping = dict(feeds.CSV_MAPPING, date_formats=["%Y-%m-%d"])
    mapping_file = tmp_path / "willow.yaml"
    mapping_file.write_text(yaml.safe_dump(mapping, allow_unicode=True), encoding="utf-8")
    (tmp_path / "willow-patients.csv").write_text(feeds.CSV_PATIENTS, encoding="utf-8")
    (tmp_path / "willow-results.csv").write_text(feeds.CSV_RESULTS, encoding="utf-8")
    args = ["ingest", "--db", db_url, "--source", "clinic", "--mapping", str(mapping_file)]
    result = runner.invoke(
        cli_app,
        [
            *args,
            str(tmp_path / "willow-patients.csv"),
            str(tmp_path / "willow-results.csv"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    # every dated row fails: the mapping's date format is wrong
    assert (summary["received"], summary["rejected"]) == (7, 7)
    assert summary["balanced"] is True

    listed = runner.invoke(cli_app, ["ingest", "dead-letter", "list", "--db", db_url, "--json"])
    letters = json.loads(listed.output)["items"]
    assert len(letters) == 7 and all(d["status"] == "open" for d in letters)
    shown = runner.invoke(
        cli_app, ["ingest", "dead-letter", "show", str(letters[0]["id"]), "--db", db_url]
    )
    assert shown.exit_code == 0 and "1948/02/03" in shown.output and "date formats" in shown.output

    mapping["date_formats"] = ["%Y/%m/%d %H:%M", "%Y/%m/%d"]
    mapping_file.write_text(yaml.safe_dump(mapping, allow_unicode=True), encoding="utf-8")
    ids = [str(d["id"]) for d in letters]
    retried = runner.invoke(
        cli_app, ["ingest", "dead-letter", "retry", *ids, "--db", db_url, "--json"]
    )
    assert retried.exit_code == 0, retried.output
    outcome = sorted(
        (r["dead_letter"]["position"], r["dead_letter"]["status"], r["dead_letter"]["retry_count"])
        for r in json.loads(retried.output)
    )
    # the two patients and three results resolve; the row without a patient and the row dated
    # "yesterday" stay open with their new reasons
    assert outcome == [
        ("willow-patients.csv:2", "resolved", 1),
        ("willow-patients.csv:3", "resolved", 1),
        ("willow-results.csv:2", "resolved", 1),
        ("willow-results.csv:3", "resolved", 1),
        ("willow-results.csv:4", "resolved", 1),
        ("willow-results.csv:5", "open", 1),
        ("willow-results.csv:6", "open", 1),
    ]
    with members() as s:
        obs = {o.original_code: o for o in s.scalars(select(Observation))}
        assert obs["X01"].loinc_code == "718-7" and obs["X01"].value == pytest.approx(118.0)
        assert obs["X02"].loinc_code == "26464-8" and obs["X02"].value == pytest.approx(5.5)
        assert obs["X03"].loinc_code == "14771-0" and obs["X03"].value == pytest.approx(7.2)
        patient = s.scalars(select(Patient).where(Patient.local_id == "V01")).one()
        assert (patient.sex.value, patient.national_id, patient.stub) == (
            "male",
            "110101194802031234",
            False,
        )
