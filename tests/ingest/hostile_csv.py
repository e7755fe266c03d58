"""Hostile CSV exports, one function per case (deterministic). They use the village clinic's
mapping (`tests.ingest.feeds.CSV_MAPPING`); `mapping(**changes)` gives a variant of it."""

from __future__ import annotations

import codecs
import copy
from typing import Any

from tests.ingest import feeds

HEADER = "病人ID,姓名,性别,出生日期,身份证号,电话"


def mapping(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(feeds.CSV_MAPPING)
    doc.update(changes)
    return doc


def _rows(*rows: str, header: str = HEADER, sep: str = ",") -> str:
    return "\n".join([header.replace(",", sep), *(r.replace(",", sep) for r in rows)]) + "\n"


def ragged_rows() -> bytes:
    """Line 3 has too few fields, line 4 too many; lines 2 and 5 are whole."""
    return _rows(
        "R1,赵六,男,1948/02/03,,13700000001",
        "R2,钱七,女",
        "R3,孙八,男,1950/01/01,,137,extra,more",
        "R4,李九,女,1970/05/06,,13700000004",
    ).encode()


def quoted_newlines() -> bytes:
    """A name cell with a line break inside quotes: the next row starts on line 4."""
    return (HEADER + '\nQ1,"赵\n六",男,1948/02/03,,1\nQ2,钱七,女,1960/11/30,,2\n').encode()


def missing_mapped_column() -> bytes:
    """A patients export without the birth date column the mapping reads."""
    return "病人ID,姓名,性别,身份证号,电话\nM1,赵六,男,,1\n".encode()


def semicolon_delimited() -> bytes:
    return _rows("S1,赵六,男,1948/02/03,,1", "S2,钱七,女,1960/11/30,,2", sep=";").encode()


def tab_delimited() -> bytes:
    return _rows("T1,赵六,男,1948/02/03,,1", sep="\t").encode()


def empty_file() -> bytes:
    return b""


def header_only() -> bytes:
    return (HEADER + "\n").encode()


def bom_header() -> bytes:
    return codecs.BOM_UTF8 + _rows("B1,赵六,男,1948/02/03,,1").encode()


def huge_cell(size: int = 1024 * 1024) -> bytes:
    """A 1 MB name cell between two ordinary rows."""
    return _rows(
        "H1,赵六,男,1948/02/03,,1", f"H2,{'长' * size},女,1960/11/30,,2", "H3,孙八,男,1950/01/01,,3"
    ).encode()


def unclosed_quote() -> bytes:
    return (HEADER + '\nU1,赵六,男,1948/02/03,,1\nU2,"钱七,女,1960/11/30,,2\n').encode()


def gb18030_export() -> bytes:
    return _rows("G1,赵六,男,1948/02/03,,1", "G2,钱七,女,1960/11/30,,2").encode("gb18030")


def utf16_excel() -> bytes:
    """Excel's 'Unicode text': UTF-16 with a byte-order mark, tab-separated."""
    return _rows("X1,赵六,男,1948/02/03,,1", sep="\t").encode("utf-16")


def latin1_export() -> bytes:
    """A European system's export in Latin-1 (the mapping's Chinese column names are renamed
    through a variant mapping: see `latin_mapping`)."""
    rows = [
        "pid,name,sex,born",
        "L1,MÜLLER JOSÉ,male,1948/02/03",
        "L2,Françoise Lefèvre,female,1960/11/30",
    ]
    return ("\n".join(rows) + "\n").encode("latin-1")


def latin_mapping() -> dict[str, Any]:
    return mapping(
        name="euro",
        tables=[
            {
                "name": "patients",
                "files": ["*patients*.csv"],
                "record": "patient",
                "columns": {"local_id": "pid", "name": "name", "sex": "sex", "birth_date": "born"},
            }
        ],
    )


def low_confidence() -> bytes:
    """Bytes that are neither GB18030 characters nor Latin letters."""
    return (
        _rows("Z1,A\x80\x80\x80B,男,1948/02/03,,1")
        .encode("utf-8")
        .replace("A\u0080\u0080\u0080B".encode(), b"A\x80\x80\x80B")
    )
