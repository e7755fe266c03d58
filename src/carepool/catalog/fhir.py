"""FHIR R4 read and search views of the catalogue (no FastAPI here; `api.fhir` serves them).

Which catalogue rows become which FHIR resource (ids are the catalogue ids, unchanged):

| FHIR resource     | rows                                                                  |
|-------------------|-----------------------------------------------------------------------|
| Organization      | institutions (partOf = leading member), departments (partOf = member) |
| Location          | campuses (si), wards (wa), rooms and theatres (ro), beds (bd),        |
|                   | lab sections (area); partOf chains bed -> room -> ward -> campus      |
| Device            | modalities and analysers                                              |
| PractitionerRole  | staff                                                                 |
| HealthcareService | services (one per service, whoever offers it)                         |
| Schedule          | one per bookable resource that has calendar rules (id = resource id)  |

Ids are unique per table, not across tables; should a campus and a ward share an id, the
Location read returns the campus (sources are tried in the order of the table above).

Code systems of our own (HL7 systems are used where one fits, see the constants below):

- `urn:carepool:department-code`  national diagnosis-and-treatment subjects (诊疗科目), `03.04`
- `urn:carepool:institution-kind` `general_hospital`, `village_clinic`, ...
- `urn:carepool:institution-grade` `3A`, `2B`, `unrated`, ... (an Organization.type coding)
- `urn:carepool:resource-type`    `bed.general`, `theatre.hybrid`, `modality.CT`, ...
- `urn:carepool:ward-kind`        `general`, `icu`, ...
- `urn:carepool:staff-role`       `surgeon`, `nurse`, ...
- `urn:carepool:service`          service ids (HealthcareService.type, Schedule.serviceType)
- `urn:carepool:service-category` `imaging`, `lab`, ...
- `urn:carepool:bed-feature`      `oxygen`, `monitor`, ...
- `urn:carepool:id:<table>`       identifier system holding the catalogue id of every row
- `urn:carepool:staff-licence`    identifier system of a staff member's licence number
- `urn:carepool:code:<name>`      a service's code in an external system we have no URI for

Extensions: `urn:carepool:extension:<name>` with names skill-level (valueInteger),
gender-policy (valueCode), bed-feature (valueCoding), capacity (valueInteger), offered-by
(valueReference to an Organization), duration / preparation / turnover (valueDuration in
minutes) and price (valueMoney). Chinese names travel as Organization/Location `alias` and
as the standard translation extension on HealthcareService.name.

Mapping choices worth knowing:

- Bed `operationalStatus` (v2-0116) comes from the catalogue status alone for now:
  in service -> U (unoccupied), maintenance or closed -> C (closed). Bookings will refine it
  (O occupied, H housekeeping, I isolated, K contaminated).
- Location/Device status: in service -> active, maintenance -> suspended (Device: inactive),
  closed -> inactive. managingOrganization / owner is the department when the row has one,
  else the institution; the `organization` search matches either.
- HealthcareService: `providedBy` is set when exactly one member offers the service; the
  offered-by extension always lists every offering member; `location` lists their campuses.
- PractitionerRole.specialty is the staff member's specialties plus their department's code.
- Schedule: `planningHorizon` is the query window of `date` (ge/gt/le/lt/eq, dates in the
  consortium's time zone; one bound alone gives 28 days) or today plus 28 days;
  `serviceType` lists the services offered at the resource's institution with a requirement
  this resource can fill (kind, type, role, minimum skill, specialty). Free time itself
  will be Slots, served by the booking context.

Search semantics: repeated parameters AND, comma-separated values OR; strings match
case-insensitively anywhere (`:exact` for equality); tokens take `code`, `system|code`,
`|code` or `system|`; references take `id`, `Type/id` or a full URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    cast,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session, aliased, selectinload
from sqlalchemy.sql.elements import False_

from carepool.catalog import service as catalog_service
from carepool.catalog.codes import RESOURCE_TYPES
from carepool.catalog.models import (
    CalendarRule,
    Campus,
    Department,
    DepartmentCode,
    Institution,
    InstitutionGrade,
    InstitutionKind,
    Resource,
    ResourceKind,
    ResourceStatus,
    Service,
    ServiceCategory,
    ServiceOffering,
    ServiceRequirement,
    StaffRole,
    Ward,
    WardKind,
)
from carepool.core.errors import FieldError, InvalidInput
from carepool.core.fhir import date_bounds, parse_date
from carepool.core.time import utcnow

__all__ = [
    "PROVIDERS",
    "CatalogProvider",
    "SearchParam",
    "device",
    "healthcare_service",
    "location_from_campus",
    "location_from_resource",
    "location_from_ward",
    "organization_from_department",
    "organization_from_institution",
    "practitioner_role",
    "schedule",
]

Json = dict[str, Any]
Clause = ColumnElement[bool]

# --- code systems and extensions ---------------------------------------------------------

SYSTEM_DEPARTMENT_CODE = "urn:carepool:department-code"
SYSTEM_INSTITUTION_KIND = "urn:carepool:institution-kind"
SYSTEM_INSTITUTION_GRADE = "urn:carepool:institution-grade"
SYSTEM_RESOURCE_TYPE = "urn:carepool:resource-type"
SYSTEM_WARD_KIND = "urn:carepool:ward-kind"
SYSTEM_STAFF_ROLE = "urn:carepool:staff-role"
SYSTEM_SERVICE = "urn:carepool:service"
SYSTEM_SERVICE_CATEGORY = "urn:carepool:service-category"
SYSTEM_BED_FEATURE = "urn:carepool:bed-feature"
SYSTEM_LICENCE = "urn:carepool:staff-licence"
ID_SYSTEM = "urn:carepool:id:"
EXTENSION = "urn:carepool:extension:"

PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
BED_STATUS = "http://terminology.hl7.org/CodeSystem/v2-0116"
ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PRACTITIONER_ROLE = "http://terminology.hl7.org/CodeSystem/practitioner-role"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
DEVICE_STATUS_REASON = "http://terminology.hl7.org/CodeSystem/device-status-reason"
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
GEOLOCATION = "http://hl7.org/fhir/StructureDefinition/geolocation"
UCUM = "http://unitsofmeasure.org"
EXTERNAL_CODE_SYSTEMS = {
    "loinc": "http://loinc.org",
    "snomed": "http://snomed.info/sct",
    "icd10": "http://hl7.org/fhir/sid/icd-10",
}

PHYSICAL_TYPES = {"si": "Site", "wa": "Ward", "ro": "Room", "bd": "Bed", "area": "Area"}
LOCATION_KINDS: dict[ResourceKind, str] = {
    ResourceKind.ROOM: "ro",
    ResourceKind.THEATRE: "ro",
    ResourceKind.BED: "bd",
    ResourceKind.LAB_SECTION: "area",
}
DEVICE_KINDS = (ResourceKind.MODALITY, ResourceKind.ANALYSER)
BED_STATUSES: dict[ResourceStatus, tuple[str, str]] = {
    ResourceStatus.IN_SERVICE: ("U", "Unoccupied"),
    ResourceStatus.MAINTENANCE: ("C", "Closed"),
    ResourceStatus.CLOSED: ("C", "Closed"),
}
LOCATION_STATUS = {
    ResourceStatus.IN_SERVICE: "active",
    ResourceStatus.MAINTENANCE: "suspended",
    ResourceStatus.CLOSED: "inactive",
}
DEVICE_STATUS: dict[ResourceStatus, tuple[str, str, str]] = {
    ResourceStatus.IN_SERVICE: ("active", "online", "Online"),
    ResourceStatus.MAINTENANCE: ("inactive", "not-ready", "Not Ready"),
    ResourceStatus.CLOSED: ("inactive", "off", "Off"),
}
WARD_V3: dict[WardKind, tuple[str, str]] = {
    WardKind.GENERAL: ("HU", "Hospital unit"),
    WardKind.ICU: ("ICU", "Intensive care unit"),
    WardKind.EMERGENCY: ("ER", "Emergency room"),
    WardKind.IMAGING: ("HRAD", "Radiology unit"),
    WardKind.LABORATORY: ("HLAB", "Hospital laboratory"),
}
PRACTITIONER_ROLES: dict[StaffRole, tuple[str, str]] = {
    StaffRole.SURGEON: ("doctor", "Doctor"),
    StaffRole.ANAESTHETIST: ("doctor", "Doctor"),
    StaffRole.PHYSICIAN: ("doctor", "Doctor"),
    StaffRole.NURSE: ("nurse", "Nurse"),
}
HORIZON_DAYS = 28
MAX_HORIZON_DAYS = 366
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# --- small builders ----------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """Drop None, empty strings, lists and objects: FHIR JSON forbids them."""
    if isinstance(value, dict):
        out = {k: _clean(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        items = [_clean(v) for v in value]
        return [v for v in items if v not in (None, "", [], {})]
    return value


def _coding(system: str, code: str, display: str | None = None) -> Json:
    return {"system": system, "code": code, "display": display}


def _concept(*codings: Json | None, text: str | None = None) -> Json:
    return {"coding": [c for c in codings if c], "text": text}


def _ref(rtype: str, rid: str | None, display: str | None = None) -> Json | None:
    return {"reference": f"{rtype}/{rid}", "display": display} if rid else None


def _identifier(table: str, rid: str) -> Json:
    return {"system": ID_SYSTEM + table, "value": rid}


def _translation(zh: str) -> Json | None:
    if not zh:
        return None
    return {
        "extension": [
            {
                "url": TRANSLATION,
                "extension": [
                    {"url": "lang", "valueCode": "zh-CN"},
                    {"url": "content", "valueString": zh},
                ],
            }
        ]
    }


def _minutes(name: str, value: int) -> Json:
    return {
        "url": EXTENSION + name,
        "valueDuration": {"value": value, "unit": "min", "system": UCUM, "code": "min"},
    }


def _value(enum_or_str: Any) -> str:
    return str(getattr(enum_or_str, "value", enum_or_str))


def _dept_coding(code: str, names: Mapping[str, str]) -> Json:
    return _coding(SYSTEM_DEPARTMENT_CODE, code, names.get(code))


def _resource_type_coding(type_code: str, names: Mapping[str, str]) -> Json:
    return _coding(SYSTEM_RESOURCE_TYPE, type_code, names.get(type_code))


_TYPE_NAMES = {code: en for codes in RESOURCE_TYPES.values() for code, (en, _zh) in codes.items()}


# --- pure mappings: rows -> FHIR R4 dicts -------------------------------------------------


def organization_from_institution(inst: Institution) -> Json:
    """A member institution as an Organization (type: provider, kind and grade codings)."""
    address = None
    if inst.address or (inst.latitude is not None and inst.longitude is not None):
        geo = None
        if inst.latitude is not None and inst.longitude is not None:
            geo = {
                "url": GEOLOCATION,
                "extension": [
                    {"url": "latitude", "valueDecimal": inst.latitude},
                    {"url": "longitude", "valueDecimal": inst.longitude},
                ],
            }
        address = {"text": inst.address, "extension": [geo]}
    return _clean(
        {
            "resourceType": "Organization",
            "id": inst.id,
            "identifier": [_identifier("institution", inst.id)],
            "active": True,
            "type": [
                _concept(
                    _coding(ORGANIZATION_TYPE, "prov", "Healthcare Provider"),
                    _coding(SYSTEM_INSTITUTION_KIND, _value(inst.kind)),
                    _coding(SYSTEM_INSTITUTION_GRADE, _value(inst.grade)),
                )
            ],
            "name": inst.name,
            "alias": [inst.name_zh],
            "telecom": [{"system": "phone", "value": inst.phone}] if inst.phone else [],
            "address": [address],
            "partOf": _ref("Organization", inst.parent_id),
        }
    )


def organization_from_department(dept: Department, dept_names: Mapping[str, str]) -> Json:
    """A department as an Organization: partOf its institution, typed by its standard code."""
    return _clean(
        {
            "resourceType": "Organization",
            "id": dept.id,
            "identifier": [_identifier("department", dept.id)],
            "active": True,
            "type": [
                _concept(
                    _coding(ORGANIZATION_TYPE, "dept", "Hospital Department"),
                    _dept_coding(dept.code, dept_names),
                )
            ],
            "name": dept.local_name or dept_names.get(dept.code) or dept.code,
            "alias": [dept.local_name_zh],
            "partOf": _ref("Organization", dept.institution_id),
        }
    )


def location_from_campus(campus: Campus) -> Json:
    position = None
    if campus.latitude is not None and campus.longitude is not None:
        position = {"latitude": campus.latitude, "longitude": campus.longitude}
    return _clean(
        {
            "resourceType": "Location",
            "id": campus.id,
            "identifier": [_identifier("campus", campus.id)],
            "status": "active",
            "mode": "instance",
            "name": campus.name,
            "alias": [campus.name_zh],
            "physicalType": _concept(_coding(PHYSICAL_TYPE, "si", PHYSICAL_TYPES["si"])),
            "address": {"text": campus.address},
            "position": position,
            "managingOrganization": _ref("Organization", campus.institution_id),
        }
    )


def location_from_ward(ward: Ward, campus_id: str | None) -> Json:
    """A ward: partOf the campus of its department, managed by its department."""
    v3 = WARD_V3.get(ward.kind)
    where = ", ".join(
        p
        for p in (
            ward.building and f"building {ward.building}",
            ward.floor and f"floor {ward.floor}",
        )
        if p
    )
    return _clean(
        {
            "resourceType": "Location",
            "id": ward.id,
            "identifier": [_identifier("ward", ward.id)],
            "status": "active",
            "mode": "instance",
            "name": ward.name,
            "alias": [ward.name_zh],
            "description": where,
            "type": [
                _concept(
                    _coding(SYSTEM_WARD_KIND, _value(ward.kind)),
                    _coding(V3_ROLE_CODE, v3[0], v3[1]) if v3 else None,
                )
            ],
            "physicalType": _concept(_coding(PHYSICAL_TYPE, "wa", PHYSICAL_TYPES["wa"])),
            "managingOrganization": _ref("Organization", ward.department_id),
            "partOf": _ref("Location", campus_id),
        }
    )


def location_part_of(res: Resource) -> str | None:
    """The Location a resource lies in: a bed's room, else its ward, else its campus."""
    return res.room_id or res.ward_id or res.campus_id


def location_from_resource(res: Resource) -> Json:
    """A room, theatre, bed or lab section as a Location."""
    kind = ResourceKind(res.kind)
    physical = LOCATION_KINDS[kind]
    status = ResourceStatus(res.status)
    extensions: list[Json] = []
    operational = None
    if kind is ResourceKind.BED:
        code, display = BED_STATUSES[status]
        operational = _coding(BED_STATUS, code, display)
        if res.gender_policy is not None:
            extensions.append(
                {"url": EXTENSION + "gender-policy", "valueCode": _value(res.gender_policy)}
            )
        extensions.extend(
            {"url": EXTENSION + "bed-feature", "valueCoding": _coding(SYSTEM_BED_FEATURE, f)}
            for f in res.features
        )
    if res.capacity is not None:
        extensions.append({"url": EXTENSION + "capacity", "valueInteger": res.capacity})
    return _clean(
        {
            "resourceType": "Location",
            "id": res.id,
            "extension": extensions,
            "identifier": [_identifier("resource", res.id)],
            "status": LOCATION_STATUS[status],
            "operationalStatus": operational,
            "mode": "instance",
            "name": res.name,
            "alias": [res.name_zh],
            "type": [_concept(_resource_type_coding(res.type_code, _TYPE_NAMES))],
            "physicalType": _concept(_coding(PHYSICAL_TYPE, physical, PHYSICAL_TYPES[physical])),
            "managingOrganization": _ref("Organization", res.department_id or res.institution_id),
            "partOf": _ref("Location", location_part_of(res)),
        }
    )


def device(res: Resource) -> Json:
    """A modality or analyser as a Device, owned by its department (else its institution)."""
    status, reason, reason_display = DEVICE_STATUS[ResourceStatus(res.status)]
    dicom = None
    if res.kind == ResourceKind.MODALITY:
        dicom = _coding(DICOM, res.type_code.split(".", 1)[1])
    return _clean(
        {
            "resourceType": "Device",
            "id": res.id,
            "identifier": [_identifier("resource", res.id)],
            "status": status,
            "statusReason": [_concept(_coding(DEVICE_STATUS_REASON, reason, reason_display))],
            "manufacturer": res.manufacturer,
            "deviceName": [
                {"name": res.name, "type": "user-friendly-name"},
                {"name": res.name_zh, "type": "other"} if res.name_zh else None,
            ],
            "modelNumber": res.model,
            "type": _concept(_resource_type_coding(res.type_code, _TYPE_NAMES), dicom),
            "owner": _ref("Organization", res.department_id or res.institution_id),
            "location": _ref("Location", res.ward_id or res.campus_id),
        }
    )


def staff_specialties(res: Resource, department_code: str | None) -> list[str]:
    """A staff member's specialty codes: their own plus their department's."""
    return sorted({*res.specialties, *([department_code] if department_code else [])})


def practitioner_role(
    res: Resource, department_code: str | None, dept_names: Mapping[str, str]
) -> Json:
    """A staff member as a PractitionerRole; the Practitioner is only named (display)."""
    role = StaffRole(res.role) if res.role is not None else None
    standard = PRACTITIONER_ROLES.get(role) if role else None
    identifiers = [_identifier("resource", res.id)]
    if res.license_no:
        identifiers.append({"system": SYSTEM_LICENCE, "value": res.license_no})
    return _clean(
        {
            "resourceType": "PractitionerRole",
            "id": res.id,
            "extension": [{"url": EXTENSION + "skill-level", "valueInteger": res.skill_level}]
            if res.skill_level is not None
            else [],
            "identifier": identifiers,
            "active": res.status == ResourceStatus.IN_SERVICE,
            "practitioner": {"display": res.name, "_display": _translation(res.name_zh)},
            "organization": _ref("Organization", res.institution_id),
            "code": [
                _concept(
                    _coding(SYSTEM_STAFF_ROLE, role.value) if role else None,
                    _coding(PRACTITIONER_ROLE, *standard) if standard else None,
                )
            ],
            "specialty": [
                _concept(_dept_coding(c, dept_names))
                for c in staff_specialties(res, department_code)
            ],
            "location": [_ref("Location", res.ward_id or res.campus_id)],
        }
    )


def healthcare_service(
    svc: Service, campuses: Mapping[str, Sequence[str]], dept_names: Mapping[str, str]
) -> Json:
    """A service product; `campuses` maps an offering institution to its campus ids."""
    offered = [o.institution_id for o in svc.offerings]
    external = [
        _coding(EXTERNAL_CODE_SYSTEMS.get(k.lower(), f"urn:carepool:code:{k}"), v)
        for k, v in sorted(svc.codes.items())
    ]
    details = (
        f"Duration {svc.duration_min} min (preparation {svc.preparation_min} min, "
        f"turnover {svc.turnover_min} min); price {svc.price} {svc.currency}."
    )
    return _clean(
        {
            "resourceType": "HealthcareService",
            "id": svc.id,
            "extension": [
                _minutes("duration", svc.duration_min),
                _minutes("preparation", svc.preparation_min),
                _minutes("turnover", svc.turnover_min),
                {
                    "url": EXTENSION + "price",
                    "valueMoney": {"value": float(svc.price), "currency": svc.currency},
                },
                *(
                    {"url": EXTENSION + "offered-by", "valueReference": _ref("Organization", i)}
                    for i in offered
                ),
            ],
            "identifier": [_identifier("service", svc.id)],
            "active": True,
            "providedBy": _ref("Organization", offered[0]) if len(offered) == 1 else None,
            "category": [_concept(_coding(SYSTEM_SERVICE_CATEGORY, _value(svc.category)))],
            "type": [_concept(_coding(SYSTEM_SERVICE, svc.id, svc.name), *external)],
            "specialty": [_concept(_dept_coding(svc.department_code, dept_names))]
            if svc.department_code
            else [],
            "location": [_ref("Location", c) for i in offered for c in campuses.get(i, ())],
            "name": svc.name,
            "_name": _translation(svc.name_zh),
            "extraDetails": details,
            "eligibility": [
                {
                    "code": _concept(_coding(SYSTEM_INSTITUTION_KIND, _value(k))),
                    "comment": "may be ordered from members of this kind",
                }
                for k in svc.orderable_by_kinds
            ],
        }
    )


def describe_rule(rule: CalendarRule) -> str:
    """One calendar rule in words: `open: Mon,Tue 08:00-17:00`."""
    hours = f"{rule.start:%H:%M}-{rule.end:%H:%M}"
    if rule.cycle_days == 7:
        days = sorted((rule.anchor.weekday() + d) % 7 for d in rule.days)
        when = ",".join(_WEEKDAYS[d] for d in days)
    else:
        positions = ",".join(str(d + 1) for d in rule.days)
        when = f"day {positions} of every {rule.cycle_days} days from {rule.anchor.isoformat()}"
    valid = ""
    if rule.valid_from or rule.valid_to:
        lo = rule.valid_from.isoformat() if rule.valid_from else "…"
        hi = rule.valid_to.isoformat() if rule.valid_to else "…"
        valid = f" ({lo} to {hi})"
    return f"{rule.label}: {when} {hours}{valid}"


def schedule_actor_type(kind: ResourceKind) -> str:
    if kind is ResourceKind.STAFF:
        return "PractitionerRole"
    if kind in DEVICE_KINDS:
        return "Device"
    return "Location"


def schedule(
    res: Resource,
    rules: Sequence[CalendarRule],
    services: Sequence[tuple[str, str, str]],
    specialties: Sequence[str],
    horizon: tuple[datetime, datetime],
    dept_names: Mapping[str, str],
) -> Json:
    """The Schedule of one resource; `services` are (id, name, category) it can serve."""
    kind = ResourceKind(res.kind)
    return _clean(
        {
            "resourceType": "Schedule",
            "id": res.id,
            "identifier": [_identifier("resource", res.id)],
            "active": res.status == ResourceStatus.IN_SERVICE,
            "serviceCategory": [
                _concept(_coding(SYSTEM_SERVICE_CATEGORY, c))
                for c in sorted({cat for _i, _n, cat in services})
            ],
            "serviceType": [_concept(_coding(SYSTEM_SERVICE, i, n)) for i, n, _c in services],
            "specialty": [_concept(_dept_coding(c, dept_names)) for c in specialties],
            "actor": [_ref(schedule_actor_type(kind), res.id, res.name)],
            "planningHorizon": {
                "start": horizon[0].isoformat(),
                "end": horizon[1].isoformat(),
            },
            "comment": "; ".join(describe_rule(r) for r in rules),
        }
    )


# --- search machinery --------------------------------------------------------------------


@dataclass(frozen=True)
class SearchParam:
    """One search parameter as the CapabilityStatement lists it."""

    name: str
    type: str  # FHIR search parameter type: token, string, reference, date
    documentation: str
    modifiers: tuple[str, ...] = ()


# (value, modifier) -> clause over the source's table
Matcher = Callable[[str, str | None], Clause]


@dataclass
class _Context:
    """What the loaders of one search need besides the rows."""

    tz: ZoneInfo
    horizon: tuple[datetime, datetime]
    _dept_names: dict[str, str] | None = field(default=None)

    def dept_names(self, session: Session) -> dict[str, str]:
        if self._dept_names is None:
            self._dept_names = _pairs(session, select(DepartmentCode.code, DepartmentCode.name))
        return self._dept_names


Loader = Callable[[Session, list[str], _Context], dict[str, Json]]


@dataclass(frozen=True)
class _Source:
    """One table (or part of one) that yields resources of a FHIR type."""

    key: str
    id_column: Any
    where: tuple[Clause, ...]
    matchers: Mapping[str, Matcher]
    load: Loader


def _invalid(param: str, message: str) -> InvalidInput:
    return InvalidInput(f"{param}: {message}", [FieldError(f"query:{param}", message)])


def _split(value: str) -> list[str]:
    """FHIR OR-values: split on commas not escaped with a backslash."""
    parts = re.split(r"(?<!\\),", value)
    return [p.replace("\\,", ",") for p in parts]


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _string(*columns: Any) -> Matcher:
    def match(value: str, modifier: str | None) -> Clause:
        if modifier == "exact":
            return or_(*[c == value for c in columns])
        pattern = _like(value.lower())
        return or_(*[func.lower(c).like(pattern, escape="\\") for c in columns])

    return match


def _ids(column: Any) -> Matcher:
    return lambda value, _m: column == value


def _token_parts(value: str) -> tuple[str | None, str | None]:
    """`code` -> (None, code); `sys|code` -> (sys, code); `|code` -> ('', code); `sys|`."""
    if "|" not in value:
        return None, value
    system, _, code = value.partition("|")
    return system, code or None


# A token field: (system, code -> clause; None for "any code of this system")
TokenField = tuple[str, Callable[[str | None], Clause]]


def _token(*fields: TokenField) -> Matcher:
    def match(value: str, _modifier: str | None) -> Clause:
        system, code = _token_parts(value)
        clauses = [fn(code) for sys, fn in fields if system is None or sys == system]
        return or_(*clauses) if clauses else false()

    return match


def _eq(column: Any, enum_cls: type[Any] | None = None) -> Callable[[str | None], Clause]:
    """Column equals the code; codes outside an enum match nothing (and never reach SQL)."""

    def fn(code: str | None) -> Clause:
        if code is None:
            return column.is_not(None)
        if enum_cls is not None:
            if code not in {m.value for m in enum_cls}:
                return false()
            return column == enum_cls(code)
        return column == code

    return fn


def _const(code_value: str) -> Callable[[str | None], Clause]:
    return lambda code: true() if code in (None, code_value) else false()


def _in(column: Any, mapping: Mapping[Any, str]) -> Callable[[str | None], Clause]:
    """Column takes one of the keys whose mapped code is the code asked for."""

    def fn(code: str | None) -> Clause:
        keys = [k for k, v in mapping.items() if code is None or v == code]
        return column.in_(keys) if keys else false()

    return fn


def _bool(fn: Callable[[bool], Clause], param: str) -> Matcher:
    def match(value: str, _modifier: str | None) -> Clause:
        if value not in ("true", "false"):
            raise _invalid(param, f"{value!r} is not true or false")
        return fn(value == "true")

    return match


def _reference_id(value: str, targets: tuple[str, ...]) -> tuple[str | None, str] | None:
    """(type or None, id) of a reference value; None when its type is not a target."""
    parts = [p for p in value.split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) == 1:
        return None, parts[0]
    if not parts:
        return None
    rtype, rid = parts[-2], parts[-1]
    return (rtype, rid) if rtype in targets else None


def _reference(targets: tuple[str, ...], *columns: Any) -> Matcher:
    def match(value: str, _modifier: str | None) -> Clause:
        ref = _reference_id(value, targets)
        if ref is None:
            return false()
        return or_(*[c == ref[1] for c in columns])

    return match


def _window(
    values: Sequence[str], tz: ZoneInfo, now: datetime, param: str = "date"
) -> tuple[datetime, datetime]:
    """The planning horizon the `date` values ask for: 28 days from today by default, and
    28 days long when only one bound is given."""
    start, end = date_bounds(values, tz, param)
    if start is None and end is not None:
        start = end - timedelta(days=HORIZON_DAYS)
    if start is None:
        start = datetime.combine(now.astimezone(tz).date(), time(0), tz)
    if end is None:
        end = start + timedelta(days=HORIZON_DAYS)
    if end <= start or end - start > timedelta(days=MAX_HORIZON_DAYS):
        raise _invalid(param, f"the window must be positive and at most {MAX_HORIZON_DAYS} days")
    return start, end


def _rule_valid(param: str, tz: ZoneInfo) -> Matcher:
    """Resources with a calendar rule in force on some day of the date value's range."""

    def match(value: str, _modifier: str | None) -> Clause:
        prefix, lo, hi = parse_date(param, value, tz)
        first = lo.astimezone(tz).date()
        last = (hi - timedelta(microseconds=1)).astimezone(tz).date() if hi > lo else first
        conds: list[Clause] = [CalendarRule.resource_id == Resource.id]
        if prefix in ("eq", "le", "lt"):
            bound = first if prefix == "lt" else last
            op = (
                CalendarRule.valid_from < bound
                if prefix == "lt"
                else CalendarRule.valid_from <= bound
            )
            conds.append(or_(CalendarRule.valid_from.is_(None), op))
        if prefix in ("eq", "ge", "gt"):
            bound = last if prefix == "gt" else first
            op = CalendarRule.valid_to > bound if prefix == "gt" else CalendarRule.valid_to >= bound
            conds.append(or_(CalendarRule.valid_to.is_(None), op))
        return exists().where(*conds)

    return match


def _search_ids(
    session: Session,
    sources: Sequence[_Source],
    criteria: Sequence[tuple[str, str | None, list[str]]],
    *,
    count: int,
    offset: int,
) -> tuple[list[tuple[str, str]], int]:
    """(source key, id) of one page of matches, ordered by id, and the total."""
    selects = []
    for src in sources:
        conds = list(src.where)
        for name, modifier, values in criteria:
            matcher = src.matchers.get(name)
            if matcher is None:
                conds = [false()]
                break
            conds.append(or_(*[matcher(v, modifier) for v in values]))
        if any(isinstance(c, False_) for c in conds):
            continue
        selects.append(
            select(src.id_column.label("id"), literal(src.key).label("src")).where(*conds)
        )
    if not selects:
        return [], 0
    union = union_all(*selects).subquery()
    total = int(session.scalar(select(func.count()).select_from(union)) or 0)
    if count == 0:
        return [], total
    rows = session.execute(
        select(union.c.id, union.c.src)
        .order_by(union.c.id, union.c.src)
        .limit(count)
        .offset(offset)
    ).all()
    return [(str(src), str(rid)) for rid, src in rows], total


def _parse_criteria(
    params: Mapping[str, Sequence[str]],
) -> list[tuple[str, str | None, list[str]]]:
    """(name, modifier, OR-values) per occurrence of a parameter."""
    out: list[tuple[str, str | None, list[str]]] = []
    for key, occurrences in params.items():
        name, _, modifier = key.partition(":")
        for raw in occurrences:
            values = [v for v in _split(raw) if v != ""]
            if not values:
                raise _invalid(key, "the parameter has no value")
            out.append((name, modifier or None, values))
    return out


@dataclass(frozen=True)
class CatalogProvider:
    """Read and search of one FHIR resource type over catalogue tables.

    Satisfies the provider interface of `carepool.api.fhir` (structurally, without importing
    it): `resource_type`, `scope_area`, `search_params`, `read`, `search`.
    """

    resource_type: str
    search_params: tuple[SearchParam, ...]
    sources: Callable[[ZoneInfo], tuple[_Source, ...]]
    scope_area: str = "Catalog"
    uses_window: bool = False

    def _context(self, session: Session, params: Mapping[str, Sequence[str]]) -> _Context:
        tz = ZoneInfo(catalog_service.consortium_timezone(session))
        window_values = [v for raw in params.get("date", ()) for v in _split(raw) if v]
        horizon = _window(window_values, tz, utcnow()) if self.uses_window else (utcnow(),) * 2
        return _Context(tz=tz, horizon=(horizon[0], horizon[1]))

    def search(
        self, session: Session, params: Mapping[str, Sequence[str]], *, count: int, offset: int
    ) -> tuple[list[Json], int]:
        """One page (`count` from `offset`, by id) of resources matching `params`, and the total.

        `params` maps a parameter name, with its modifier if any (`name:exact`), to its
        occurrences; the caller has checked names and modifiers against `search_params`.
        Raises `InvalidInput` for values that cannot be understood.
        """
        ctx = self._context(session, params)
        sources = self.sources(ctx.tz)
        page, total = _search_ids(
            session, sources, _parse_criteria(params), count=count, offset=offset
        )
        by_source: dict[str, list[str]] = {}
        for key, rid in page:
            by_source.setdefault(key, []).append(rid)
        loaded: dict[tuple[str, str], Json] = {}
        for src in sources:
            ids = by_source.get(src.key)
            if ids:
                for rid, resource in src.load(session, ids, ctx).items():
                    loaded[(src.key, rid)] = resource
        return [loaded[item] for item in page if item in loaded], total

    def read(self, session: Session, id: str) -> Json | None:
        """The resource with this id, or None."""
        found, _ = self.search(session, {"_id": [id.replace(",", "\\,")]}, count=1, offset=0)
        return found[0] if found else None


# --- the sources of each resource type ---------------------------------------------------


def _has_specialty(code: str) -> Clause:
    """Resources whose specialties or department code include `code`."""
    in_list = cast(Resource.specialties, String).like(_like(f'"{code}"'), escape="\\")
    in_department = Resource.department_id.in_(select(Department.id).where(Department.code == code))
    return or_(in_list, in_department)


def _can_serve(req: Any, offering: Any) -> Clause:
    """The resource (table `Resource`) can fill requirement `req` of a service `offering` has."""
    specialty_in_list = cast(Resource.specialties, String).like(
        literal('%"') + req.specialty + literal('"%')
    )
    department_code = (
        select(Department.code).where(Department.id == Resource.department_id).scalar_subquery()
    )
    return and_(
        offering.service_id == req.service_id,
        offering.institution_id == Resource.institution_id,
        req.kind == Resource.kind,
        or_(req.type_code.is_(None), req.type_code == Resource.type_code),
        or_(req.role.is_(None), req.role == Resource.role),
        or_(req.min_skill.is_(None), func.coalesce(Resource.skill_level, 0) >= req.min_skill),
        or_(req.specialty.is_(None), specialty_in_list, req.specialty == department_code),
    )


def _serves_service(value: str, _modifier: str | None) -> Clause:
    system, code = _token_parts(value)
    if system not in (None, SYSTEM_SERVICE) or code is None:
        return false()
    req = aliased(ServiceRequirement)
    offering = aliased(ServiceOffering)
    return exists().where(req.service_id == code, _can_serve(req, offering))


def _services_of(session: Session, ids: list[str]) -> dict[str, list[tuple[str, str, str]]]:
    """Per resource id: (service id, name, category) of the services it can serve."""
    req = aliased(ServiceRequirement)
    offering = aliased(ServiceOffering)
    rows = session.execute(
        select(Resource.id, Service.id, Service.name, Service.category)
        .join(req, req.service_id == Service.id)
        .join(offering, offering.service_id == Service.id)
        .where(Resource.id.in_(ids), _can_serve(req, offering))
        .distinct()
        .order_by(Resource.id, Service.id)
    ).all()
    out: dict[str, list[tuple[str, str, str]]] = {}
    for rid, sid, name, category in rows:
        out.setdefault(rid, []).append((sid, name, _value(category)))
    return out


def _department_codes(session: Session, department_ids: Iterable[str | None]) -> dict[str, str]:
    wanted = {d for d in department_ids if d}
    if not wanted:
        return {}
    return _pairs(session, select(Department.id, Department.code).where(Department.id.in_(wanted)))


def _pairs(session: Session, stmt: Any) -> dict[str, Any]:
    """The first column of a two-column query mapped to the second."""
    return {row[0]: row[1] for row in session.execute(stmt)}


def _rows(session: Session, model: Any, ids: list[str]) -> list[Any]:
    return list(session.scalars(select(model).where(model.id.in_(ids))))


_ID = SearchParam("_id", "token", "logical id (the catalogue id)")
_IDENTIFIER = SearchParam(
    "identifier", "token", f"{ID_SYSTEM}<table>|<catalogue id> (and licence numbers for staff)"
)


def _organization_sources(_tz: ZoneInfo) -> tuple[_Source, ...]:
    def dept_name(value: str, modifier: str | None) -> Clause:
        by_code_name = Department.code.in_(
            select(DepartmentCode.code).where(
                _string(DepartmentCode.name, DepartmentCode.name_zh)(value, modifier)
            )
        )
        own = _string(Department.local_name, Department.local_name_zh)(value, modifier)
        return or_(own, and_(Department.local_name == "", by_code_name))

    def load_institutions(session: Session, ids: list[str], _ctx: _Context) -> dict[str, Json]:
        return {r.id: organization_from_institution(r) for r in _rows(session, Institution, ids)}

    def load_departments(session: Session, ids: list[str], ctx: _Context) -> dict[str, Json]:
        names = ctx.dept_names(session)
        return {
            r.id: organization_from_department(r, names) for r in _rows(session, Department, ids)
        }

    return (
        _Source(
            "institution",
            Institution.id,
            (),
            {
                "_id": _ids(Institution.id),
                "name": _string(Institution.name, Institution.name_zh),
                "identifier": _token((ID_SYSTEM + "institution", _eq(Institution.id))),
                "partof": _reference(("Organization",), Institution.parent_id),
                "type": _token(
                    (ORGANIZATION_TYPE, _const("prov")),
                    (SYSTEM_INSTITUTION_KIND, _eq(Institution.kind, InstitutionKind)),
                    (SYSTEM_INSTITUTION_GRADE, _eq(Institution.grade, InstitutionGrade)),
                ),
            },
            load_institutions,
        ),
        _Source(
            "department",
            Department.id,
            (),
            {
                "_id": _ids(Department.id),
                "name": dept_name,
                "identifier": _token((ID_SYSTEM + "department", _eq(Department.id))),
                "partof": _reference(("Organization",), Department.institution_id),
                "type": _token(
                    (ORGANIZATION_TYPE, _const("dept")),
                    (SYSTEM_DEPARTMENT_CODE, _eq(Department.code)),
                ),
            },
            load_departments,
        ),
    )


def _organization_of(*columns: Any) -> Matcher:
    return _reference(("Organization",), *columns)


def _resource_status_active(value: bool) -> Clause:
    return (
        Resource.status == ResourceStatus.IN_SERVICE
        if value
        else Resource.status != ResourceStatus.IN_SERVICE
    )


def _location_sources(_tz: ZoneInfo) -> tuple[_Source, ...]:
    ward_campus = (
        select(Department.campus_id).where(Department.id == Ward.department_id).scalar_subquery()
    )
    resource_part_of = func.coalesce(Resource.room_id, Resource.ward_id, Resource.campus_id)
    bed_status_code = {s: c for s, (c, _d) in BED_STATUSES.items()}

    def load_campuses(session: Session, ids: list[str], _ctx: _Context) -> dict[str, Json]:
        return {r.id: location_from_campus(r) for r in _rows(session, Campus, ids)}

    def load_wards(session: Session, ids: list[str], _ctx: _Context) -> dict[str, Json]:
        wards = _rows(session, Ward, ids)
        campuses = _pairs(
            session,
            select(Department.id, Department.campus_id).where(
                Department.id.in_({w.department_id for w in wards})
            ),
        )
        return {w.id: location_from_ward(w, campuses.get(w.department_id)) for w in wards}

    def load_resources(session: Session, ids: list[str], _ctx: _Context) -> dict[str, Json]:
        return {r.id: location_from_resource(r) for r in _rows(session, Resource, ids)}

    def resource_status(value: str, _modifier: str | None) -> Clause:
        _sys, code = _token_parts(value)
        statuses = [s for s, v in LOCATION_STATUS.items() if code is None or v == code]
        return Resource.status.in_(statuses) if statuses else false()

    def always_active(value: str, _modifier: str | None) -> Clause:
        _sys, code = _token_parts(value)
        return true() if code in (None, "active") else false()

    return (
        _Source(
            "campus",
            Campus.id,
            (),
            {
                "_id": _ids(Campus.id),
                "name": _string(Campus.name, Campus.name_zh),
                "identifier": _token((ID_SYSTEM + "campus", _eq(Campus.id))),
                "organization": _organization_of(Campus.institution_id),
                "physical-type": _token((PHYSICAL_TYPE, _const("si"))),
                "status": always_active,
            },
            load_campuses,
        ),
        _Source(
            "ward",
            Ward.id,
            (),
            {
                "_id": _ids(Ward.id),
                "name": _string(Ward.name, Ward.name_zh),
                "identifier": _token((ID_SYSTEM + "ward", _eq(Ward.id))),
                "partof": _reference(("Location",), ward_campus),
                "organization": _organization_of(Ward.department_id, Ward.institution_id),
                "type": _token(
                    (SYSTEM_WARD_KIND, _eq(Ward.kind, WardKind)),
                    (V3_ROLE_CODE, _in(Ward.kind, {k: c for k, (c, _d) in WARD_V3.items()})),
                ),
                "physical-type": _token((PHYSICAL_TYPE, _const("wa"))),
                "status": always_active,
            },
            load_wards,
        ),
        _Source(
            "resource",
            Resource.id,
            (Resource.kind.in_(list(LOCATION_KINDS)),),
            {
                "_id": _ids(Resource.id),
                "name": _string(Resource.name, Resource.name_zh),
                "identifier": _token((ID_SYSTEM + "resource", _eq(Resource.id))),
                "partof": _reference(("Location",), resource_part_of),
                "organization": _organization_of(Resource.department_id, Resource.institution_id),
                "type": _token((SYSTEM_RESOURCE_TYPE, _eq(Resource.type_code))),
                "physical-type": _token((PHYSICAL_TYPE, _in(Resource.kind, LOCATION_KINDS))),
                "operational-status": _token(
                    (
                        BED_STATUS,
                        lambda code: and_(
                            Resource.kind == ResourceKind.BED,
                            _in(Resource.status, bed_status_code)(code),
                        ),
                    )
                ),
                "status": resource_status,
            },
            load_resources,
        ),
    )


def _device_sources(_tz: ZoneInfo) -> tuple[_Source, ...]:
    def load(session: Session, ids: list[str], _ctx: _Context) -> dict[str, Json]:
        return {r.id: device(r) for r in _rows(session, Resource, ids)}

    def dicom(code: str | None) -> Clause:
        if code is None:
            return Resource.kind == ResourceKind.MODALITY
        return Resource.type_code == f"modality.{code}"

    def status(value: str, _modifier: str | None) -> Clause:
        _sys, code = _token_parts(value)
        statuses = [s for s, (v, _r, _d) in DEVICE_STATUS.items() if code is None or v == code]
        return Resource.status.in_(statuses) if statuses else false()

    return (
        _Source(
            "resource",
            Resource.id,
            (Resource.kind.in_(DEVICE_KINDS),),
            {
                "_id": _ids(Resource.id),
                "identifier": _token((ID_SYSTEM + "resource", _eq(Resource.id))),
                "device-name": _string(Resource.name, Resource.name_zh),
                "type": _token((SYSTEM_RESOURCE_TYPE, _eq(Resource.type_code)), (DICOM, dicom)),
                "organization": _organization_of(Resource.department_id, Resource.institution_id),
                "location": _reference(("Location",), Resource.ward_id, Resource.campus_id),
                "status": status,
            },
            load,
        ),
    )


def _practitioner_role_sources(_tz: ZoneInfo) -> tuple[_Source, ...]:
    def load(session: Session, ids: list[str], ctx: _Context) -> dict[str, Json]:
        rows = _rows(session, Resource, ids)
        codes = _department_codes(session, (r.department_id for r in rows))
        names = ctx.dept_names(session)
        return {r.id: practitioner_role(r, codes.get(r.department_id or ""), names) for r in rows}

    role_standard = {r: c for r, (c, _d) in PRACTITIONER_ROLES.items()}
    return (
        _Source(
            "resource",
            Resource.id,
            (Resource.kind == ResourceKind.STAFF,),
            {
                "_id": _ids(Resource.id),
                "identifier": _token(
                    (ID_SYSTEM + "resource", _eq(Resource.id)),
                    (SYSTEM_LICENCE, _eq(Resource.license_no)),
                ),
                "name": _string(Resource.name, Resource.name_zh),
                "role": _token(
                    (SYSTEM_STAFF_ROLE, _eq(Resource.role, StaffRole)),
                    (PRACTITIONER_ROLE, _in(Resource.role, role_standard)),
                ),
                "specialty": _token(
                    (
                        SYSTEM_DEPARTMENT_CODE,
                        lambda code: _has_specialty(code) if code else true(),
                    )
                ),
                "organization": _organization_of(Resource.institution_id),
                "active": _bool(_resource_status_active, "active"),
            },
            load,
        ),
    )


def _healthcare_service_sources(_tz: ZoneInfo) -> tuple[_Source, ...]:
    def load(session: Session, ids: list[str], ctx: _Context) -> dict[str, Json]:
        services = list(
            session.scalars(
                select(Service).where(Service.id.in_(ids)).options(selectinload(Service.offerings))
            )
        )
        institutions = {o.institution_id for s in services for o in s.offerings}
        campuses: dict[str, list[str]] = {}
        if institutions:
            for cid, inst in session.execute(
                select(Campus.id, Campus.institution_id)
                .where(Campus.institution_id.in_(institutions))
                .order_by(Campus.id)
            ):
                campuses.setdefault(inst, []).append(cid)
        names = ctx.dept_names(session)
        return {s.id: healthcare_service(s, campuses, names) for s in services}

    def offered_by(value: str, _modifier: str | None) -> Clause:
        ref = _reference_id(value, ("Organization",))
        if ref is None:
            return false()
        return exists().where(
            ServiceOffering.service_id == Service.id, ServiceOffering.institution_id == ref[1]
        )

    def at_location(value: str, _modifier: str | None) -> Clause:
        ref = _reference_id(value, ("Location",))
        if ref is None:
            return false()
        return exists().where(
            ServiceOffering.service_id == Service.id,
            ServiceOffering.institution_id.in_(
                select(Campus.institution_id).where(Campus.id == ref[1])
            ),
        )

    return (
        _Source(
            "service",
            Service.id,
            (),
            {
                "_id": _ids(Service.id),
                "identifier": _token((ID_SYSTEM + "service", _eq(Service.id))),
                "name": _string(Service.name, Service.name_zh),
                "organization": offered_by,
                "location": at_location,
                "service-category": _token(
                    (SYSTEM_SERVICE_CATEGORY, _eq(Service.category, ServiceCategory))
                ),
                "service-type": _token((SYSTEM_SERVICE, _eq(Service.id))),
                "specialty": _token((SYSTEM_DEPARTMENT_CODE, _eq(Service.department_code))),
                "active": _bool(lambda v: true() if v else false(), "active"),
            },
            load,
        ),
    )


def _schedule_sources(tz: ZoneInfo) -> tuple[_Source, ...]:
    bookable = exists().where(CalendarRule.resource_id == Resource.id)

    def load(session: Session, ids: list[str], ctx: _Context) -> dict[str, Json]:
        rows = _rows(session, Resource, ids)
        rules: dict[str, list[CalendarRule]] = {}
        for rule in session.scalars(
            select(CalendarRule).where(CalendarRule.resource_id.in_(ids)).order_by(CalendarRule.id)
        ):
            rules.setdefault(rule.resource_id, []).append(rule)
        services = _services_of(session, ids)
        codes = _department_codes(session, (r.department_id for r in rows))
        names = ctx.dept_names(session)
        out = {}
        for r in rows:
            dept_code = codes.get(r.department_id or "")
            specialties = staff_specialties(r, dept_code)
            out[r.id] = schedule(
                r, rules.get(r.id, []), services.get(r.id, []), specialties, ctx.horizon, names
            )
        return out

    def actor(value: str, _modifier: str | None) -> Clause:
        ref = _reference_id(value, ("Location", "Device", "PractitionerRole"))
        if ref is None:
            return false()
        rtype, rid = ref
        kinds = [k for k in ResourceKind if rtype is None or schedule_actor_type(k) == rtype]
        return and_(Resource.id == rid, Resource.kind.in_(kinds))

    return (
        _Source(
            "resource",
            Resource.id,
            (bookable,),
            {
                "_id": _ids(Resource.id),
                "identifier": _token((ID_SYSTEM + "resource", _eq(Resource.id))),
                "actor": actor,
                "active": _bool(_resource_status_active, "active"),
                "service-type": _serves_service,
                "specialty": _token(
                    (
                        SYSTEM_DEPARTMENT_CODE,
                        lambda code: _has_specialty(code) if code else true(),
                    )
                ),
                "date": _rule_valid("date", tz),
            },
            load,
        ),
    )


_NAME = "case-insensitive match anywhere in the English or Chinese name; :exact for equality"

PROVIDERS: tuple[CatalogProvider, ...] = (
    CatalogProvider(
        "Organization",
        (
            _ID,
            _IDENTIFIER,
            SearchParam("name", "string", _NAME, ("exact", "contains")),
            SearchParam("partof", "reference", "the leading member (institutions) or member"),
            SearchParam(
                "type",
                "token",
                "organization-type prov|dept, institution kind or grade, department code",
            ),
        ),
        _organization_sources,
    ),
    CatalogProvider(
        "Location",
        (
            _ID,
            _IDENTIFIER,
            SearchParam("name", "string", _NAME, ("exact", "contains")),
            SearchParam("partof", "reference", "the enclosing Location (bed -> room -> ward)"),
            SearchParam("organization", "reference", "the managing department or its institution"),
            SearchParam("type", "token", "resource type code, ward kind or v3 RoleCode"),
            SearchParam("physical-type", "token", "si, wa, ro, bd or area"),
            SearchParam("operational-status", "token", "bed status (v2-0116): U or C"),
            SearchParam("status", "token", "active, suspended or inactive"),
        ),
        _location_sources,
    ),
    CatalogProvider(
        "Device",
        (
            _ID,
            _IDENTIFIER,
            SearchParam("device-name", "string", _NAME, ("exact", "contains")),
            SearchParam("type", "token", "resource type code or DICOM modality code"),
            SearchParam("organization", "reference", "the owning department or its institution"),
            SearchParam("location", "reference", "the ward or campus the device is in"),
            SearchParam("status", "token", "active or inactive"),
        ),
        _device_sources,
    ),
    CatalogProvider(
        "PractitionerRole",
        (
            _ID,
            _IDENTIFIER,
            SearchParam(
                "name",
                "string",
                "carepool: the practitioner's name; " + _NAME,
                ("exact", "contains"),
            ),
            SearchParam("role", "token", "staff role or practitioner-role code"),
            SearchParam("specialty", "token", "department code (own specialties or department)"),
            SearchParam("organization", "reference", "the institution"),
            SearchParam("active", "token", "true when in service"),
        ),
        _practitioner_role_sources,
    ),
    CatalogProvider(
        "HealthcareService",
        (
            _ID,
            _IDENTIFIER,
            SearchParam("name", "string", _NAME, ("exact", "contains")),
            SearchParam("organization", "reference", "any member offering the service"),
            SearchParam("location", "reference", "a campus of a member offering the service"),
            SearchParam("service-category", "token", "service category"),
            SearchParam("service-type", "token", f"{SYSTEM_SERVICE}|<service id>"),
            SearchParam("specialty", "token", "department code"),
            SearchParam("active", "token", "services are always active"),
        ),
        _healthcare_service_sources,
    ),
    CatalogProvider(
        "Schedule",
        (
            _ID,
            _IDENTIFIER,
            SearchParam("actor", "reference", "the Location, Device or PractitionerRole"),
            SearchParam("active", "token", "true when the resource is in service"),
            SearchParam("service-type", "token", "a service this resource can serve"),
            SearchParam("specialty", "token", "department code"),
            SearchParam(
                "date",
                "date",
                "planning horizon (ge/gt/le/lt/eq; default today + 28 days); only resources "
                "with a calendar rule in force in it",
            ),
        ),
        _schedule_sources,
        uses_window=True,
    ),
)
