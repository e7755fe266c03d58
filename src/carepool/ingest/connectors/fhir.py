"""FHIR R4 connector: Bundles (transaction, batch, collection, searchset, history...), single
resources, single bundle entries (a dead letter retried) and NDJSON (bulk export).

One unit per resource, its raw the exact bytes it came as (an NDJSON line, a bundle entry's
span of the document), so one bad resource never takes another with it; a transaction bundle
is one unit, all or nothing. Input must be UTF-8 (RFC 8259): a byte-order mark (UTF-8/16/32) or a
declared encoding is honoured, anything else is refused naming what the bytes look like. Each
resource is validated with `fhir.resources.R4B` (the R5 models reject R4 data); a resource that
fails is rejected with the field, what was expected and what came. Valid resources are read as
plain JSON: Patient, Encounter, Observation (each component becomes an observation of its own),
DiagnosticReport and ServiceRequest become records, with `invalid-code:*` flags for codes R4 does
not allow; any other resource type is stored whole as an `other` record and counted in
`Unit.unmodelled`. See docs/decisions/0017-fhir-per-item-isolation.md.
"""

from __future__ import annotations

import codecs
import difflib
import functools
import json
import re
import sys
import typing
from collections.abc import Iterator
from datetime import date, datetime, tzinfo
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel
from pydantic import BaseModel, ValidationError

from carepool.ingest.connectors.base import Parsed, ParseOptions, Unit, parse_iso
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

__all__ = ["R4_RESOURCE_TYPES", "FhirConnector"]

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
_NEEDS_PATIENT = frozenset({"Encounter", "Observation", "DiagnosticReport", "ServiceRequest"})

# The codes R4 allows (required bindings the R4B models do not check). A code outside them is
# flagged `invalid-code:<Type>.<field>` and stored as `unknown`, never silently.
_GENDERS = frozenset({"male", "female", "other", "unknown"})
_STATUSES = {
    "Observation": frozenset(
        [
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        ]
    ),
    "DiagnosticReport": frozenset(
        [
            "registered",
            "partial",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "appended",
            "cancelled",
            "entered-in-error",
            "unknown",
        ]
    ),
    "Encounter": frozenset(
        [
            "planned",
            "arrived",
            "triaged",
            "in-progress",
            "onleave",
            "finished",
            "cancelled",
            "entered-in-error",
            "unknown",
        ]
    ),
    "ServiceRequest": frozenset(
        [
            "draft",
            "active",
            "on-hold",
            "revoked",
            "completed",
            "entered-in-error",
            "unknown",
        ]
    ),
}
_COMPARATORS = frozenset({"<", "<=", ">=", ">"})

# The resource types of FHIR R4 (4.3.0, R4B), as `fhir.resources.R4B` models them
# (tests/ingest/test_fhir_hostile.py checks the list against the library).
R4_RESOURCE_TYPES = tuple(
    [
        "Account",
        "ActivityDefinition",
        "AdministrableProductDefinition",
        "AdverseEvent",
        "AllergyIntolerance",
        "Appointment",
        "AppointmentResponse",
        "AuditEvent",
        "Basic",
        "Binary",
        "BiologicallyDerivedProduct",
        "BodyStructure",
        "Bundle",
        "CapabilityStatement",
        "CarePlan",
        "CareTeam",
        "CatalogEntry",
        "ChargeItem",
        "ChargeItemDefinition",
        "Citation",
        "Claim",
        "ClaimResponse",
        "ClinicalImpression",
        "ClinicalUseDefinition",
        "CodeSystem",
        "Communication",
        "CommunicationRequest",
        "CompartmentDefinition",
        "Composition",
        "ConceptMap",
        "Condition",
        "Consent",
        "Contract",
        "Coverage",
        "CoverageEligibilityRequest",
        "CoverageEligibilityResponse",
        "DetectedIssue",
        "Device",
        "DeviceDefinition",
        "DeviceMetric",
        "DeviceRequest",
        "DeviceUseStatement",
        "DiagnosticReport",
        "DocumentManifest",
        "DocumentReference",
        "Encounter",
        "Endpoint",
        "EnrollmentRequest",
        "EnrollmentResponse",
        "EpisodeOfCare",
        "EventDefinition",
        "Evidence",
        "EvidenceReport",
        "EvidenceVariable",
        "ExampleScenario",
        "ExplanationOfBenefit",
        "FamilyMemberHistory",
        "Flag",
        "Goal",
        "GraphDefinition",
        "Group",
        "GuidanceResponse",
        "HealthcareService",
        "ImagingStudy",
        "Immunization",
        "ImmunizationEvaluation",
        "ImmunizationRecommendation",
        "ImplementationGuide",
        "Ingredient",
        "InsurancePlan",
        "Invoice",
        "Library",
        "Linkage",
        "List",
        "Location",
        "ManufacturedItemDefinition",
        "Measure",
        "MeasureReport",
        "Media",
        "Medication",
        "MedicationAdministration",
        "MedicationDispense",
        "MedicationKnowledge",
        "MedicationRequest",
        "MedicationStatement",
        "MedicinalProductDefinition",
        "MessageDefinition",
        "MessageHeader",
        "MolecularSequence",
        "NamingSystem",
        "NutritionOrder",
        "NutritionProduct",
        "Observation",
        "ObservationDefinition",
        "OperationDefinition",
        "OperationOutcome",
        "Organization",
        "OrganizationAffiliation",
        "PackagedProductDefinition",
        "Parameters",
        "Patient",
        "PaymentNotice",
        "PaymentReconciliation",
        "Person",
        "PlanDefinition",
        "Practitioner",
        "PractitionerRole",
        "Procedure",
        "Provenance",
        "Questionnaire",
        "QuestionnaireResponse",
        "RegulatedAuthorization",
        "RelatedPerson",
        "RequestGroup",
        "ResearchDefinition",
        "ResearchElementDefinition",
        "ResearchStudy",
        "ResearchSubject",
        "RiskAssessment",
        "Schedule",
        "SearchParameter",
        "ServiceRequest",
        "Slot",
        "Specimen",
        "SpecimenDefinition",
        "StructureDefinition",
        "StructureMap",
        "Subscription",
        "SubscriptionStatus",
        "SubscriptionTopic",
        "Substance",
        "SubstanceDefinition",
        "SupplyDelivery",
        "SupplyRequest",
        "Task",
        "TerminologyCapabilities",
        "TestReport",
        "TestScript",
        "ValueSet",
        "VerificationResult",
        "VisionPrescription",
    ]
)
_RESOURCE_SET = frozenset(R4_RESOURCE_TYPES)


# What a validation message means, said as what was expected.
_EXPECTED = {
    "Date value string does not match spec regex.": "expected a date YYYY, YYYY-MM or YYYY-MM-DD",
    "DateTime value string does not match spec regex.": (
        "expected a dateTime YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+zz:zz"
    ),
    "Instant value string does not match spec regex.": (
        "expected an instant YYYY-MM-DDThh:mm:ss[.sss]+zz:zz"
    ),
    "Decimal value string does not match spec regex.": "expected a finite decimal number",
}


def _problem(e: Any) -> str:
    where = ".".join(str(p) for p in e["loc"]) or "(resource)"
    msg = str(e["msg"]).removeprefix("Value error, ")
    msg = _EXPECTED.get(msg, msg)
    if e.get("input") is not None and not isinstance(e["input"], dict):
        msg += f", got {_shown(e['input'])}"
    return f"{where}: {msg}"


def _reason(exc: ValidationError) -> str:
    errors = exc.errors()
    parts = [_problem(e) for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "FHIR R4 validation failed: " + "; ".join(parts) + more


# -- R4 validation ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _model(rtype: str) -> type[BaseModel] | None:
    """The R4B model class of a resource type (None: not a resource type)."""
    try:
        return typing.cast(type[BaseModel], get_fhir_model_class(rtype))
    except (KeyError, ValueError):
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

    def learn(self, entries: list[Any]) -> None:
        """Remember every entry's fullUrl and which report each observation belongs to."""
        resources = []
        for entry in entries:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(res, dict) and isinstance(res.get("resourceType"), str) and res.get("id"):
                resources.append(res)
                full = entry.get("fullUrl")
                if isinstance(full, str) and full:
                    self.full_urls[full] = (res["resourceType"], str(res["id"]))
        for res in resources:
            if res["resourceType"] == "DiagnosticReport" and isinstance(res.get("result"), list):
                report_ref = Ref("report", ID_SYSTEM, str(res["id"]))
                for r in res["result"]:
                    ref = self.ref(r, "Observation") if isinstance(r, dict) else None
                    if ref:
                        self.report_of[("Observation", ref.local_id)] = report_ref

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


def _code(
    res: dict[str, Any], field: str, allowed: frozenset[str], flags: list[str], default: str
) -> str:
    value = res.get(field)
    if value is None:
        return default
    if value in allowed:
        return str(value)
    flags.append(f"invalid-code:{res['resourceType']}.{field}")
    return "unknown"


def _patient(res: dict[str, Any], tz: tzinfo, flags: list[str]) -> PatientIn:
    identifiers = []
    national = None
    for ident in res.get("identifier") or []:
        value = ident.get("value")
        if not value:
            continue
        system = ident.get("system", "")
        id_type = ""
        for c in (ident.get("type") or {}).get("coding") or []:
            if c.get("code"):
                id_type = str(c["code"])
                break
        else:  # a type said in words only; `patient_identifier.type` holds 20 characters
            text = str((ident.get("type") or {}).get("text") or "")
            id_type = text if len(text) <= 20 else ""
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
        sex=_code(res, "gender", _GENDERS, flags, "unknown"),
        birth_date=birth,
        national_id=national,
        phone=phone,
        address=address,
        deceased=bool(res.get("deceasedBoolean") or died),
        deceased_at=_death_time(died, tz),
    )


def _encounter(res: dict[str, Any], bundle: _Bundle, tz: tzinfo, flags: list[str]) -> EncounterIn:
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
        status=_ENCOUNTER_STATUS.get(
            _code(res, "status", _STATUSES["Encounter"], flags, ""), "unknown"
        ),
        start_at=parse_iso(period.get("start"), tz),
        end_at=parse_iso(period.get("end"), tz),
        type_text=_text(types[0]) if types else "",
        department_text=department,
        location=((locations[0].get("location") or {}).get("display", "") if locations else ""),
    )


def _value(res: dict[str, Any], flags: list[str], where: str) -> dict[str, Any]:
    """Observation.value[x] (or a component's) as ObservationIn fields, comparator as sent."""
    if "valueQuantity" in res:
        q = res["valueQuantity"]
        unit = q.get("code") if q.get("system") == _UCUM and q.get("code") else q.get("unit", "")
        value = q.get("value")
        comparator = q.get("comparator") or ""
        if comparator and comparator not in _COMPARATORS:
            flags.append(f"invalid-code:{where}.valueQuantity.comparator")
            comparator = ""
        return {
            "comparator": comparator,
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


def _observations(
    res: dict[str, Any], bundle: _Bundle, tz: tzinfo, flags: list[str]
) -> list[ObservationIn]:
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
    common: dict[str, Any] = {
        "patient": bundle.ref(res.get("subject"), "Patient"),
        "encounter": bundle.ref(res.get("encounter"), "Encounter"),
        "report": bundle.report_of.get(("Observation", str(res["id"]))),
        "status": _code(res, "status", _STATUSES["Observation"], flags, "unknown"),
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
            **_value(res, flags, "Observation"),
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
                **_value(comp, flags, "Observation.component"),
                **_range(comp),
            )
        )
    return out


def _report(res: dict[str, Any], bundle: _Bundle, tz: tzinfo, flags: list[str]) -> ReportIn:
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
        status=_code(res, "status", _STATUSES["DiagnosticReport"], flags, "unknown"),
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


def _order(res: dict[str, Any], bundle: _Bundle, tz: tzinfo, flags: list[str]) -> OrderIn:
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
        status=_code(res, "status", _STATUSES["ServiceRequest"], flags, "unknown"),
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


# -- reading JSON: exact bytes, positions, and no input that can raise --------------------------


class _JsonProblem(ValueError):
    """JSON that parses but is not acceptable FHIR JSON (NaN, an out-of-range number, a key
    twice in one object)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise _JsonProblem(
                    f"key {key!r} appears twice in one object ({_shown(seen[key])} and "
                    f"{_shown(value)}); JSON names must be unique in FHIR"
                )
            seen[key] = value
    return out


def _constant(name: str) -> Any:
    raise _JsonProblem(f"{name} is not a JSON number (RFC 8259 has no NaN or Infinity)")


# A number too large for a float (1e400) becomes inf, which R4 validation refuses where a decimal
# is expected ("expected a finite decimal number, got inf"): no per-number hook is needed.
_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant)
# Reads past what `_DECODER` refuses in one bundle entry, to find where the next one starts.
_LENIENT = json.JSONDecoder(parse_constant=str, parse_int=str, parse_float=str)
_WS = re.compile(r"[ \t\n\r]*")


def _cut(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _shown(value: Any) -> str:
    return _cut(repr(value), 60)


def _number_problem(exc: ValueError) -> str:
    text = str(exc)
    if "integer string conversion" in text:
        return "a number with more than 4,300 digits (no FHIR value is that long)"
    return text


class _Text:
    """Decoded input text and how to get the exact bytes of a piece of it back."""

    def __init__(self, text: str, codec: str, offset: int) -> None:
        self.text = text
        self.codec = codec  # `utf-8`, or the BOM's or declared codec
        self.offset = offset  # bytes before `text` (a UTF-8 byte-order mark)

    def raw(self, start: int, end: int) -> bytes:
        return self.text[start:end].encode(self.codec)

    def where(self, pos: int) -> str:
        line = self.text.count("\n", 0, pos) + 1
        column = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        byte = self.offset + len(self.text[:pos].encode(self.codec))
        return f"line {line}, column {column} (byte {byte:,})"


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _seen_encoding(data: bytes) -> str:
    try:
        found = decode_bytes(data)
    except CharsetError as exc:
        return exc.reason
    return f"the bytes look like {found.encoding} ({found.how}, {found.confidence:.0%} sure)"


def _not_utf8(data: bytes, exc: UnicodeDecodeError, offset: int = 0) -> str:
    byte = offset + exc.start
    return (
        f"FHIR JSON must be UTF-8 (RFC 8259 and the FHIR JSON format): byte {byte:,} "
        f"({data[exc.start : exc.start + 4].hex(' ')}) is not valid UTF-8; "
        f"{_seen_encoding(data)}; convert the export to UTF-8 or declare the source's encoding"
    )


def _marked_or_declared(data: bytes, declared: str | None) -> _Text | None:
    """UTF-16/32 with a byte-order mark, or a declared encoding other than UTF-8, decoded
    strictly (None: the input is UTF-8, read as bytes)."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)) or (
        data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    ):
        try:
            found = decode_bytes(data)
        except CharsetError as exc:
            raise _Refused(exc.reason) from None
        return _Text(found.text, found.encoding, 0)
    if declared and codec_name(declared) not in ("utf-8", "ascii"):
        try:
            found = decode_bytes(data, declared=declared)
        except CharsetError as exc:
            raise _Refused(exc.reason) from None
        codec = "utf-8" if found.how == "bom" else found.encoding
        return _Text(found.text.lstrip("\ufeff"), codec, 0)
    if b"\x00" in data:  # JSON text never holds a NUL byte: UTF-16/32 without a mark
        raise _Refused(
            "FHIR JSON must be UTF-8 (RFC 8259): the input holds NUL bytes and no byte-order "
            f"mark; {_seen_encoding(data)}; export it as UTF-8 (or UTF-16 with a BOM)"
        )
    return None


class FhirConnector:
    """FHIR R4 JSON (a Bundle, a bundle entry or one resource) or NDJSON.

    One unit per resource, whose raw is the exact bytes it arrived as (a bundle entry, an NDJSON
    line), except a transaction bundle: one unit, all or nothing (FHIR's rule for transactions).
    No input raises: what cannot be read becomes a unit with an error saying where and why.
    """

    format = "fhir"

    def units(self, data: bytes, *, source: str, options: ParseOptions) -> Iterator[Unit]:
        done = 0
        try:
            for unit in self._units(data, source, options):
                done += 1
                yield unit
        except Exception as exc:  # a defect here must not end the run or lose the input
            unit = Unit(position=source, raw=data, message=source)
            unit.errors.append(
                (source, f"cannot read the input after {done} units: {type(exc).__name__}: {exc}")
            )
            yield unit

    def _units(self, data: bytes, source: str, options: ParseOptions) -> Iterator[Unit]:
        tz = options.timezone
        if not data.strip():
            yield _failed(source, data, "the input is empty: no FHIR resource in it")
            return
        try:
            decoded = _marked_or_declared(data, options.encoding)
        except (_Refused, CharsetError) as exc:
            yield _failed(source, data, getattr(exc, "reason", str(exc)))
            return
        if decoded is None:
            offset = 3 if data.startswith(codecs.BOM_UTF8) else 0
            body = data[offset:]
            if _is_ndjson(body, source):
                yield from self._ndjson_bytes(body, offset, source, tz)
                return
            try:
                decoded = _Text(body.decode("utf-8"), "utf-8", offset)
            except UnicodeDecodeError as exc:
                yield _failed(source, data, _not_utf8(body, exc, offset))
                return
        elif _is_ndjson(decoded.text.encode("utf-8", "surrogatepass"), source):
            yield from self._ndjson_text(decoded, source, tz)
            return
        yield from self._document_text(decoded, data, source, tz)

    # -- NDJSON ------------------------------------------------------------------------------

    def _ndjson_bytes(self, body: bytes, offset: int, source: str, tz: tzinfo) -> Iterator[Unit]:
        start = 0
        for number, line in enumerate(body.split(b"\n"), start=1):
            at = offset + start
            start += len(line) + 1
            line = line.removesuffix(b"\r")
            if not line.strip():
                continue
            position = f"{source}:{number}"
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                reason = f"line {number} (byte {at:,} of the file): " + _not_utf8(line, exc)
                yield _failed(position, line, reason)
                continue
            yield from self._line(text, line, number, at, position, tz)

    def _ndjson_text(self, decoded: _Text, source: str, tz: tzinfo) -> Iterator[Unit]:
        for number, text in enumerate(decoded.text.split("\n"), start=1):
            text = text.removesuffix("\r")
            if text.strip():
                raw = text.encode(decoded.codec)
                yield from self._line(text, raw, number, None, f"{source}:{number}", tz)

    def _line(
        self, text: str, raw: bytes, number: int, at: int | None, position: str, tz: tzinfo
    ) -> Iterator[Unit]:
        where = f"line {number}" + (f" (byte {at:,} of the file)" if at is not None else "")
        try:
            start = _WS.match(text).end()  # type: ignore[union-attr]
            resource, end = _DECODER.raw_decode(text, start)
            if text[end:].strip():
                raise json.JSONDecodeError("Extra data after the JSON object", text, end)
        except json.JSONDecodeError as exc:
            reason = f"{where}: not valid JSON at column {exc.colno}: {exc.msg}"
            yield _failed(position, raw, reason)
            return
        except RecursionError:
            yield _failed(position, raw, f"{where}: {_too_deep()}")
            return
        except ValueError as exc:
            yield _failed(position, raw, f"{where}: {_number_problem(exc)}")
            return
        if not isinstance(resource, dict):
            reason = f"{where}: a line of NDJSON must hold one JSON object, not {_kind(resource)}"
            yield _failed(position, raw, reason)
            return
        yield from self._document(resource, None, position, tz, raw=raw)

    # -- one JSON document -------------------------------------------------------------------

    def _document_text(
        self, decoded: _Text, data: bytes, source: str, tz: tzinfo
    ) -> Iterator[Unit]:
        try:
            doc, spans = _walk(decoded.text)
        except json.JSONDecodeError as exc:
            reason = f"not valid JSON at {decoded.where(exc.pos)}: {exc.msg}"
            yield _failed(source, data, reason)
            return
        except RecursionError:
            yield _failed(source, data, _too_deep())
            return
        except ValueError as exc:
            yield _failed(source, data, _number_problem(exc))
            return
        if doc is None:
            yield _failed(source, data, "a FHIR JSON document is one JSON object ({...})")
            return
        yield from self._document(doc, (decoded, spans), source, tz, raw=data)

    def _document(
        self,
        doc: dict[str, Any],
        exact: tuple[_Text, list[_Span] | None] | None,
        position: str,
        tz: tzinfo,
        raw: bytes,
    ) -> Iterator[Unit]:
        if doc.get("resourceType") == "Bundle":
            spans = exact[1] if exact is not None else None
            text = exact[0] if exact is not None else None
            yield from self._bundle(doc, text, spans, position, tz, raw)
            return
        if "resourceType" not in doc and isinstance(doc.get("resource"), dict):
            # one bundle entry on its own: a dead letter of a bundle entry, retried
            context = _Bundle()
            context.learn([doc])
            yield self._entry(doc, position, context, tz, message="", raw=raw)
            return
        yield self._resource(doc, position, _Bundle(), tz, message="", raw=raw)

    def _bundle(
        self,
        doc: dict[str, Any],
        text: _Text | None,
        spans: list[_Span] | None,
        position: str,
        tz: tzinfo,
        raw: bytes,
    ) -> Iterator[Unit]:
        btype = doc.get("type", "")
        message = f"Bundle/{doc.get('id', '')} ({btype})"
        entries = doc.get("entry")
        if not entries and entries != 0:  # said, not silently nothing: a delivery is expected
            yield _failed(position, raw, f"{message}: the bundle has no entries", message)
            return
        if not isinstance(entries, list):
            yield _failed(position, raw, f"{message}: Bundle.entry must be an array")
            return
        context = _Bundle()
        context.learn(entries)
        units: list[Unit] = []
        whole = btype == "transaction"  # one unit whose raw is the bundle: no entry raws
        for index, entry in enumerate(entries):
            where = f"{position}#entry[{index}]"
            span = spans[index] if spans is not None and index < len(spans) else None
            if whole:
                entry_raw = b""
            elif span is not None and text is not None:
                entry_raw = text.raw(span[0], span[1])
            else:
                entry_raw = _compact(entry).encode()
            if span is not None and span[2]:
                units.append(_failed(where, entry_raw, f"entry[{index}]: {span[2]}", message))
                continue
            inner = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(inner, dict) and inner.get("resourceType") == "Bundle":
                units.extend(self._bundle(inner, None, None, where, tz, entry_raw))
                continue
            units.append(self._entry(entry, where, context, tz, message=message, raw=entry_raw))
        if whole:
            yield _transaction(units, position, raw, message)
            return
        if btype == "history":
            units.reverse()  # newest first in a history bundle: the newest version applies last
        yield from units

    def _entry(
        self, entry: Any, where: str, context: _Bundle, tz: tzinfo, *, message: str, raw: bytes
    ) -> Unit:
        if not isinstance(entry, dict):
            return _failed(where, raw, f"a bundle entry must be an object, not {_kind(entry)}")
        request = entry.get("request")
        method = request.get("method", "") if isinstance(request, dict) else ""
        if method in ("DELETE", "GET", "HEAD", "PATCH"):
            url = request.get("url", "") if isinstance(request, dict) else ""
            return _failed(where, raw, f"{method} {url} entries are not applied by ingest", message)
        res = entry.get("resource")
        if not isinstance(res, dict):
            got = "no resource" if res is None else _kind(res)
            return _failed(where, raw, f"a bundle entry without a resource ({got})", message)
        return self._resource(res, where, context, tz, message=message, raw=raw)

    def _resource(
        self,
        res: dict[str, Any],
        position: str,
        bundle: _Bundle,
        tz: tzinfo,
        *,
        message: str,
        raw: bytes,
    ) -> Unit:
        unit = Unit(position=position, raw=raw, message=message)
        try:
            self._read(res, position, bundle, tz, unit)
        except RecursionError:
            unit.records.clear()
            unit.errors[:] = [(position, _too_deep())]
        except Exception as exc:  # a resource nobody foresaw: its unit, not the run
            unit.records.clear()
            name = _name(res)
            unit.errors[:] = [(position, f"{name}: cannot read it: {type(exc).__name__}: {exc}")]
        return unit

    def _read(
        self, res: dict[str, Any], position: str, bundle: _Bundle, tz: tzinfo, unit: Unit
    ) -> None:
        rtype = res.get("resourceType")
        if rtype is None:
            keys = ", ".join(list(res)[:6])
            unit.errors.append(
                (position, f"not a FHIR resource: resourceType is missing (keys: {keys})")
            )
            return
        if not isinstance(rtype, str):
            reason = f"resourceType must be a string naming a FHIR R4 resource, got {_shown(rtype)}"
            unit.errors.append((position, reason))
            return
        model = _model(rtype) if rtype in _RESOURCE_SET else None
        if model is None:
            unit.errors.append((position, _unknown_type(rtype)))
            return
        compact = _compact(res)
        try:
            _validate(model, res)
        except ValidationError as exc:
            unit.errors.append((position, f"{_name(res)}: {_reason(exc)}"))
            return
        except RecursionError:
            raise
        except Exception as exc:  # fhir.resources raises a few non-pydantic errors
            unit.errors.append((position, f"{_name(res)}: FHIR R4 validation failed: {exc}"))
            return
        if not res.get("id"):
            res = {**res, "id": "sha256-" + _digest(compact)}
        flags: list[str] = []
        if rtype == "Patient":
            records: list[Any] = [_patient(res, tz, flags)]
        elif rtype == "Encounter":
            records = [_encounter(res, bundle, tz, flags)]
        elif rtype == "Observation":
            records = _observations(res, bundle, tz, flags)
        elif rtype == "DiagnosticReport":
            records = [_report(res, bundle, tz, flags)]
        elif rtype == "ServiceRequest":
            records = [_order(res, bundle, tz, flags)]
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
            key = f"resource:{rtype}"
            unit.unmodelled[key] = unit.unmodelled.get(key, 0) + 1
        for contained in res.get("contained") or ():
            key = f"contained:{contained.get('resourceType', '?')}"
            unit.unmodelled[key] = unit.unmodelled.get(key, 0) + 1
        for record in records:
            if rtype in _NEEDS_PATIENT and record.patient is None:
                unit.errors.append((position, f"{rtype}/{res['id']}: {_no_patient(res)}"))
                continue
            unit.records.append(Parsed(record, position, compact, list(flags)))


_Span = tuple[int, int, str]  # an entry's start and end in the text, and why it was refused


def _walk(text: str) -> tuple[dict[str, Any] | None, list[_Span] | None]:
    """Parse one JSON object; for an `entry` array, also where each element starts and ends.

    The top level is walked here; every value is parsed by the C decoder. An entry the strict
    decoder refuses (NaN, a key twice, a huge number) is skipped with its reason, so the other
    entries still count; a syntax error anywhere refuses the whole document (no entry boundary
    after it can be trusted).
    """
    idx = _WS.match(text).end()  # type: ignore[union-attr]
    if not text.startswith("{", idx):
        value, end = _DECODER.raw_decode(text, idx)
        if text[end:].strip():
            raise json.JSONDecodeError("Extra data", text, _WS.match(text, end).end())  # type: ignore[union-attr]
        return None, None
    out: dict[str, Any] = {}
    spans: list[_Span] | None = None
    idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]
    if text.startswith("}", idx):
        idx += 1
    else:
        while True:
            if not text.startswith('"', idx):
                raise json.JSONDecodeError(
                    "Expecting property name enclosed in double quotes", text, idx
                )
            key, idx = json.decoder.scanstring(text, idx + 1)  # type: ignore[attr-defined]
            idx = _WS.match(text, idx).end()  # type: ignore[union-attr]
            if not text.startswith(":", idx):
                raise json.JSONDecodeError("Expecting ':' delimiter", text, idx)
            idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]
            if key == "entry" and text.startswith("[", idx):
                value, spans, idx = _array(text, idx)
            else:
                value, idx = _DECODER.raw_decode(text, idx)
            if key in out:
                raise _JsonProblem(f"key {key!r} appears twice at the top of the document")
            out[key] = value
            idx = _WS.match(text, idx).end()  # type: ignore[union-attr]
            if text.startswith(",", idx):
                idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]
                continue
            if text.startswith("}", idx):
                idx += 1
                break
            raise json.JSONDecodeError("Expecting ',' delimiter", text, idx)
    end = _WS.match(text, idx).end()  # type: ignore[union-attr]
    if end != len(text):
        raise json.JSONDecodeError("Extra data after the JSON object", text, end)
    return out, spans


def _array(text: str, idx: int) -> tuple[list[Any], list[_Span], int]:
    values: list[Any] = []
    spans: list[_Span] = []
    idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", idx):
        return values, spans, idx + 1
    while True:
        start = idx
        try:
            value, idx = _DECODER.raw_decode(text, idx)
            spans.append((start, idx, ""))
        except json.JSONDecodeError:
            raise
        except ValueError as exc:  # _JsonProblem, or a number too long to convert
            value = None
            _lenient, idx = _LENIENT.raw_decode(text, start)
            spans.append((start, idx, _number_problem(exc)))
        values.append(value)
        idx = _WS.match(text, idx).end()  # type: ignore[union-attr]
        if text.startswith(",", idx):
            idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]
            continue
        if text.startswith("]", idx):
            return values, spans, idx + 1
        raise json.JSONDecodeError("Expecting ',' delimiter", text, idx)


_LEADING = re.compile(rb"[ \t\r\n]*")
_MORE = re.compile(rb"[^ \t\r\n]")


def _is_ndjson(data: bytes, source: str) -> bool:
    """NDJSON: named so, or a first line that is a whole object followed by more lines (a
    pretty-printed document's first line is a lone `{`)."""
    name = source.split("#")[0].split(":")[0].lower()
    if name.endswith((".ndjson", ".jsonl")):
        return True
    start = _LEADING.match(data).end()  # type: ignore[union-attr]
    end = data.find(b"\n", start)
    if end < 0:
        return False
    first = data[start:end].strip()
    return (
        len(first) > 1
        and first.startswith(b"{")
        and first.endswith(b"}")
        and _MORE.search(data, end) is not None
    )


def _transaction(units: list[Unit], position: str, raw: bytes, message: str) -> Unit:
    """A transaction bundle as one unit: every entry stored, or none (FHIR R4 §3.1.0.11.2)."""
    whole = Unit(position=position, raw=raw, message=message)
    failed = [u for u in units if u.errors]
    if not failed:
        for u in units:
            whole.records.extend(u.records)
            for key, n in u.unmodelled.items():
                whole.unmodelled[key] = whole.unmodelled.get(key, 0) + n
        return whole
    first = failed[0].position.rsplit("#", 1)[-1]
    rolled = f"not applied: the transaction is all-or-nothing and {first} was rejected"
    for u in units:
        whole.errors.extend(u.errors)
        whole.errors.extend((p.position, f"{_record_name(p)}: {rolled}") for p in u.records)
    return whole


def _failed(position: str, raw: bytes, reason: str, message: str = "") -> Unit:
    unit = Unit(position=position, raw=raw, message=message or position)
    unit.errors.append((position, reason))
    return unit


def _too_deep() -> str:
    return (
        f"JSON nested more than about {sys.getrecursionlimit():,} levels deep; no FHIR "
        "resource is, so it is refused unread"
    )


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _name(res: dict[str, Any]) -> str:
    rtype = res.get("resourceType")
    rid = res.get("id")
    return f"{rtype}/{rid}" if rid else f"{rtype} (no id)"


def _record_name(parsed: Parsed) -> str:
    return f"{parsed.record.kind} {parsed.record.local_id}"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@functools.lru_cache(maxsize=256)
def _unknown_type(rtype: str) -> str:
    lowered = {t.lower(): t for t in R4_RESOURCE_TYPES}
    guess = lowered.get(rtype.lower()) or next(
        iter(difflib.get_close_matches(rtype, R4_RESOURCE_TYPES, n=1, cutoff=0.75)), None
    )
    hint = f"; did you mean {guess!r}?" if guess else ""
    kind = "a FHIR data type, not a resource" if _model(rtype) else "not a FHIR R4 resource type"
    return f"resourceType {rtype!r} is {kind} (expected one of the R4 resource types){hint}"


def _no_patient(res: dict[str, Any]) -> str:
    subject = res.get("subject")
    if not isinstance(subject, dict):
        return "subject is missing: expected a reference to the Patient"
    text = subject.get("reference")
    if text:
        return f"subject refers to {text!r}: expected a Patient (Patient/id or a Patient's fullUrl)"
    return f"subject {_shown(subject)} has no literal reference: expected Patient/id"


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
