"""FHIR R4 views of the clinical store that answer for the linked person across all members:
Patient (read, search, `$everything`), Observation and DiagnosticReport (read, search).

Each member's record of a patient is one FHIR Patient (its record id); records the master
patient index (identity) links to the same person point at each other through `Patient.link`
and share an identifier `urn:carepool:person|<person id>`. Searching results by `patient=`
answers for the whole person: every record of theirs the caller may see.

Access, one condition per line (`access_person`):
- the scope: `user/Patient.read` for patients, `user/Observation.read` for results (the router
  checks it before a provider is called);
- the institution: a member's user sees the patients of their own member, and another member's
  record only when the person is linked to a patient of their own member (the clinic's own
  patient, seen anywhere in the consortium); consortium-wide accounts see every record;
- the patient's consent (records.consent): a person who denies sharing is seen by each member
  only in that member's own records.
Every read and search writes an AuditEvent-shaped row per member whose records were returned
(`entity_institution`), so each member's trail shows who read its patients' data; refusals are
audited by the API's error handler.

Results are stored under the analyte's general LOINC code (method-specific codes fold into it,
the original kept), so a `code=` search expands a code to its analyte: `789-8` (erythrocytes by
automated count) finds every erythrocyte count, whatever code the member sent.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Row, Select, and_, false, func, or_, select
from sqlalchemy.orm import Session

from carepool.catalog import service as catalog_service
from carepool.core import audit
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput, NotFound, PermissionDenied
from carepool.core.fhir import FhirContext, SearchParam
from carepool.identity import service as identity_service
from carepool.records import service as records_service
from carepool.records.consent import service as consent_service
from carepool.records.consent.models import Sharing
from carepool.records.models import (
    DiagnosticReport,
    Observation,
    Patient,
    PatientIdentifier,
    Sex,
)
from carepool.terminology import service as terminology_service
from carepool.terminology.seed import LOINC_SYSTEMS, is_loinc_system, load_seed

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PERSON_SYSTEM = "urn:carepool:person"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
FLAG_EXTENSION = "urn:carepool:extension:flag"
ORIGINAL_EXTENSION = "urn:carepool:extension:original-value"
Json = dict[str, Any]

_CJK = re.compile(r"[\u3400-\u9fff]")
_CODE = re.compile(r"^\S+( \S+)*$")


def _invalid(param: str, message: str) -> InvalidInput:
    return InvalidInput(f"{param}: {message}", [FieldError(f"query:{param}", message)])


# -- access ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonView:
    """What a caller may see of the person behind one patient record."""

    person_id: str | None
    visible: list[tuple[str, str]]  # (patient record id, member), in id order
    withheld: int  # records of other members hidden by the person's consent
    timezone: str  # the consortium's, read with the access (for date parameters)

    @property
    def patient_ids(self) -> list[str]:
        return [p for p, _m in self.visible]


def access_person(session: Session, caller: Principal, patient_id: str) -> PersonView | None:
    """The records of `patient_id`'s person the caller may see; None if the record does not exist.

    Raises `PermissionDenied` when the caller may see none of them. One query
    (`records_service.person_records`).
    """
    found = records_service.person_records(session, patient_id=patient_id)
    if found is None:
        return None
    member, person_id, records = found.member, found.person_id, found.records
    if (patient_id, member) not in records:
        records = sorted([*records, (patient_id, member)])
    if caller.consortium_wide:
        return PersonView(person_id, records, 0, found.timezone)
    own = caller.institution_id
    if own is None or all(m != own for _p, m in records):
        raise PermissionDenied(
            f"patient {patient_id} is a patient of {member} and is not linked to a patient of "
            f"{own}; a member sees other members' records only of its own patients",
            institution=member,
        )
    if person_id is not None and found.sharing is Sharing.DENY:
        mine = [r for r in records if r[1] == own]
        return PersonView(person_id, mine, len(records) - len(mine), found.timezone)
    return PersonView(person_id, records, 0, found.timezone)


def _require_visible(
    session: Session, view: PersonView, patient_id: str, caller: Principal
) -> None:
    """Refuse a record of the person that consent hides from the caller's member."""
    if patient_id in view.patient_ids:
        return
    raise PermissionDenied(
        f"the patient has not consented to share records across members; {caller.username!r} "
        f"of {caller.institution_id!r} sees only its own member's records of them",
        institution=identity_service.patient_institution(session, patient_id=patient_id),
    )


def visible_filter(
    caller: Principal, patient_col: Any, institution_col: Any
) -> ColumnElement[bool] | None:
    """A WHERE condition for searches not tied to one patient (None: no restriction)."""
    if caller.consortium_wide:
        return None
    own = caller.institution_id
    if own is None:
        return false()
    linked = identity_service.patients_linked_to_member(
        own, exclude_persons=consent_service.denied_person_ids()
    )
    return or_(institution_col == own, patient_col.in_(linked))


def _audit_read(
    session: Session,
    ctx: FhirContext,
    entity_type: str,
    entity_id: str | None,
    members: Counter[str],
    detail: str,
    fallback: str | None,
) -> None:
    """One audit row per member whose records were read (one row when nothing was)."""
    spread = ", ".join(f"{m} {n}" for m, n in sorted(members.items()))
    targets: list[str | None] = list(sorted(members)) or [fallback]
    for member in targets:
        audit.record(
            session,
            actor=ctx.caller,
            action=AuditAction.READ,
            entity_type=entity_type,
            entity_id=entity_id,
            entity_institution=member,
            detail=f"{detail}" + (f" ({spread})" if spread else ""),
            source="fhir",
        )


# -- parameters -----------------------------------------------------------------------------------


def _values(params: Mapping[str, Sequence[str]], name: str) -> list[str]:
    return [v.strip() for raw in params.get(name, []) for v in raw.split(",") if v.strip()]


GENDER_SYSTEM = "http://hl7.org/fhir/administrative-gender"


def _genders(raw: str) -> list[Sex]:
    """A `gender` token list (`male`, `male,female`, `<system>|male`): the codes of FHIR's
    administrative-gender, which are lower case; anything else is a 400 naming the value."""
    out = []
    for value in _values({"gender": [raw]}, "gender"):
        system, bar, code = value.rpartition("|")
        if bar and system not in ("", GENDER_SYSTEM):
            raise _invalid("gender", f"{system!r} is not the administrative-gender system")
        try:
            out.append(Sex(code if bar else value))
        except ValueError:
            raise _invalid(
                "gender", f"{value!r} is not one of male, female, other, unknown"
            ) from None
    return out


def _one_group(params: Mapping[str, Sequence[str]], name: str) -> list[str] | None:
    """The OR-list of a parameter given at most once (None when absent)."""
    groups = params.get(name, [])
    if not groups:
        return None
    if len(groups) > 1:
        raise _invalid(name, "give this parameter once (comma-separate alternatives)")
    return [v.strip() for v in groups[0].split(",") if v.strip()]


def _patient_refs(params: Mapping[str, Sequence[str]]) -> list[str] | None:
    refs = _one_group(params, "patient")
    if refs is None:
        return None
    out = []
    for ref in refs:
        rid = ref.removeprefix("Patient/")
        if not rid or "/" in rid:
            raise _invalid("patient", f"{ref!r} is not Patient/<id> or <id>")
        out.append(rid)
    return out


_PREFIXES = ("eq", "ge", "gt", "le", "lt")


def _date_window(
    values: Sequence[str], tz: ZoneInfo, param: str
) -> tuple[datetime | None, datetime | None]:
    """FHIR date search values (prefixes eq/ge/gt/le/lt; YYYY, YYYY-MM, YYYY-MM-DD or a
    dateTime with zone) as one half-open window [start, end), ANDed together."""
    start: datetime | None = None
    end: datetime | None = None
    for raw in values:
        if "," in raw:
            raise _invalid(param, "alternatives (a comma) are not supported for dates")
        prefix = raw[:2] if raw[:2] in _PREFIXES else "eq"
        text = raw[2:] if raw[:2] in _PREFIXES else raw
        try:
            if re.fullmatch(r"\d{4}", text):
                lo = datetime(int(text), 1, 1, tzinfo=tz)
                hi = datetime(int(text) + 1, 1, 1, tzinfo=tz)
            elif re.fullmatch(r"\d{4}-\d{2}", text):
                y, m = int(text[:4]), int(text[5:])
                lo = datetime(y, m, 1, tzinfo=tz)
                hi = datetime(y + m // 12, m % 12 + 1, 1, tzinfo=tz)
            elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                lo = datetime.combine(date.fromisoformat(text), time(0), tz)
                hi = lo + timedelta(days=1)
            else:
                lo = hi = datetime.fromisoformat(text.replace("Z", "+00:00"))
                if lo.tzinfo is None:
                    raise _invalid(param, f"{raw!r} has a time but no time zone")
        except ValueError as exc:
            raise _invalid(param, f"{raw!r} is not a date or dateTime") from exc
        if prefix in ("eq", "ge"):
            start = lo if start is None else max(start, lo)
        if prefix == "gt":
            start = hi if start is None else max(start, hi)
        if prefix in ("eq", "le"):
            end = hi if end is None else min(end, hi)
        if prefix == "lt":
            end = lo if end is None else min(end, lo)
    return start, end


def _code_filter(
    values: list[str], loinc_col: Any, system_col: Any, code_col: Any, *, exact: bool = False
) -> Any:
    """`code=` alternatives: a LOINC code finds its analyte's equivalence group (the same
    component in blood, serum or plasma, older and newer codes: `terminology_service.
    equivalent_codes`); `code:exact=` finds results filed under or sent as that code only.
    Other systems match the code as sent."""
    loinc: set[str] = set()
    local: list[tuple[str | None, str]] = []
    for value in values:
        system, bar, code = value.rpartition("|")
        if not bar:
            system, code = "", value
        code = code.strip()
        if not code:
            raise _invalid("code", f"{value!r} has no code")
        known = code in load_seed().loinc
        if is_loinc_system(system) or (not bar and known):
            loinc.add(code)
        elif bar and system:
            local.append((system, code))
        else:
            loinc.add(code)
            local.append((None, code))
    conds: list[Any] = []
    if exact:
        for code in sorted(loinc):
            sent = and_(func.lower(system_col).in_(sorted(LOINC_SYSTEMS)), code_col == code)
            conds += [loinc_col == code, sent]
    else:
        filed = {
            terminology_service.filed_code(member)
            for code in loinc
            for member in terminology_service.equivalent_codes(code)
        }
        if filed:
            conds.append(loinc_col.in_(sorted(filed)))
    for local_system, local_code in local:
        cond = code_col == local_code
        conds.append(cond if local_system is None else and_(system_col == local_system, cond))
    return or_(*conds)


def _count(session: Session, stmt: Select[Any]) -> int:
    return int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


def _page(session: Session, stmt: Select[Any], count: int, offset: int) -> tuple[list[Any], int]:
    total = _count(session, stmt)
    rows = list(session.scalars(stmt.limit(count).offset(offset))) if count > 0 else []
    return rows, total


def _page_rows(
    session: Session, stmt: Select[Any], count: int, offset: int, *, counted: bool
) -> tuple[list[Row[Any]], int]:
    """A page of plain rows and the total. `counted`: the total comes with the page
    (`count(*) OVER ()`, one query; for searches bounded by a person, as the window sorts every
    match), with a count query only when a page past the start is empty."""
    if not counted or count == 0:
        total = _count(session, stmt)
        rows = list(session.execute(stmt.limit(count).offset(offset))) if count > 0 else []
        return rows, total
    page = stmt.add_columns(func.count().over()).limit(count).offset(offset)
    rows = list(session.execute(page))
    if rows:
        return rows, int(rows[0][-1])
    return [], (_count(session, stmt) if offset > 0 else 0)


# -- resources ------------------------------------------------------------------------------------


_COMPARATORS = frozenset({"<", "<=", ">=", ">"})  # FHIR Quantity.comparator


def _quantity(value: float | None, unit: str | None, ucum: bool) -> Json | None:
    if value is None:
        return None
    out: Json = {"value": value}
    if unit:
        out["unit"] = unit
        if ucum:
            out["system"] = UCUM
            out["code"] = unit
    return out


def _coding(system: str, code: str, display: str) -> Json | None:
    code = code.strip()
    if not code and not display:
        return None
    out: Json = {}
    if system.strip():
        out["system"] = system.strip()
    if code and _CODE.match(code):
        out["code"] = code
    if display.strip():
        out["display"] = display.strip()
    return out if len(out) > (1 if "system" in out else 0) else None


def _concept(
    loinc: str | None, display: str, system: str, code: str, text: str, member: str
) -> Json:
    codings: list[Json] = []
    if loinc:
        codings.append(
            {"system": LOINC, "code": loinc, **({"display": display} if display else {})}
        )
    if code and not (is_loinc_system(system) and code.strip() == loinc):
        original = _coding(system or f"urn:carepool:code:{member}", code, text)
        if original is not None:
            codings.append(original)
    out: Json = {}
    if codings:
        out["coding"] = codings
    label = text or display
    if label.strip():
        out["text"] = label.strip()
    return out or {"text": "unknown"}


def _member_ref(member: str) -> Json:
    return {"reference": f"Organization/{member}"}


def patient_to_fhir(p: Patient, *, person_id: str | None, links: Sequence[str]) -> Json:
    identifiers: list[Json] = []
    for ident in p.identifiers:
        if not ident.value.strip():
            continue
        item: Json = {"value": ident.value}
        if ident.system.strip():
            item["system"] = ident.system.strip()
        if ident.type and _CODE.match(ident.type):
            item["type"] = {"coding": [{"system": V2_0203, "code": ident.type}]}
        identifiers.append(item)
    if person_id:
        identifiers.append({"use": "secondary", "system": PERSON_SYSTEM, "value": person_id})
    out: Json = {
        "resourceType": "Patient",
        "id": p.id,
        "meta": {"source": f"urn:carepool:institution:{p.institution_id}"},
        "active": True,
        "gender": p.sex.value,
        "managingOrganization": _member_ref(p.institution_id),
    }
    if identifiers:
        out["identifier"] = identifiers
    name: Json = {}
    if p.name.strip():
        name["text"] = p.name.strip()
    if p.family.strip():
        name["family"] = p.family.strip()
    given = p.given.split()
    if given:
        name["given"] = given
    if name:
        out["name"] = [name]
    if p.birth_date:
        out["birthDate"] = p.birth_date.isoformat()
    if p.phone.strip():
        out["telecom"] = [{"system": "phone", "value": p.phone.strip()}]
    if p.address.strip():
        out["address"] = [{"text": p.address.strip()}]
    if p.deceased_at is not None:
        out["deceasedDateTime"] = p.deceased_at.isoformat()
    elif p.deceased:
        out["deceasedBoolean"] = True
    if links:
        out["link"] = [{"other": {"reference": f"Patient/{o}"}, "type": "seealso"} for o in links]
    return out


def observation_to_fhir(o: Observation | Row[Any]) -> Json:
    """An Observation (the model or a row with its columns, `OBSERVATION_COLUMNS`) as FHIR."""
    out: Json = {
        "resourceType": "Observation",
        "id": o.id,
        "meta": {"source": f"urn:carepool:institution:{o.institution_id}"},
        "status": o.status.value,
        "code": _concept(
            o.loinc_code,
            o.display,
            o.original_system,
            o.original_code,
            o.original_text,
            o.institution_id,
        ),
        "subject": {"reference": f"Patient/{o.patient_id}"},
        "performer": [_member_ref(o.institution_id)],
    }
    if o.category.strip():
        code = o.category.strip()
        out["category"] = [
            {"coding": [{"system": CATEGORY_SYSTEM, "code": code}]}
            if _CODE.match(code)
            else {"text": code}
        ]
    if o.effective_at:
        out["effectiveDateTime"] = o.effective_at.isoformat()
    if o.issued_at:
        out["issued"] = o.issued_at.isoformat()
    standard = _quantity(o.value, o.unit, ucum=True)
    if standard is None and o.value_type == "quantity" and o.original_number is not None:
        standard = _quantity(o.original_number, o.original_unit or None, ucum=False)
    if standard is not None:
        if o.comparator in _COMPARATORS:
            # `<0.2`: the value is a bound, never an exact result
            standard = {"value": standard["value"], "comparator": o.comparator, **standard}
        out["valueQuantity"] = standard
    elif o.value_type == "coded" and (o.value_code or o.original_value):
        out["valueCodeableConcept"] = {
            **(
                {"coding": [c]}
                if (c := _coding(o.value_code_system, o.value_code, o.original_value))
                else {}
            ),
            **({"text": o.original_value} if o.original_value.strip() else {}),
        }
    elif o.original_value.strip():
        out["valueString"] = o.original_value.strip()
    ranges: Json = {}
    ucum = o.value is not None
    low = o.ref_low if ucum else o.original_ref_low
    high = o.ref_high if ucum else o.original_ref_high
    unit = o.unit if ucum else (o.original_unit or None)
    if (q := _quantity(low, unit, ucum)) is not None:
        ranges["low"] = q
    if (q := _quantity(high, unit, ucum)) is not None:
        ranges["high"] = q
    if o.reference_text.strip():
        ranges["text"] = o.reference_text.strip()
    if ranges:
        out["referenceRange"] = [ranges]
    if o.interpretation.strip() and _CODE.match(o.interpretation.strip()):
        out["interpretation"] = [
            {"coding": [{"system": INTERPRETATION_SYSTEM, "code": o.interpretation.strip()}]}
        ]
    if o.note.strip():
        out["note"] = [{"text": o.note.strip()}]
    if o.report_id:
        out["derivedFrom"] = [{"reference": f"DiagnosticReport/{o.report_id}"}]
    extensions: list[Json] = []
    original = " ".join(x for x in (o.original_value.strip(), o.original_unit.strip()) if x)
    if original:
        extensions.append({"url": ORIGINAL_EXTENSION, "valueString": original})
    for flag in o.flags or []:
        if flag and _CODE.match(flag):
            extensions.append({"url": FLAG_EXTENSION, "valueCode": flag})
    if extensions:
        out["extension"] = extensions
    return out


def report_to_fhir(r: DiagnosticReport | Row[Any], results: Sequence[str]) -> Json:
    out: Json = {
        "resourceType": "DiagnosticReport",
        "id": r.id,
        "meta": {"source": f"urn:carepool:institution:{r.institution_id}"},
        "status": r.status.value,
        "code": _concept(
            r.loinc_code,
            r.display,
            r.original_system,
            r.original_code,
            r.original_text,
            r.institution_id,
        ),
        "subject": {"reference": f"Patient/{r.patient_id}"},
        "performer": [_member_ref(r.institution_id)],
    }
    if r.category.strip():
        code = r.category.strip()
        out["category"] = [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": code}]}
            if code.isupper() and _CODE.match(code)
            else {"text": code}
        ]
    if r.effective_at:
        out["effectiveDateTime"] = r.effective_at.isoformat()
    if r.issued_at:
        out["issued"] = r.issued_at.isoformat()
    if r.placer_number.strip():
        # A logical reference: the member's order itself is not served under /fhir.
        placer = {"coding": [{"system": V2_0203, "code": "PLAC"}]}
        identifier = {"type": placer, "value": r.placer_number.strip()}
        out["basedOn"] = [{"type": "ServiceRequest", "identifier": identifier}]
    if results:
        out["result"] = [{"reference": f"Observation/{oid}"} for oid in results]
    if r.conclusion.strip():
        out["conclusion"] = r.conclusion.strip()
    return out


def _results_of(session: Session, report_ids: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if not report_ids:
        return out
    stmt = (
        select(Observation.report_id, Observation.id)
        .where(Observation.report_id.in_(list(report_ids)))
        .order_by(Observation.id)
    )
    for rid, oid in session.execute(stmt):
        if rid is not None:
            out.setdefault(rid, []).append(oid)
    return out


def _reports_to_fhir(
    session: Session, rows: Sequence[DiagnosticReport] | Sequence[Row[Any]]
) -> list[Json]:
    results = _results_of(session, [r.id for r in rows])
    return [report_to_fhir(r, results.get(r.id, [])) for r in rows]


def _newest_first(model: Any) -> tuple[Any, ...]:
    return (model.effective_at.desc().nulls_last(), model.id)


# -- providers ------------------------------------------------------------------------------------


class PatientProvider:
    """Each member's record of a patient; `link` points at the same person's other records."""

    resource_type = "Patient"
    scope_area = "Patient"
    uses_context = True
    search_params = (
        SearchParam("_id", "token", "record ids"),
        SearchParam(
            "identifier",
            "token",
            "system|value or value; urn:carepool:person|<person> finds every record of a person",
        ),
        SearchParam("name", "string", "part of the name, in characters or pinyin"),
        SearchParam("birthdate", "date", "birth date, with eq/ge/gt/le/lt prefixes"),
        SearchParam("gender", "token", "male, female, other, unknown"),
    )
    operations = ("everything",)

    def _links(
        self, session: Session, caller: Principal, rows: Sequence[Patient]
    ) -> dict[str, tuple[str | None, list[str]]]:
        """Each record's person and the person's other records the caller may see (in bulk:
        the rows passed the visibility filter already)."""
        persons = identity_service.persons_of(session, patient_ids=[p.id for p in rows])
        records = identity_service.records_of_persons(session, person_ids=persons.values())
        denied = consent_service.denied(session, person_ids=persons.values())
        out: dict[str, tuple[str | None, list[str]]] = {}
        for p in rows:
            person = persons.get(p.id)
            mine = records.get(person, []) if person else []
            if not caller.consortium_wide and person in denied:
                mine = [r for r in mine if r[1] == caller.institution_id]
            out[p.id] = (person, [o for o, _m in mine if o != p.id])
        return out

    def read(self, session: Session, id: str, *, ctx: FhirContext) -> Json | None:
        view = access_person(session, ctx.caller, id)
        if view is None:
            return None
        _require_visible(session, view, id, ctx.caller)
        patient = session.get(Patient, id)
        assert patient is not None
        links = [o for o in view.patient_ids if o != id]
        _audit_read(
            session,
            ctx,
            "Patient",
            id,
            Counter([patient.institution_id]),
            "read",
            patient.institution_id,
        )
        return patient_to_fhir(patient, person_id=view.person_id, links=links)

    def search(
        self,
        session: Session,
        params: Mapping[str, Sequence[str]],
        *,
        count: int,
        offset: int,
        ctx: FhirContext,
    ) -> tuple[list[Json], int]:
        stmt = select(Patient)
        for value in params.get("_id", []):
            stmt = stmt.where(Patient.id.in_(_values({"_id": [value]}, "_id")))
        for raw in params.get("identifier", []):
            alternatives: list[Any] = []
            for value in _values({"identifier": [raw]}, "identifier"):
                system, bar, ident = value.rpartition("|")
                if not ident:
                    raise _invalid("identifier", f"{value!r} has no value")
                if system == PERSON_SYSTEM:
                    try:
                        person = identity_service.resolve(session, person_id=ident).id
                    except NotFound:
                        person = ident  # no such person: nothing matches
                    ids = [p for p, _m in identity_service.records_of(session, person_id=person)]
                    alternatives.append(Patient.id.in_(ids))
                    continue
                sub = select(PatientIdentifier.patient_id).where(PatientIdentifier.value == ident)
                if bar and system:
                    sub = sub.where(PatientIdentifier.system == system)
                alternatives.append(Patient.id.in_(sub))
            stmt = stmt.where(or_(*alternatives))
        for raw in params.get("name", []):
            alternatives = []
            for value in _values({"name": [raw]}, "name"):
                if _CJK.search(value):
                    alternatives.append(Patient.name.contains(value, autoescape=True))
                else:
                    folded = "".join(value.casefold().split())
                    alternatives.append(
                        or_(
                            func.replace(Patient.name_pinyin, " ", "").contains(
                                folded, autoescape=True
                            ),
                            func.lower(Patient.name).contains(value.casefold(), autoescape=True),
                        )
                    )
            stmt = stmt.where(or_(*alternatives))
        if params.get("birthdate"):
            tz = ZoneInfo(catalog_service.consortium_timezone(session))
            start, end = _date_window(params["birthdate"], tz, "birthdate")
            if start is not None:
                stmt = stmt.where(Patient.birth_date >= start.date())
            if end is not None:
                last = (end - timedelta(microseconds=1)).date()
                stmt = stmt.where(Patient.birth_date <= last)
        for raw in params.get("gender", []):
            stmt = stmt.where(Patient.sex.in_(_genders(raw)))
        visible = visible_filter(ctx.caller, Patient.id, Patient.institution_id)
        if visible is not None:
            stmt = stmt.where(visible)
        rows, total = _page(session, stmt.order_by(Patient.id), count, offset)
        links = self._links(session, ctx.caller, rows)
        out = [patient_to_fhir(p, person_id=links[p.id][0], links=links[p.id][1]) for p in rows]
        _audit_read(
            session,
            ctx,
            "Patient",
            None,
            Counter(p.institution_id for p in rows),
            f"search {_describe(params)}: {len(rows)} of {total}",
            ctx.caller.institution_id,
        )
        return out, total

    def everything(
        self, session: Session, id: str, *, count: int, offset: int, ctx: FhirContext
    ) -> tuple[list[Json], int] | None:
        """`Patient/{id}/$everything`: the person's visible records, reports and results."""
        view = access_person(session, ctx.caller, id)
        if view is None:
            return None
        _require_visible(session, view, id, ctx.caller)
        ids = view.patient_ids
        with_results = ctx.caller.has_scope("Observation", "read")
        segments: list[tuple[Select[Any], Any]] = [
            (select(Patient).where(Patient.id.in_(ids)).order_by(Patient.id), "Patient")
        ]
        if with_results:
            segments.append(
                (
                    select(DiagnosticReport)
                    .where(DiagnosticReport.patient_id.in_(ids))
                    .order_by(*_newest_first(DiagnosticReport)),
                    "DiagnosticReport",
                )
            )
            segments.append(
                (
                    select(Observation)
                    .where(Observation.patient_id.in_(ids))
                    .order_by(*_newest_first(Observation)),
                    "Observation",
                )
            )
        out: list[Json] = []
        members: Counter[str] = Counter()
        total = 0
        want_from, want_to = offset, offset + count
        for stmt, kind in segments:
            size = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
            lo, hi = max(want_from - total, 0), min(want_to - total, size)
            if hi > lo:
                rows = list(session.scalars(stmt.limit(hi - lo).offset(lo)))
                members.update(r.institution_id for r in rows)
                if kind == "Patient":
                    out += [
                        patient_to_fhir(
                            r, person_id=view.person_id, links=[o for o in ids if o != r.id]
                        )
                        for r in rows
                    ]
                elif kind == "DiagnosticReport":
                    out += _reports_to_fhir(session, rows)
                else:
                    out += [observation_to_fhir(r) for r in rows]
            total += size
        _audit_read(
            session,
            ctx,
            "Patient",
            id,
            members,
            f"$everything for person {view.person_id or id}: {len(out)} of {total} resources"
            + ("" if with_results else ", without results (no Observation.read)"),
            identity_service.patient_institution(session, patient_id=id),
        )
        return out, total


def _describe(params: Mapping[str, Sequence[str]]) -> str:
    return "&".join(f"{k}={v}" for k, vs in sorted(params.items()) for v in vs) or "(all)"


class _ResultProvider:
    """Observation and DiagnosticReport share access rules and parameters."""

    scope_area = "Observation"
    uses_context = True
    model: Any = None
    search_params = (
        SearchParam(
            "patient",
            "reference",
            "Patient/<id> or <id>: results of every record of that person the caller may see",
        ),
        SearchParam(
            "code",
            "token",
            "http://loinc.org|<code> finds the analyte's equivalence group (the same component "
            "in blood, serum or plasma, older and newer codes; each result keeps its own code "
            "and specimen); code:exact=http://loinc.org|<code> that code only; <code>, or "
            "<system>|<local code> as sent",
            ("exact",),
        ),
        SearchParam("date", "date", "effective time, with eq/ge/gt/le/lt prefixes"),
        SearchParam("category", "token", "laboratory, vital-signs, ..."),
    )

    def _to_fhir(self, session: Session, rows: Sequence[Any]) -> list[Json]:
        raise NotImplementedError

    def read(self, session: Session, id: str, *, ctx: FhirContext) -> Json | None:
        row = session.get(self.model, id)
        if row is None:
            return None
        view = access_person(session, ctx.caller, row.patient_id)
        assert view is not None
        _require_visible(session, view, row.patient_id, ctx.caller)
        _audit_read(
            session,
            ctx,
            self.model.__name__,
            id,
            Counter([row.institution_id]),
            f"read (patient {row.patient_id})",
            row.institution_id,
        )
        return self._to_fhir(session, [row])[0]

    def search(
        self,
        session: Session,
        params: Mapping[str, Sequence[str]],
        *,
        count: int,
        offset: int,
        ctx: FhirContext,
    ) -> tuple[list[Json], int]:
        model = self.model
        stmt = self._base
        patients = _patient_refs(params)
        subject = None
        timezone = None
        if patients is not None:
            ids: list[str] = []
            for pid in patients:
                view = access_person(session, ctx.caller, pid)
                if view is None:
                    continue
                _require_visible(session, view, pid, ctx.caller)
                ids += [p for p in view.patient_ids if p not in ids]
                subject = subject or pid
                timezone = timezone or view.timezone
            stmt = stmt.where(model.patient_id.in_(ids))
        else:
            visible = visible_filter(ctx.caller, model.patient_id, model.institution_id)
            if visible is not None:
                stmt = stmt.where(visible)
        for key, exact in (("code", False), ("code:exact", True)):
            for raw in params.get(key, []):
                codes = _values({key: [raw]}, key)
                stmt = stmt.where(
                    _code_filter(
                        codes,
                        model.loinc_code,
                        model.original_system,
                        model.original_code,
                        exact=exact,
                    )
                )
        if params.get("date"):
            tz = ZoneInfo(timezone or catalog_service.consortium_timezone(session))
            start, end = _date_window(params["date"], tz, "date")
            if start is not None:
                stmt = stmt.where(model.effective_at >= start)
            if end is not None:
                stmt = stmt.where(model.effective_at < end)
        for raw in params.get("category", []):
            stmt = stmt.where(model.category.in_(_values({"category": [raw]}, "category")))
        rows, total = _page_rows(
            session,
            stmt.order_by(*_newest_first(model)),
            count,
            offset,
            counted=patients is not None,
        )
        _audit_read(
            session,
            ctx,
            model.__name__,
            subject,
            Counter(r.institution_id for r in rows),
            f"search {_describe(params)}: {len(rows)} of {total}",
            ctx.caller.institution_id,
        )
        return self._to_fhir(session, rows), total

    def columns(self) -> list[Any]:
        """The table columns a search reads (plain rows, no ORM objects)."""
        return list(self.model.__table__.columns)

    @cached_property
    def _base(self) -> Select[Any]:
        """`SELECT <columns> FROM <table>`, built once (statements are immutable)."""
        return select(*self.columns())


# What `observation_to_fhir` reads: searches load these columns only.
OBSERVATION_COLUMNS = (
    "id",
    "institution_id",
    "patient_id",
    "report_id",
    "status",
    "category",
    "loinc_code",
    "display",
    "value",
    "unit",
    "ref_low",
    "ref_high",
    "original_system",
    "original_code",
    "original_text",
    "value_type",
    "original_value",
    "original_unit",
    "original_number",
    "original_ref_low",
    "original_ref_high",
    "reference_text",
    "value_code",
    "value_code_system",
    "interpretation",
    "comparator",
    "effective_at",
    "issued_at",
    "flags",
    "note",
)


class ObservationProvider(_ResultProvider):
    resource_type = "Observation"
    model = Observation

    def columns(self) -> list[Any]:
        table = Observation.__table__
        return [table.c[name] for name in OBSERVATION_COLUMNS]

    def _to_fhir(self, session: Session, rows: Sequence[Any]) -> list[Json]:
        return [observation_to_fhir(r) for r in rows]


class DiagnosticReportProvider(_ResultProvider):
    resource_type = "DiagnosticReport"
    model = DiagnosticReport

    def _to_fhir(self, session: Session, rows: Sequence[Any]) -> list[Json]:
        return _reports_to_fhir(session, rows)


PROVIDERS = (PatientProvider(), ObservationProvider(), DiagnosticReportProvider())
