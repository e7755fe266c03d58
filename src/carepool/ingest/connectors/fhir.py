"""FHIR R4 connector: Bundles (transaction, batch, collection, searchset...), single resources
and NDJSON (bulk export), one unit per resource.

Each resource is validated with `fhir.resources.R4B` at this boundary (the R5 models reject R4
data); a resource that fails is rejected with the validation message and kept in the
dead-letter store. Valid resources are then read as plain JSON: Patient, Encounter, Observation
(each component becomes an observation of its own), DiagnosticReport and ServiceRequest become
records; any other resource type is stored whole as an `other` record.
"""

from __future__ import annotations

import functools
import json
import typing
from collections.abc import Iterator
from datetime import date, datetime, tzinfo
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel
from pydantic import BaseModel, ValidationError

from carepool.ingest.connectors.base import Parsed, ParseOptions, Unit, decode, parse_iso
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

__all__ = ["FhirConnector"]

ID_SYSTEM = "fhir"
_UCUM = "http://unitsofmeasure.org"
_CLASS = {
    "AMB": "outpatient",
    "IMP": "inpatient",
    "ACUTE": "inpatient",
    "NONAC": "inpatient",
    "SS": "inpatient",
    "OBSENC": "outpatient",
    "PRENC": "outpatient",
    "EMER": "emergency",
    "VR": "virtual",
    "HH": "home",
}
_ENCOUNTER_STATUS = {
    "planned": "planned",
    "arrived": "arrived",
    "triaged": "arrived",
    "in-progress": "in-progress",
    "onleave": "in-progress",
    "finished": "finished",
    "cancelled": "cancelled",
}
_NATIONAL_ID_TYPES = {"NI", "NNCHN", "SS", "SB"}
_NATIONAL_ID_SYSTEMS = {"http://hl7.org/fhir/sid/us-ssn"}
_SUBJECT_FIELDS = ("subject", "patient", "beneficiary")


def _reason(exc: ValidationError) -> str:
    errors = exc.errors()
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '(resource)'}: {e['msg']}" for e in errors[:3]
    ]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "FHIR R4 validation failed: " + "; ".join(parts) + more


# -- R4 validation ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _model(rtype: str) -> type[BaseModel] | None:
    """The R4B model class of a resource type (None: not a resource type)."""
    try:
        return typing.cast(type[BaseModel], get_fhir_model_class(rtype))
    except KeyError:
        return None


@functools.cache
def _element_fields(model: type[BaseModel]) -> dict[str, tuple[type[BaseModel], bool]]:
    """A model's fields that hold data types (CodeableConcept, Reference, Quantity...), by
    their JSON name: the data type's class and whether the field repeats. Fields holding
    resources (`contained`) are left out: their class depends on the value."""
    out: dict[str, tuple[type[BaseModel], bool]] = {}
    for name, info in model.model_fields.items():
        many, found = False, None
        pending: list[Any] = [info.annotation]
        while pending:
            tp = pending.pop()
            if typing.get_origin(tp) is list:
                many = True
            if hasattr(tp, "get_model_klass"):
                found = tp.get_model_klass()
            pending.extend(typing.get_args(tp))
        if found is not None and not issubclass(found, FHIRResourceModel):
            out[info.alias or name] = (found, many)
    return out


_VALID: dict[tuple[type[BaseModel], str], BaseModel] = {}  # (class, repr of its JSON) -> model
_VALID_LIMIT = 20_000
_VALID_MAX_KEY = 1_000  # longer values (narratives, attachments) are not remembered


def _valid_element(klass: type[BaseModel], value: dict[str, Any]) -> Any:
    """`value` validated as `klass`, the way the resource's own validation validates it
    (`model_validate` of the data type's class), remembered: a feed sends the same codes,
    categories and references thousands of times. An invalid value is returned as it is, so
    that the resource's validation reports it with its full location."""
    text = repr(value)  # unambiguous for parsed JSON: it tells 1, 1.0, True and "1" apart
    key = (klass, text)
    found = _VALID.get(key)
    if found is not None:
        return found
    try:
        model = klass.model_validate(value)
    except Exception:
        return value
    if len(text) <= _VALID_MAX_KEY:
        if len(_VALID) >= _VALID_LIMIT:
            _VALID.clear()
        _VALID[key] = model
    return model


def _validate(model: type[BaseModel], res: dict[str, Any]) -> None:
    """Validate a resource with its R4B model (raises what `model.model_validate` raises).

    The data types it holds are validated first, each by its own class as the model would
    (answers for repeated values remembered), and handed to the model already validated,
    which it takes as they are; what it checks itself (cardinality, choice types, nulls in
    lists, its primitives) it still checks on every resource.
    """
    fields = _element_fields(model)
    data: dict[str, Any] | None = None
    for key, value in res.items():
        spec = fields.get(key)
        if spec is None:
            continue
        klass, many = spec
        if many:
            if type(value) is not list or not value or any(type(v) is not dict for v in value):
                continue
            new: Any = [_valid_element(klass, v) for v in value]
        elif type(value) is dict:
            new = _valid_element(klass, value)
        else:
            continue
        if data is None:
            data = dict(res)
        data[key] = new
    model.model_validate(data if data is not None else res)


def _codings(concept: dict[str, Any] | None) -> list[Coding]:
    if not concept:
        return []
    out = [
        Coding(system=c.get("system", ""), code=str(c.get("code", "")), text=c.get("display", ""))
        for c in concept.get("coding") or []
    ]
    text = concept.get("text") or ""
    if text and out and not out[0].text:
        out[0] = Coding(out[0].system, out[0].code, text)
    if not out and text:
        out.append(Coding(text=text))
    return out


def _text(concept: dict[str, Any] | None) -> str:
    if not concept:
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for c in concept.get("coding") or []:
        if c.get("display"):
            return str(c["display"])
    return ""


class _Bundle:
    """Reference resolution within one input: fullUrl -> (type, id)."""

    def __init__(self) -> None:
        self.full_urls: dict[str, tuple[str, str]] = {}
        self.report_of: dict[tuple[str, str], Ref] = {}  # observation (type, id) -> its report

    def target(self, reference: dict[str, Any] | None, expected: str) -> tuple[str, str] | None:
        """The resource type and id a literal reference points at (None: not literal)."""
        if not reference:
            return None
        text = reference.get("reference") or ""
        if not text or "?" in text or text.startswith("#"):
            return None
        if text in self.full_urls:
            return self.full_urls[text]
        if text.startswith("urn:uuid:") or text.startswith("urn:oid:"):
            return expected, text.rsplit(":", 1)[1]
        parts = text.rstrip("/").split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) < 2:
            return None
        return parts[-2], parts[-1]

    def ref(self, reference: dict[str, Any] | None, expected: str) -> Ref | None:
        found = self.target(reference, expected)
        if found is None:
            return None
        rtype, rid = found
        kind = {
            "Patient": "patient",
            "Encounter": "encounter",
            "DiagnosticReport": "report",
            "Observation": "observation",
        }.get(rtype)
        if kind is None:
            return None
        return Ref(kind, ID_SYSTEM, rid)


def _patient(res: dict[str, Any], tz: tzinfo) -> PatientIn:
    identifiers = []
    national = None
    for ident in res.get("identifier") or []:
        value = ident.get("value")
        if not value:
            continue
        system = ident.get("system", "")
        id_type = ""
        for c in (ident.get("type") or {}).get("coding") or []:
            id_type = c.get("code", "") or id_type
        identifiers.append(Identifier(system=system, value=str(value), type=id_type))
        if national is None and (id_type in _NATIONAL_ID_TYPES or system in _NATIONAL_ID_SYSTEMS):
            national = str(value)
    names = res.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    family = name.get("family", "") or ""
    given = " ".join(name.get("given") or [])
    if name.get("text"):
        full = name["text"]
    elif any("\u3400" <= ch <= "\u9fff" for ch in family + given):
        full = f"{family}{given}"
    else:
        full = " ".join(p for p in (given, family) if p)
    phone = next(
        (t.get("value", "") for t in res.get("telecom") or [] if t.get("system") == "phone"), ""
    )
    address = ""
    for a in (res.get("address") or [])[:1]:
        address = a.get("text") or ", ".join(
            p
            for p in (
                *(a.get("line") or []),
                a.get("city", ""),
                a.get("district", ""),
                a.get("state", ""),
                a.get("postalCode", ""),
                a.get("country", ""),
            )
            if p
        )
    birth = _birth_date(res.get("birthDate"))
    died = res.get("deceasedDateTime")
    return PatientIn(
        system=ID_SYSTEM,
        local_id=str(res["id"]),
        identifiers=identifiers,
        name=full,
        family=family,
        given=given,
        sex=res.get("gender", "unknown"),
        birth_date=birth,
        national_id=national,
        phone=phone,
        address=address,
        deceased=bool(res.get("deceasedBoolean") or died),
        deceased_at=_death_time(died, tz),
    )


def _encounter(res: dict[str, Any], bundle: _Bundle, tz: tzinfo) -> EncounterIn:
    period = res.get("period") or {}
    cls = res.get("class") or {}
    types = res.get("type") or []
    locations = res.get("location") or []
    department = _text(res.get("serviceType"))
    return EncounterIn(
        system=ID_SYSTEM,
        local_id=str(res["id"]),
        patient=bundle.ref(res.get("subject"), "Patient"),
        encounter_class=_CLASS.get(cls.get("code", ""), "other"),
        status=_ENCOUNTER_STATUS.get(res.get("status", ""), "unknown"),
        start_at=parse_iso(period.get("start"), tz),
        end_at=parse_iso(period.get("end"), tz),
        type_text=_text(types[0]) if types else "",
        department_text=department,
        location=((locations[0].get("location") or {}).get("display", "") if locations else ""),
    )


def _value(res: dict[str, Any]) -> dict[str, Any]:
    """Observation.value[x] as ObservationIn fields."""
    if "valueQuantity" in res:
        q = res["valueQuantity"]
        unit = q.get("code") if q.get("system") == _UCUM and q.get("code") else q.get("unit", "")
        value = q.get("value")
        comparator = q.get("comparator", "")
        return {
            "value_type": "quantity" if value is not None else "none",
            "value_number": float(value) if value is not None else None,
            "value_text": f"{comparator}{value}" if value is not None else "",
            "unit": unit or "",
        }
    if "valueCodeableConcept" in res:
        codings = _codings(res["valueCodeableConcept"])
        first = codings[0] if codings else Coding()
        return {
            "value_type": "coded",
            "value_code": first.code,
            "value_code_system": first.system,
            "value_text": _text(res["valueCodeableConcept"]) or first.code,
        }
    if "valueInteger" in res:
        return {
            "value_type": "quantity",
            "value_number": float(res["valueInteger"]),
            "value_text": str(res["valueInteger"]),
        }
    for key in ("valueString", "valueDateTime", "valueTime", "valueBoolean"):
        if key in res:
            return {"value_type": "string", "value_text": str(res[key])}
    for key in ("valuePeriod", "valueRange", "valueRatio", "valueSampledData"):
        if key in res:
            return {"value_type": "string", "value_text": json.dumps(res[key], sort_keys=True)}
    return {"value_type": "none"}


def _range(res: dict[str, Any]) -> dict[str, Any]:
    ranges = res.get("referenceRange") or []
    if not ranges:
        return {}
    r = ranges[0]
    low = (r.get("low") or {}).get("value")
    high = (r.get("high") or {}).get("value")
    text = r.get("text") or (f"{low if low is not None else ''}-{high if high is not None else ''}")
    return {
        "ref_low": float(low) if low is not None else None,
        "ref_high": float(high) if high is not None else None,
        "ref_text": text if (low is not None or high is not None or r.get("text")) else "",
    }


def _observations(res: dict[str, Any], bundle: _Bundle, tz: tzinfo) -> list[ObservationIn]:
    effective = (
        res.get("effectiveDateTime")
        or res.get("effectiveInstant")
        or (res.get("effectivePeriod") or {}).get("start")
    )
    categories = res.get("category") or []
    category = next((c.get("code", "") for cat in categories for c in cat.get("coding") or []), "")
    interpretation = next(
        (c.get("code", "") for i in res.get("interpretation") or [] for c in i.get("coding") or []),
        "",
    )
    common = {
        "patient": bundle.ref(res.get("subject"), "Patient"),
        "encounter": bundle.ref(res.get("encounter"), "Encounter"),
        "report": bundle.report_of.get(("Observation", str(res["id"]))),
        "status": res.get("status", "unknown"),
        "category": category,
        "effective_at": parse_iso(effective, tz),
        "issued_at": parse_iso(res.get("issued"), tz),
    }
    out = [
        ObservationIn(
            system=ID_SYSTEM,
            local_id=str(res["id"]),
            codings=_codings(res.get("code")),
            text=_text(res.get("code")),
            interpretation=interpretation,
            **common,
            **_value(res),
            **_range(res),
        )
    ]
    for i, comp in enumerate(res.get("component") or []):
        comp_interp = next(
            (
                c.get("code", "")
                for it in comp.get("interpretation") or []
                for c in it.get("coding") or []
            ),
            "",
        )
        out.append(
            ObservationIn(
                system=ID_SYSTEM,
                local_id=f"{res['id']}#component[{i}]",
                codings=_codings(comp.get("code")),
                text=_text(comp.get("code")),
                interpretation=comp_interp,
                **common,
                **_value(comp),
                **_range(comp),
            )
        )
    return out


def _report(res: dict[str, Any], bundle: _Bundle, tz: tzinfo) -> ReportIn:
    effective = res.get("effectiveDateTime") or (res.get("effectivePeriod") or {}).get("start")
    categories = res.get("category") or []
    category = next((c.get("code", "") for cat in categories for c in cat.get("coding") or []), "")
    results = [r for r in (bundle.ref(x, "Observation") for x in res.get("result") or []) if r]
    order, placer = _based_on(res, bundle)
    return ReportIn(
        system=ID_SYSTEM,
        local_id=str(res["id"]),
        patient=bundle.ref(res.get("subject"), "Patient"),
        encounter=bundle.ref(res.get("encounter"), "Encounter"),
        status=res.get("status", "unknown"),
        codings=_codings(res.get("code")),
        text=_text(res.get("code")),
        category=category,
        effective_at=parse_iso(effective, tz),
        issued_at=parse_iso(res.get("issued"), tz),
        conclusion=res.get("conclusion", "") or "",
        results=results,
        order=order,
        placer_number=placer,
    )


def _based_on(res: dict[str, Any], bundle: _Bundle) -> tuple[Ref | None, str]:
    """The order a report answers: the first `basedOn` ServiceRequest it refers to literally,
    and the first order number a `basedOn` names (a logical reference's identifier)."""
    order: Ref | None = None
    placer = ""
    for reference in res.get("basedOn") or []:
        if not isinstance(reference, dict):
            continue
        identifier = reference.get("identifier") or {}
        if not placer and identifier.get("value"):
            placer = str(identifier["value"])
        found = bundle.target(reference, "ServiceRequest")
        if order is None and found is not None and found[0] == "ServiceRequest":
            order = Ref("order", ID_SYSTEM, found[1])
    return order, placer


def _order(res: dict[str, Any], bundle: _Bundle, tz: tzinfo) -> OrderIn:
    identifiers = [i for i in res.get("identifier") or [] if i.get("value")]
    # The placer's number (type PLAC) when the identifiers say which one it is, else the first.
    typed = [
        i
        for i in identifiers
        if any(c.get("code") == "PLAC" for c in (i.get("type") or {}).get("coding") or [])
    ]
    placer = str((typed or identifiers)[0]["value"]) if identifiers else ""
    return OrderIn(
        system=ID_SYSTEM,
        local_id=str(res["id"]),
        patient=bundle.ref(res.get("subject"), "Patient"),
        encounter=bundle.ref(res.get("encounter"), "Encounter"),
        placer_number=placer,
        status=res.get("status", "unknown"),
        codings=_codings(res.get("code")),
        text=_text(res.get("code")),
        priority=res.get("priority", "") or "",
        ordered_at=parse_iso(res.get("authoredOn"), tz),
    )


def _subject(res: dict[str, Any], bundle: _Bundle) -> Ref | None:
    for name in _SUBJECT_FIELDS:
        value = res.get(name)
        if isinstance(value, dict):
            ref = bundle.ref(value, "Patient")
            if ref is not None and ref.kind == "patient":
                return ref
    return None


class FhirConnector:
    """FHIR R4 JSON (a Bundle or one resource) or NDJSON; one unit per resource."""

    format = "fhir"

    def units(self, data: bytes, *, source: str, options: ParseOptions) -> Iterator[Unit]:
        text = decode(data).strip()
        try:
            whole = json.loads(text) if text.startswith("{") else None
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, dict):
            yield from self._document(whole, source, options.timezone)
            return
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            position = f"{source}:{number}"
            try:
                resource = json.loads(line)
            except json.JSONDecodeError as exc:
                unit = Unit(position=position, raw=line.encode())
                unit.errors.append((position, f"line {number} is not JSON: {exc.msg}"))
                yield unit
                continue
            if not isinstance(resource, dict):
                unit = Unit(position=position, raw=line.encode())
                unit.errors.append((position, "a line of NDJSON must hold one JSON object"))
                yield unit
                continue
            yield from self._document(resource, position, options.timezone, raw=line.encode())

    def _document(
        self, doc: dict[str, Any], position: str, tz: tzinfo, raw: bytes | None = None
    ) -> Iterator[Unit]:
        if doc.get("resourceType") != "Bundle":
            yield self._resource(doc, position, _Bundle(), tz, message="", raw=raw)
            return
        bundle = _Bundle()
        entries = doc.get("entry") or []
        for entry in entries:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(res, dict) and res.get("resourceType") and res.get("id"):
                full = entry.get("fullUrl")
                if full:
                    bundle.full_urls[full] = (res["resourceType"], str(res["id"]))
        for entry in entries:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(res, dict) and res.get("resourceType") == "DiagnosticReport":
                report_id = res.get("id")
                for r in res.get("result") or []:
                    ref = bundle.ref(r, "Observation")
                    if ref and report_id:
                        report_ref = Ref("report", ID_SYSTEM, str(report_id))
                        bundle.report_of[("Observation", ref.local_id)] = report_ref
        message = f"Bundle/{doc.get('id', '')} ({doc.get('type', '')})"
        for index, entry in enumerate(entries):
            where = f"{position}#entry[{index}]"
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict):
                unit = Unit(position=where, raw=json.dumps(entry).encode(), message=message)
                unit.errors.append((where, "a bundle entry without a resource"))
                yield unit
                continue
            request = entry.get("request") or {}
            if request.get("method") == "DELETE":
                unit = Unit(position=where, raw=json.dumps(res).encode(), message=message)
                unit.errors.append((where, "DELETE entries are not applied by ingest"))
                yield unit
                continue
            if res.get("resourceType") == "Bundle":
                yield from self._document(res, where, tz)
                continue
            yield self._resource(res, where, bundle, tz, message=message)

    def _resource(
        self,
        res: dict[str, Any],
        position: str,
        bundle: _Bundle,
        tz: tzinfo,
        *,
        message: str,
        raw: bytes | None = None,
    ) -> Unit:
        compact = json.dumps(res, ensure_ascii=False, separators=(",", ":"))
        unit = Unit(position=position, raw=raw or compact.encode(), message=message)
        rtype = res.get("resourceType")
        if not isinstance(rtype, str):
            unit.errors.append((position, "not a FHIR resource: resourceType is missing"))
            return unit
        model = _model(rtype)
        if model is None:
            unit.errors.append((position, f"{rtype!r} is not a FHIR R4 resource type"))
            return unit
        try:
            _validate(model, res)
        except ValidationError as exc:
            unit.errors.append((position, _reason(exc)))
            return unit
        except Exception as exc:  # fhir.resources raises a few non-pydantic errors
            unit.errors.append((position, f"FHIR R4 validation failed: {exc}"))
            return unit
        if not res.get("id"):
            res = {**res, "id": "sha256-" + _digest(compact)}
        try:
            if rtype == "Patient":
                records: list[Any] = [_patient(res, tz)]
            elif rtype == "Encounter":
                records = [_encounter(res, bundle, tz)]
            elif rtype == "Observation":
                records = _observations(res, bundle, tz)
            elif rtype == "DiagnosticReport":
                records = [_report(res, bundle, tz)]
            elif rtype == "ServiceRequest":
                records = [_order(res, bundle, tz)]
            else:
                records = [
                    OtherIn(
                        system=ID_SYSTEM,
                        local_id=str(res["id"]),
                        type_name=f"fhir:{rtype}",
                        patient=_subject(res, bundle),
                        body=res,
                    )
                ]
        except (KeyError, TypeError, ValueError) as exc:
            unit.errors.append((position, f"cannot read the {rtype}: {exc!r}"))
            return unit
        for record in records:
            missing = getattr(record, "patient", "n/a") is None and rtype in (
                "Encounter",
                "Observation",
                "DiagnosticReport",
                "ServiceRequest",
            )
            if missing:
                unit.errors.append(
                    (position, f"{rtype}/{res['id']}: subject does not refer to a Patient")
                )
                continue
            unit.records.append(Parsed(record, position, compact))
        return unit


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _death_time(text: Any, tz: tzinfo) -> datetime | None:
    """`deceasedDateTime` as an instant: a day counts from its local midnight; a year or a
    month alone is too vague to date records against, so the patient is only `deceased`."""
    if not isinstance(text, str) or len(text.strip()) < len("2000-01-01"):
        return None
    return parse_iso(text, tz)


def _birth_date(text: Any) -> date | None:
    """A FHIR `date` is a calendar day, not an instant: no time zone may move it.

    Partial dates (YYYY, YYYY-MM) carry no day and are not stored as one.
    """
    if not isinstance(text, str) or len(text) != 10:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None
