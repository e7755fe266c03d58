"""FHIR R4 views of the inpatient flow: Encounter (admissions) and live bed status on Location.

An admission is an inpatient Encounter (class IMP): planned while requested or reserved,
in-progress while admitted, finished at discharge, cancelled. Every bed the patient lay in is an
Encounter.location with its period.

Beds: the catalogue's Location view knows only whether a bed is in service. `LiveBedLocations`
wraps it and fills `operationalStatus` (v2-0116) from the bed board at the time of the request:
O occupied, H housekeeping (to clean), U unoccupied (free or reserved — reserved beds carry the
`bed-state` extension), C closed. The `operational-status` search parameter still filters on
the catalogue status (U or C).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from carepool.booking.inpatient import service as inpatient_service
from carepool.booking.inpatient.models import Admission, AdmissionStatus, BedState
from carepool.catalog.models import Resource, ResourceKind
from carepool.core import audit
from carepool.core.audit import AuditAction
from carepool.core.errors import FieldError, InvalidInput
from carepool.core.fhir import FhirContext, SearchParam

Json = dict[str, Any]
BED_STATUS = "http://terminology.hl7.org/CodeSystem/v2-0116"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

_ENCOUNTER_STATUS = {
    AdmissionStatus.REQUESTED: "planned",
    AdmissionStatus.BED_RESERVED: "planned",
    AdmissionStatus.ADMITTED: "in-progress",
    AdmissionStatus.DISCHARGED: "finished",
    AdmissionStatus.CANCELLED: "cancelled",
}
_FROM_FHIR = {
    "in-progress": [AdmissionStatus.ADMITTED],
    "finished": [AdmissionStatus.DISCHARGED],
    "cancelled": [AdmissionStatus.CANCELLED],
    "planned": [AdmissionStatus.REQUESTED, AdmissionStatus.BED_RESERVED],
}
_BED_CODES = {
    BedState.OCCUPIED: ("O", "Occupied"),
    BedState.TO_CLEAN: ("H", "Housekeeping"),
    BedState.FREE: ("U", "Unoccupied"),
    BedState.RESERVED: ("U", "Unoccupied"),
    BedState.OUT_OF_SERVICE: ("C", "Closed"),
}


def encounter(a: Admission) -> Json:
    period: Json = {}
    if a.admitted_at:
        period["start"] = a.admitted_at.isoformat()
    if a.discharged_at:
        period["end"] = a.discharged_at.isoformat()
    locations = [
        {
            "location": {"reference": f"Location/{stay['bed_id']}"},
            "status": "completed" if stay.get("to") else "active",
            "period": {
                k: v for k, v in (("start", stay.get("from")), ("end", stay.get("to"))) if v
            },
        }
        for stay in a.bed_history
        if stay.get("bed_id")
    ]
    if a.bed_id and not any(stay.get("bed_id") == a.bed_id for stay in a.bed_history):
        locations.append({"location": {"reference": f"Location/{a.bed_id}"}, "status": "reserved"})
    out: Json = {
        "resourceType": "Encounter",
        "id": a.id,
        "status": _ENCOUNTER_STATUS[a.status],
        "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
        "subject": {"reference": f"Patient/{a.patient_ref}", "display": a.patient_name or None},
        "serviceProvider": {"reference": f"Organization/{a.institution_id}"},
        "priority": {"text": a.priority.value},
        "length": {
            "value": a.expected_stay_days,
            "unit": "d",
            "system": "http://unitsofmeasure.org",
            "code": "d",
        },
    }
    if period:
        out["period"] = period
    if locations:
        out["location"] = locations
    if a.cancel_reason:
        out["extension"] = [
            {"url": "urn:carepool:extension:cancel-reason", "valueString": a.cancel_reason}
        ]
    if not out["subject"]["display"]:
        del out["subject"]["display"]
    return out


class EncounterProvider:
    resource_type = "Encounter"
    scope_area = "Booking"
    uses_context = True
    search_params = (
        SearchParam("patient", "reference", "Patient/<ref> or <ref>"),
        SearchParam("status", "token", "planned, in-progress, finished, cancelled"),
        SearchParam("service-provider", "reference", "the admitting member: Organization/<id>"),
    )

    def read(self, session: Session, id: str, *, ctx: FhirContext) -> Json | None:
        if session.get(Admission, id) is None:
            return None
        a = inpatient_service.access_admission_by_id(session, ctx.caller, id)
        audit.record(
            session,
            actor=ctx.caller,
            action=AuditAction.READ,
            entity_type="admission",
            entity_id=id,
            entity_institution=a.institution_id,
            source="fhir",
        )
        return encounter(a)

    def search(
        self,
        session: Session,
        params: Mapping[str, Sequence[str]],
        *,
        count: int,
        offset: int,
        ctx: FhirContext,
    ) -> tuple[list[Json], int]:
        patient = next(iter(params.get("patient", [])), None)
        provider = next(iter(params.get("service-provider", [])), None)
        statuses = [s for raw in params.get("status", []) for s in raw.split(",")]
        unknown = [s for s in statuses if s not in _FROM_FHIR]
        if unknown or len(statuses) > 1:
            raise InvalidInput(
                "status: give one of planned, in-progress, finished, cancelled",
                [FieldError("query:status", ", ".join(unknown) or "one value")],
            )
        wanted = _FROM_FHIR[statuses[0]] if statuses else [None]
        rows: list[Admission] = []
        total = 0
        for status in wanted:  # "planned" covers two platform states
            part, n = inpatient_service.get_all_admissions(
                session,
                ctx.caller,
                status=status,
                institution_id=provider.removeprefix("Organization/") if provider else None,
                patient_ref=patient.removeprefix("Patient/") if patient else None,
                limit=offset + count,
                offset=0,
            )
            rows.extend(part)
            total += n
        page = rows[offset : offset + count]
        audit.record(
            session,
            actor=ctx.caller,
            action=AuditAction.READ,
            entity_type="admission",
            entity_id=None,
            entity_institution=ctx.caller.institution_id,
            source="fhir",
            detail=f"search: {len(page)} of {total}" + (f", patient {patient}" if patient else ""),
        )
        return [encounter(a) for a in page], total


class LiveBedLocations:
    """The catalogue's Location provider with bed `operationalStatus` taken from the bed board."""

    uses_context = True

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.resource_type = inner.resource_type
        self.scope_area = inner.scope_area
        self.search_params = inner.search_params

    def _live(self, session: Session, resources: list[Json], ctx: FhirContext) -> list[Json]:
        bed_ids = [
            r["id"]
            for r in resources
            if r.get("physicalType", {}).get("coding", [{}])[0].get("code") == "bd"
        ]
        if not bed_ids:
            return resources
        beds = list(
            session.scalars(
                select(Resource).where(Resource.id.in_(bed_ids), Resource.kind == ResourceKind.BED)
            )
        )
        states = {
            v.bed.id: v.state for v in inpatient_service.bed_views(session, beds, now=ctx.now)
        }
        for r in resources:
            state = states.get(r["id"])
            if state is None:
                continue
            code, display = _BED_CODES[state]
            r["operationalStatus"] = {"system": BED_STATUS, "code": code, "display": display}
            r.setdefault("extension", []).append(
                {"url": "urn:carepool:extension:bed-state", "valueCode": state.value}
            )
        return resources

    def read(self, session: Session, id: str, *, ctx: FhirContext) -> Json | None:
        resource = self._inner.read(session, id)
        return None if resource is None else self._live(session, [resource], ctx)[0]

    def search(
        self,
        session: Session,
        params: Mapping[str, Sequence[str]],
        *,
        count: int,
        offset: int,
        ctx: FhirContext,
    ) -> tuple[list[Json], int]:
        resources, total = self._inner.search(session, params, count=count, offset=offset)
        return self._live(session, resources, ctx), total
