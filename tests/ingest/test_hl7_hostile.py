"""Hostile HL7 v2 feeds (tests/ingest/hostile/hl7.py) through the connector and into the store.

Every case: no exception, every unit accounted for, each unit's `raw` exactly the bytes of its
message, and what a lab engineer expects stored or refused (with where and why).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.ingest.connectors import ParseOptions, Unit, connector_for, detect_format
from carepool.ingest.models import DeadLetter
from carepool.records.models import Observation, OtherRecord, Patient, PatientIdentifier
from carepool.records.schemas import ObservationIn, OrderIn, PatientIn, ReportIn
from tests.ingest.conftest import Ingest
from tests.ingest.hostile import hl7 as hostile


def _units(data: bytes, name: str = "feed", **kw: object) -> list[Unit]:
    options = ParseOptions(**kw)  # type: ignore[arg-type]
    return list(connector_for("hl7v2").units(data, source=name, options=options))


def _records(units: list[Unit], cls: type) -> list:
    return [p.record for u in units for p in u.records if isinstance(p.record, cls)]


# -- 1. splitting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "count"),
    [
        ("batch", 2),
        ("concatenated_with_boms", 3),
        ("mllp_framed", 2),
        ("frames_back_to_back", 2),
        ("line_endings", 3),
    ],
)
def test_inputs_split_into_messages_with_their_exact_bytes(case: str, count: int) -> None:
    data = hostile.CASES[case]()
    units = _units(data)
    assert len(units) == count
    assert all(u.errors == [] for u in units), [u.errors for u in units]
    assert len(_records(units, PatientIn)) == count
    for unit in units:
        assert unit.raw in data  # a slice of the input, not re-encoded text
        assert unit.raw.endswith((b"\r", b"\n"))  # with its last segment's terminator
        assert unit.raw.lstrip(b"\xef\xbb\xbf").startswith(b"MSH|")
        (again,) = _units(unit.raw)  # a dead letter's bytes read back the same
        assert [p.record for p in again.records] == [p.record for p in unit.records]
    assert not any("truncated" in p.flags for u in units for p in u.records)


def test_a_bom_belongs_to_the_message_it_precedes() -> None:
    units = _units(hostile.concatenated_with_boms())
    assert all(u.raw.startswith(b"\xef\xbb\xbfMSH") for u in units)
    assert b"".join(u.raw for u in units) == hostile.concatenated_with_boms()


# -- 2. character sets -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "names"),
    [
        ("gb18030_declared", ["张三丰"]),
        ("gbk_detected", ["欧阳娜娜"]),
        ("latin1_declared", ["JOSÉ MÜLLER"]),
        ("latin1_detected", ["JOSÉ MÜLLER"]),
        ("utf8_mixed_with_gb", ["王小明", "李雷"]),
        ("utf16", ["Åsa Öberg", "周杰"]),
    ],
)
def test_each_message_is_decoded_in_its_own_character_set(case: str, names: list[str]) -> None:
    units = _units(hostile.CASES[case]())
    assert [u.errors for u in units] == [[] for _ in names]
    patients = _records(units, PatientIn)
    assert [p.name for p in patients] == names
    assert {p.birth_date.isoformat() for p in patients if p.birth_date} == {"1975-06-12"}
    assert all(p.birth_date is not None for p in patients)
    assert all("\ufffd" not in p.name for p in patients)


def test_utf16_units_keep_utf16_bytes() -> None:
    first, second = _units(hostile.utf16())
    assert first.raw.startswith(b"\xff\xfeM\x00S\x00H\x00")
    assert second.raw.startswith(b"M\x00S\x00H\x00")
    assert second.raw.decode("utf-16-le").startswith("MSH|")


def test_a_declared_source_encoding_is_used_without_msh18() -> None:
    data = hostile.latin1_detected()
    (unit,) = _units(data, encoding="latin-1")
    assert _records([unit], PatientIn)[0].family == "MÜLLER"
    (bad,) = _units(hostile.gbk_detected(), encoding="utf-8")
    assert bad.records == [] and "not valid utf-8" in bad.errors[0][1]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unknown_msh18", "MSH-18 names the character set 'KLINGON-8'"),
        ("undecidable", "cannot tell the character set"),
        ("binary_garbage", "cannot tell the character set"),
    ],
)
def test_undecodable_messages_are_unit_errors_not_mangled_text(case: str, reason: str) -> None:
    (unit,) = _units(hostile.CASES[case]())
    assert unit.records == []
    assert reason in unit.errors[0][1]
    assert unit.raw in hostile.CASES[case]()


# -- 3. patient groups -----------------------------------------------------------------------


def test_every_result_belongs_to_the_pid_of_its_group() -> None:
    (unit,) = _units(hostile.two_patient_groups())
    assert unit.errors == []
    owner = {
        r.local_id: r.patient.local_id  # type: ignore[union-attr]
        for r in _records([unit], ObservationIn) + _records([unit], ReportIn)
    }
    assert owner == {"FA": "PA", "FA/HGB/": "PA", "FB": "PB", "FB/HGB/": "PB", "FB/WBC/": "PB"}
    encounters = [p.record for p in unit.records if p.record.kind == "encounter"]
    assert [(e.local_id, e.patient.local_id) for e in encounters] == [("VA", "PA"), ("VB", "PB")]  # type: ignore[attr-defined]


def test_orders_of_two_patients_stay_with_their_patient() -> None:
    (unit,) = _units(hostile.oml_two_patients())
    orders = _records([unit], OrderIn)
    assert [(o.placer_number, o.patient.local_id) for o in orders] == [("PLA", "OA"), ("PLB", "OB")]


# -- 4. nothing aborts -----------------------------------------------------------------------


@pytest.mark.parametrize("sep", ["#", "!", "$", "%"])
def test_any_legal_field_separator(sep: str) -> None:
    (unit,) = _units(hostile.field_separator(sep))
    assert unit.errors == []
    (obs,) = _records([unit], ObservationIn)
    assert obs.value_number == 140.0 and obs.patient.local_id == "SEP1"  # type: ignore[union-attr]
    assert detect_format("x.txt", hostile.field_separator(sep)) == "hl7v2"


@pytest.mark.parametrize(
    ("case", "position", "reason"),
    [
        ("msh_junk", "msh_junk#1/MSH-2", "four distinct encoding characters"),
        ("truncated_msh", "truncated_msh#1/MSH-9", "MSH-9 (message type) is empty"),
        ("empty_segments", "empty_segments#1/line[2]", "not an HL7 segment: '|||'"),
    ],
)
def test_broken_headers_and_segments_are_precise_unit_errors(
    case: str, position: str, reason: str
) -> None:
    units = _units(hostile.CASES[case](), case)
    errors = [e for u in units for e in u.errors]
    assert any(pos == position and reason in why for pos, why in errors), errors


def test_absurdly_long_fields() -> None:
    doc, long_id = _units(hostile.long_fields())
    assert doc.errors == [] and len(_records([doc], ObservationIn)[0].value_text) == 200_000
    assert long_id.records == []
    assert long_id.errors[0][0].endswith("/PID-3") and "300 characters" in long_id.errors[0][1]


def test_a_message_cut_inside_an_obx_rejects_the_cut_segment_and_flags_the_rest() -> None:
    whole, cut = _units(hostile.cut_in_obx())
    assert whole.errors == [] and not any(p.flags for p in whole.records)
    ((position, reason),) = cut.errors
    assert position == "feed#2/OBX[4]"
    assert "cut off inside OBX" in reason and "OBX-5" in reason
    assert [p.record.kind for p in cut.records] == ["patient", "report", "observation"]
    assert all(p.flags == ["truncated"] for p in cut.records)


def test_a_frame_without_its_end_is_flagged_truncated() -> None:
    (unit,) = _units(hostile.cut_frame())
    assert unit.records and all("truncated" in p.flags for p in unit.records)


def test_an_unexpected_failure_is_a_unit_error_naming_the_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from carepool.ingest.connectors import hl7v2

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(hl7v2._Message, "_results", boom)
    first, second = _units(hostile.batch(), "lis.hl7")
    assert first.records == [] and first.errors[0][0] == "lis.hl7#1"
    assert "RuntimeError: boom" in first.errors[0][1] and second.errors


# -- 5. collisions ---------------------------------------------------------------------------


def test_collisions_inside_one_message_get_distinct_records() -> None:
    (unit,) = _units(hostile.obx_collision())
    keys = [p.record.local_id for p in unit.records if p.record.kind != "patient"]
    assert keys == ["F600", "F600/GLU/", "F600/GLU/#2", "F600#2", "F600#2/NA/"]
    (again,) = _units(hostile.obx_collision())
    assert [p.record for p in again.records] == [p.record for p in unit.records]


# -- 6. values as sent -----------------------------------------------------------------------


def test_bounds_keep_their_comparator_and_bad_values_are_flagged() -> None:
    (unit,) = _units(hostile.bounds_and_bad_values())
    patient = unit.records[0]
    assert isinstance(patient.record, PatientIn)
    assert patient.record.birth_date is None and patient.record.sex == "unknown"
    assert sorted(patient.flags) == ["invalid-code:PID-8", "invalid-date:PID-7"]
    obs = {p.record.codings[0].code: p for p in unit.records if isinstance(p.record, ObservationIn)}
    got = {c: (p.record.value_number, p.record.comparator) for c, p in obs.items()}  # type: ignore[union-attr]
    assert got == {
        "CRP": (0.2, "<"),
        "TNT": (0.2, "<"),
        "EGFR": (90.0, ">"),
        "LEU": (5.0, "<"),
        "HGB": (130.0, ""),
        "K": (4.1, ""),
        "NOTE": (None, ""),
    }
    assert obs["K"].flags == ["invalid-date:OBX-14"] and obs["K"].record.effective_at is not None
    assert obs["EGFR"].record.value_type == "quantity" and obs["NOTE"].record.value_type == "string"  # type: ignore[union-attr]


# -- 7. identifiers --------------------------------------------------------------------------


def test_every_patient_identifier_is_kept() -> None:
    (unit,) = _units(hostile.identifiers())
    patient = _records([unit], PatientIn)[0]
    assert [(i.system, i.value, i.type) for i in patient.identifiers] == [
        ("HOSTILE", "M800", "MR"),
        ("HOSP2", "H-55", "PI"),
        ("OLDHIS", "EXT77", ""),
        ("LEGACY", "ALT9", ""),
        ("PID-19", "123-45-6789", "SS"),
        ("CA", "DL998", "DL"),
    ]
    assert (patient.system, patient.local_id, patient.national_id) == (
        "HOSTILE",
        "M800",
        "123-45-6789",
    )


# -- 8. segments not modelled ----------------------------------------------------------------


def test_unmodelled_segments_are_counted_and_kept_with_the_patient() -> None:
    (unit,) = _units(hostile.unmodelled_segments())
    assert unit.unmodelled == {
        "segment:PD1": 1,
        "segment:NK1": 1,
        "segment:AL1": 1,
        "segment:DG1": 2,
        "segment:ZXT": 1,
    }
    (kept,) = [p.record for p in unit.records if p.record.kind == "other"]
    assert kept.type_name == "hl7:segments" and kept.patient.local_id == "M900"  # type: ignore[union-attr]
    texts = kept.body["segments"]  # type: ignore[union-attr]
    assert len(texts) == sum(unit.unmodelled.values())
    assert texts[2] == "AL1|1|DA|PEN^Penicillin^L|SV|Rash"


# -- through the store (SQLite and PostgreSQL) -------------------------------------------------


@pytest.mark.parametrize("case", sorted(hostile.CASES))
def test_every_case_ingests_balanced_with_exact_dead_letters(
    case: str, ingest: Ingest, members: sessionmaker[Session]
) -> None:
    data = hostile.CASES[case]()
    units = _units(data, case)
    summary = ingest(data, case, format="hl7v2")
    assert summary.status == "succeeded" and summary.balanced
    assert summary.received == sum(u.received for u in units)
    assert summary.rejected == sum(len(u.errors) for u in units)
    with members() as session:
        letters = {d.position: d.raw for d in session.scalars(select(DeadLetter))}
    assert letters == {u.position: u.raw for u in units if u.errors}


def test_two_patient_groups_are_stored_under_their_own_patients(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    summary = ingest(hostile.two_patient_groups(), "groups.hl7")
    assert summary.rejected == 0
    with members() as session:
        patients = {p.id: p.local_id for p in session.scalars(select(Patient))}
        rows = session.scalars(select(Observation))
        values = sorted((patients[o.patient_id], o.original_number) for o in rows)
    assert sorted(patients.values()) == ["PA", "PB"]
    assert values == [("PA", 101.0), ("PB", 9.9), ("PB", 202.0)]


def test_character_sets_land_in_the_store(ingest: Ingest, members: sessionmaker[Session]) -> None:
    for case in ("gb18030_declared", "gbk_detected", "latin1_detected", "utf16"):
        assert ingest(hostile.CASES[case](), case).rejected == 0
    with members() as session:
        names = sorted(session.scalars(select(Patient.name)))
        births = set(session.scalars(select(Patient.birth_date)))
    assert names == sorted(["张三丰", "欧阳娜娜", "JOSÉ MÜLLER", "Åsa Öberg", "周杰"])
    assert {b.isoformat() for b in births if b} == {"1975-06-12"} and None not in births


def test_collisions_and_identifiers_are_stored(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    assert ingest(hostile.obx_collision(), "c.hl7").rejected == 0
    assert ingest(hostile.identifiers(), "i.hl7").rejected == 0
    again = ingest(hostile.obx_collision(), "c.hl7")
    assert again.stored == 0 and again.duplicates == again.received
    with members() as session:
        values = sorted(v for v in session.scalars(select(Observation.original_number)))
        ids = sorted(session.scalars(select(PatientIdentifier.value)))
    assert values == [5.1, 7.9, 140.0]
    assert ids == sorted(["M600", "M800", "H-55", "EXT77", "ALT9", "123-45-6789", "DL998"])


def test_unmodelled_segments_are_stored_with_the_message(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    summary = ingest(hostile.unmodelled_segments(), "adt.hl7")
    assert summary.rejected == 0
    with members() as session:
        (kept,) = session.scalars(select(OtherRecord)).all()
    assert kept.kind.endswith("hl7:segments") and len(kept.body["segments"]) == 6
    assert kept.patient_id is not None


# -- third-party samples ---------------------------------------------------------------------

# The only unit errors the shared samples deserve: an OBX whose OBX-3 (observation identifier,
# required) is empty (an attachment sent without saying what it is).
_DESERVED = {
    "ORU-R01-01.hl7": ["ORU-R01-01.hl7#1/OBX[10]"],
    "OUL-R22-01.hl7": ["OUL-R22-01.hl7#1/OBX[17]"],
    "OUL-R23-01.hl7": ["OUL-R23-01.hl7#1/OBX[17]"],
    "OUL-R24-01.hl7": ["OUL-R24-01.hl7#1/OBX[12]"],
}


def test_shared_hl7_samples_parse_without_undeserved_errors(shared_dir: Path) -> None:
    folder = shared_dir / "data" / "hl7v2-messages"
    files = sorted(folder.glob("*.hl7"))
    assert files
    for path in files:
        units = _units(path.read_bytes(), path.name)
        assert len(units) == 1, path.name
        (unit,) = units
        assert [pos for pos, _why in unit.errors] == _DESERVED.get(path.name, []), unit.errors
        assert not any(p.flags for p in unit.records), path.name
        kept = [p.record for p in unit.records if p.record.kind == "other"]
        texts = [t for r in kept for t in r.body.get("segments", [])]  # type: ignore[union-attr]
        if texts:
            assert len(texts) == sum(unit.unmodelled.values()), path.name
