"""How a run stores a batch: all at once when the database takes it, unit by unit and then record
by record when it refuses something, with the same counts and the same idempotency either way."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from carepool.ingest import actions
from carepool.ingest.connectors import ParseOptions, connector_for
from carepool.ingest.models import DeadLetter
from carepool.records.actions import content_hash_of
from carepool.records.models import Observation, Patient, PatientIdentifier, Provenance
from carepool.records.schemas import (
    Coding,
    Identifier,
    ObservationIn,
    OtherIn,
    PatientIn,
    RecordIn,
    Ref,
    ReportIn,
    _jsonable,
)
from tests.ingest import feeds
from tests.ingest.conftest import SYSTEM, Ingest

REFUSED = 666.0  # the value the database below refuses


@pytest.fixture()
def refusing(members: sessionmaker[Session], engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A database with a rule the connectors do not know: no observation with the value 666."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_666 BEFORE INSERT ON observation "
                f"WHEN NEW.original_number = {REFUSED} "
                "BEGIN SELECT RAISE(ABORT, 'the value 666 is refused'); END"
            )
        else:
            conn.exec_driver_sql(
                "ALTER TABLE observation ADD CONSTRAINT ck_observation_refuse_666 "
                f"CHECK (original_number IS NULL OR original_number <> {REFUSED})"
            )
    yield members
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER refuse_666")
        else:
            conn.exec_driver_sql(
                "ALTER TABLE observation DROP CONSTRAINT ck_observation_refuse_666"
            )


def _items(n: int, bad: set[int], prefix: str = "") -> bytes:
    """n fake units (a patient and a haemoglobin each); the ones in `bad` carry value 666."""
    return json.dumps(
        [
            {
                "patient": f"{prefix}p{i}",
                "id": f"{prefix}o{i}",
                "code": "718-7",
                "value": REFUSED if i in bad else 120 + i,
                "unit": "g/L",
            }
            for i in range(n)
        ]
    ).encode()


def test_a_record_the_database_refuses_is_dead_lettered_and_the_rest_of_its_batch_stored(
    ingest: Ingest, refusing: sessionmaker[Session]
) -> None:
    data = _items(12, bad={5})
    first = ingest(data, "feed.fake", format="fake", batch_size=500)  # one batch
    assert (first.received, first.stored, first.duplicates, first.rejected) == (24, 23, 0, 1)
    assert first.by_kind["observation"] == {"stored": 11, "rejected": 1}
    assert first.status == "succeeded" and len(first.dead_letters) == 1
    with refusing() as s:
        # The refused result's own patient (same unit) is stored, like every other record.
        assert s.scalar(select(func.count()).select_from(Patient)) == 12
        values = sorted(s.scalars(select(Observation.original_number)).all())
        assert len(values) == 11 and REFUSED not in values
        assert s.scalar(select(func.count()).select_from(Provenance)) == 23
        letter = s.get(DeadLetter, first.dead_letters[0])
        assert letter is not None and letter.position == "feed.fake#6"
        assert letter.rejected == 1 and "cannot store the observation" in letter.reason
        assert "666" in letter.reason
        assert json.loads(letter.raw) == [json.loads(data)[5]]  # the unit's original bytes

    again = ingest(data, "feed.fake", format="fake", batch_size=5)  # other batch borders
    assert (again.received, again.stored, again.duplicates, again.rejected) == (24, 0, 23, 1)
    with refusing() as s:
        assert s.scalar(select(func.count()).select_from(Provenance)) == 23
        letter = s.get(DeadLetter, first.dead_letters[0])
        assert letter is not None and letter.occurrences == 2
        assert s.scalar(select(func.count()).select_from(DeadLetter)) == 1


def test_several_refused_records_in_several_batches(
    ingest: Ingest, refusing: sessionmaker[Session]
) -> None:
    summary = ingest(_items(30, bad={0, 7, 8, 29}), "feed.fake", format="fake", batch_size=10)
    assert (summary.received, summary.stored, summary.rejected) == (60, 56, 4)
    assert summary.balanced and len(summary.dead_letters) == 4
    with refusing() as s:
        assert s.scalar(select(func.count()).select_from(Observation)) == 26
        positions = s.scalars(select(DeadLetter.position).order_by(DeadLetter.id)).all()
        assert positions == ["feed.fake#1", "feed.fake#8", "feed.fake#9", "feed.fake#30"]


def _statements(engine: Engine, run: Any) -> int:
    seen = [0]

    def count(*_args: Any) -> None:
        seen[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return seen[0]


def test_a_batch_takes_as_many_statements_for_200_records_as_for_20(
    ingest: Ingest, members: sessionmaker[Session], engine: Engine
) -> None:
    # New records go in with one statement per table (executemany, or COPY on PostgreSQL), the
    # dedup look-ups with one query per kind: nothing is done a record at a time.
    small = _statements(engine, lambda: ingest(_items(10, set(), "a"), "a.fake", format="fake"))
    large = _statements(engine, lambda: ingest(_items(100, set(), "b"), "b.fake", format="fake"))
    assert small == large
    with members() as s:
        assert s.scalar(select(func.count()).select_from(Observation)) == 110
        assert s.scalar(select(func.count()).select_from(Provenance)) == 220


def test_a_new_patient_keeps_its_identifiers(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    ingest(feeds.hl7_file(feeds.HL7_CBC), "lis.hl7", source="clinic")
    with members() as s:
        rows = s.execute(select(PatientIdentifier.system, PatientIdentifier.value)).all()
        assert sorted(rows) == [("CHN", "110101199003071234"), ("TOWNSHIP", "T0001")]


def test_a_report_sent_after_its_results_links_them(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    bundle = feeds.fhir_bundle_dict()
    entries = bundle["entry"]
    reports = [e for e in entries if e["resource"]["resourceType"] == "DiagnosticReport"]
    others = [e for e in entries if e not in reports]
    (listed,) = [r["reference"].rsplit(":", 1)[1] for r in reports[0]["resource"]["result"]]
    ingest(json.dumps({**bundle, "entry": others}).encode(), "results.json")

    def report_of(s: Session) -> str | None:
        return s.scalar(select(Observation.report_id).where(Observation.local_id == listed))

    with members() as s:
        assert report_of(s) is None
    ingest(json.dumps({**bundle, "entry": reports}).encode(), "reports.json")
    with members() as s:
        report_id = report_of(s)
        assert report_id is not None and report_id.startswith("rep-")
        assert (
            s.scalar(
                select(func.count()).select_from(Observation).where(Observation.report_id.is_(None))
            )
            == s.scalar(select(func.count()).select_from(Observation)) - 1
        )


def _reference_text(record: RecordIn) -> str:
    """The content text as records were first hashed (what every stored hash was made from)."""
    return json.dumps(record.content(), sort_keys=True, default=_jsonable, ensure_ascii=False)


def test_content_hash_is_the_hash_of_the_original_json_text() -> None:
    inputs = [
        ("hl7v2", feeds.hl7_file(feeds.HL7_CBC, feeds.HL7_ADT_ADMIT, feeds.HL7_ORDER)),
        ("fhir", feeds.fhir_bundle()),
        ("fhir", feeds.fhir_ndjson()),
    ]
    records = [
        parsed.record
        for fmt, data in inputs
        for unit in connector_for(fmt).units(data, source="x", options=ParseOptions())
        for parsed in unit.records
    ]
    assert {r.kind for r in records} >= {"patient", "encounter", "observation", "report", "order"}
    for record in records * 2:  # the second time from the memo of codes and references
        assert record.content_text() == _reference_text(record), record
        expected = hashlib.sha256(_reference_text(record).encode()).hexdigest()
        assert content_hash_of(record) == record.content_hash() == expected, record


@pytest.mark.parametrize(
    "record",
    [
        ObservationIn(
            system='li"s\\',
            local_id="é/\u2028/\x01/\t",
            codings=[Coding("http://loinc.org", "718-7", '血红蛋白 "Hb"'), Coding(text="x")],
            value_type="quantity",
            value_number=float("nan"),
            ref_low=float("inf"),
            ref_high=-float("inf"),
            value_text="1e-05",
            effective_at=datetime(2026, 3, 5, 8, 0, 0, 123456, tzinfo=UTC),
            issued_at=datetime(2026, 3, 5, 16, 0, tzinfo=timezone(timedelta(hours=8))),
            patient=Ref("patient", "his", "P1"),
        ),
        ObservationIn(system="s", local_id=None, value_number=1e-05, ref_low=3, ref_high=1e300),
        ObservationIn(system="s", local_id="o", codings=[Coding("s", 7, "n")]),  # type: ignore[arg-type]
        PatientIn(
            system="s",
            local_id="p",
            identifiers=[Identifier("s", "1", "MR"), Identifier("n", "2")],
            birth_date=date(1980, 2, 29),
            national_id=None,
            deceased=True,
            deceased_at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
        PatientIn(system="s", local_id="p", deceased_at=None),
        ReportIn(system="s", local_id="r", order=None, placer_number=""),
        ReportIn(system="s", local_id="r", order=Ref("order", "s", "o"), placer_number="A"),
        OtherIn(
            system="s",
            local_id="x",
            type_name="fhir:Claim",
            body={"b": [1, 2.5, None, True, {"z": "é", "a": float("nan")}], "a": "\u00e9"},
        ),
    ],
)
def test_content_text_is_the_original_json_text_for_unusual_values(record: RecordIn) -> None:
    assert record.content_text() == _reference_text(record)
    assert record.content_text() == _reference_text(record)  # memoised parts


def test_a_parallel_run_stores_what_a_sequential_one_does(
    members: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actions, "PARALLEL_MIN_BYTES", 0)
    inputs = [
        actions.Input("a.hl7", feeds.hl7_file(feeds.HL7_CBC, feeds.HL7_BROKEN)),
        actions.Input("b.json", feeds.fhir_bundle()),
        actions.Input("c.ndjson", feeds.fhir_ndjson()),
        actions.Input("d.hl7", feeds.hl7_file(feeds.HL7_ADT_ADMIT, feeds.HL7_ADT_DISCHARGE)),
    ]
    runs = {
        member: actions.do_ingest(
            members,
            actor=SYSTEM,
            institution_id=member,
            inputs=inputs,
            batch_size=4,
            workers=workers,
        )
        for member, workers in (("hosp", 1), ("clinic", 2))
    }

    def shape(summary: actions.RunSummary) -> tuple[Any, ...]:
        return (
            summary.received,
            summary.stored,
            summary.updated,
            summary.duplicates,
            summary.rejected,
            summary.stubs,
            summary.by_kind,
            summary.flags,
            len(summary.dead_letters),
        )

    assert shape(runs["hosp"]) == shape(runs["clinic"])
    with members() as s:
        stored = {
            member: sorted(
                s.execute(
                    select(
                        Provenance.record_type, Provenance.position, Provenance.content_hash
                    ).where(Provenance.institution_id == member)
                ).all()
            )
            for member in runs
        }
    assert stored["hosp"] == stored["clinic"] and stored["hosp"]
