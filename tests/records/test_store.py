"""The clinical store's write path: natural keys, idempotency, updates, placeholders, provenance."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from carepool.records import actions, service
from carepool.records.actions import Outcome, RecordStore, StoreContext, pinyin_of
from carepool.records.models import DiagnosticReport, Observation, Patient, Provenance
from carepool.records.schemas import Coding, Identifier, ObservationIn, PatientIn, Ref, ReportIn

CTX = StoreContext(institution_id="clinic", run_id=None, feed="test", source="unit")
P1 = Ref("patient", "mrn", "P1")


def _patient(**changes: object) -> PatientIn:
    fields: dict[str, object] = {
        "system": "mrn",
        "local_id": "P1",
        "name": "张三",
        "sex": "male",
        "identifiers": [
            Identifier("mrn", "P1", "MR"),
            Identifier("cn-id", "110101199003071234", "NNCHN"),
        ],
    }
    fields.update(changes)
    return PatientIn(**fields)  # type: ignore[arg-type]


def _obs(value: float, local_id: str | None = "O1", report: Ref | None = None) -> ObservationIn:
    return ObservationIn(
        system="lis",
        local_id=local_id,
        patient=P1,
        report=report,
        status="final",
        codings=[Coding("urn:lab", "HGB", "血红蛋白")],
        value_type="quantity",
        value_number=value,
        value_text=str(value),
        unit="g/L",
    )


def _store(sessions: sessionmaker[Session], *records: object) -> list[actions.Stored]:
    with sessions() as s, s.begin():
        store = RecordStore(s, CTX)
        store.prefetch(list(records))  # type: ignore[arg-type]
        return [store.store(r) for r in records]  # type: ignore[arg-type]


def test_same_record_twice_is_one_row_and_one_provenance(
    members: sessionmaker[Session],
) -> None:
    first = _store(members, _patient())
    second = _store(members, _patient())
    assert first[0].outcome is Outcome.STORED and second[0].outcome is Outcome.DUPLICATE
    assert first[0].id == second[0].id == actions.ref_id("clinic", P1)
    with members() as s:
        patient = s.get(Patient, first[0].id)
        assert patient is not None and patient.natural_key == "clinic|patient|mrn|P1"
        assert patient.name_pinyin == "zhang san"
        assert {i.value for i in patient.identifiers} == {"P1", "110101199003071234"}
        assert s.scalar(select(func.count()).select_from(Provenance)) == 1


def test_a_changed_record_is_updated_and_an_old_version_is_not_stored_again(
    members: sessionmaker[Session],
) -> None:
    _store(members, _patient())
    (changed,) = _store(members, _patient(phone="13800138000"))
    (old_again,) = _store(members, _patient())
    assert changed.outcome is Outcome.UPDATED
    assert old_again.outcome is Outcome.DUPLICATE  # received before: nothing new
    with members() as s:
        assert s.get(Patient, changed.id).phone == "13800138000"  # type: ignore[union-attr]
        assert len(service.provenance_of(s, record_id=changed.id)) == 2


def test_a_result_before_its_patient_makes_a_placeholder_the_patient_fills(
    members: sessionmaker[Session],
) -> None:
    (obs,) = _store(members, _obs(135.0))
    assert obs.stubs == 1
    with members() as s:
        stub = s.get(Patient, actions.ref_id("clinic", P1))
        assert stub is not None and stub.stub and stub.name == ""
    (patient,) = _store(members, _patient())
    assert patient.outcome is Outcome.UPDATED
    with members() as s:
        filled = s.get(Patient, patient.id)
        assert filled is not None and not filled.stub and filled.name == "张三"


def test_results_without_an_id_are_keyed_by_their_content(
    members: sessionmaker[Session],
) -> None:
    a, b, a_again = _store(members, _obs(135.0, None), _obs(140.0, None), _obs(135.0, None))
    assert (a.outcome, b.outcome, a_again.outcome) == (
        Outcome.STORED,
        Outcome.STORED,
        Outcome.DUPLICATE,
    )
    with members() as s:
        keys = s.scalars(select(Observation.natural_key)).all()
    assert all("|observation|#" in k for k in keys) and len(keys) == 2


def test_a_report_links_results_stored_before_it(members: sessionmaker[Session]) -> None:
    _store(members, _patient(), _obs(135.0, "O1"), _obs(6.1, "O2"))
    report = ReportIn(
        system="lis",
        local_id="R1",
        patient=P1,
        status="final",
        codings=[Coding("urn:lab", "CBC", "血常规")],
        results=[Ref("observation", "lis", "O1"), Ref("observation", "lis", "O2")],
    )
    (stored,) = _store(members, report)
    with members() as s:
        linked = s.scalars(select(Observation.report_id)).all()
        assert linked == [stored.id, stored.id]
        assert s.get(DiagnosticReport, stored.id) is not None
        assert service.counts(s, institution_id="clinic")["observation"] == 2


def test_pinyin_of_names() -> None:
    assert pinyin_of("李四") == "li si"
    assert pinyin_of("  Ann  SMITH ") == "ann smith"
    assert pinyin_of("") == ""
