"""HTTP routes of lab and exam orders under /api/v1/orders (both members follow them here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from carepool.api.deps import Caller, DbSession
from carepool.booking._http import now_of, start_of
from carepool.booking._views import IdempotencyKey, audit_list, audit_read, mark_created, page
from carepool.booking.orders import actions, service
from carepool.booking.orders.models import Order, OrderStatus
from carepool.booking.orders.service import Side
from carepool.booking.referrals.models import Priority

router = APIRouter(tags=["orders"])


def _shape(session: Session, order: Order) -> dict[str, Any]:
    return service.to_dict(order, service.appointment_of(session, order))


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service_id: str = Field(description="a service of category lab or imaging")
    patient_ref: str = Field(min_length=1, max_length=128)
    patient_name: str = Field("", max_length=200)
    priority: Priority = Priority.ROUTINE
    clinician: str = Field("", max_length=200, description="ordering clinician (default: caller)")
    indication: str = Field("", description="why the test or exam is ordered")
    target_institution_id: str | None = Field(
        None, description="the performing member; without, the nearest with capacity"
    )
    ordering_institution_id: str | None = Field(
        None, description="the ordering member (consortium-wide callers only)"
    )


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slot_id: str | None = Field(None, description="a slot of the service at the performing member")
    start: datetime | None = Field(None, description="or a start time; neither: no appointment")
    note: str = ""


class Complete(BaseModel):
    model_config = ConfigDict(extra="forbid")
    result_ref: str | None = Field(None, max_length=500)


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")
    result_ref: str = Field(min_length=1, max_length=500)


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


@router.post("/orders", status_code=201, summary="Order a lab test or exam; routed at once")
def place_order(
    request: Request,
    response: Response,
    body: OrderCreate,
    session: DbSession,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    order, created = actions.do_place_order(
        session,
        actor=caller,
        now=now_of(request),
        idempotency_key=idempotency_key,
        **body.model_dump(),
    )
    mark_created(response, created=created, location=f"/api/v1/orders/{order.id}")
    return _shape(session, order)


@router.get("/orders", summary="Orders a member placed or performs")
def list_orders(
    request: Request,
    session: DbSession,
    caller: Caller,
    mine: Side | None = Query(None, description="ordered or performing by the member"),
    institution: str | None = Query(None, description="the member (default: the caller's)"),
    status: OrderStatus | None = None,
    patient: str | None = None,
    service_id: str | None = Query(None, alias="service"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    caller.require_scope("Booking", "read")
    actions.do_sync_orders(session, actor=caller, now=now_of(request))
    rows, total = service.get_all_orders(
        session,
        caller,
        mine=mine,
        institution_id=institution,
        status=status,
        patient_ref=patient,
        service_id=service_id,
        limit=limit,
        offset=offset,
    )
    audit_list(
        session,
        caller,
        entity_type="order",
        entity_institution=institution or caller.institution_id,
        shown=len(rows),
        total=total,
        qualifiers=([mine.value] if mine else []) + ([f"patient {patient}"] if patient else []),
    )
    items = [_shape(session, o) for o in rows]
    return page(items, total=total, limit=limit, offset=offset)


@router.get("/orders/{id}", summary="One order, with its steps")
def get_order(id: str, request: Request, session: DbSession, caller: Caller) -> dict[str, Any]:
    order = service.access_order_by_id(session, caller, id)
    actions.do_sync_order_from_appointment(session, now=now_of(request), order=order)
    audit_read(
        session,
        caller,
        entity_type="order",
        entity_id=order.id,
        entity_institution=order.ordering_institution_id,
    )
    return _shape(session, order)


@router.post("/orders/{id}/route", summary="Route a placed order again")
def route(id: str, request: Request, session: DbSession, caller: Caller) -> dict[str, Any]:
    order = actions.do_route_order(session, actor=caller, now=now_of(request), id=id)
    return _shape(session, order)


@router.post("/orders/{id}/schedule", summary="Schedule a routed order (optionally booked)")
def schedule(
    id: str,
    request: Request,
    session: DbSession,
    caller: Caller,
    body: Schedule | None = None,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    body = body or Schedule()
    start = None
    if body.slot_id or body.start:
        order = service.access_order_by_id(session, caller, id)
        start = start_of(
            session,
            slot_id=body.slot_id,
            start=body.start,
            service_id=order.service_id,
            institution_id=order.performing_institution_id,
        )
    order = actions.do_schedule_order(
        session,
        actor=caller,
        now=now_of(request),
        id=id,
        start=start,
        idempotency_key=idempotency_key,
        note=body.note,
    )
    return _shape(session, order)


@router.post("/orders/{id}/start", summary="The performing member starts the test or exam")
def start(id: str, request: Request, session: DbSession, caller: Caller) -> dict[str, Any]:
    order = actions.do_start_order(session, actor=caller, now=now_of(request), id=id)
    return _shape(session, order)


@router.post("/orders/{id}/complete", summary="The performing member completes the order")
def complete(
    id: str,
    request: Request,
    session: DbSession,
    caller: Caller,
    body: Complete | None = None,
) -> dict[str, Any]:
    order = actions.do_complete_order(
        session,
        actor=caller,
        now=now_of(request),
        id=id,
        result_ref=body.result_ref if body else None,
    )
    return _shape(session, order)


@router.put("/orders/{id}/result", summary="Fill or correct the result link of a completed order")
def put_result(
    id: str, body: Result, request: Request, session: DbSession, caller: Caller
) -> dict[str, Any]:
    order = actions.do_attach_order_result(
        session, actor=caller, now=now_of(request), id=id, result_ref=body.result_ref
    )
    return _shape(session, order)


@router.post("/orders/{id}/cancel", summary="Cancel an order not yet started, with a reason")
def cancel(
    id: str, body: Reason, request: Request, session: DbSession, caller: Caller
) -> dict[str, Any]:
    order = actions.do_cancel_order(
        session, actor=caller, now=now_of(request), id=id, reason=body.reason
    )
    return _shape(session, order)
