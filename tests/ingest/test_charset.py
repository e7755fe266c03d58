"""Character sets: marked, declared and detected encodings decode exactly or not at all."""

from __future__ import annotations

import codecs

import pytest

from carepool.ingest.connectors.charset import CharsetError, codec_name, decode_bytes

PID_CN = "PID|1||123^^^H^MR||张^三丰||19800101|M|||北京市朝阳区"
PID_LATIN = "PID|1||123^^^H^MR||MÜLLER^JOSÉ||19800101|M|||Straße 5"


@pytest.mark.parametrize("codec", ["gb18030", "gbk", "gb2312"])
def test_chinese_in_gb_is_detected(codec: str) -> None:
    found = decode_bytes(PID_CN.encode(codec))
    assert found.text == PID_CN
    assert found.encoding == "gb18030" and found.how == "detected"
    assert found.confidence >= 0.8


@pytest.mark.parametrize("codec", ["latin-1", "cp1252"])
def test_latin_names_are_not_read_as_gb18030(codec: str) -> None:
    # As GB18030, `É^` would be one character and the field after the name would shift.
    found = decode_bytes(PID_LATIN.encode(codec))
    assert found.text == PID_LATIN
    assert found.text.split("|")[7] == "19800101"


@pytest.mark.parametrize(
    ("data", "how"),
    [
        (codecs.BOM_UTF8 + PID_CN.encode(), "bom"),
        (PID_CN.encode("utf-16"), "bom"),
        (PID_CN.encode("utf-16-le"), "utf-16"),
        (PID_CN.encode("utf-16-be"), "utf-16"),
        (PID_CN.encode("utf-32"), "bom"),
        (PID_CN.encode(), "utf-8"),
    ],
)
def test_unicode_forms(data: bytes, how: str) -> None:
    found = decode_bytes(data)
    assert found.text.lstrip("\ufeff") == PID_CN
    assert found.how == how


def test_rare_name_characters_in_gbk_stay_chinese() -> None:
    # 喆 and 堃 lie outside GB2312 (lead bytes below 0xA1), common in given names
    text = "PID|1||9^^^H^MR||王^喆||19900101|M~NK1|1|李^堃|"
    assert decode_bytes(text.encode("gbk")).text == text


def test_declared_encoding_is_strict() -> None:
    assert decode_bytes(PID_LATIN.encode("latin-1"), declared="8859/1").text == PID_LATIN
    assert decode_bytes(PID_CN.encode("gbk"), declared="GBK").text == PID_CN
    with pytest.raises(CharsetError, match=r"not valid utf-8 \(declared\): byte \d+"):
        decode_bytes(PID_CN.encode("gbk"), declared="UNICODE UTF-8")
    with pytest.raises(CharsetError, match="unknown character set"):
        decode_bytes(b"MSH|", declared="klingon-7")


def test_ambiguous_bytes_are_refused_with_the_evidence() -> None:
    # bytes that are neither GB18030 characters nor Latin letters
    data = b"PID|1||7||A\x80\x80\x80B||1980"
    with pytest.raises(CharsetError, match="cannot tell the character set") as err:
        decode_bytes(data)
    assert "declare it" in err.value.reason


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("UNICODE UTF-8", "utf-8"),
        ("GB 18030-2000", "gb18030"),
        ("8859/1", "latin-1"),
        ("GBK", "gb18030"),
        ("utf_16", "utf-16"),
    ],
)
def test_hl7_table_0211_names(name: str, codec: str) -> None:
    assert codec_name(name) == codec
