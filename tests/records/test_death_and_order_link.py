"""A patient's death time and a report's link to its order: stored, served as FHIR, and hashed
so that records sent before these fields existed are still recognised."""

from __future__ import annotations

from datetime import UTC, date, datetime

from fhir.resources.R4B.diagnosticreport import DiagnosticReport as FhirReport
from fhir.resources.R4B.patient import Patient as FhirPatient
from sqlalchemy.orm import Session, sessionmaker

from carepool.records.actions import RecordStore, StoreContext, Stored
from carepool.records.fhir import patient_to_fhir, report_to_fhir
from carepool.records.models import DiagnosticReport, Patient
from carepool.records.schemas import Coding, Identifier, OrderIn, PatientIn, RecordIn, Ref, ReportIn

CTX = StoreContext(institution_id="clinic", run_id=None, feed="test", source="unit")
P1 = Ref("patient", "mrn", "P1")
DIED = datetime(2026, 3, 4, 13, 30, tzinfo=UTC)


def _patient(**changes: object) -> PatientIn:
    fields: dict[str, object] = {
        "system": "mrn",
        "local_id": "P1",
        "name": "张三",
        "sex": "male",
        "birth_date": date(1990, 3, 7),
        "identifiers": [Identifier("mrn", "P1", "MR")],
    }
    fields.update(changes)
    return PatientIn(**fields)  # type: ignore[arg-type]


def _report(**changes: object) -> ReportIn:
    fields: dict[str, object] = {
        "system": "lis",
        "local_id": "R1",
        "patient": P1,
        "status": "final",
        "codings": [Coding("urn:lab", "CBC", "血常规")],
        "effective_at": datetime(2026, 3, 1, 1, tzinfo=UTC),
    }
    fields.update(changes)
    return ReportIn(**fields)  # type: ignore[arg-type]


def _store(sessions: sessionmaker[Session], *records: RecordIn) -> list[Stored]:
    with sessions() as s, s.begin():
        store = RecordStore(s, CTX)
        store.prefetch(list(records))
        return [store.store(r) for r in records]


def test_records_sent_before_the_new_fields_keep_their_content_hash() -> None:
    """Hashes computed by the store before death times and order links existed: a feed sent
    again after the upgrade is still all duplicates; a record that carries the new fields is
    new content."""
    assert _patient().content_hash() == (
        "221616e23029b6c0d5e0eab22de4e1ffd8fdfb7288c3da0949ae2a3c53b48e47"
    )
    assert _report().content_hash() == (
        "d89edbb8bcd3a40339bbcec0b111ab1f6e4a3b3cec8ae40e670a5278b666bd54"
    )
    assert _patient(deceased_at=DIED).content_hash() != _patient().content_hash()
    assert _report(placer_number="A-17").content_hash() != _report().content_hash()
    assert _report(order=Ref("order", "his", "A-17")).content_hash() != _report().content_hash()


def test_death_time_is_stored_and_served_as_deceased_date_time(
    members: sessionmaker[Session],
) -> None:
    (alive,) = _store(members, _patient())
    (died,) = _store(members, _patient(deceased_at=DIED))  # the same patient, now deceased
    assert died.id == alive.id and died.outcome.value == "updated"
    _store(members, _patient(local_id="P2", deceased=True))  # deceased, date unknown
    _store(members, _patient(local_id="P3"))
    with members() as s:
        by_local = {p.local_id: p for p in s.query(Patient).all()}
        p1, p2, p3 = by_local["P1"], by_local["P2"], by_local["P3"]
        assert (p1.deceased, p1.deceased_at) == (True, DIED)
        assert (p2.deceased, p2.deceased_at) == (True, None)
        served = [patient_to_fhir(p, person_id=None, links=()) for p in (p1, p2, p3)]
    assert served[0]["deceasedDateTime"] == "2026-03-04T13:30:00+00:00"
    assert "deceasedBoolean" not in served[0]
    assert served[1]["deceasedBoolean"] is True and "deceasedDateTime" not in served[1]
    assert "deceasedBoolean" not in served[2] and "deceasedDateTime" not in served[2]
    for resource in served:
        FhirPatient.model_validate(resource)


def test_a_report_keeps_its_order_link_even_before_the_order_arrives(
    members: sessionmaker[Session],
) -> None:
    order = OrderIn(system="his", local_id="A-17", patient=P1, placer_number="A-17")
    (report,) = _store(members, _patient(), _report(order=order.ref(), placer_number="A-17"))[1:]
    (unlinked,) = _store(members, _report(local_id="R2"))
    (stored_order,) = _store(members, order)  # arrives after the report
    with members() as s:
        row = s.get(DiagnosticReport, report.id)
        assert row is not None
        assert (row.order_id, row.placer_number) == (stored_order.id, "A-17")
        other = s.get(DiagnosticReport, unlinked.id)
        assert other is not None and (other.order_id, other.placer_number) == (None, "")
        served = report_to_fhir(row, [])
        plain = report_to_fhir(other, [])
    (based_on,) = served["basedOn"]
    assert based_on["identifier"]["value"] == "A-17"
    assert based_on["identifier"]["type"]["coding"][0]["code"] == "PLAC"
    assert "basedOn" not in plain
    FhirReport.model_validate(served)
