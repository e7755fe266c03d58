"""Hypothesis over HL7 v2 bytes: generated messages and mutations of the hostile cases through
the connector (and fewer through `do_ingest` on SQLite): no exception, every unit accounted for.

`FUZZ_EXAMPLES` (environment) raises the number of examples for a longer local run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from carepool.ingest import actions
from carepool.ingest.connectors import ParseOptions, connector_for
from tests.ingest.conftest import SYSTEM
from tests.ingest.hostile import hl7 as hostile

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
CONNECTOR = connector_for("hl7v2")
SEEDS = [fn() for fn in hostile.CASES.values()]
SEGMENT_IDS = ["MSH", "PID", "PV1", "ORC", "OBR", "OBX", "NTE", "AL1", "EVN", "ZZZ", "FHS", "BHS"]
INSERTS = [b"\r", b"\n", b"|", b"^", b"\xef\xbb\xbf", b"\x0b", b"\x1c\r", b"MSH|^~\\&|", b"PID|1||"]
_field_text = st.text(
    alphabet=st.sampled_from(list("AZ09 .-<>=^~\\&|#!张É\r\n\x0b\x1c")), max_size=12
)


@st.composite
def generated(draw: st.DrawFn) -> bytes:
    sep = draw(st.sampled_from(["|", "#", "!", "^"]))
    segments = [hostile.msh(draw(st.text("AB12", min_size=0, max_size=4)), sep=sep)]
    for _ in range(draw(st.integers(0, 8))):
        sid = draw(st.sampled_from(SEGMENT_IDS))
        fields = draw(st.lists(_field_text, max_size=20))
        segments.append(sep.join([sid, *fields]))
    end = draw(st.sampled_from(["\r", "\n", "\r\n", ""]))
    text = end.join(segments)
    encoding = draw(st.sampled_from(["utf-8", "gb18030", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(INSERTS))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        else:
            del data[at:]
    return bytes(data)


FEEDS = st.one_of(generated(), mutated(), st.binary(max_size=600))


def _check(data: bytes) -> int:
    units = list(CONNECTOR.units(data, source="fuzz", options=ParseOptions()))
    for unit in units:
        assert unit.received >= 1, unit  # a unit yields records or says why it cannot
        for _position, reason in unit.errors:
            assert reason
        kept = [
            text
            for p in unit.records
            if getattr(p.record, "type_name", "") == "hl7:segments"
            for text in p.record.body["segments"]  # type: ignore[union-attr]
        ]
        if kept and not unit.errors:  # what is counted as not modelled is what is kept
            assert len(kept) == sum(unit.unmodelled.values())
    return sum(u.received for u in units)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(FEEDS)
@example(b"\x00" + hostile.utf16()[1:])  # a broken UTF-16 mark: a UTF-8 lead byte was stripped
def test_no_hl7_input_raises_and_every_unit_is_accounted_for(data: bytes) -> None:
    _check(data)


@settings(
    max_examples=max(EXAMPLES // 10, 10), deadline=None, suppress_health_check=list(HealthCheck)
)
@given(st.one_of(generated(), mutated()))
def test_fuzzed_hl7_ingests_balanced(sqlite_members: sessionmaker[Session], data: bytes) -> None:
    received = _check(data)
    summary = actions.do_ingest(
        sqlite_members,
        actor=SYSTEM,
        institution_id="hosp",
        inputs=[actions.Input(name="fuzz.hl7", data=data, format="hl7v2")],
    )
    assert summary.status == "succeeded" and summary.balanced
    assert summary.received == received
