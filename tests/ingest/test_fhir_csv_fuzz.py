"""Fuzzing the FHIR and CSV connectors with Hypothesis: generated and mutated FHIR JSON, NDJSON
and CSV never raise, and every unit is accounted for (records or errors, never neither). A
smaller number goes through `do_ingest` on SQLite: the run succeeds with balanced counters.

Bounded for the suite (`FUZZ_EXAMPLES`, 60 by default); `FUZZ_EXAMPLES=2000` for a longer local
run (figures in docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from carepool.ingest import actions
from carepool.ingest.connectors import ParseOptions, connector_for
from tests.ingest import feeds, hostile_csv, hostile_fhir
from tests.ingest.conftest import SYSTEM

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SEEDS = [
    json.dumps(hostile_fhir.patient()).encode(),
    json.dumps(hostile_fhir.observation()).encode(),
    feeds.fhir_bundle(),
    hostile_fhir.bundle_with_bad_entry("transaction"),
    hostile_fhir.values_as_sent(),
    hostile_fhir.history_bundle(),
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few bytes replaced, inserted or deleted, or cut short."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["replace", "insert", "delete", "cut"]))
        byte = draw(st.sampled_from(list(b'{}[]",:0-9eE.\\ \n\x00\xff\xef\xbb\xbfnNtrue')))
        if op == "replace":
            data[at] = byte
        elif op == "insert":
            data.insert(at, byte)
        elif op == "delete":
            del data[at]
        else:
            del data[at:]
    return bytes(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceType",
                    "id",
                    "status",
                    "gender",
                    "entry",
                    "resource",
                    "code",
                    "subject",
                    "valueQuantity",
                    "value",
                    "type",
                    "fullUrl",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)
resource_types = st.sampled_from(["Patient", "Observation", "Bundle", "Claim", "Observaton", ""])


@st.composite
def generated_resource(draw: st.DrawFn) -> bytes:
    value = draw(json_values)
    if isinstance(value, dict) and draw(st.booleans()):
        value["resourceType"] = draw(resource_types)
    return json.dumps(value).encode()


def _check(fmt: str, data: bytes, name: str, **kw: Any) -> list[Any]:
    units = list(connector_for(fmt).units(data, source=name, options=ParseOptions(**kw)))
    for unit in units:  # every unit carries what it became: records, errors, or both
        assert unit.received >= 1, unit.position
        assert isinstance(unit.raw, bytes)
        assert all(isinstance(why, str) and why for _p, why in unit.errors)
    return units


@FUZZ
@given(st.one_of(mutated(SEEDS), generated_resource()))
def test_fhir_json_never_raises(data: bytes) -> None:
    units = _check("fhir", data, "fuzz.json")
    assert units  # even an empty input says so


@FUZZ
@given(st.lists(st.one_of(mutated(SEEDS[:2]), generated_resource()), min_size=1, max_size=6))
def test_ndjson_lines_are_each_their_own_unit(lines: list[bytes]) -> None:
    lines = [line.replace(b"\n", b" ").replace(b"\r", b" ") for line in lines]
    data = b"\n".join(lines) + b"\n"
    units = _check("fhir", data, "fuzz.ndjson")
    if not data.strip():
        assert [u.position for u in units] == ["fuzz.ndjson"]  # an empty input says so
    elif b"\x00" not in data and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        expected = [n for n, line in enumerate(lines, start=1) if line.strip()]
        found = [int(u.position.rsplit(":", 1)[1].split("#")[0]) for u in units]
        assert sorted(set(found)) == expected  # a bundle on a line gives a unit per entry


cells = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, str]:
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=8), max_size=6))
    sep = draw(st.sampled_from([",", ";", "\t"]))
    lines = [hostile_csv.HEADER.replace(",", sep)] + [sep.join(r) for r in rows]
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    codec = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "gb18030"]))
    try:
        data = text.encode(codec)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    if draw(st.booleans()):
        data = draw(mutated([data]))
    return data, sep


@FUZZ
@given(csv_files())
def test_csv_never_raises(case: tuple[bytes, str]) -> None:
    data, sep = case
    _check("csv", data, "fuzz-patients.csv", mapping_doc=hostile_csv.mapping(delimiter=sep))


@settings(
    max_examples=max(EXAMPLES // 4, 10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(fhir=st.one_of(mutated(SEEDS), generated_resource()), csv_case=csv_files())
def test_a_fuzzed_run_succeeds_and_balances(
    sqlite_members: sessionmaker[Session], fhir: bytes, csv_case: tuple[bytes, str]
) -> None:
    data, sep = csv_case
    for item, kw in (
        (actions.Input(name="fuzz.json", data=fhir, format="fhir"), {}),
        (
            actions.Input(name="fuzz-patients.csv", data=data, format="csv"),
            {"mapping_doc": hostile_csv.mapping(delimiter=sep)},
        ),
    ):
        summary = actions.do_ingest(
            sqlite_members, actor=SYSTEM, institution_id="hosp", inputs=[item], **kw
        )
        assert summary.status == "succeeded" and summary.balanced
