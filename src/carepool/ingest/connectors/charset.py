"""Character sets of incoming bytes: declared, marked or detected — never guessed silently.

Clinics send UTF-8 (with or without a byte-order mark), GBK/GB18030 (the norm for Chinese HIS and
LIS exports), UTF-16 (Excel and some Windows exports) and Latin-1/Windows-1252 (older European
systems). A wrong guess is worse than a refusal: GB18030 decodes almost any byte string, so a
Latin-1 `MÜLLER^JOSÉ` read as GB18030 swallows the `^` after `É` and shifts every later field.

`decode_bytes` therefore decides in this order and says how and how sure it is:

1. a byte-order mark (UTF-8, UTF-16, UTF-32) — certain;
2. an encoding the sender declared (HL7 MSH-18, a source setting, `--encoding`) — strict: bytes
   that are not valid in it are an error, not replaced;
3. UTF-16 without a mark (every other byte zero);
4. pure ASCII, then valid UTF-8 — UTF-8 with non-ASCII bytes is very rarely accidental;
5. otherwise GB18030 against Windows-1252/Latin-1, scored on the high bytes: Chinese text in GB
   comes as pairs of high bytes, while accented Latin letters are single (at most double) high
   bytes between ASCII letters; a tie goes to GB18030, the consortium's own encoding.

Below `MIN_CONFIDENCE` nothing is decoded: `CharsetError` says what was seen, and the caller
dead-letters the bytes so that a retry with a declared encoding can store them exactly.
See docs/decisions/0015-character-sets.md for why this is not a general-purpose detector.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["MIN_CONFIDENCE", "CharsetError", "Decoded", "codec_name", "decode_bytes"]

MIN_CONFIDENCE = 0.8

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# Names senders use for the encodings we accept, folded (upper case, no spaces, `-` or `_`), to
# Python codecs. GBK and GB2312 are decoded as GB18030, their superset.
_ALIASES = {
    "UTF8": "utf-8",
    "UNICODEUTF8": "utf-8",
    "UTF16": "utf-16",
    "UNICODEUTF16": "utf-16",
    "UTF16LE": "utf-16-le",
    "UTF16BE": "utf-16-be",
    "UTF32": "utf-32",
    "UNICODEUTF32": "utf-32",
    "UNICODE": "utf-8",
    "GB18030": "gb18030",
    "GB180302000": "gb18030",
    "GB180302005": "gb18030",
    "GB180302022": "gb18030",
    "GBK": "gb18030",
    "CP936": "gb18030",
    "GB2312": "gb18030",
    "EUCCN": "gb18030",
    "ASCII": "ascii",
    "USASCII": "ascii",
    "8859/1": "latin-1",
    "88591": "latin-1",
    "ISO88591": "latin-1",
    "ISOIR100": "latin-1",
    "LATIN1": "latin-1",
    "CP1252": "cp1252",
    "WINDOWS1252": "cp1252",
    "8859/2": "iso8859-2",
    "88592": "iso8859-2",
    "ISO88592": "iso8859-2",
    "8859/5": "iso8859-5",
    "ISO88595": "iso8859-5",
    "8859/7": "iso8859-7",
    "ISO88597": "iso8859-7",
    "8859/15": "iso8859-15",
    "ISO885915": "iso8859-15",
    "BIG5": "big5",
    "BIG5HKSCS": "big5hkscs",
    "SHIFTJIS": "shift_jis",
    "SJIS": "shift_jis",
    "EUCJP": "euc_jp",
    "EUCKR": "euc_kr",
    "KSX1001": "euc_kr",
    "ISOIR87": "iso2022_jp",
    "ISOIR149": "euc_kr",
    "KOI8R": "koi8_r",
}


class CharsetError(ValueError):
    """The bytes cannot be decoded with confidence; `reason` says what was seen and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    encoding: str  # the Python codec used
    confidence: float  # 0..1
    how: str  # "bom", "declared", "ascii", "utf-8", "utf-16", "detected"


def _fold(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).upper()


def codec_name(declared: str) -> str:
    """The Python codec for a declared character set name (`GBK`, `UNICODE UTF-8`, `8859/1`,
    `latin-1`); `CharsetError` for a name nobody here can decode."""
    folded = _fold(declared)
    if folded in _ALIASES:
        return _ALIASES[folded]
    try:
        return codecs.lookup(declared.strip()).name
    except LookupError:
        raise CharsetError(f"unknown character set {declared!r}") from None


def _strict(data: bytes, codec: str, how: str, confidence: float = 1.0) -> Decoded:
    try:
        return Decoded(data.decode(codec), codec, confidence, how)
    except UnicodeDecodeError as exc:
        raise CharsetError(
            f"the bytes are not valid {codec} ({how}): byte {exc.start} "
            f"({data[exc.start : exc.start + 4].hex(' ')}) — {exc.reason}"
        ) from None


_HIGH_RUN = re.compile(rb"[\x80-\xff]+")


def _gb_score(data: bytes) -> float:
    """How much the high bytes look like GB double-byte characters (0..1).

    A lead byte (0x81-0xFE) with a high trail byte is a character (GB2312's common ones and
    GBK's rarer ones such as 喆 or 堃 alike); with an ASCII trail byte (GBK allows 0x40-0x7E) it
    may be a rare character or an accented Latin letter before `L` or `^`, so it counts half.
    """
    high = 0
    good = 0.0
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        if byte < 0x80:
            i += 1
            continue
        high += 1
        trail = data[i + 1] if i + 1 < n else 0
        if 0x81 <= byte <= 0xFE and 0x80 <= trail <= 0xFE:
            high += 1
            good += 2
            i += 2
        elif 0x81 <= byte <= 0xFE and 0x40 <= trail <= 0x7E:
            good += 0.5
            i += 2
        else:
            i += 1
    return good / high if high else 0.0


def _latin_score(data: bytes) -> float:
    """How much the high bytes look like accented letters of a Latin script (0..1): runs of one
    (sometimes two) high bytes that decode to letters."""
    runs = list(_HIGH_RUN.finditer(data))
    if not runs:
        return 0.0
    good = 0
    total = 0
    for match in runs:
        run = match.group()
        total += len(run)
        if len(run) > 2:
            continue
        text = run.decode("cp1252", errors="replace")
        if all(ch.isalpha() for ch in text):
            good += len(run)
    return good / total


def decode_bytes(
    data: bytes, *, declared: str | None = None, min_confidence: float = MIN_CONFIDENCE
) -> Decoded:
    """Decode `data` as described in the module docstring, or raise `CharsetError`."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return _strict(data, codec, "bom")
    if declared:
        codec = codec_name(declared)
        return _strict(data, codec, "declared")
    if len(data) >= 4 and len(data) % 2 == 0 and b"\x00" in data:
        even, odd = data[0::2], data[1::2]
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.1 * len(even):
            return _strict(data, "utf-16-le", "utf-16", 0.9)
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.1 * len(odd):
            return _strict(data, "utf-16-be", "utf-16", 0.9)
    if data.isascii():
        return Decoded(data.decode("ascii"), "ascii", 1.0, "ascii")
    try:
        return Decoded(data.decode("utf-8"), "utf-8", 0.99, "utf-8")
    except UnicodeDecodeError:
        pass
    gb = _gb_score(data)
    latin = _latin_score(data)
    try:
        data.decode("gb18030")
    except UnicodeDecodeError:
        gb = 0.0
    if gb >= latin and gb >= min_confidence:
        return _strict(data, "gb18030", "detected", round(gb, 3))
    if latin > gb and latin >= min_confidence:
        codec = "cp1252"
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:  # bytes cp1252 leaves undefined: plain Latin-1
            codec, text = "latin-1", data.decode("latin-1")
        return Decoded(text, codec, round(latin, 3), "detected")
    raise CharsetError(
        "cannot tell the character set: not UTF-8; as GB18030 "
        f"{gb:.0%} of the non-ASCII bytes look right, as Latin-1 {latin:.0%} (need "
        f"{min_confidence:.0%}); declare it (HL7 MSH-18, the source's encoding or --encoding)"
    )
