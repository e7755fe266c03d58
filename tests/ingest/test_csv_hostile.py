"""Hostile CSV exports (tests/ingest/hostile_csv.py): ragged rows, quoted newlines, missing
columns, other delimiters, empty files, huge cells and every character set clinics export in —
through the connector and through `do_ingest` into the store (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.ingest.connectors import ParseOptions, connector_for
from carepool.ingest.connectors.base import Unit
from carepool.ingest.models import DeadLetter
from carepool.records.models import Patient
from tests.ingest import hostile_csv as h
from tests.ingest.conftest import Ingest

NAME = "clinic-patients.csv"


def _units(data: bytes, doc: dict[str, Any] | None = None, **kw: Any) -> list[Unit]:
    options = ParseOptions(mapping_doc=doc or h.mapping(), **kw)
    return list(connector_for("csv").units(data, source=NAME, options=options))


def _stored(members: sessionmaker[Session]) -> dict[str, str]:
    with members() as s:
        return {pid: name for pid, name in s.execute(select(Patient.local_id, Patient.name))}


def test_ragged_rows_are_rejected_with_their_line(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    units = _units(h.ragged_rows())
    assert [u.position for u in units] == [f"{NAME}:{n}" for n in (2, 3, 4, 5)]
    assert units[1].errors[0][1].startswith("line 3: too few fields: the row has 3, the header")
    assert units[2].errors[0][1].startswith("line 4: too many fields: the row has 8")
    summary = ingest(h.ragged_rows(), NAME, mapping_doc=h.mapping())
    assert (summary.received, summary.stored, summary.rejected) == (4, 2, 2)
    assert set(_stored(members)) == {"R1", "R4"}
    with members() as s:
        raws = sorted(s.scalars(select(DeadLetter.raw)))
    assert raws[0].decode().splitlines() == [h.HEADER, "R2,钱七,女"]


def test_a_quoted_newline_stays_in_its_cell_and_lines_stay_true() -> None:
    units = _units(h.quoted_newlines())
    assert [u.position for u in units] == [f"{NAME}:2", f"{NAME}:4"]
    assert units[0].records[0].record.name == "赵\n六"  # type: ignore[union-attr]


def test_a_missing_mapped_column_names_the_column_and_the_mapping(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    (unit,) = _units(h.missing_mapped_column())
    reason = unit.errors[0][1]
    assert "lacks column(s) 出生日期" in reason and "'willow-clinic' table 'patients'" in reason
    summary = ingest(h.missing_mapped_column(), NAME, mapping_doc=h.mapping())
    assert (summary.received, summary.rejected) == (1, 1)


@pytest.mark.parametrize(
    ("case", "delimiter"), [(h.semicolon_delimited, ";"), (h.tab_delimited, "\t")]
)
def test_the_mapping_declares_its_delimiter(
    ingest: Ingest, members: sessionmaker[Session], case: Any, delimiter: str
) -> None:
    doc = h.mapping(delimiter=delimiter)
    units = _units(case(), doc)
    assert all(u.errors == [] for u in units) and units[0].records[0].record.name == "赵六"  # type: ignore[union-attr]
    assert units[0].raw.decode().splitlines()[0] == h.HEADER.replace(",", delimiter)
    summary = ingest(case(), NAME, mapping_doc=doc)
    assert (
        summary.rejected == 0
        and _stored(members)[units[0].records[0].record.local_id or ""] == "赵六"
    )


def test_a_delimiter_is_one_character() -> None:
    (unit,) = _units(h.semicolon_delimited(), h.mapping(delimiter=";;"))
    assert "a delimiter is one character" in unit.errors[0][1]


def test_an_empty_file_is_refused_and_a_header_alone_is_nothing(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    (unit,) = _units(h.empty_file())
    assert "is empty: not even a header row" in unit.errors[0][1]
    assert _units(h.header_only()) == []
    # an empty delivery is not an error of the feed: the run succeeds and warns
    empty = ingest(h.empty_file(), NAME, mapping_doc=h.mapping())
    assert empty.received == 0 and empty.rejected == 0
    assert empty.warnings and "is empty (0 bytes)" in empty.warnings[0]
    assert ingest(h.header_only(), NAME, mapping_doc=h.mapping()).received == 0


def test_a_bom_prefixed_header_is_read(ingest: Ingest, members: sessionmaker[Session]) -> None:
    (unit,) = _units(h.bom_header())
    assert unit.errors == [] and unit.records[0].record.local_id == "B1"
    assert ingest(h.bom_header(), NAME, mapping_doc=h.mapping()).stored == 1


def test_a_one_megabyte_cell_does_not_end_the_file(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    units = _units(h.huge_cell())
    assert [u.records[0].record.local_id for u in units] == ["H1", "H2", "H3"]
    summary = ingest(h.huge_cell(), NAME, mapping_doc=h.mapping())
    assert summary.received == 3 and summary.balanced
    assert {"H1", "H3"} <= set(_stored(members))  # H2 may exceed a column the store limits


def test_an_unclosed_quote_says_so() -> None:
    units = _units(h.unclosed_quote())
    assert units[0].records and "a quote opened on this line never closes" in units[1].errors[0][1]


@pytest.mark.parametrize(
    ("case", "doc"),
    [
        (h.gb18030_export, None),
        (h.utf16_excel, h.mapping(delimiter="\t")),
        (h.latin1_export, h.latin_mapping()),
    ],
    ids=["gb18030", "utf-16", "latin-1"],
)
def test_clinic_encodings_land_exactly(
    ingest: Ingest, members: sessionmaker[Session], case: Any, doc: Any
) -> None:
    units = _units(case(), doc)
    names = [u.records[0].record.name for u in units]  # type: ignore[union-attr]
    assert all("\ufffd" not in n for n in names)
    assert names[0] in ("赵六", "MÜLLER JOSÉ")
    again = _units(units[0].raw, doc)  # a dead letter's raw reads back alone
    assert again[0].records[0].record.name == names[0]  # type: ignore[union-attr]
    summary = ingest(case(), NAME, mapping_doc=doc or h.mapping())
    assert summary.rejected == 0
    assert names[0] in _stored(members).values()


def test_a_declared_encoding_is_honoured_and_strict() -> None:
    (unit,) = _units(h.latin1_export()[:49], h.latin_mapping(), encoding="latin-1")
    assert unit.records[0].record.name == "MÜLLER JOSÉ"  # type: ignore[union-attr]
    (refused,) = _units(h.gb18030_export(), encoding="utf-8")
    assert "not valid utf-8 (declared)" in refused.errors[0][1]


def test_a_low_confidence_decode_is_dead_lettered_not_guessed(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    data = h.low_confidence()
    (unit,) = _units(data)
    assert unit.records == [] and "cannot tell the character set" in unit.errors[0][1]
    summary = ingest(data, NAME, mapping_doc=h.mapping())
    assert (summary.stored, summary.rejected) == (0, 1)
    with members() as s:
        assert s.scalar(select(DeadLetter.raw)) == data


def test_the_documented_mapping_examples_are_valid_mappings() -> None:
    """docs/csv-mapping.md: every YAML example is a mapping document the connector accepts."""
    import re
    from pathlib import Path

    import yaml

    from carepool.ingest.connectors.tabular import parse_mapping

    text = (Path(__file__).parents[2] / "docs" / "csv-mapping.md").read_text("utf-8")
    examples = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert len(examples) == 2
    docs = [parse_mapping(yaml.safe_load(e), "docs/csv-mapping.md") for e in examples]
    assert {t.record for d in docs for t in d.tables} == {
        "patient",
        "encounter",
        "observation",
        "report",
        "order",
        "other",
    }
    assert docs[1].delimiter == ";"
