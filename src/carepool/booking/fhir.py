"""FHIR R4 views of the booking pool: Slot (search, read) and Appointment (create, read, search).

A Slot is "this service at this member at this time" with at least one free set of resources;
its id is the booking pool's slot id and its schedule is the Schedule of the first resource the
service needs. An Appointment is created by referencing a Slot (`status` booked, or pending for
a hold) with the patient as a participant; `If-None-Exist` is its idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from carepool.booking import actions
from carepool.booking import service as booking_service
from carepool.booking.models import Appointment, AppointmentStatus
from carepool.catalog import service as catalog_service
from carepool.catalog.models import Resource, ResourceKind
from carepool.core import audit
from carepool.core.audit import AuditAction
from carepool.core.errors import FieldError, InvalidInput
from carepool.core.fhir import FhirContext, SearchParam, date_bounds

SERVICE_SYSTEM = "urn:carepool:service"
INSTITUTION_SYSTEM = "urn:carepool:id:institution"
PATIENT_SYSTEM = "urn:carepool:patient-ref"
Json = dict[str, Any]

_STATUS_TO_FHIR = {
    AppointmentStatus.HELD: "pending",
    AppointmentStatus.BOOKED: "booked",
    AppointmentStatus.ARRIVED: "arrived",
    AppointmentStatus.FULFILLED: "fulfilled",
    AppointmentStatus.CANCELLED: "cancelled",
    AppointmentStatus.NOSHOW: "noshow",
}
_FHIR_TO_STATUS = {v: k for k, v in _STATUS_TO_FHIR.items()}
_REFERENCE_TYPE = {
    ResourceKind.BED: "Location",
    ResourceKind.ROOM: "Location",
    ResourceKind.THEATRE: "Location",
    ResourceKind.LAB_SECTION: "Location",
    ResourceKind.MODALITY: "Device",
    ResourceKind.ANALYSER: "Device",
    ResourceKind.STAFF: "PractitionerRole",
}


def _invalid(param: str, message: str) -> InvalidInput:
    return InvalidInput(f"{param}: {message}", [FieldError(f"query:{param}", message)])


def _token(value: str, system: str) -> str:
    if "|" in value:
        sys_part, _, code = value.partition("|")
        if sys_part and sys_part != system:
            raise _invalid("service-type", f"system {sys_part!r} is not {system}")
        return code
    return value


def _service_concept(session: Session, service_id: str) -> Json:
    service = catalog_service.get(session, kind="service", id=service_id)
    return {
        "coding": [{"system": SERVICE_SYSTEM, "code": service.id, "display": service.name}],
        "text": service.name_zh or service.name,
    }


class SlotProvider:
    resource_type = "Slot"
    scope_area = "Booking"
    uses_context = True
    search_params = (
        SearchParam("service-type", "token", "the service (required): [urn:carepool:service|]id"),
        SearchParam(
            "start", "date", "slot start, with ge/gt/le/lt prefixes (default: from now, 14 days)"
        ),
        SearchParam("status", "token", "only `free` slots are listed"),
        SearchParam("organization", "reference", "only this member: Organization/<id> or <id>"),
    )

    def _to_fhir(self, session: Session, ms: booking_service.MemberSlot) -> Json:
        first = ms.slot.resources[0][0] if ms.slot.resources and ms.slot.resources[0] else None
        return {
            "resourceType": "Slot",
            "id": ms.id,
            "serviceType": [_service_concept(session, ms.service_id)],
            "schedule": {"reference": f"Schedule/{first}"}
            if first
            else {"display": ms.institution_id},
            "status": "free",
            "start": ms.slot.start.isoformat(),
            "end": ms.slot.end.isoformat(),
            "overbooked": False,
            "comment": f"{ms.institution_id}; room for {ms.slot.capacity} booking(s)",
            "extension": [
                {
                    "url": "urn:carepool:extension:institution",
                    "valueReference": {"reference": f"Organization/{ms.institution_id}"},
                },
                {"url": "urn:carepool:extension:capacity", "valueInteger": ms.slot.capacity},
            ],
        }

    def search(
        self,
        session: Session,
        params: Mapping[str, Sequence[str]],
        *,
        count: int,
        offset: int,
        ctx: FhirContext,
    ) -> tuple[list[Json], int]:
        services = [
            _token(v, SERVICE_SYSTEM)
            for raw in params.get("service-type", [])
            for v in raw.split(",")
        ]
        if len(services) != 1:
            raise _invalid("service-type", "give exactly one service to search slots for")
        for raw in params.get("status", []):
            if any(s != "free" for s in raw.split(",")):
                raise _invalid("status", "only free slots are listed")
        tz = ZoneInfo(catalog_service.consortium_timezone(session))
        start, end = date_bounds(params.get("start", []), tz, "start")
        start = max(start or ctx.now, ctx.now)
        end = end or start + timedelta(days=14)
        if end - start > timedelta(days=62):
            raise _invalid("start", "the window may span at most 62 days")
        member = None
        for raw in params.get("organization", []):
            member = raw.removeprefix("Organization/")
        found = booking_service.search_slots(
            session,
            service_id=services[0],
            start=start,
            end=end,
            now=ctx.now,
            institution_id=member,
            limit=offset + count + 1,
        )
        page = found[offset : offset + count]
        return [self._to_fhir(session, ms) for ms in page], len(found)

    def read(self, session: Session, id: str, *, ctx: FhirContext) -> Json | None:
        try:
            service_id, member, start = booking_service.parse_slot_id(session, id)
        except InvalidInput:
            return None
        found = booking_service.search_slots(
            session,
            service_id=service_id,
            start=start,
            end=start + timedelta(minutes=1),
            now=ctx.now,
            institution_id=member,
            limit=1,
        )
        if not found or found[0].slot.start != start:
            return None  # no longer free (or never was)
        return self._to_fhir(session, found[0])


def appointment_to_fhir(session: Session, a: Appointment) -> Json:
    kinds: dict[str, ResourceKind] = {}
    if a.resource_ids:
        rows = session.execute(
            select(Resource.id, Resource.kind).where(Resource.id.in_(a.resource_ids))
        )
        kinds = {rid: kind for rid, kind in rows}
    participants: list[Json] = [
        {
            "actor": {
                "reference": f"Patient/{a.patient_ref}",
                "display": a.patient_name or a.patient_ref,
            },
            "required": "required",
            "status": "accepted",
        }
    ]
    for rid in a.resource_ids:
        kind = kinds.get(rid)
        participants.append(
            {
                "actor": {
                    "reference": f"{_REFERENCE_TYPE.get(kind, 'Location') if kind else 'Location'}"
                    f"/{rid}"
                },
                "required": "required",
                "status": "accepted",
            }
        )
    out: Json = {
        "resourceType": "Appointment",
        "id": a.id,
        "status": _STATUS_TO_FHIR[a.status],
        "serviceType": [_service_concept(session, a.service_id)],
        "start": a.start_at.isoformat(),
        "end": a.end_at.isoformat(),
        "minutesDuration": int((a.end_at - a.start_at).total_seconds() // 60),
        "created": a.created_at.date().isoformat(),
        "slot": [
            {
                "reference": "Slot/"
                + booking_service.slot_id(a.service_id, a.institution_id, a.start_at)
            }
        ],
        "participant": participants,
        "extension": [
            {
                "url": "urn:carepool:extension:institution",
                "valueReference": {"reference": f"Organization/{a.institution_id}"},
            }
        ],
    }
    if a.referral_id:
        out["basedOn"] = [{"reference": f"ServiceRequest/{a.referral_id}"}]
    if a.cancel_reason:
        out["cancelationReason"] = {"text": a.cancel_reason}
    if a.note:
        out["comment"] = a.note
    return out


class AppointmentProvider:
    resource_type = "Appointment"
    scope_area = "Booking"
    uses_context = True
    search_params = (
        SearchParam("patient", "reference", "Patient/<ref> or <ref>"),
        SearchParam("status", "token", "pending, booked, arrived, fulfilled, cancelled, noshow"),
        SearchParam("date", "date", "appointment start, with prefixes"),
        SearchParam("service-type", "token", "[urn:carepool:service|]id"),
    )

    def read(self, session: Session, id: str, *, ctx: FhirContext) -> Json | None:
        if session.get(Appointment, id) is None:
            return None
        a = booking_service.access_appointment_by_id(session, ctx.caller, id)
        audit.record(
            session,
            actor=ctx.caller,
            action=AuditAction.READ,
            entity_type="appointment",
            entity_id=id,
            entity_institution=a.institution_id,
            source="fhir",
        )
        return appointment_to_fhir(session, a)

    def search(
        self,
        session: Session,
        params: Mapping[str, Sequence[str]],
        *,
        count: int,
        offset: int,
        ctx: FhirContext,
    ) -> tuple[list[Json], int]:
        patient = None
        for raw in params.get("patient", []):
            patient = raw.removeprefix("Patient/")
        statuses = [s for raw in params.get("status", []) for s in raw.split(",")]
        unknown = [s for s in statuses if s not in _FHIR_TO_STATUS]
        if unknown:
            raise _invalid("status", f"unknown status {', '.join(unknown)}")
        if len(statuses) > 1:
            raise _invalid("status", "give one status")
        service = None
        for raw in params.get("service-type", []):
            service = _token(raw, SERVICE_SYSTEM)
        tz = ZoneInfo(catalog_service.consortium_timezone(session))
        start, end = date_bounds(params.get("date", []), tz, "date")
        rows, total = booking_service.get_all_appointments(
            session,
            ctx.caller,
            status=_FHIR_TO_STATUS[statuses[0]] if statuses else None,
            service_id=service,
            patient_ref=patient,
            start=start,
            end=end,
            limit=count,
            offset=offset,
        )
        audit.record(
            session,
            actor=ctx.caller,
            action=AuditAction.READ,
            entity_type="appointment",
            entity_id=None,
            entity_institution=ctx.caller.institution_id,
            source="fhir",
            detail=f"search: {len(rows)} of {total}" + (f", patient {patient}" if patient else ""),
        )
        return [appointment_to_fhir(session, a) for a in rows], total

    def create(
        self, session: Session, resource: Json, *, ctx: FhirContext, key: str | None
    ) -> tuple[Json, bool]:
        try:
            parsed = FhirAppointment.model_validate(resource)
        except ValidationError as exc:
            raise InvalidInput(
                "the Appointment is not valid FHIR R4",
                [
                    FieldError("Appointment." + ".".join(str(p) for p in e["loc"]), e["msg"])
                    for e in exc.errors()
                ],
            ) from exc
        if parsed.status not in ("booked", "pending", "proposed"):
            raise InvalidInput(
                f"a new Appointment is booked, or pending/proposed for a hold; not {parsed.status}",
                [FieldError("Appointment.status", "booked, pending or proposed")],
            )
        slots = [s.reference for s in parsed.slot or [] if s.reference]
        if len(slots) != 1 or not slots[0].startswith("Slot/"):
            raise InvalidInput(
                "reference exactly one Slot", [FieldError("Appointment.slot", "one Slot/<id>")]
            )
        patients = [
            p.actor
            for p in parsed.participant
            if p.actor is not None and (p.actor.reference or "").startswith("Patient/")
        ]
        if len(patients) != 1:
            raise InvalidInput(
                "name exactly one patient participant",
                [FieldError("Appointment.participant", "one actor Patient/<ref>")],
            )
        actor_ref = patients[0]
        service_id, member, start = booking_service.parse_slot_id(
            session, slots[0].removeprefix("Slot/")
        )
        appointment, created = actions.do_create_appointment(
            session,
            actor=ctx.caller,
            now=ctx.now,
            service_id=service_id,
            institution_id=member,
            start=start,
            patient_ref=(actor_ref.reference or "").removeprefix("Patient/"),
            patient_name=actor_ref.display or "",
            hold=parsed.status != "booked",
            idempotency_key=key,
            note=parsed.comment or "",
        )
        return appointment_to_fhir(session, appointment), created


PROVIDERS = (SlotProvider(), AppointmentProvider())
