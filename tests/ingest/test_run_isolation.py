"""No input can abort a run: whatever a connector raises while parsing an input keeps the units
parsed before it, dead-letters the input's exact bytes with the input, position and error, and
the run goes on with the next input (in-process and in parse workers; SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.ingest import _parallel, actions
from carepool.ingest.models import DeadLetter, DeadLetterStatus
from carepool.records.models import Observation, Patient
from tests.ingest import feeds
from tests.ingest.conftest import SYSTEM


def _fake(*items: dict[str, object]) -> bytes:
    return json.dumps(list(items)).encode()


GOOD = _fake({"patient": "g1", "code": "718-7", "value": 135, "unit": "g/L", "id": "g1-hb"})


def _run(
    members: sessionmaker[Session], *inputs: tuple[str, bytes, str | None], workers: int = 1
) -> actions.RunSummary:
    return actions.do_ingest(
        members,
        actor=SYSTEM,
        institution_id="hosp",
        inputs=[actions.Input(name=n, data=d, format=f) for n, d, f in inputs],
        workers=workers,
    )


def _letters(members: sessionmaker[Session], run_id: str) -> list[DeadLetter]:
    with members() as s:
        return list(s.scalars(select(DeadLetter).where(DeadLetter.run_id == run_id)))


@pytest.mark.parametrize("error", ["RecursionError", "ValueError", "KeyError", "UnicodeError"])
def test_a_connector_that_raises_keeps_what_came_before_and_the_next_input(
    members: sessionmaker[Session], error: str
) -> None:
    hostile = _fake(
        {"patient": "p1", "code": "718-7", "value": 140, "unit": "g/L", "id": "p1-hb"},
        {"raise": error, "why": "hostile input"},
        {"patient": "p2", "code": "718-7", "value": 150, "unit": "g/L", "id": "p2-hb"},
    )
    summary = _run(members, ("hostile.fake", hostile, "fake"), ("good.fake", GOOD, "fake"))
    assert summary.status == "succeeded" and summary.balanced
    # the first unit (patient + observation) and the good input are stored; the rest of the
    # hostile input is one rejected item
    assert (summary.received, summary.stored, summary.rejected) == (5, 4, 1)
    with members() as s:
        assert {p.local_id for p in s.scalars(select(Patient))} == {"p1", "g1"}
        assert {o.local_id for o in s.scalars(select(Observation))} == {"p1-hb", "g1-hb"}
    (letter,) = _letters(members, summary.run_id)
    assert letter.raw == hostile  # the exact bytes received, for a retry
    assert letter.source == "hostile.fake"
    assert letter.position == "hostile.fake after hostile.fake#1"
    assert "cannot read the input after hostile.fake#1 (unit 2)" in letter.reason
    assert f"{error}: " in letter.reason and "hostile input" in letter.reason


def test_a_dead_lettered_input_is_retried_whole_and_the_parsed_part_is_a_duplicate(
    members: sessionmaker[Session],
) -> None:
    hostile = _fake(
        {"patient": "p1", "code": "718-7", "value": 140, "unit": "g/L", "id": "p1-hb"},
        {"raise": "KeyError"},
    )
    summary = _run(members, ("hostile.fake", hostile, "fake"))
    (letter,) = _letters(members, summary.run_id)
    retried, again = actions.do_retry_dead_letter(members, actor=SYSTEM, id=letter.id)
    assert again.status == "succeeded" and again.duplicates == 2 and again.rejected == 1
    assert retried.status is DeadLetterStatus.OPEN and retried.retry_count == 1


# Real hostile files, one per format, that raised out of the connectors.
HOSTILE = {
    "hl7v2-junk": ("junk.hl7", b"MSH\xff\xfe\x00junk|||\r", "hl7v2"),
    "hl7v2-separator": (
        "hash.hl7",
        b"MSH#^~\\&#LIS#TOWN##CP#20260301##ORU^R01#M1#P#2.5\rPID#1##T1^^^TOWN^MR##A^B\r",
        "hl7v2",
    ),
    "fhir-deep": (
        "deep.json",
        b'{"resourceType":"Patient","id":"x","extension":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "fhir",
    ),
    "fhir-misspelled": ("typo.json", b'{"resourceType":"Patinet","id":"x"}', "fhir"),
    "csv-huge-field": (
        "patients.csv",
        b'Id,BIRTHDATE,FIRST,LAST,GENDER\n1,2000-01-01,"' + b"a" * 200_000 + b'",B,M\n',
        "csv",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_file_never_takes_the_good_files_with_it(
    members: sessionmaker[Session], case: str
) -> None:
    name, hostile, fmt = HOSTILE[case]
    good = feeds.hl7_file(feeds.HL7_CBC)
    summary = actions.do_ingest(
        members,
        actor=SYSTEM,
        institution_id="clinic",
        inputs=[
            actions.Input(name=name, data=hostile, format=fmt),
            actions.Input(name="cbc.hl7", data=good),
        ],
        mapping="synthea",
    )
    assert summary.status == "succeeded" and summary.balanced
    with members() as s:
        codes = {o.original_code for o in s.scalars(select(Observation))}
    assert {"HGB", "WBC", "GLU"} <= codes  # the good file is stored
    for letter in _letters(members, summary.run_id):
        assert letter.raw in hostile and letter.source == name  # exact bytes, never re-encoded
        assert name in letter.reason


@pytest.mark.skipif(not _parallel.available(), reason="needs fork (Linux)")
def test_parse_workers_keep_going_past_a_raising_input(
    members: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actions, "PARALLEL_MIN_BYTES", 0)
    hostile = _fake(
        {"patient": "p1", "code": "718-7", "value": 140, "unit": "g/L", "id": "p1-hb"},
        {"raise": "RecursionError"},
    )
    other = _fake({"patient": "g2", "code": "718-7", "value": 120, "unit": "g/L", "id": "g2-hb"})
    inputs = [("good.fake", GOOD, "fake"), ("hostile.fake", hostile, "fake")]
    inputs.append(("other.fake", other, "fake"))
    summary = _run(members, *inputs, workers=2)
    assert summary.status == "succeeded" and summary.balanced
    assert (summary.received, summary.stored, summary.rejected) == (7, 6, 1)
    (letter,) = _letters(members, summary.run_id)
    assert letter.raw == hostile and "RecursionError" in letter.reason


def _dies_on_one(index: int) -> Iterator[tuple[int, int]]:
    yield index, os.getpid()
    if index == 1 and os.getpid() != PARENT:
        os._exit(3)  # a worker killed mid-stream (out of memory, say)
    yield index, os.getpid()


PARENT = os.getpid()


@pytest.mark.skipif(not _parallel.available(), reason="needs fork (Linux)")
def test_a_dead_worker_ends_its_stream_with_what_recover_gives_and_the_rest_go_on() -> None:
    recovered: list[tuple[int, str]] = []

    def recover(index: int, exc: BaseException) -> Iterator[tuple[int, int]]:
        recovered.append((index, str(exc)))
        yield index, -1

    out = list(_parallel.ordered(_dies_on_one, 4, workers=2, chunk=1, recover=recover))
    # stream 1 ends with the recovered item (what it sent before dying may be lost with it)
    ones = [pid for i, pid in out if i == 1]
    assert ones[-1] == -1 and len(ones) <= 2
    assert [i for i, _pid in out if i != 1] == [0, 0, 2, 2, 3, 3]
    assert [i for i, _pid in out] == sorted(i for i, _pid in out)
    assert recovered and recovered[0][0] == 1 and "exit code 3" in recovered[0][1]
    # stream 3 was the dead worker's: produced here
    assert {pid for i, pid in out if i == 3} == {os.getpid()}


def test_a_unit_that_cannot_be_standardised_is_rejected_alone(
    members: sessionmaker[Session],
) -> None:
    feed = _fake(
        {"patient": "p1", "code": "718-7", "value": 140, "unit": {"not": "a unit"}, "id": "bad"},
        {"patient": "p2", "code": "718-7", "value": 150, "unit": "g/L", "id": "p2-hb"},
    )
    summary = _run(members, ("odd.fake", feed, "fake"))
    assert summary.status == "succeeded" and summary.balanced
    assert (summary.received, summary.stored, summary.rejected) == (4, 2, 2)
    (letter,) = _letters(members, summary.run_id)
    assert letter.position == "odd.fake#1" and "cannot standardise" in letter.reason
    with members() as s:
        assert {o.local_id for o in s.scalars(select(Observation))} == {"p2-hb"}
