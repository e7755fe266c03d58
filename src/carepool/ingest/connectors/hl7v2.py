"""HL7 v2 connector (python-hl7): ORU^R01 results, ADT patients and visits, ORM/OML orders.

Input is a file (or an MLLP frame) with one or more messages; segments may end in CR, LF or
CRLF, the file may start with a UTF-8 BOM and batch headers (FHS/BHS) are skipped. Every message
is one unit. From each message we take what it carries:

- PID -> a patient record (keyed by the first PID-3 identifier of type MR, else the first);
- PV1 -> an encounter (keyed by PV1-19, the visit number), with the ADT event as its state;
- OBR with OBX -> a diagnostic report with its observations (ORU, OUL, and any OBX at all);
- ORC/OBR in ORM/OML/OMG -> orders (stored as `clinical_order` records);
- a message with none of these -> an `other` record holding the message, so nothing is lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, tzinfo

import hl7

from carepool.ingest.connectors.base import (
    Parsed,
    ParseOptions,
    Unit,
    decode,
    parse_hl7_date,
    parse_hl7_ts,
    parse_number,
    parse_range,
)
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

__all__ = ["Hl7v2Connector", "split_messages"]

_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")
_SKIP = {"FHS", "BHS", "BTS", "FTS"}
_SEGMENT = re.compile(r"^[A-Z][A-Z0-9]{2}(\||$)")
_CJK = re.compile(r"[\u3400-\u9fff]")

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


def split_messages(text: str) -> list[list[str]]:
    """Messages as lists of segment strings (batch envelopes dropped, MLLP bytes stripped)."""
    text = text.lstrip("\ufeff").replace("\x0b", "").replace("\x1c", "")
    messages: list[list[str]] = []
    for line in _SEGMENT_SPLIT.split(text):
        seg = line.strip(" \t")
        if not seg:
            continue
        if seg.startswith("MSH"):
            messages.append([seg])
        elif seg[:3] in _SKIP:
            continue
        elif messages:
            messages[-1].append(seg)
        else:
            messages.append([seg])  # garbage before the first MSH: its own (bad) unit
    return messages


class _Seg:
    """Field access by HL7 position on one segment (1-based; MSH-1 is the field separator).

    Fields are cut from the segment text and only the ones read are split further; escapes
    (`\\S\\`, `\\T\\`, `\\X..\\`) are decoded by python-hl7. Building python-hl7's whole
    tree for every message cost 2-10 ms a message on the sample feeds, most of it on segments
    nobody reads (insurance, guarantors).
    """

    __slots__ = ("_comps", "_shift", "comp", "esc", "fields", "id", "message", "rep", "sub", "text")

    def __init__(self, text: str, message: hl7.Message, enc: tuple[str, str, str, str]) -> None:
        self.text = text
        self.message = message
        self.esc = message.esc
        field, self.rep, self.comp, self.sub = enc
        self.fields = text.split(field)
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
            return "|"
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
        return self.message.unescape(text).strip() if self.esc in text else text.strip()

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
    """One parsed message and the records it yields."""

    def __init__(self, segments: list[str], source: str, index: int, tz: tzinfo) -> None:
        self.segments_text = segments
        self.source = source
        self.index = index
        self.tz = tz
        self.position = f"{source}#{index}"
        self.unit = Unit(position=self.position, raw="\r".join(segments).encode("utf-8"))

    def parse(self) -> Unit:
        unit = self.unit
        if not self.segments_text[0].startswith("MSH") or len(self.segments_text[0]) < 8:
            unit.errors.append((self.position, "not an HL7 v2 message: it does not start with MSH"))
            return unit
        good = [seg for seg in self.segments_text if _SEGMENT.match(seg)]
        for n, seg in enumerate(self.segments_text, start=1):
            if not _SEGMENT.match(seg):
                unit.errors.append(
                    (f"{self.position}/line[{n}]", f"not an HL7 segment: {seg[:60]!r}")
                )
        self.segments_text = good
        msh_text = self.segments_text[0]
        field_sep, enc = msh_text[3], msh_text[4:8]
        if len(enc) < 4 or field_sep in enc or len(set(enc)) < 4:
            unit.errors.append((self.position, f"MSH-2 {enc!r} is not four encoding characters"))
            return unit
        comp, rep, esc, sub = enc[0], enc[1], enc[2], enc[3]
        msg = hl7.Message("\r", [], esc=esc, separators=f"\r{field_sep}{rep}{comp}{sub}")
        segs = [_Seg(s, msg, (field_sep, rep, comp, sub)) for s in self.segments_text]
        msh = segs[0]
        mtype, event = msh.get(9, 1), msh.get(9, 2)
        self.control_id = msh.get(10)
        self.facility = msh.get(4) or msh.get(3) or "hl7v2"
        unit.message = f"{mtype}^{event} {self.control_id}".strip()
        self.mtype, self.event = mtype, event
        pid = next((s for s in segs if s.id == "PID"), None)
        patient = self._patient(pid) if pid is not None else None
        if pid is not None and patient is None:
            reason = "PID-3 has no patient identifier; the message's records cannot be keyed"
            unit.errors.append((f"{self.position}/PID", reason))
            return unit
        patient_ref = patient.record.ref() if patient else None
        if patient:
            unit.records.append(patient)
        pv1 = next((s for s in segs if s.id == "PV1"), None)
        encounter = self._encounter(pv1, patient_ref) if pv1 is not None and patient_ref else None
        encounter_ref = encounter.record.ref() if encounter else None
        if encounter:
            unit.records.append(encounter)
        if mtype in ("ORM", "OML", "OMG", "OMI") and patient_ref:
            self._orders(segs, patient_ref, encounter_ref)
        self._results(segs, patient_ref, encounter_ref, ordering=mtype in ("ORM", "OML", "OMG"))
        if not unit.records and not unit.errors:
            unit.records.append(
                Parsed(
                    OtherIn(
                        system=f"hl7v2:{self.facility}",
                        local_id=self.control_id or None,
                        type_name=f"hl7:{mtype}^{event}",
                        body={"message": "\r".join(self.segments_text)},
                    ),
                    self.position,
                )
            )
        return unit

    # -- segments -------------------------------------------------------------------------------
    def _patient(self, pid: _Seg) -> Parsed | None:
        identifiers = []
        for rep in range(1, len(pid.reps(3)) + 1):
            parts = pid.comps(3, rep)
            value = parts[0] if parts else ""
            if not value:
                continue
            authority = parts[3] if len(parts) > 3 else ""
            id_type = parts[4] if len(parts) > 4 else ""
            identifiers.append(
                Identifier(system=authority or self.facility, value=value, type=id_type)
            )
        if not identifiers:
            # Old messages carry the id in PID-2 (external id) or PID-4 (alternate id).
            for n in (2, 4):
                value = pid.get(n)
                if value:
                    authority = pid.get(n, 4) or self.facility
                    identifiers.append(Identifier(system=authority, value=value, type=""))
                    break
        if not identifiers:
            return None
        key = next((i for i in identifiers if i.type == "MR"), identifiers[0])
        national = next((i.value for i in identifiers if i.type in _NATIONAL_ID_TYPES), None)
        national = national or pid.get(19) or None
        family, given, middle = pid.get(5, 1), pid.get(5, 2), pid.get(5, 3)
        address_parts = pid.comps(11)
        address = ", ".join(p for p in address_parts[:6] if p)
        phone = pid.get(13) or pid.get(13, 12) or pid.get(14)
        deceased, deceased_at = self._death(pid)
        record = PatientIn(
            system=key.system,
            local_id=key.value,
            identifiers=identifiers,
            name=_name(family, given, middle),
            family=family,
            given=" ".join(p for p in (given, middle) if p),
            sex=_SEX.get(pid.get(8).upper()[:1], "unknown"),
            birth_date=parse_hl7_date(pid.get(7)),
            national_id=national,
            phone=phone,
            address=address,
            deceased=deceased,
            deceased_at=deceased_at,
        )
        return Parsed(record, f"{self.position}/PID", str(pid))

    def _death(self, pid: _Seg) -> tuple[bool, datetime | None]:
        """PID-30 (death indicator) and PID-29 (death date and time). A time without an
        indicator means death; an explicit `N` means alive whatever PID-29 still holds (the
        way a sender takes a death back). A time less precise than a day is not kept."""
        indicator = pid.get(30).upper()[:1]
        text = pid.get(29)
        when = parse_hl7_ts(text, self.tz) if _DAY_OR_FINER.match(text) else None
        if indicator == "N":
            return False, None
        deceased = indicator == "Y" or when is not None
        return deceased, when if deceased else None

    def _encounter(self, pv1: _Seg, patient: Ref) -> Parsed | None:
        visit = pv1.get(19)
        location_parts = pv1.comps(3)
        location = " ".join(p for p in location_parts[:3] if p)
        department = pv1.get(10) or (location_parts[0] if location_parts else "")
        start = parse_hl7_ts(pv1.get(44), self.tz)
        end = parse_hl7_ts(pv1.get(45), self.tz)
        status = _EVENT_STATUS.get(self.event) if self.mtype == "ADT" else None
        if status is None:
            status = "finished" if end else ("in-progress" if start else "unknown")
        record = EncounterIn(
            system=pv1.get(19, 4) or self.facility,
            local_id=visit or None,
            patient=patient,
            encounter_class=_PATIENT_CLASS.get(pv1.get(2).upper()[:1], "other"),
            status=status,
            start_at=start,
            end_at=end,
            department_text=department,
            location=location,
            event=f"{self.mtype}^{self.event}" if self.mtype == "ADT" else "",
        )
        return Parsed(record, f"{self.position}/PV1", str(pv1))

    def _orders(self, segs: list[_Seg], patient: Ref, encounter: Ref | None) -> None:
        """One order per OBR (with the ORC before it); an ORC without any OBR is one too."""
        orc: tuple[int, _Seg] | None = None
        orc_used = True
        for i, s in enumerate(segs):
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
        placer = (orc.get(2) if orc else "") or (obr.get(2) if obr else "")
        filler = (orc.get(3) if orc else "") or (obr.get(3) if obr else "")
        group = orc.get(4) if orc else ""
        codings = _coding(obr.comps(4)) if obr else []
        control = orc.get(1) if orc else ""
        status = _ORDER_STATUS.get(orc.get(5) if orc else "", "") or _ORDER_CONTROL.get(
            control, "active" if control else "unknown"
        )
        when = (orc.get(9) if orc else "") or (obr.get(6) if obr else "")
        position = f"{self.position}/{seg.id}[{i}]"
        number = placer or filler or group
        local = f"{number}/{codings[0].code}" if number and codings else number
        record = OrderIn(
            system=f"hl7v2:{(orc.get(2, 2) if orc else '') or self.facility}",
            local_id=local or None,
            patient=patient,
            encounter=encounter,
            placer_number=placer or group,
            filler_number=filler,
            status=status,
            codings=codings,
            text=codings[0].text if codings else "",
            priority=(obr.get(5) if obr else "") or (orc.get(7, 6) if orc else ""),
            ordered_at=parse_hl7_ts(when, self.tz),
        )
        self.unit.records.append(Parsed(record, position, str(seg)))

    def _results(
        self, segs: list[_Seg], patient: Ref | None, encounter: Ref | None, *, ordering: bool
    ) -> None:
        report: ReportIn | None = None
        report_ref: Ref | None = None
        orc: _Seg | None = None
        for i, s in enumerate(segs):
            if s.id == "ORC":
                orc = s
            elif s.id == "OBR":
                report = None
                report_ref = None
                has_obx = any(x.id == "OBX" for x in segs[i + 1 : _next_obr(segs, i)])
                if ordering and not has_obx:
                    continue  # an order, not a result (handled by _orders)
                if patient is None:
                    self.unit.errors.append(
                        (f"{self.position}/OBR[{i}]", "a result without a PID segment")
                    )
                    continue
                filler = s.get(3) or s.get(2)
                namespace = s.get(3, 2) or s.get(2, 2) or self.facility
                codings = _coding(s.comps(4))
                report = ReportIn(
                    system=f"hl7v2:{namespace}",
                    local_id=filler or None,
                    patient=patient,
                    encounter=encounter,
                    status=_RESULT_STATUS.get(s.get(25).upper(), "unknown"),
                    codings=codings,
                    text=codings[0].text if codings else "",
                    category=s.get(24),
                    effective_at=parse_hl7_ts(s.get(7), self.tz),
                    issued_at=parse_hl7_ts(s.get(22), self.tz),
                    # The placer order number links the result to its order (ORM's ORC-2).
                    placer_number=s.get(2) or (orc.get(2) if orc is not None else ""),
                )
                report_ref = report.ref() if filler else None
                self.unit.records.append(Parsed(report, f"{self.position}/OBR[{i}]", str(s)))
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
        value_type = s.get(2).upper()
        reps = s.reps(5)
        value_text = "~".join(s.message.unescape(r) for r in reps)
        number: float | None = None
        value_code = value_code_system = ""
        kind = "none"
        if value_type in ("NM", "SN") and len(reps) == 1:
            parts = s.comps(5)
            if value_type == "SN":
                comparator = parts[0] if parts else ""
                if len(parts) > 1 and not (len(parts) > 2 and parts[2]):
                    number, _ = parse_number(parts[1])
                    value_text = f"{comparator}{parts[1]}"
            else:
                number, _ = parse_number(value_text)
            kind = "quantity" if number is not None else ("string" if value_text else "none")
        elif value_type in ("CE", "CWE", "CNE", "CF") and reps:
            parts = s.comps(5)
            value_code = parts[0] if parts else ""
            value_code_system = parts[2] if len(parts) > 2 else ""
            value_text = (parts[8] if len(parts) > 8 and parts[8] else "") or (
                parts[1] if len(parts) > 1 else value_code
            )
            kind = "coded"
        elif value_text:
            kind = "string"
        unit = _unit(s.comps(6))
        ref_text = s.get(7)
        low, high = parse_range(ref_text)
        sub_id = s.get(4)
        local_id = None
        if report is not None and report.local_id:
            local_id = f"{report.local_id}/{codings[0].code or codings[0].text}/{sub_id}"
        record = ObservationIn(
            system=report.system if report is not None else f"hl7v2:{self.facility}",
            local_id=local_id,
            patient=patient,
            encounter=encounter,
            report=report_ref,
            status=_RESULT_STATUS.get(s.get(11).upper(), "unknown"),
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
            effective_at=parse_hl7_ts(s.get(14), self.tz)
            or (report.effective_at if report is not None else None),
            issued_at=parse_hl7_ts(s.get(19), self.tz)
            or (report.issued_at if report is not None else None),
        )
        if report is not None and local_id and report_ref is not None:
            report.results.append(record.ref())
        self.unit.records.append(Parsed(record, position, str(s)))


_POWER_HEAD = re.compile(r"^[xX×*]?\s*10$")
_POWER_TAIL = re.compile(r"^-?\d+\s*/")


def _unit(parts: list[str]) -> str:
    """OBX-6 as a unit string. Feeds often send `10^9/L` without escaping the `^`, which the
    parser splits into components `10` and `9/L`: put such a power of ten back together."""
    if len(parts) > 1 and _POWER_HEAD.match(parts[0]) and _POWER_TAIL.match(parts[1]):
        return f"{parts[0]}^{parts[1]}"
    return (parts[0] if parts else "") or (parts[1] if len(parts) > 1 else "")


def _next_obr(segs: list[_Seg], i: int) -> int:
    for j in range(i + 1, len(segs)):
        if segs[j].id in ("OBR", "ORC"):
            return j
    return len(segs)


class Hl7v2Connector:
    """HL7 v2 files and MLLP payloads; one unit per message."""

    format = "hl7v2"

    def units(self, data: bytes, *, source: str, options: ParseOptions) -> Iterator[Unit]:
        for index, segments in enumerate(split_messages(decode(data)), start=1):
            yield _Message(segments, source, index, options.timezone).parse()
