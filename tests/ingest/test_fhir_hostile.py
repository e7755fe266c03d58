"""Hostile FHIR feeds (tests/ingest/hostile_fhir.py): every case becomes units with reasons a data
engineer can act on, never an exception; good resources next to bad ones are stored; dead
letters keep the exact bytes that came. Each case runs through the connector and through
`do_ingest` into the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.ingest.connectors import ParseOptions, connector_for
from carepool.ingest.connectors.base import Unit
from carepool.ingest.connectors.fhir import R4_RESOURCE_TYPES
from carepool.ingest.models import DeadLetter
from carepool.records.models import Observation, OtherRecord, Patient, PatientIdentifier
from carepool.records.schemas import ObservationIn, PatientIn
from tests.ingest import hostile_fhir as h
from tests.ingest.conftest import Ingest


def _units(data: bytes, name: str = "feed.json", **kw: object) -> list[Unit]:
    options = ParseOptions(**kw)  # type: ignore[arg-type]
    return list(connector_for("fhir").units(data, source=name, options=options))


def _errors(units: list[Unit]) -> list[str]:
    return [why for u in units for _pos, why in u.errors]


def _letters(members: sessionmaker[Session]) -> list[DeadLetter]:
    with members() as s:
        return list(s.scalars(select(DeadLetter).order_by(DeadLetter.position)))


# -- 1. per-item isolation ------------------------------------------------------------------------

REFUSED = [
    (h.misspelled_resource_type, "resourceType 'Observaton' is not a FHIR R4 resource type"),
    (h.misspelled_resource_type, "did you mean 'Observation'?"),
    (h.lowercase_resource_type, "did you mean 'Patient'?"),
    (h.data_type_as_resource, "'Quantity' is a FHIR data type, not a resource"),
    (h.missing_resource_type, "resourceType is missing (keys: id, identifier"),
    (h.deeply_nested, "JSON nested more than about"),
    (h.invalid_json_pretty, "not valid JSON at line 4, column 13 (byte 63): Expecting value"),
    (h.huge_number, "a number with more than 4,300 digits"),
    (h.huge_exponent, "valueQuantity.value: expected a finite decimal number, got inf"),
    (h.duplicate_keys, "key 'family' appears twice in one object ('Li' and 'Wang')"),
    (h.nan_value, "NaN is not a JSON number"),
    (
        h.invalid_birth_date,
        "birthDate: expected a date YYYY, YYYY-MM or YYYY-MM-DD, got '1980-13-45'",
    ),
]


@pytest.mark.parametrize(("case", "reason"), REFUSED, ids=lambda v: getattr(v, "__name__", ""))
def test_a_hostile_document_is_one_unit_error_with_an_actionable_reason(
    case: object, reason: str
) -> None:
    data = case()  # type: ignore[operator]
    (unit,) = _units(data)
    assert unit.records == []
    assert len(unit.errors) == 1 and reason in unit.errors[0][1]
    assert unit.raw == data  # the dead letter holds what came


@pytest.mark.parametrize("case", sorted({c for c, _r in REFUSED}, key=lambda c: c.__name__))
def test_a_hostile_document_is_dead_lettered_and_the_run_succeeds(
    ingest: Ingest, members: sessionmaker[Session], case: object
) -> None:
    data = case()  # type: ignore[operator]
    good = json.dumps(h.patient("beside")).encode()
    summary = ingest(data, "bad.json")
    assert summary.status == "succeeded"
    assert (summary.received, summary.rejected, summary.stored) == (1, 1, 0)
    (letter,) = _letters(members)
    assert letter.raw == data
    again = ingest(good, "good.json")
    assert again.stored == 1


def test_deep_ndjson_line_is_refused_alone(ingest: Ingest, members: sessionmaker[Session]) -> None:
    data = h.deeply_nested_ndjson()
    units = _units(data, "deep.ndjson")
    assert [len(u.records) for u in units] == [1, 0, 1]
    assert "line 2 (byte 516 of the file): JSON nested more than" in units[1].errors[0][1]
    summary = ingest(data, "deep.ndjson")
    assert (summary.stored, summary.rejected) == (2, 1)
    (letter,) = _letters(members)
    assert letter.raw == data.split(b"\n")[1]


def test_ndjson_bad_lines_never_touch_the_good_ones(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    data = h.ndjson_with_bad_lines()
    units = _units(data, "mixed.ndjson")
    assert [u.position for u in units] == [f"mixed.ndjson:{n}" for n in range(1, 6)]
    assert [len(u.records) for u in units] == [1, 0, 0, 0, 1]
    reasons = _errors(units)
    assert reasons[0].startswith("line 2 (byte 517 of the file): not valid JSON at column 35")
    assert "not an array" in reasons[1]
    assert "line 4" in reasons[2] and "not valid UTF-8" in reasons[2] and "gb18030" in reasons[2]
    lines = data.split(b"\r\n")
    assert [u.raw for u in units] == lines[:5]  # each line's exact bytes, without its CRLF
    summary = ingest(data, "mixed.ndjson")
    assert (summary.received, summary.stored, summary.rejected) == (5, 2, 3)
    assert sorted(letter.raw for letter in _letters(members)) == sorted(lines[1:4])


def test_resource_types_match_the_library() -> None:
    from fhir.resources.R4B import fhirtypes, get_fhir_model_class
    from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel

    found = set()
    for name in fhirtypes.__all__:
        if not name.endswith("Type"):
            continue
        try:
            klass = get_fhir_model_class(name[:-4])
        except Exception:
            continue
        if issubclass(klass, FHIRResourceModel) and name[:-4] not in ("Resource", "DomainResource"):
            found.add(name[:-4])
    assert set(R4_RESOURCE_TYPES) == found


# -- 2. bundles -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["batch", "collection", "searchset", "message", "document"])
def test_a_bundle_keeps_its_good_entries_each_with_its_exact_bytes(kind: str) -> None:
    data = h.bundle_with_bad_entry(kind)
    units = _units(data)
    assert [len(u.records) for u in units] == [1, 1, 1, 0, 1, 0]
    text = data.decode()
    for unit in units:  # each entry's exact span of the document, retriable on its own
        assert unit.raw.decode() in text
        assert json.loads(unit.raw)["fullUrl"]
    obs = units[1].records[0].record
    assert isinstance(obs, ObservationIn)
    assert obs.patient is not None and obs.patient.local_id == f"{kind[:3]}-p"  # via fullUrl
    assert "Observation/" in units[3].errors[0][1] and "status" in units[3].errors[0][1]
    assert "key 'id' appears twice" in units[5].errors[0][1]
    assert units[4].unmodelled == {"resource:Claim": 1}


def test_a_bundle_entry_retried_alone_resolves_as_before(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    data = h.bundle_with_bad_entry("batch")
    summary = ingest(data, "batch.json")
    assert (summary.received, summary.stored, summary.rejected) == (6, 4, 2)
    letters = _letters(members)
    assert sorted(json.loads(x.raw)["fullUrl"] for x in letters) == [
        "urn:uuid:bat-bad",
        "urn:uuid:dup",
    ]
    fixed = json.loads(next(x.raw for x in letters if b"bat-bad" in x.raw))
    fixed["resource"]["status"] = "final"
    (unit,) = _units(json.dumps(fixed).encode(), "batch.json")
    assert unit.errors == [] and unit.records[0].record.local_id == "bat-bad"
    with members() as s:
        patient_id = s.scalar(select(Patient.id).where(Patient.local_id == "bat-p"))
        assert patient_id is not None
        stored = s.scalars(
            select(Observation.patient_id).where(Observation.local_id.like("bat-o%"))
        )
        assert list(stored) == [patient_id, patient_id]


def test_a_transaction_is_all_or_nothing(ingest: Ingest, members: sessionmaker[Session]) -> None:
    data = h.bundle_with_bad_entry("transaction")
    (unit,) = _units(data)
    assert unit.records == [] and len(unit.errors) == 6 and unit.raw == data
    rolled = [why for _p, why in unit.errors if "all-or-nothing" in why]
    assert len(rolled) == 4 and "entry[3] was rejected" in rolled[0]
    summary = ingest(data, "tx.json")
    assert (summary.received, summary.stored, summary.rejected) == (6, 0, 6)
    (letter,) = _letters(members)
    assert letter.raw == data  # the whole transaction, to be retried whole
    with members() as s:
        assert s.scalar(select(Patient.id).where(Patient.local_id == "tra-p")) is None
    good = ingest(h.transaction_all_good(), "tx-good.json")
    assert (good.received, good.stored, good.rejected) == (4, 4, 0)


def test_a_history_bundle_applies_the_newest_version_last(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    units = _units(h.history_bundle())
    assert [u.position.rsplit("#", 1)[1] for u in units] == ["entry[2]", "entry[1]", "entry[0]"]
    assert "DELETE Patient/gone entries are not applied" in units[0].errors[0][1]
    summary = ingest(h.history_bundle(), "history.json")
    assert summary.rejected == 1
    with members() as s:
        assert s.scalar(select(Patient.family).where(Patient.local_id == "hist")) == "New"


# -- 3. values as sent ----------------------------------------------------------------------------


def test_comparators_and_invalid_codes_are_kept_and_flagged(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    units = _units(h.values_as_sent())
    records = {p.record.local_id: p for u in units for p in u.records}
    patient = records["hp-1"]
    assert isinstance(patient.record, PatientIn)
    assert patient.record.sex == "unknown" and patient.flags == ["invalid-code:Patient.gender"]
    assert '"gender":"M"' in (patient.original or "")  # what came is kept with the record
    comparators = {k: getattr(p.record, "comparator", None) for k, p in records.items()}
    assert comparators["cmp-lt"] == "<" and comparators["cmp-ge"] == ">="
    assert comparators["panel#component[0]"] == ">"
    assert comparators["bad-cmp"] == ""
    assert records["bad-cmp"].flags == ["invalid-code:Observation.valueQuantity.comparator"]
    assert records["bad-status"].record.status == "unknown"  # type: ignore[union-attr]
    assert records["bad-status"].flags == ["invalid-code:Observation.status"]
    assert records["cmp-lt"].flags == []
    summary = ingest(h.values_as_sent(), "values.json")
    assert (summary.stored, summary.rejected) == (7, 0)


def test_every_patient_identifier_is_kept_with_system_and_type(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    (unit,) = _units(json.dumps(h.patient()).encode())
    record = unit.records[0].record
    assert isinstance(record, PatientIn)
    expected = [
        ("urn:hosp:mrn", "MRN-hp-1", "MR"),
        ("urn:cn:resident-id", "110101199001011234", "NNCHN"),
        ("urn:hosp:insurance", "INS-77", "insurance card"),
        ("", "LEGACY-9", ""),
    ]
    assert [(i.system, i.value, i.type) for i in record.identifiers] == expected
    ingest(json.dumps(h.patient()).encode(), "p.json")
    with members() as s:
        rows = s.execute(
            select(PatientIdentifier.system, PatientIdentifier.value, PatientIdentifier.type)
        ).all()
    assert set(expected) <= {tuple(r) for r in rows}


# -- 4. unmodelled resources ----------------------------------------------------------------------


def test_unmodelled_resources_are_kept_and_counted(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    units = _units(h.unmodelled_resources())
    counted: dict[str, int] = {}
    for unit in units:
        for key, n in unit.unmodelled.items():
            counted[key] = counted.get(key, 0) + n
    assert counted == {"resource:Claim": 1, "resource:Condition": 1, "contained:Specimen": 1}
    summary = ingest(h.unmodelled_resources(), "um.json")
    assert (summary.stored, summary.rejected) == (4, 0)
    with members() as s:
        assert sorted(s.scalars(select(OtherRecord.kind))) == ["fhir:Claim", "fhir:Condition"]


# -- 5. encodings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [h.utf8_bom, h.utf16_bom, h.utf32_bom], ids=lambda c: c.__name__)
def test_a_byte_order_mark_is_honoured(
    ingest: Ingest, members: sessionmaker[Session], case: object
) -> None:
    (unit,) = _units(case())  # type: ignore[operator]
    assert unit.errors == [] and unit.records[0].record.name == "王芳"  # type: ignore[union-attr]
    assert ingest(case(), "bom.json").stored == 1  # type: ignore[operator]
    with members() as s:
        assert s.scalar(select(Patient.name)) == "王芳"


@pytest.mark.parametrize(
    ("case", "seen"),
    [
        (h.gbk_undeclared, "gb18030"),
        (h.latin1_undeclared, "cp1252"),
        (h.utf16_without_bom, "utf-16-le"),
    ],
    ids=["gbk", "latin-1", "utf-16-no-bom"],
)
def test_other_encodings_are_refused_naming_what_was_seen(
    ingest: Ingest, members: sessionmaker[Session], case: object, seen: str
) -> None:
    data = case()  # type: ignore[operator]
    (unit,) = _units(data)
    assert unit.records == [] and "must be UTF-8" in unit.errors[0][1] and seen in unit.errors[0][1]
    summary = ingest(data, "enc.json")
    assert (summary.stored, summary.rejected) == (0, 1)
    (letter,) = _letters(members)
    assert letter.raw == data


def test_a_declared_encoding_is_honoured() -> None:
    (unit,) = _units(h.gbk_undeclared(), encoding="GBK")
    assert unit.errors == [] and unit.records[0].record.name == "王芳"  # type: ignore[union-attr]
    (latin,) = _units(h.latin1_undeclared(), encoding="latin-1")
    assert latin.records[0].record.family == "MÜLLER"  # type: ignore[union-attr]
