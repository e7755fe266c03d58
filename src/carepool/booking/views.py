"""HTTP routes of the booking pool under /api/v1: slots, appointments, policies and quotas."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from carepool.api.deps import Caller, DbSession
from carepool.booking import actions
from carepool.booking import service as booking_service
from carepool.booking._http import aware, in_transaction, now_of
from carepool.booking.models import AppointmentStatus
from carepool.core import audit
from carepool.core.audit import AuditAction
from carepool.core.errors import FieldError, InvalidInput
from carepool.records import actions as records_actions

router = APIRouter(tags=["booking"])


@router.get("/slots", summary="Bookable times for a service across every member, earliest first")
async def get_slots(
    request: Request,
    caller: Caller,
    service: str = Query(..., description="service id"),
    start: datetime | None = Query(None, description="from (default: now)"),
    end: datetime | None = Query(None, description="to (default: start + 14 days)"),
    institution: str | None = Query(None, description="only this member"),
    campus: str | None = Query(None, description="only this campus"),
    limit: int = Query(20, ge=1, le=200),
) -> dict[str, Any]:
    caller.require_scope("Booking", "read")
    now = now_of(request)
    begin = aware(start, "start") or now
    finish = aware(end, "end") or begin + timedelta(days=14)
    if finish <= begin or finish - begin > timedelta(days=62):
        raise InvalidInput(
            "the window must be positive and at most 62 days",
            [FieldError("query:end", "after start, within 62 days")],
        )
    found = await in_transaction(
        request,
        lambda session: booking_service.search_slots(
            session,
            service_id=service,
            start=begin,
            end=finish,
            now=now,
            institution_id=institution,
            campus_id=campus,
            limit=limit,
        ),
    )
    return {
        "service_id": service,
        "items": [
            {
                "id": ms.id,
                "institution_id": ms.institution_id,
                "start": ms.slot.start.isoformat(),
                "end": ms.slot.end.isoformat(),
                "capacity": ms.slot.capacity,
                "resources": [list(group) for group in ms.slot.resources],
            }
            for ms in found
        ],
    }


class AppointmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slot_id: str | None = Field(None, description="a slot id from /slots (or give the three below)")
    service_id: str | None = None
    institution_id: str | None = None
    start: datetime | None = None
    patient_ref: str = Field(min_length=1, max_length=128)
    patient_name: str = ""
    hold: bool = Field(False, description="hold for the policy's minutes instead of booking")
    referral_id: str | None = None
    note: str = ""


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


class Reschedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: datetime | None = None
    slot_id: str | None = None


def _audit_read(session: Any, caller: Any, appointment: Any) -> None:
    audit.record(
        session,
        actor=caller,
        action=AuditAction.READ,
        entity_type="appointment",
        entity_id=appointment.id,
        entity_institution=appointment.institution_id,
    )


_APPOINTMENT_JSON = {"application/json": {"schema": {"type": "object"}}}


@router.post(
    "/appointments",
    status_code=201,
    summary="Hold or book a service",
    responses={
        201: {"description": "Held or booked; `Location` names it", "content": _APPOINTMENT_JSON},
        200: {
            "description": "The appointment this Idempotency-Key already created",
            "content": _APPOINTMENT_JSON,
        },
        409: {"description": "The slot was taken meanwhile (what was taken is in the problem)"},
    },
)
async def create_appointment(
    request: Request,
    body: AppointmentCreate,
    caller: Caller,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=128),
) -> JSONResponse:
    now = now_of(request)

    def book(session: Session) -> tuple[dict[str, Any], bool]:
        if body.slot_id:
            service_id, institution_id, start = booking_service.parse_slot_id(session, body.slot_id)
        elif body.service_id and body.institution_id and body.start:
            service_id, institution_id = body.service_id, body.institution_id
            start = aware(body.start, "start")  # type: ignore[assignment]
        else:
            raise InvalidInput(
                "give slot_id, or service_id, institution_id and start",
                [FieldError("body:slot_id", "missing")],
            )
        appointment, created = actions.do_create_appointment(
            session,
            actor=caller,
            now=now,
            service_id=service_id,
            institution_id=institution_id,
            start=start,
            patient_ref=body.patient_ref,
            patient_name=body.patient_name,
            hold=body.hold,
            idempotency_key=idempotency_key,
            referral_id=body.referral_id,
            note=body.note,
        )
        return booking_service.to_dict(appointment), created

    data, created = await in_transaction(request, book)
    # `to_dict` holds only JSON types: answered as is, without FastAPI's `jsonable_encoder` walk
    # (the same bytes; the hot route's response is a noticeable share of its framework CPU).
    return JSONResponse(
        data,
        status_code=201 if created else 200,
        headers={"Location": f"/api/v1/appointments/{data['id']}"},
    )


@router.get("/appointments", summary="Appointments the caller may see")
def list_appointments(
    session: DbSession,
    caller: Caller,
    status: AppointmentStatus | None = None,
    service: str | None = None,
    patient: str | None = None,
    institution: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    rows, total = booking_service.get_all_appointments(
        session,
        caller,
        status=status,
        service_id=service,
        patient_ref=patient,
        institution_id=institution,
        start=aware(start, "start"),
        end=aware(end, "end"),
        limit=limit,
        offset=offset,
    )
    audit.record(
        session,
        actor=caller,
        action=AuditAction.READ,
        entity_type="appointment",
        entity_id=None,
        entity_institution=caller.institution_id,
        detail=f"list: {len(rows)} of {total}" + (f", patient {patient}" if patient else ""),
    )
    return {
        "items": [booking_service.to_dict(a) for a in rows],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/appointments/{id}", summary="One appointment")
def get_appointment(id: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    appointment = booking_service.access_appointment_by_id(session, caller, id)
    _audit_read(session, caller, appointment)
    return booking_service.to_dict(appointment)


def _transition(action: str) -> Any:
    def endpoint(
        id: str, request: Request, session: DbSession, caller: Caller, body: Reason | None = None
    ) -> dict[str, Any]:
        appointment = actions.do_transition_appointment(
            session,
            actor=caller,
            now=now_of(request),
            id=id,
            action=action,
            reason=body.reason if body else "",
        )
        return booking_service.to_dict(appointment)

    return endpoint


for _action in actions.TRANSITIONS:
    router.post(
        f"/appointments/{{id}}/{_action}",
        summary=f"Appointment: {_action}",
        name=f"appointment_{_action.replace('-', '_')}",
    )(_transition(_action))


@router.post("/appointments/{id}/reschedule", summary="Move an appointment to another time")
def reschedule(
    id: str, body: Reschedule, request: Request, session: DbSession, caller: Caller
) -> dict[str, Any]:
    if body.slot_id:
        _, _, start = booking_service.parse_slot_id(session, body.slot_id)
    elif body.start:
        start = aware(body.start, "start")  # type: ignore[assignment]
    else:
        raise InvalidInput("give start or slot_id", [FieldError("body:start", "missing")])
    appointment = actions.do_reschedule_appointment(
        session, actor=caller, now=now_of(request), id=id, start=start
    )
    return booking_service.to_dict(appointment)


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hold_minutes: int = Field(10, ge=1, le=24 * 60)
    overbook_lanes: int = Field(0, ge=0, le=5)
    slot_step_minutes: int | None = Field(None, ge=5, le=24 * 60)
    min_notice_minutes: int = Field(0, ge=0)
    allow_patient_overlap: bool = Field(
        False, description="bookings of this service do not take the patient's own time"
    )


@router.put("/services/{service_id}/booking-policy", summary="Set a service's booking policy")
def put_policy(
    service_id: str, body: PolicyBody, session: DbSession, caller: Caller
) -> dict[str, Any]:
    actions.do_set_booking_policy(
        session, actor=caller, service_id=service_id, values=body.model_dump()
    )
    return {"service_id": service_id, **body.model_dump()}


class QuotaBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$")
    service_id: str
    institution_id: str
    reserved_for_kinds: list[str] = Field(default_factory=list)
    reserved_for_institutions: list[str] = Field(default_factory=list)
    share: float = Field(gt=0, le=1)
    release_hours: int = Field(48, ge=0, le=24 * 60)


@router.put("/quotas/{id}", summary="Create or replace a booking quota")
def put_quota(id: str, body: QuotaBody, session: DbSession, caller: Caller) -> dict[str, Any]:
    if body.id != id:
        raise InvalidInput(
            "the path id and body id differ", [FieldError("body:id", "must equal the path id")]
        )
    actions.do_set_quota(session, actor=caller, values=body.model_dump())
    return body.model_dump()


class PatientRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    institution_id: str | None = Field(None, description="the member (default: the caller's)")
    local_id: str = Field(min_length=1, max_length=200, description="the member's MRN")
    system: str | None = Field(
        None,
        max_length=200,
        description="the MRN's assigning authority as the member's feed sends it (HL7 "
        "PID-3.4); default: the member id",
    )
    name: str = Field("", max_length=200)
    family: str = Field("", max_length=100)
    given: str = Field("", max_length=100)
    sex: Literal["male", "female", "other", "unknown"] = "unknown"
    birth_date: date | None = None
    national_id: str | None = Field(None, max_length=40)
    phone: str = Field("", max_length=40)
    address: str = Field("", max_length=400)


@router.post(
    "/patients",
    status_code=201,
    summary="Register a walk-in patient at a member (the Patient bookings then name)",
    responses={200: {"description": "Already registered under that MRN (returned unchanged)"}},
)
def register_patient(body: PatientRegistration, session: DbSession, caller: Caller) -> JSONResponse:
    member = body.institution_id or caller.institution_id
    if member is None:
        raise InvalidInput(
            "a consortium-wide caller names the member",
            [FieldError("body:institution_id", "the member the patient registers at")],
        )
    patient, created = records_actions.do_register_patient(
        session,
        actor=caller,
        institution_id=member,
        local_id=body.local_id,
        system=body.system,
        name=body.name,
        family=body.family,
        given=body.given,
        sex=body.sex,
        birth_date=body.birth_date,
        national_id=body.national_id,
        phone=body.phone,
        address=body.address,
    )
    data = {
        "id": patient.id,
        "reference": f"Patient/{patient.id}",
        "institution_id": patient.institution_id,
        "system": patient.id_system,
        "local_id": patient.local_id,
        "name": patient.name,
        "sex": patient.sex.value,
        "birth_date": patient.birth_date.isoformat() if patient.birth_date else None,
        "created": created,
    }
    return JSONResponse(
        data,
        status_code=201 if created else 200,
        headers={"Location": f"/fhir/Patient/{patient.id}"},
    )
