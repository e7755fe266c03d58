"""Hostile HL7 v2 feeds, one function per case (bytes as they arrive; deterministic).

Each case is a legal-but-unusual or a broken input seen from real clinic feeds: batches and
concatenated files, byte-order marks before any message, MLLP bytes, mixed line endings, every
character set the consortium meets, several patients in one message, separators other than `|`,
junk and cut-off messages, collisions inside one message, values sent as bounds, invalid dates
and codes, every kind of patient identifier, and segments the connector does not model.
"""

from __future__ import annotations

import random

BOM = b"\xef\xbb\xbf"
VT, FS = b"\x0b", b"\x1c\r"


def msh(control: str, mtype: str = "ORU^R01", *, charset: str = "", sep: str = "|") -> str:
    fields = ["MSH", "^~\\&", "LIS", "HOSTILE", "", "CAREPOOL", "20260301083000+0800", "", mtype]
    fields += [control, "P", "2.5.1", "", "", "", "", "", charset]
    text = sep.join(fields).rstrip(sep)
    return text


def pid(mrn: str, family: str = "DOE", given: str = "JANE", birth: str = "19800101") -> str:
    return f"PID|1||{mrn}^^^HOSTILE^MR||{family}^{given}||{birth}|F"


def obr(filler: str, code: str = "CBC") -> str:
    return f"OBR|1|P{filler}|{filler}^HOSTILE|{code}^Blood count^L|||20260301080000+0800"


def obx(n: int, code: str, value: str, kind: str = "NM", sub: str = "") -> str:
    return f"OBX|{n}|{kind}|{code}^{code} name^L|{sub}|{value}|g/L|120-160|N|||F"


def message(*segments: str, end: str = "\r") -> str:
    return end.join(segments) + end


def cbc(control: str, mrn: str, filler: str) -> str:
    return message(msh(control), pid(mrn), obr(filler), obx(1, "HGB", "135"), obx(2, "WBC", "6.1"))


# -- 1. splitting -----------------------------------------------------------------------------


def batch() -> bytes:
    """FHS/BHS batch envelope around two messages, BTS/FTS trailers."""
    return (
        "FHS|^~\\&|LIS|HOSTILE\r"
        "BHS|^~\\&|LIS|HOSTILE\r"
        + cbc("B1", "M001", "F001")
        + cbc("B2", "M002", "F002")
        + "BTS|2\rFTS|1\r"
    ).encode()


def concatenated_with_boms() -> bytes:
    """Three messages in one file, each starting with a UTF-8 byte-order mark."""
    return b"".join(BOM + cbc(f"C{i}", f"M10{i}", f"F10{i}").encode() + b"\n" for i in range(3))


def mllp_framed() -> bytes:
    """Two MLLP frames saved to a file as they came off the wire."""
    return b"".join(VT + cbc(f"L{i}", f"M20{i}", f"F20{i}").encode() + FS for i in range(2))


def frames_back_to_back() -> bytes:
    """MLLP frames with no CR after the end byte: the next start byte follows at once."""
    return (
        VT
        + cbc("K0", "M210", "F210").encode()
        + b"\x1c"
        + VT
        + cbc("K1", "M211", "F211").encode()
        + FS
    )


def line_endings() -> bytes:
    """Three messages: segments ending CR, LF and CRLF."""
    return "".join(
        message(msh(f"E{i}"), pid(f"M30{i}"), obr(f"F30{i}"), obx(1, "HGB", "130"), end=end)
        for i, end in enumerate(("\r", "\n", "\r\n"))
    ).encode()


# -- 2. character sets ------------------------------------------------------------------------


def _named(control: str, charset: str, family: str, given: str) -> str:
    return message(
        msh(control, charset=charset),
        pid(f"N-{control}", family, given, "19750612"),
        obr(f"FN-{control}"),
        obx(1, "GLU", "5.4"),
    )


def gb18030_declared() -> bytes:
    return _named("G1", "GB 18030-2000", "张", "三丰").encode("gb18030")


def gbk_detected() -> bytes:
    """GBK bytes, no MSH-18: detected (GB2312 names are pairs of high bytes)."""
    return _named("G2", "", "欧阳", "娜娜").encode("gbk")


def latin1_declared() -> bytes:
    return _named("L1", "8859/1", "MÜLLER", "JOSÉ").encode("latin-1")


def latin1_detected() -> bytes:
    """Latin-1 without MSH-18: read as GB18030 the `É^` pair would swallow a separator."""
    return _named("L2", "", "MÜLLER", "JOSÉ").encode("latin-1")


def utf8_mixed_with_gb() -> bytes:
    """A GB18030 message, then a UTF-8 one with a BOM, in one file: each decoded on its own."""
    return (
        _named("X1", "", "王", "小明").encode("gb18030")
        + BOM
        + _named("X2", "UNICODE UTF-8", "李", "雷").encode("utf-8")
    )


def utf16() -> bytes:
    """A UTF-16 (little-endian, with a mark) export of two messages."""
    text = _named("U1", "", "Öberg", "Åsa") + _named("U2", "", "周", "杰")
    return text.encode("utf-16")


def unknown_msh18() -> bytes:
    return _named("K1", "KLINGON-8", "DOE", "JOHN").encode()


def undecidable() -> bytes:
    """High bytes that are neither UTF-8, nor GB text, nor Latin letters."""
    rng = random.Random("undecidable")
    junk = bytes(rng.choice([0x80, 0x81, 0x9F, 0xA0, 0xFF]) for _ in range(12))
    return (message(msh("Z1"), pid("Z1").replace("DOE", "D") + "|" * 3) + "NTE|1||").encode() + (
        junk + b"\r"
    )


# -- 3. patient groups ------------------------------------------------------------------------


def two_patient_groups() -> bytes:
    """One ORU^R01 with two patients, each with a visit and results (legal in v2.5)."""
    return message(
        msh("P1"),
        pid("PA", "ALPHA", "ANN"),
        "PV1|1|O|CLINIC||||||||||||||||VA^^^HOSTILE",
        obr("FA"),
        obx(1, "HGB", "101"),
        pid("PB", "BETA", "BOB"),
        "PV1|1|I|WARD||||||||||||||||VB^^^HOSTILE",
        obr("FB"),
        obx(1, "HGB", "202"),
        obx(2, "WBC", "9.9"),
    ).encode()


def oml_two_patients() -> bytes:
    return message(
        msh("O1", "OML^O21"),
        pid("OA", "GAMMA", "GIL"),
        "ORC|NW|PLA^HIS",
        "OBR|1|PLA^HIS||GLU^Glucose^L",
        pid("OB", "DELTA", "DAN"),
        "ORC|NW|PLB^HIS",
        "OBR|1|PLB^HIS||K^Potassium^L",
    ).encode()


# -- 4. nothing aborts ------------------------------------------------------------------------


def field_separator(sep: str = "#") -> bytes:
    """A legal field separator other than `|` (MSH-1 may be any character)."""
    segs = [msh("S1", sep=sep), pid("SEP1"), obr("FSEP"), obx(1, "HGB", "140")]
    return message(*(s.replace("|", sep) for s in segs)).encode()


def msh_junk() -> bytes:
    return b"MSH\x00\x01junk junk\rPID|1||X\r"


def truncated_msh() -> bytes:
    return b"MSH|^~\\&|LAB\rPID|1||T1^^^H^MR||A^B\r"


def empty_segments() -> bytes:
    return (msh("ES") + "\r\r   \r|||\rPID\r" + pid("ES1") + "\r\r" + obr("FES") + "\r").encode()


def binary_garbage() -> bytes:
    rng = random.Random("garbage")
    return bytes(rng.randrange(256) for _ in range(2048))


def long_fields() -> bytes:
    """A 200 kB OBX-5 (an embedded document) and a 300-character patient id."""
    return (
        message(msh("LF1"), pid("M400"), obr("F400"), obx(1, "DOC", "A" * 200_000, "ED"))
        + message(msh("LF2"), pid("Q" * 300), obr("F401"), obx(1, "HGB", "1"))
    ).encode()


def cut_in_obx() -> bytes:
    """A good message, then one cut in the middle of its last OBX (no terminator)."""
    whole = message(msh("T1"), pid("M500"), obr("F500"), obx(1, "HGB", "150"), obx(2, "WBC", "7"))
    cut = message(msh("T2"), pid("M501"), obr("F501"), obx(1, "HGB", "151"))
    return (whole + cut + "OBX|2|NM|WBC^WBC name^L||7.").encode()


def cut_frame() -> bytes:
    """An MLLP frame whose end never came."""
    return VT + cbc("T3", "M502", "F502").encode()


# -- 5. collisions ----------------------------------------------------------------------------


def obx_collision() -> bytes:
    """Two OBX with the same code and empty OBX-4 in one OBR; two OBR sharing a filler."""
    return message(
        msh("D1"),
        pid("M600"),
        obr("F600"),
        obx(1, "GLU", "5.1"),
        obx(2, "GLU", "7.9"),
        obr("F600", "CHEM"),
        obx(1, "NA", "140"),
    ).encode()


# -- 6. values as sent ------------------------------------------------------------------------


def bounds_and_bad_values() -> bytes:
    return message(
        msh("V1"),
        "PID|1||M700^^^HOSTILE^MR||ROE^RAY||19801345|X",
        obr("F700"),
        obx(1, "CRP", "<^0.2", "SN"),
        obx(2, "TNT", "<0.2"),
        obx(3, "EGFR", ">90", "ST"),
        obx(4, "LEU", "<5", "ST"),
        obx(5, "HGB", "=^130", "SN"),
        "OBX|6|NM|K^Potassium^L||4.1|mmol/L|3.5-5.1|N|||F|||2026XX01",
        obx(7, "NOTE", "see comment", "ST"),
    ).encode()


# -- 7. identifiers ---------------------------------------------------------------------------


def identifiers() -> bytes:
    return message(
        msh("I1", "ADT^A04"),
        "EVN|A04|20260301083000",
        "PID|1|EXT77^^^OLDHIS|M800^^^HOSTILE^MR~H-55^^^HOSP2^PI|ALT9^^^LEGACY|"
        "ROE^RIA||19700101|F|||||||||||123-45-6789|DL998^CA^20300101",
        "PV1|1|O",
    ).encode()


# -- 8. segments not modelled -----------------------------------------------------------------


def unmodelled_segments() -> bytes:
    return message(
        msh("M1", "ADT^A01"),
        "EVN|A01|20260301083000",
        "PID|1||M900^^^HOSTILE^MR||ROE^RON||19600101|M",
        "PD1|||CLINIC",
        "NK1|1|ROE^RITA|SPO",
        "PV1|1|I|WARD||||||||||||||||V900^^^HOSTILE",
        "AL1|1|DA|PEN^Penicillin^L|SV|Rash",
        "DG1|1||I10^Hypertension^I10",
        "DG1|2||E11^Diabetes^I10",
        "ZXT|local|extension",
    ).encode()


CASES = {
    name: fn
    for name, fn in globals().copy().items()
    if callable(fn)
    and fn.__module__ == __name__
    and name not in {"msh", "pid", "obr", "obx", "message", "cbc", "_named"}
}
