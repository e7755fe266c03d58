"""HTTP routes of referrals under /api/v1/referrals (the referrer follows every step here)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from carepool.api.deps import Caller, DbSession
from carepool.booking import service as booking_service
from carepool.booking._http import aware, now_of, start_of
from carepool.booking._views import IdempotencyKey, audit_list, audit_read, mark_created, page
from carepool.booking.orders import views as order_views
from carepool.booking.referrals import actions, service
from carepool.booking.referrals.models import Priority, Referral, ReferralStatus
from carepool.booking.referrals.service import Side
from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput

router = APIRouter(tags=["referrals"])


def _read(session: Session, caller: Principal, referral: Referral) -> dict[str, Any]:
    audit_read(
        session,
        caller,
        entity_type="referral",
        entity_id=referral.id,
        entity_institution=referral.from_institution_id,
    )
    return _shape(session, referral)


def _shape(session: Session, referral: Referral) -> dict[str, Any]:
    return service.to_dict(referral, service.appointment_of(session, referral))


class ReferralCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient_ref: str = Field(min_length=1, max_length=128)
    patient_name: str = Field("", max_length=200)
    to_institution_id: str = Field(description="the receiving member")
    service_id: str | None = Field(None, description="the service asked for")
    department_code: str | None = Field(None, description="or a department (standard code)")
    staff_id: str | None = Field(None, description="or a named specialist (a staff resource)")
    reason: str = Field("", description="why the patient is referred")
    priority: Priority = Priority.ROUTINE
    from_institution_id: str | None = Field(
        None, description="the referring member (consortium-wide callers only)"
    )


class Accept(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = ""
    service_id: str | None = Field(None, description="the service to book (if not named yet)")
    book_from: datetime | None = Field(None, description="the referrer may book from")
    book_until: datetime | None = Field(None, description="... and before")


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


class Book(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slot_id: str | None = Field(None, description="a slot from /referrals/{id}/slots")
    start: datetime | None = None
    note: str = ""


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")
    report_ref: str | None = Field(None, max_length=500, description="a link to the report")
    report_text: str = ""


@router.post("/referrals", status_code=201, summary="Refer a patient to another member")
def create_referral(
    request: Request,
    response: Response,
    body: ReferralCreate,
    session: DbSession,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    referral, created = actions.do_create_referral(
        session,
        actor=caller,
        now=now_of(request),
        idempotency_key=idempotency_key,
        **body.model_dump(),
    )
    mark_created(response, created=created, location=f"/api/v1/referrals/{referral.id}")
    return _shape(session, referral)


@router.get("/referrals", summary="Referrals a member sent or received")
def list_referrals(
    request: Request,
    session: DbSession,
    caller: Caller,
    mine: Side | None = Query(None, description="sent or received by the member"),
    institution: str | None = Query(None, description="the member (default: the caller's)"),
    status: ReferralStatus | None = None,
    patient: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    caller.require_scope("Booking", "read")
    actions.do_sync_referrals(session, actor=caller, now=now_of(request))
    rows, total = service.get_all_referrals(
        session,
        caller,
        mine=mine,
        institution_id=institution,
        status=status,
        patient_ref=patient,
        limit=limit,
        offset=offset,
    )
    audit_list(
        session,
        caller,
        entity_type="referral",
        entity_institution=institution or caller.institution_id,
        shown=len(rows),
        total=total,
        qualifiers=([mine.value] if mine else []) + ([f"patient {patient}"] if patient else []),
    )
    items = [_shape(session, r) for r in rows]
    return page(items, total=total, limit=limit, offset=offset)


@router.get("/referrals/{id}", summary="One referral, with its steps")
def get_referral(id: str, request: Request, session: DbSession, caller: Caller) -> dict[str, Any]:
    referral = service.access_referral_by_id(session, caller, id)
    actions.do_sync_referral_from_appointment(session, now=now_of(request), referral=referral)
    return _read(session, caller, referral)


@router.post("/referrals/{id}/accept", summary="The receiving member accepts")
def accept(
    id: str, body: Accept, request: Request, session: DbSession, caller: Caller
) -> dict[str, Any]:
    referral = actions.do_accept_referral(
        session,
        actor=caller,
        now=now_of(request),
        id=id,
        note=body.note,
        service_id=body.service_id,
        book_from=aware(body.book_from, "body:book_from"),
        book_until=aware(body.book_until, "body:book_until"),
    )
    return _shape(session, referral)


@router.post("/referrals/{id}/decline", summary="The receiving member declines, with a reason")
def decline(
    id: str, body: Reason, request: Request, session: DbSession, caller: Caller
) -> dict[str, Any]:
    referral = actions.do_decline_referral(
        session, actor=caller, now=now_of(request), id=id, reason=body.reason
    )
    return _shape(session, referral)


@router.get("/referrals/{id}/slots", summary="Free times the referrer may book")
def referral_slots(
    id: str,
    request: Request,
    session: DbSession,
    caller: Caller,
    start: datetime | None = Query(None, description="from (default: now)"),
    end: datetime | None = Query(None, description="to (default: start + 14 days)"),
    limit: int = Query(20, ge=1, le=200),
) -> dict[str, Any]:
    """The receiving member's slots of the accepted service, within the window it allows."""
    referral = service.access_referral_by_id(session, caller, id)
    if referral.service_id is None:
        return {"referral_id": id, "items": []}
    now = now_of(request)
    begin = aware(start, "query:start") or now
    finish = aware(end, "query:end") or begin + timedelta(days=14)
    if referral.book_from:
        begin = max(begin, referral.book_from)
    if referral.book_until:
        finish = min(finish, referral.book_until)
    if finish - begin > timedelta(days=62):
        raise InvalidInput(
            "the window is at most 62 days", [FieldError("query:end", "within 62 days")]
        )
    found = (
        booking_service.search_slots(
            session,
            service_id=referral.service_id,
            start=begin,
            end=finish,
            now=now,
            institution_id=referral.to_institution_id,
            limit=limit,
        )
        if finish > begin
        else []
    )
    return {
        "referral_id": id,
        "service_id": referral.service_id,
        "institution_id": referral.to_institution_id,
        "items": [
            {"id": ms.id, "start": ms.slot.start.isoformat(), "end": ms.slot.end.isoformat()}
            for ms in found
        ],
    }


@router.post("/referrals/{id}/book", summary="The referrer books the accepted service")
def book(
    id: str,
    body: Book,
    request: Request,
    session: DbSession,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    referral = service.access_referral_by_id(session, caller, id)
    start = start_of(
        session,
        slot_id=body.slot_id,
        start=body.start,
        service_id=referral.service_id,
        institution_id=referral.to_institution_id,
    )
    referral = actions.do_book_referral(
        session,
        actor=caller,
        now=now_of(request),
        id=id,
        start=start,
        idempotency_key=idempotency_key,
        note=body.note,
    )
    return _shape(session, referral)


@router.post("/referrals/{id}/report", summary="The receiving member returns its report")
def report(
    id: str, body: Report, request: Request, session: DbSession, caller: Caller
) -> dict[str, Any]:
    referral = actions.do_return_referral_report(
        session,
        actor=caller,
        now=now_of(request),
        id=id,
        report_ref=body.report_ref,
        report_text=body.report_text,
    )
    return _shape(session, referral)


@router.post("/referrals/{id}/cancel", summary="Either member cancels, with a reason")
def cancel(
    id: str, body: Reason, request: Request, session: DbSession, caller: Caller
) -> dict[str, Any]:
    referral = actions.do_cancel_referral(
        session, actor=caller, now=now_of(request), id=id, reason=body.reason
    )
    return _shape(session, referral)


# What app.py includes: the referral and the order routes. FHIR ServiceRequest (referrals and
# orders) is registered in api/fhir.py from `referrals.fhir.PROVIDER`.
routes = APIRouter()
routes.include_router(router)
routes.include_router(order_views.router)
