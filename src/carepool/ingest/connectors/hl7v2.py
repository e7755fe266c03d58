"""HL7 v2 connector (python-hl7): ORU^R01 results, ADT patients and visits, ORM/OML orders.

Input is a file (or an MLLP frame) with one or more messages. It is split into messages at the
byte level (`split_message_bytes`): every `MSH` at the start of a segment begins a message,
whatever comes before it (a byte-order mark, MLLP framing bytes, blanks); batch envelopes
(FHS/BHS/BTS/FTS) are dropped; segments may end in CR, LF or CRLF. Each message is then decoded
on its own — MSH-18 if it names a character set, else the source's declared encoding, else
`charset.decode_bytes` — so a UTF-8 message after a GB18030 one lands right, and each unit's
`raw` is exactly the bytes received for its message (UTF-16 input is decoded first, since MSH is
not ASCII there; its units keep the message in UTF-16). Every message is one unit.

A message is split into patient groups: every PID starts one (segments before the first PID
belong to the first group), and every PV1/ORC/OBR/OBX belongs to the PID of its group. From each
group we take:

- PID -> a patient record (keyed by the first PID-3 identifier of type MR, else the first; every
  PID-3 repetition, PID-2, PID-4, PID-19 and PID-20 kept as identifiers);
- PV1 -> an encounter (keyed by PV1-19, the visit number), with the ADT event as its state;
- OBR with OBX -> a diagnostic report with its observations (ORU, OUL, and any OBX at all);
- ORC/OBR in ORM/OML/OMG -> orders (stored as `clinical_order` records);
- segments the connector does not read (`MODELLED` lists those it does) -> one `other` record
  `hl7:segments` per group with their text, linked to the group's patient, and counted in
  `Unit.unmodelled["segment:XXX"]`;
- a message with none of these -> an `other` record holding the message, so nothing is lost.

Values are kept as sent: a comparator (`<0.2` in NM or ST, SN `<^0.2`) goes to
`ObservationIn.comparator`; an invalid date or coded value leaves the field empty and flags the
record (`invalid-date:PID-7`, `invalid-code:PID-8`); a message cut inside its last segment
rejects that segment and flags the rest `truncated` (decision 0016).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo

import hl7

from carepool.ingest.connectors.base import (
    Parsed,
    ParseOptions,
    Unit,
    parse_hl7_date,
    parse_hl7_ts,
    parse_number,
    parse_range,
)
from carepool.ingest.connectors.charset import CharsetError, codec_name, decode_bytes
from carepool.records.schemas import (
    Coding,
    EncounterIn,
    Identifier,
    ObservationIn,
    OrderIn,
    OtherIn,
    PatientIn,
    Ref,
    ReportIn,
)

__all__ = ["MODELLED", "Hl7v2Connector", "Message", "split_message_bytes", "split_messages"]

# The segments the connector reads; every other one is kept in an `hl7:segments` record and
# counted. EVN is read for its event code when MSH-9 has none (v2.1/2.2 messages).
MODELLED = frozenset({"MSH", "EVN", "PID", "PV1", "ORC", "OBR", "OBX"})
_ENVELOPE = frozenset({"FHS", "BHS", "BTS", "FTS"})
_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")
_CJK = re.compile(r"[\u3400-\u9fff]")
_LINE = re.compile(rb"\r\n|\r|\n")
_BOM = codecs.BOM_UTF8
# Bytes that may sit before a segment id besides a UTF-8 byte-order mark (any message of a file
# may start with one): MLLP's start byte, blanks.
_LEAD = b"\x0b \t\x00"


def _lstrip(line: bytes) -> bytes:
    head = line.lstrip(_LEAD)
    while head.startswith(_BOM):  # a whole mark only: its bytes also start other characters
        head = head[3:].lstrip(_LEAD)
    return head


# The last field each segment must have (the last required one in v2.5): an unterminated last
# segment with fewer fields was cut off in transit.
_REQUIRED_FIELDS = {"MSH": 12, "EVN": 2, "PID": 5, "PV1": 2, "ORC": 1, "OBR": 4, "OBX": 11}
_MAX_ID = 200  # the store's identifier and local id columns

_RESULT_STATUS = {
    "F": "final",
    "P": "preliminary",
    "C": "corrected",
    "A": "amended",
    "X": "cancelled",
    "D": "entered-in-error",
    "W": "entered-in-error",
    "I": "registered",
    "R": "preliminary",
    "S": "partial",
    "O": "registered",
}
# HL7 table 0085 (observation result status) and 0123 (result status): legal codes we map to
# `unknown` (N: not asked, U: status change; Y/Z: no order on record).
_LEGAL_OBX_STATUS = frozenset(_RESULT_STATUS) | {"N", "U"}
_LEGAL_OBR_STATUS = frozenset(_RESULT_STATUS) | {"Y", "Z"}
_SEX = {"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}
_PATIENT_CLASS = {
    "I": "inpatient",
    "O": "outpatient",
    "E": "emergency",
    "P": "outpatient",
    "R": "outpatient",
    "B": "outpatient",
}
_EVENT_STATUS = {
    "A01": "in-progress",
    "A02": "in-progress",
    "A03": "finished",
    "A04": "arrived",
    "A05": "planned",
    "A06": "in-progress",
    "A07": "in-progress",
    "A11": "cancelled",
    "A13": "in-progress",
    "A14": "planned",
    "A27": "cancelled",
    "A38": "cancelled",
}
_ORDER_CONTROL = {"NW": "active", "XO": "active", "CA": "revoked", "DC": "revoked", "OC": "revoked"}
_ORDER_STATUS = {
    "CM": "completed",
    "IP": "active",
    "SC": "active",
    "A": "active",
    "CA": "revoked",
    "DC": "revoked",
    "HD": "on-hold",
}
_NATIONAL_ID_TYPES = {"NI", "NNCHN", "SS", "SSN"}
_DAY_OR_FINER = re.compile(r"^\d{8}")
# A value sent as a bound (`<0.2`, `>= 90`); FHIR Quantity.comparator allows these four.
_COMPARATORS = frozenset({"<", "<=", ">=", ">"})
_BOUND = re.compile(r"^\s*(<=|>=|<|>)\s*[-+]?\d")


def split_messages(text: str) -> list[list[str]]:
    """Messages of decoded text as lists of segment strings (batch envelopes dropped, MLLP bytes
    and byte-order marks stripped). The connector splits bytes (`split_message_bytes`); this is
    for callers that already hold text."""
    text = text.replace("\x0b", "").replace("\x1c", "")
    messages: list[list[str]] = []
    for line in _SEGMENT_SPLIT.split(text):
        seg = line.strip(" \t\ufeff")
        if not seg:
            continue
        if seg.startswith("MSH"):
            messages.append([seg])
        elif seg[:3] in _ENVELOPE:
            continue
        elif messages:
            messages[-1].append(seg)
        else:
            messages.append([seg])  # garbage before the first MSH: its own (bad) unit
    return messages


@dataclass(slots=True)
class Message:
    """One message's bytes as received: `raw` for the dead-letter store, `body` to decode
    (the same bytes, or UTF-8 when the input was UTF-16 and is already decoded)."""

    raw: bytes
    body: bytes
    decoded: bool = False  # `body` is UTF-8 text decoded from the input as a whole
    terminated: bool = True  # the last segment ended with CR, LF or an MLLP end byte
    unframed: bool = False  # an MLLP start byte without its end: the frame was cut


def _utf16(data: bytes) -> str | None:
    """The codec of UTF-16 input (a mark, or every other byte zero), else None (also used by
    `detect_format`)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16-le" if data.startswith(codecs.BOM_UTF16_LE) else "utf-16-be"
    head = data[:400]
    if len(head) >= 8 and head.count(0) > 0.3 * len(head):
        even, odd = head[0::2], head[1::2]
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.1 * len(even):
            return "utf-16-le"
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.1 * len(odd):
            return "utf-16-be"
    return None


def split_message_bytes(data: bytes, *, declared: str | None = None) -> list[Message]:
    """The messages of an input, each with exactly the bytes received for it.

    `MSH` at the start of a segment (after any BOM, MLLP byte or blank) starts a message; lines
    before the first MSH that are not a batch envelope form a unit of their own (it fails as
    "not an HL7 v2 message"). UTF-16 input is decoded as a whole first (`CharsetError` if it
    cannot be), and each message's `raw` is its text in the input's UTF-16 byte order."""
    wide = _utf16(data)
    if wide is None:
        return _split(data)
    text = decode_bytes(data, declared=declared if declared else None).text
    bom = data[:2] if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else b""
    out = _split(text.encode("utf-8"))
    for i, message in enumerate(out):
        message.raw = (bom if i == 0 else b"") + message.body.decode("utf-8").encode(wide)
        message.decoded = True
    return out


def _split(data: bytes) -> list[Message]:
    out: list[Message] = []
    start = -1  # where the current message starts (-1: none open)
    end = 0  # where its last segment ends, terminator included
    terminated = True
    framed = closed = False

    def close() -> None:
        nonlocal start
        if start >= 0:
            chunk = data[start:end]
            out.append(Message(chunk, chunk, False, terminated, framed and not closed))
        start = -1

    pos, n = 0, len(data)
    while pos < n:
        match = _LINE.search(data, pos)
        line_end = match.start() if match else n
        next_pos = match.end() if match else n
        line = data[pos:line_end]
        cut = line.find(b"\x1c")  # MLLP's end byte closes the frame (and the segment)
        ends_frame = cut >= 0
        if ends_frame:
            line = line[:cut]
            next_pos = pos + cut + 1  # what follows the end byte is read as a line of its own
            match = None
        head = _lstrip(line)
        lead = len(line) - len(head)
        body = head.rstrip(b" \t")
        if body:
            seg = body[:3]
            if seg == b"MSH":
                close()
                start = pos + lead
                if data[start - 3 : start] == _BOM and start >= 3:
                    start -= 3  # the BOM belongs to this message
                framed = b"\x0b" in line[:lead]
                closed = False
            elif seg in (b"FHS", b"BHS", b"BTS", b"FTS") and body[3:4] and not body[3:4].isalnum():
                close()
                pos = next_pos
                continue
            elif start < 0:
                start = pos + lead
                framed = closed = False
            # the segment's end: before an MLLP end byte on the same line, else its terminator
            if ends_frame:
                end = pos + lead + len(body)
                terminated, closed = True, True
            else:
                end = next_pos
                terminated = match is not None
        elif ends_frame and start >= 0:
            closed = True
        pos = next_pos
    close()
    return out


_SEGMENT_PATTERNS: dict[str, Callable[[str], object]] = {}


def _segment_pattern(field_sep: str) -> Callable[[str], object]:
    """A test for `XXX<sep>...` or `XXX` (an upper-case letter, then two letters or digits)."""
    found = _SEGMENT_PATTERNS.get(field_sep)
    if found is None:
        pattern = re.compile(r"[A-Z][A-Z0-9]{2}(?:" + re.escape(field_sep) + r"|\Z)")
        found = _SEGMENT_PATTERNS[field_sep] = pattern.match
    return found


def _msh18(body: bytes) -> str:
    """MSH-18 (character set), first repetition, read from the message's ASCII header."""
    first = _lstrip(_LINE.split(body, 1)[0])
    if len(first) < 8 or not first.startswith(b"MSH"):
        return ""
    fields = first.split(first[3:4])
    if len(fields) < 18:
        return ""
    value = fields[17].split(first[5:6], 1)[0] if first[5:6] else fields[17]
    return value.strip().decode("latin-1")


def decode_message(message: Message, options: ParseOptions) -> str:
    """A message's text: MSH-18, else the source's declared encoding, else detected.

    Raises `CharsetError` (with a reason naming MSH-18 when it is to blame)."""
    if message.decoded:
        return message.body.decode("utf-8")
    declared = _msh18(message.body)
    if declared:
        try:
            codec_name(declared)
        except CharsetError:
            raise CharsetError(
                f"MSH-18 names the character set {declared!r}, which this platform cannot "
                "decode; expected an HL7 table 0211 name (UNICODE UTF-8, 8859/1, GB 18030-2000)"
            ) from None
        try:
            return decode_bytes(message.body, declared=declared).text
        except CharsetError as exc:
            raise CharsetError(f"MSH-18 declares {declared!r}, but {exc.reason}") from None
    return decode_bytes(message.body, declared=options.encoding).text


class _Seg:
    """Field access by HL7 position on one segment (1-based; MSH-1 is the field separator).

    Fields are cut from the segment text and only the ones read are split further; escapes
    (`\\S\\`, `\\T\\`, `\\X..\\`) are decoded by python-hl7. Building python-hl7's whole
    tree for every message cost 2-10 ms a message on the sample feeds, most of it on segments
    nobody reads (insurance, guarantors).
    """

    __slots__ = (
        "_comps",
        "_shift",
        "comp",
        "esc",
        "field",
        "fields",
        "id",
        "message",
        "rep",
        "sub",
        "text",
    )

    def __init__(self, text: str, message: hl7.Message, enc: tuple[str, str, str, str]) -> None:
        self.text = text
        self.message = message
        self.esc = message.esc
        self.field, self.rep, self.comp, self.sub = enc
        self.fields = text.split(self.field)
        self.id = self.fields[0]
        # MSH-1 is the field separator itself, so MSH-n sits at index n - 1.
        self._shift = -1 if self.id == "MSH" else 0
        # (field, repetition) -> its components, still escaped (a field is often read twice).
        self._comps: dict[tuple[int, int], list[str]] = {}

    def raw(self, n: int) -> str:
        i = n + self._shift
        if n < 1 or i >= len(self.fields):
            return ""
        if self.id == "MSH" and n == 1:
            return self.field
        return self.fields[i]

    def reps(self, n: int) -> list[str]:
        raw = self.raw(n)
        return raw.split(self.rep) if raw else []

    def _components(self, n: int, rep: int) -> list[str] | None:
        key = (n, rep)
        found = self._comps.get(key)
        if found is None:
            reps = self.reps(n)
            if len(reps) < rep:
                return None
            found = self._comps[key] = reps[rep - 1].split(self.comp)
        return found

    def _unescape(self, text: str) -> str:
        # python-hl7 returns text without its escape character unchanged; skip the call then.
        if self.esc not in text:
            return text.strip()
        try:
            return self.message.unescape(text).strip()
        except Exception:  # a malformed escape: keep the text as sent
            return text.strip()

    def plain(self, text: str) -> str:
        """`text` with its escapes decoded (not stripped)."""
        if self.esc not in text:
            return text
        try:
            return str(self.message.unescape(text))
        except Exception:  # a malformed escape: keep the text as sent
            return text

    @property
    def count(self) -> int:
        """How many fields the segment has (MSH counts MSH-1)."""
        return len(self.fields) - 1 - self._shift

    def get(self, n: int, comp: int = 1, rep: int = 1, sub: int = 1) -> str:
        comps = self._components(n, rep)
        if comps is None or len(comps) < comp:
            return ""
        text = comps[comp - 1]
        if self.sub in text:
            subs = text.split(self.sub)
            if len(subs) < sub:
                return ""
            text = subs[sub - 1]
        elif sub > 1:
            return ""
        return self._unescape(text)

    def comps(self, n: int, rep: int = 1) -> list[str]:
        comps = self._components(n, rep)
        if comps is None:
            return []
        sub, unescape = self.sub, self._unescape
        return [unescape(c.split(sub, 1)[0] if sub in c else c) for c in comps]

    def __str__(self) -> str:
        return self.text


def _coding(parts: list[str]) -> list[Coding]:
    """A CE/CWE as codings: the primary triplet and the alternate one."""
    out = []
    for base in (0, 3):
        code = parts[base] if len(parts) > base else ""
        text = parts[base + 1] if len(parts) > base + 1 else ""
        system = parts[base + 2] if len(parts) > base + 2 else ""
        if code or text:
            out.append(Coding(system=system, code=code, text=text))
    if len(parts) > 8 and parts[8] and out:
        first = out[0]
        out[0] = Coding(first.system, first.code, first.text or parts[8])
    return out


def _name(family: str, given: str, middle: str = "") -> str:
    if _CJK.search(family + given):
        return f"{family}{given}"
    return " ".join(p for p in (given, middle, family) if p)


class _Message:
    """One message and the records it yields."""

    def __init__(
        self, message: Message, source: str, index: int, options: ParseOptions, *, last: bool
    ) -> None:
        self.received = message
        self.source = source
        self.index = index
        self.options = options
        self.tz: tzinfo = options.timezone
        self.last = last
        self.position = f"{source}#{index}"
        self.unit = Unit(position=self.position, raw=message.raw)
        # (kind, system, local id) -> how often this message used it: a second OBX with the
        # same code and sub-id, or a second OBR with the same filler number, gets `#2`.
        self._keys: dict[tuple[str, str, str], int] = {}
        self.truncated = False

    def parse(self) -> Unit:
        """The message's unit; an unexpected error becomes a unit error naming the message."""
        try:
            self._parse()
        except Exception as exc:  # defence in depth: no message may abort a run
            self.unit.records.clear()
            self.unit.unmodelled.clear()
            self.unit.errors[:] = [
                (
                    self.position,
                    f"cannot read this message ({type(exc).__name__}: {str(exc)[:200]}); "
                    "this is a defect of the HL7 v2 connector, please report it",
                )
            ]
        if self.truncated:
            for parsed in self.unit.records:
                parsed.flags.append("truncated")
        return self.unit

    def _parse(self) -> None:
        unit = self.unit
        try:
            text = decode_message(self.received, self.options)
        except CharsetError as exc:
            unit.errors.append((self.position, f"cannot decode the message: {exc.reason}"))
            return
        lines = [
            s for s in (ln.strip(" \t\ufeff\x0b\x1c") for ln in _SEGMENT_SPLIT.split(text)) if s
        ]
        if not lines or not lines[0].startswith("MSH"):
            first = lines[0][:60] if lines else ""
            unit.errors.append(
                (self.position, f"not an HL7 v2 message: it does not start with MSH ({first!r})")
            )
            return
        msh_text = lines[0]
        if len(msh_text) < 8:
            unit.errors.append(
                (
                    f"{self.position}/MSH",
                    f"MSH is cut short ({msh_text!r}): expected MSH-1 (field separator) and "
                    "MSH-2 (four encoding characters)",
                )
            )
            return
        field_sep, enc = msh_text[3], msh_text[4:8]
        if (
            field_sep.isalnum()
            or field_sep.isspace()
            or field_sep in enc
            or len(set(enc)) < 4
            or any(c.isalnum() or c.isspace() for c in enc)
            or (len(msh_text) > 8 and msh_text[8] != field_sep and msh_text[9:10] != field_sep)
        ):
            unit.errors.append(
                (
                    f"{self.position}/MSH-2",
                    f"expected a field separator and four distinct encoding characters after "
                    f"MSH (as in 'MSH|^~\\&|'), got {msh_text[3:10]!r}",
                )
            )
            return
        good: list[str] = []
        is_segment = _segment_pattern(field_sep)
        for n, seg in enumerate(lines, start=1):
            if is_segment(seg):
                good.append(seg)
            else:
                unit.errors.append(
                    (f"{self.position}/line[{n}]", f"not an HL7 segment: {seg[:60]!r}")
                )
        comp, rep, esc, sub = enc[0], enc[1], enc[2], enc[3]
        msg = hl7.Message("\r", [], esc=esc, separators=f"\r{field_sep}{rep}{comp}{sub}")
        segs = [_Seg(s, msg, (field_sep, rep, comp, sub)) for s in good]
        self._cut(segs, lines[-1] is good[-1] if good else False)
        if not segs or segs[0].id != "MSH":
            return
        msh = segs[0]
        mtype, event = msh.get(9, 1), msh.get(9, 2)
        if not mtype:
            unit.errors.append(
                (
                    f"{self.position}/MSH-9",
                    f"MSH-9 (message type) is empty: expected a type such as ORU^R01, got "
                    f"{msh.raw(9)!r}",
                )
            )
            return
        if not event:
            evn = next((s for s in segs if s.id == "EVN"), None)
            event = evn.get(1) if evn is not None else ""
        self.control_id = msh.get(10)
        self.facility = msh.get(4) or msh.get(3) or "hl7v2"
        unit.message = f"{mtype}^{event} {self.control_id}".strip()
        self.mtype, self.event = mtype, event
        ordering = mtype in ("ORM", "OML", "OMG")
        # Patient groups: every PID starts one; what comes before the first PID joins it.
        starts = [i for i, s in enumerate(segs) if s.id == "PID"] or [0]
        bounds = [0, *starts[1:], len(segs)]
        for g in range(len(bounds) - 1):
            lo, hi = bounds[g], bounds[g + 1]
            self._group(segs, lo, hi, g + 1, ordering=ordering)
        if not unit.records and not unit.errors:
            unit.records.append(
                Parsed(
                    OtherIn(
                        system=f"hl7v2:{self.facility}",
                        local_id=self.control_id or None,
                        type_name=f"hl7:{mtype}^{event}",
                        body={"message": "\r".join(s.text for s in segs)},
                    ),
                    self.position,
                )
            )

    def _cut(self, segs: list[_Seg], last_is_segment: bool) -> None:
        """Truncation: an unterminated last segment with fewer fields than it must have was cut
        off (it is rejected, the rest flagged); an MLLP frame without its end flags the rest."""
        received = self.received
        if received.unframed:
            self.truncated = True
        if received.terminated or not self.last or not segs or not last_is_segment:
            return
        seg = segs[-1]
        need = _REQUIRED_FIELDS.get(seg.id)
        if need is None or seg.count >= need:
            return
        if seg.id == "MSH":
            segs.clear()
        else:
            segs.pop()
        self.truncated = True
        self.unit.errors.append(
            (
                f"{self.position}/{seg.id}[{len(segs)}]",
                f"the message was cut off inside {seg.id}: it ends after {seg.id}-{seg.count} "
                f"without a segment terminator, and {seg.id} needs at least {need} fields "
                f"({seg.text[:60]!r})",
            )
        )

    def _distinct(self, kind: str, system: str, local_id: str) -> str:
        """`local_id`, or `local_id#n` for the n-th record of this message with the same key."""
        key = (kind, system, local_id)
        seen = self._keys.get(key, 0) + 1
        self._keys[key] = seen
        return local_id if seen == 1 else f"{local_id}#{seen}"

    def _when(self, seg: _Seg, n: int, flags: list[str]) -> datetime | None:
        text = seg.get(n)
        if not text:
            return None
        value = parse_hl7_ts(text, self.tz)
        if value is None:
            flags.append(f"invalid-date:{seg.id}-{n}")
        return value

    def _group(self, segs: list[_Seg], lo: int, hi: int, number: int, *, ordering: bool) -> None:
        unit = self.unit
        pid = (
            segs[lo]
            if segs[lo].id == "PID"
            else next((s for s in segs[lo:hi] if s.id == "PID"), None)
        )
        patient = self._patient(pid, lo) if pid is not None else None
        if pid is not None and patient is None:
            return  # the error says why; the group's results cannot be keyed
        patient_ref = patient.record.ref() if patient else None
        if patient:
            unit.records.append(patient)
        pv1_at = next((i for i in range(lo, hi) if segs[i].id == "PV1"), None)
        encounter = (
            self._encounter(segs[pv1_at], patient_ref, pv1_at if number > 1 else 0)
            if pv1_at is not None and patient_ref
            else None
        )
        encounter_ref = encounter.record.ref() if encounter else None
        if encounter:
            unit.records.append(encounter)
        if self.mtype in ("ORM", "OML", "OMG", "OMI") and patient_ref:
            self._orders(segs, lo, hi, patient_ref, encounter_ref)
        self._results(segs, lo, hi, patient_ref, encounter_ref, ordering=ordering)
        self._unmodelled(segs, lo, hi, number, patient_ref)

    def _unmodelled(
        self, segs: list[_Seg], lo: int, hi: int, number: int, patient: Ref | None
    ) -> None:
        kept = [s for s in segs[lo:hi] if s.id not in MODELLED]
        if not kept:
            return
        counts = self.unit.unmodelled
        for s in kept:
            key = f"segment:{s.id}"
            counts[key] = counts.get(key, 0) + 1
        if patient is None and not self.unit.records:
            return  # the message becomes one `other` record holding every segment
        record = OtherIn(
            system=f"hl7v2:{self.facility}",
            local_id=f"{self.control_id}/{number}" if self.control_id else None,
            type_name="hl7:segments",
            patient=patient,
            body={
                "message": f"{self.mtype}^{self.event}",
                "control_id": self.control_id,
                "segments": [s.text for s in kept],
            },
        )
        self.unit.records.append(Parsed(record, f"{self.position}/segments[{number}]"))

    # -- segments -------------------------------------------------------------------------------
    def _cx(self, pid: _Seg, n: int, default_type: str = "") -> list[Identifier]:
        """The identifiers of a CX field (every repetition)."""
        out = []
        for rep in range(1, len(pid.reps(n)) + 1):
            parts = pid.comps(n, rep)
            value = parts[0] if parts else ""
            if not value:
                continue
            authority = parts[3] if len(parts) > 3 else ""
            id_type = (parts[4] if len(parts) > 4 else "") or default_type
            out.append(Identifier(system=authority or self.facility, value=value, type=id_type))
        return out

    def _patient(self, pid: _Seg, at: int) -> Parsed | None:
        position = f"{self.position}/PID[{at}]" if at else f"{self.position}/PID"
        identifiers = self._cx(pid, 3)
        # Old messages carry the id in PID-2 (external id) or PID-4 (alternate id) only.
        others = self._cx(pid, 2) + self._cx(pid, 4)
        if not identifiers and others:
            identifiers, others = others[:1], others[1:]
        if not identifiers:
            reason = "PID-3 has no patient identifier; the message's records cannot be keyed"
            self.unit.errors.append((position, reason))
            return None
        flags: list[str] = []
        too_long = next((i for i in identifiers if len(i.value) > _MAX_ID), None)
        if too_long is not None:
            self.unit.errors.append(
                (
                    f"{position}-3",
                    f"a patient identifier of {len(too_long.value)} characters "
                    f"({too_long.value[:30]!r}...); at most {_MAX_ID} are kept",
                )
            )
            return None
        key = next((i for i in identifiers if i.type == "MR"), identifiers[0])
        national = next((i.value for i in identifiers if i.type in _NATIONAL_ID_TYPES), None)
        ssn = pid.get(19)
        national = national or ssn or None
        # Every other identifier the PID carries, once (a PID-19 that repeats a PID-3 national
        # id is the same identifier).
        seen = {(i.system, i.value) for i in identifiers}
        values = {i.value for i in identifiers}
        extra = [i for i in others if (i.system, i.value) not in seen]
        if ssn and ssn not in values:
            extra.append(Identifier(system="PID-19", value=ssn, type="SS"))
        licence = pid.get(20)
        if licence and licence not in values:
            extra.append(Identifier(system=pid.get(20, 2) or "PID-20", value=licence, type="DL"))
        for ident in extra:
            if len(ident.value) <= _MAX_ID and (ident.system, ident.value) not in seen:
                seen.add((ident.system, ident.value))
                identifiers.append(ident)
        if national is not None and len(national) > 40:
            flags.append("invalid-value:PID-19")
            national = None
        family, given, middle = pid.get(5, 1), pid.get(5, 2), pid.get(5, 3)
        address_parts = pid.comps(11)
        address = ", ".join(p for p in address_parts[:6] if p)
        phone = pid.get(13) or pid.get(13, 12) or pid.get(14)
        deceased, deceased_at = self._death(pid, flags)
        sex_code = pid.get(8).upper()
        sex = _SEX.get(sex_code[:1], "unknown")
        if sex_code and sex_code[:1] not in _SEX:
            flags.append("invalid-code:PID-8")
        birth_text = pid.get(7)
        birth = parse_hl7_date(birth_text)
        if birth is None and birth_text and parse_hl7_ts(birth_text, self.tz) is None:
            flags.append("invalid-date:PID-7")
        record = PatientIn(
            system=key.system,
            local_id=key.value,
            identifiers=identifiers,
            name=_name(family, given, middle),
            family=family,
            given=" ".join(p for p in (given, middle) if p),
            sex=sex,
            birth_date=birth,
            national_id=national,
            phone=phone,
            address=address,
            deceased=deceased,
            deceased_at=deceased_at,
        )
        return Parsed(record, position, str(pid), flags)

    def _death(self, pid: _Seg, flags: list[str]) -> tuple[bool, datetime | None]:
        """PID-30 (death indicator) and PID-29 (death date and time). A time without an
        indicator means death; an explicit `N` means alive whatever PID-29 still holds (the
        way a sender takes a death back). A time less precise than a day is not kept."""
        indicator = pid.get(30).upper()[:1]
        text = pid.get(29)
        when = parse_hl7_ts(text, self.tz) if _DAY_OR_FINER.match(text) else None
        if text and when is None and parse_hl7_ts(text, self.tz) is None:
            flags.append("invalid-date:PID-29")
        if indicator == "N":
            return False, None
        deceased = indicator == "Y" or when is not None
        return deceased, when if deceased else None

    def _encounter(self, pv1: _Seg, patient: Ref, at: int) -> Parsed | None:
        flags: list[str] = []
        visit = pv1.get(19)
        location_parts = pv1.comps(3)
        location = " ".join(p for p in location_parts[:3] if p)
        department = pv1.get(10) or (location_parts[0] if location_parts else "")
        start = self._when(pv1, 44, flags)
        end = self._when(pv1, 45, flags)
        status = _EVENT_STATUS.get(self.event) if self.mtype == "ADT" else None
        if status is None:
            status = "finished" if end else ("in-progress" if start else "unknown")
        system = pv1.get(19, 4) or self.facility
        record = EncounterIn(
            system=system,
            local_id=self._distinct("encounter", system, visit) if visit else None,
            patient=patient,
            encounter_class=_PATIENT_CLASS.get(pv1.get(2).upper()[:1], "other"),
            status=status,
            start_at=start,
            end_at=end,
            department_text=department,
            location=location,
            event=f"{self.mtype}^{self.event}" if self.mtype == "ADT" else "",
        )
        position = f"{self.position}/PV1[{at}]" if at else f"{self.position}/PV1"
        return Parsed(record, position, str(pv1), flags)

    def _orders(
        self, segs: list[_Seg], lo: int, hi: int, patient: Ref, encounter: Ref | None
    ) -> None:
        """One order per OBR (with the ORC before it); an ORC without any OBR is one too."""
        orc: tuple[int, _Seg] | None = None
        orc_used = True
        for i in range(lo, hi):
            s = segs[i]
            if s.id == "ORC":
                if orc is not None and not orc_used:
                    self._order(orc[0], orc[1], None, patient, encounter)
                orc, orc_used = (i, s), False
            elif s.id == "OBR":
                self._order(i, orc[1] if orc else None, s, patient, encounter)
                orc_used = True
        if orc is not None and not orc_used:
            self._order(orc[0], orc[1], None, patient, encounter)

    def _order(
        self, i: int, orc: _Seg | None, obr: _Seg | None, patient: Ref, encounter: Ref | None
    ) -> None:
        seg = obr or orc
        assert seg is not None
        flags: list[str] = []
        placer = (orc.get(2) if orc else "") or (obr.get(2) if obr else "")
        filler = (orc.get(3) if orc else "") or (obr.get(3) if obr else "")
        group = orc.get(4) if orc else ""
        codings = _coding(obr.comps(4)) if obr else []
        control = orc.get(1) if orc else ""
        status = _ORDER_STATUS.get(orc.get(5) if orc else "", "") or _ORDER_CONTROL.get(
            control, "active" if control else "unknown"
        )
        if orc is not None and orc.get(9):
            ordered_at = self._when(orc, 9, flags)
        elif obr is not None:
            ordered_at = self._when(obr, 6, flags)
        else:
            ordered_at = None
        position = f"{self.position}/{seg.id}[{i}]"
        number = placer or filler or group
        local = f"{number}/{codings[0].code}" if number and codings else number
        system = f"hl7v2:{(orc.get(2, 2) if orc else '') or self.facility}"
        record = OrderIn(
            system=system,
            local_id=self._distinct("order", system, local) if local else None,
            patient=patient,
            encounter=encounter,
            placer_number=placer or group,
            filler_number=filler,
            status=status,
            codings=codings,
            text=codings[0].text if codings else "",
            priority=(obr.get(5) if obr else "") or (orc.get(7, 6) if orc else ""),
            ordered_at=ordered_at,
        )
        self.unit.records.append(Parsed(record, position, str(seg), flags))

    def _results(
        self,
        segs: list[_Seg],
        lo: int,
        hi: int,
        patient: Ref | None,
        encounter: Ref | None,
        *,
        ordering: bool,
    ) -> None:
        report: ReportIn | None = None
        report_ref: Ref | None = None
        orc: _Seg | None = None
        for i in range(lo, hi):
            s = segs[i]
            if s.id == "ORC":
                orc = s
            elif s.id == "OBR":
                report = None
                report_ref = None
                has_obx = any(x.id == "OBX" for x in segs[i + 1 : _next_obr(segs, i, hi)])
                if ordering and not has_obx:
                    continue  # an order, not a result (handled by _orders)
                if patient is None:
                    self.unit.errors.append(
                        (f"{self.position}/OBR[{i}]", "a result without a PID segment")
                    )
                    continue
                flags: list[str] = []
                filler = s.get(3) or s.get(2)
                namespace = s.get(3, 2) or s.get(2, 2) or self.facility
                codings = _coding(s.comps(4))
                system = f"hl7v2:{namespace}"
                status_code = s.get(25).upper()
                if status_code and status_code not in _LEGAL_OBR_STATUS:
                    flags.append("invalid-code:OBR-25")
                report = ReportIn(
                    system=system,
                    local_id=self._distinct("report", system, filler) if filler else None,
                    patient=patient,
                    encounter=encounter,
                    status=_RESULT_STATUS.get(status_code, "unknown"),
                    codings=codings,
                    text=codings[0].text if codings else "",
                    category=s.get(24),
                    effective_at=self._when(s, 7, flags),
                    issued_at=self._when(s, 22, flags),
                    # The placer order number links the result to its order (ORM's ORC-2).
                    placer_number=s.get(2) or (orc.get(2) if orc is not None else ""),
                )
                report_ref = report.ref() if filler else None
                self.unit.records.append(Parsed(report, f"{self.position}/OBR[{i}]", str(s), flags))
            elif s.id == "OBX":
                self._observation(s, i, patient, encounter, report, report_ref)

    def _observation(
        self,
        s: _Seg,
        i: int,
        patient: Ref | None,
        encounter: Ref | None,
        report: ReportIn | None,
        report_ref: Ref | None,
    ) -> None:
        position = f"{self.position}/OBX[{i}]"
        if patient is None:
            self.unit.errors.append((position, "a result without a PID segment"))
            return
        codings = _coding(s.comps(3))
        if not codings:
            self.unit.errors.append((position, "OBX-3 (observation identifier) is empty"))
            return
        flags: list[str] = []
        value_type = s.get(2).upper()
        reps = s.reps(5)
        value_text = "~".join(s.plain(r) for r in reps)
        number: float | None = None
        comparator = ""
        value_code = value_code_system = ""
        kind = "none"
        if value_type in ("NM", "SN") and len(reps) == 1:
            parts = s.comps(5)
            if value_type == "SN":
                sign = parts[0] if parts else ""
                if len(parts) > 1 and not (len(parts) > 2 and parts[2]):
                    number, _ = parse_number(parts[1])
                    value_text = f"{sign}{parts[1]}"
                    if sign in _COMPARATORS:
                        comparator = sign
                    elif sign not in ("", "="):
                        number = None  # `<>` (not equal) is no quantity
            else:
                number, comparator = parse_number(value_text)
            kind = "quantity" if number is not None else ("string" if value_text else "none")
        elif value_type in ("CE", "CWE", "CNE", "CF") and reps:
            parts = s.comps(5)
            value_code = parts[0] if parts else ""
            value_code_system = parts[2] if len(parts) > 2 else ""
            value_text = (parts[8] if len(parts) > 8 and parts[8] else "") or (
                parts[1] if len(parts) > 1 else value_code
            )
            kind = "coded"
        elif value_type in ("ST", "TX", "FT") and len(reps) == 1 and _BOUND.match(value_text):
            # `>90`, `<5` sent as text: a bound, served as a number with its comparator
            number, comparator = parse_number(value_text)
            kind = "quantity" if number is not None else "string"
        elif value_text:
            kind = "string"
        if comparator == "=":
            comparator = ""
        unit = _unit(s.comps(6))
        ref_text = s.get(7)
        low, high = parse_range(ref_text)
        sub_id = s.get(4)
        local_id = None
        if report is not None and report.local_id:
            local_id = self._distinct(
                "observation",
                report.system,
                f"{report.local_id}/{codings[0].code or codings[0].text}/{sub_id}",
            )
        status_code = s.get(11).upper()
        if status_code and status_code not in _LEGAL_OBX_STATUS:
            flags.append("invalid-code:OBX-11")
        effective = self._when(s, 14, flags)
        issued = self._when(s, 19, flags)
        record = ObservationIn(
            system=report.system if report is not None else f"hl7v2:{self.facility}",
            local_id=local_id,
            patient=patient,
            encounter=encounter,
            report=report_ref,
            status=_RESULT_STATUS.get(status_code, "unknown"),
            category="laboratory" if report is not None else "",
            codings=codings,
            text=codings[0].text,
            value_type=kind,
            value_number=number,
            value_text=value_text,
            unit=unit,
            ref_low=low,
            ref_high=high,
            ref_text=ref_text,
            value_code=value_code,
            value_code_system=value_code_system,
            interpretation=s.get(8),
            effective_at=effective or (report.effective_at if report is not None else None),
            issued_at=issued or (report.issued_at if report is not None else None),
            comparator=comparator,
        )
        if report is not None and local_id and report_ref is not None:
            report.results.append(record.ref())
        self.unit.records.append(Parsed(record, position, str(s), flags))


_POWER_HEAD = re.compile(r"^[xX×*]?\s*10$")
_POWER_TAIL = re.compile(r"^-?\d+\s*/")


def _unit(parts: list[str]) -> str:
    """OBX-6 as a unit string. Feeds often send `10^9/L` without escaping the `^`, which the
    parser splits into components `10` and `9/L`: put such a power of ten back together."""
    if len(parts) > 1 and _POWER_HEAD.match(parts[0]) and _POWER_TAIL.match(parts[1]):
        return f"{parts[0]}^{parts[1]}"
    return (parts[0] if parts else "") or (parts[1] if len(parts) > 1 else "")


def _next_obr(segs: list[_Seg], i: int, hi: int) -> int:
    for j in range(i + 1, hi):
        if segs[j].id in ("OBR", "ORC"):
            return j
    return hi


class Hl7v2Connector:
    """HL7 v2 files and MLLP payloads; one unit per message."""

    format = "hl7v2"

    def units(self, data: bytes, *, source: str, options: ParseOptions) -> Iterator[Unit]:
        try:
            messages = split_message_bytes(data, declared=options.encoding)
        except CharsetError as exc:
            unit = Unit(position=f"{source}#1", raw=data)
            unit.errors.append((unit.position, f"cannot decode the input: {exc.reason}"))
            yield unit
            return
        last = len(messages)
        for index, message in enumerate(messages, start=1):
            yield _Message(message, source, index, options, last=index == last).parse()
