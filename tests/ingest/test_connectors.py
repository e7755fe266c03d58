"""Connectors on their own (pure): what each feed format yields, unit by unit."""

from __future__ import annotations

from datetime import UTC, datetime

from carepool.ingest.connectors import ParseOptions, connector_for, detect_format
from carepool.ingest.connectors.base import parse_hl7_ts, parse_range
from carepool.ingest.connectors.hl7v2 import split_messages
from carepool.records.schemas import EncounterIn, ObservationIn, OrderIn, PatientIn, ReportIn
from tests.ingest import feeds

OPTIONS = ParseOptions()


def _units(fmt: str, data: bytes, name: str = "feed", **kw: object) -> list:
    options = ParseOptions(**kw) if kw else OPTIONS  # type: ignore[arg-type]
    return list(connector_for(fmt).units(data, source=name, options=options))


def test_hl7_oru_yields_patient_encounter_report_and_results() -> None:
    (unit,) = _units("hl7v2", feeds.hl7_file(feeds.HL7_CBC))
    kinds = [p.record.kind for p in unit.records]
    assert kinds == ["patient", "encounter", "report"] + ["observation"] * 8
    patient = unit.records[0].record
    assert isinstance(patient, PatientIn)
    assert (patient.name, patient.sex, patient.national_id) == (
        "张三",
        "male",
        "110101199003071234",
    )
    assert patient.local_id == "T0001" and patient.system == "TOWNSHIP"
    assert patient.birth_date is not None and patient.birth_date.isoformat() == "1990-03-07"
    hgb = unit.records[3].record
    assert isinstance(hgb, ObservationIn)
    assert (hgb.codings[0].code, hgb.codings[0].text, hgb.value_number, hgb.unit) == (
        "HGB",
        "血红蛋白",
        13.5,
        "g/dl",
    )
    assert (hgb.ref_low, hgb.ref_high) == (12.0, 16.0)
    assert hgb.report is not None and hgb.report.local_id == "LAB1"
    assert unit.message == "ORU^R01 MSG0001"


def test_hl7_timestamps_keep_their_offset_or_take_the_members_zone() -> None:
    from zoneinfo import ZoneInfo

    assert parse_hl7_ts("20260301083000+0800", UTC) == datetime(2026, 3, 1, 0, 30, tzinfo=UTC)
    shanghai = ZoneInfo("Asia/Shanghai")
    assert parse_hl7_ts("202603010830", shanghai) == datetime(2026, 3, 1, 0, 30, tzinfo=UTC)
    assert parse_hl7_ts("not a time", UTC) is None


def test_hl7_adt_events_set_the_encounter_state() -> None:
    admit, discharge = _units("hl7v2", feeds.hl7_file(feeds.HL7_ADT_ADMIT, feeds.HL7_ADT_DISCHARGE))
    enc_in = admit.records[1].record
    enc_out = discharge.records[1].record
    assert isinstance(enc_in, EncounterIn) and isinstance(enc_out, EncounterIn)
    assert (enc_in.status, enc_in.encounter_class, enc_in.department_text) == (
        "in-progress",
        "inpatient",
        "心内科",
    )
    assert enc_out.status == "finished" and enc_out.end_at is not None
    assert enc_in.local_id == enc_out.local_id == "IP0042"


def test_hl7_orders_are_order_records() -> None:
    (unit,) = _units("hl7v2", feeds.hl7_file(feeds.HL7_ORDER))
    orders = [p.record for p in unit.records if isinstance(p.record, OrderIn)]
    assert len(orders) == 1
    assert (orders[0].placer_number, orders[0].status, orders[0].codings[0].code) == (
        "PL0001",
        "active",
        "58410-2",
    )
    assert not any(isinstance(p.record, ReportIn) for p in unit.records)


def test_hl7_bad_units_carry_errors_and_good_records_survive() -> None:
    garbage, message = _units("hl7v2", feeds.hl7_file(feeds.HL7_BROKEN))
    assert garbage.records == [] and "does not start with MSH" in garbage.errors[0][1]
    assert [why for _pos, why in message.errors] == ["OBX-3 (observation identifier) is empty"]
    assert [p.record.kind for p in message.records] == ["patient", "report", "observation"]
    assert message.received == 4


def test_hl7_splitting_accepts_bom_lf_crlf_and_mllp_framing() -> None:
    text = "\ufeff" + feeds.HL7_ADT_ADMIT + "\r\n" + feeds.HL7_CBC.replace("\r", "\n")
    assert [m[0][:3] for m in split_messages(text)] == ["MSH", "MSH"]
    framed = b"\x0b" + feeds.HL7_ORDER.encode() + b"\x1c\r"
    (unit,) = _units("hl7v2", framed)
    assert unit.errors == [] and unit.records


def test_fhir_bundle_resolves_urn_references_and_splits_components() -> None:
    units = _units("fhir", feeds.fhir_bundle())
    assert len(units) == 6
    obs = units[2].records[0].record
    assert isinstance(obs, ObservationIn)
    assert obs.patient is not None and obs.patient.local_id.endswith("000000000001")
    assert obs.report is not None and obs.report.kind == "report"
    assert obs.unit == "g/dL" and obs.value_number == 13.1
    panel = [p.record for p in units[3].records]
    assert [o.local_id.rsplit("#", 1)[-1] for o in panel] == [  # type: ignore[union-attr]
        "0a0a0a0a-0000-0000-0000-000000000004",
        "component[0]",
        "component[1]",
    ]
    assert panel[1].unit == "mm[Hg]"  # type: ignore[union-attr]
    invalid = units[5]
    assert invalid.records == [] and "validation failed" in invalid.errors[0][1]
    assert "status" in invalid.errors[0][1]


def test_fhir_ndjson_one_unit_per_line_and_bad_lines_rejected() -> None:
    units = _units("fhir", feeds.fhir_ndjson(), "Observation.ndjson")
    assert [u.position for u in units] == [
        "Observation.ndjson:1",
        "Observation.ndjson:2",
        "Observation.ndjson:3",
    ]
    assert units[1].records[0].record.patient.local_id == "nd-1"  # type: ignore[union-attr]
    assert "line 3 (byte 491 of the file): not valid JSON at column 2" in units[2].errors[0][1]
    assert units[2].raw == b"{not json"


def test_csv_with_mapping_document() -> None:
    units = _units(
        "csv",
        feeds.CSV_RESULTS.encode(),
        "willow-results.csv",
        mapping_doc=feeds.CSV_MAPPING,
    )
    assert len(units) == 5
    first = units[0].records[0].record
    assert isinstance(first, ObservationIn)
    assert first.effective_at == datetime(2026, 3, 1, 1, 15, tzinfo=UTC)  # 09:15 in Shanghai
    wbc = units[1].records[0].record
    assert [c.code for c in wbc.codings] == ["X02", "26464-8"]  # type: ignore[union-attr]
    assert wbc.unit == "10*3/uL"  # type: ignore[union-attr]
    assert "patient id" in units[3].errors[0][1]
    assert "yesterday" in units[4].errors[0][1]
    assert units[4].raw.decode().startswith("病人ID,就诊号")


def test_format_detection() -> None:
    assert detect_format("x.txt", b"\xef\xbb\xbfMSH|^~\\&|") == "hl7v2"
    assert detect_format("x.dat", b'{"resourceType": "Patient"}') == "fhir"
    assert detect_format("x.csv", b"a,b\n1,2\n") == "csv"


def test_reference_ranges() -> None:
    assert parse_range("4.3 to 6.2") == (4.3, 6.2)
    assert parse_range("13-18") == (13.0, 18.0)
    assert parse_range("<0.21") == (None, 0.21)
    assert parse_range("negative") == (None, None)
