"""HTTP routes of surgery cases under /api/v1: cases, scheduling, transitions, theatre schedule."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Query, Request, Response

from carepool.api.deps import Caller, DbSession
from carepool.booking._http import aware, now_of
from carepool.booking._views import IdempotencyKey, audit_list, audit_read, mark_created, page
from carepool.booking.surgery import actions
from carepool.booking.surgery import service as surgery_service
from carepool.booking.surgery.models import SurgeryStatus
from carepool.booking.surgery.schemas import Reason, ScheduleBody, SurgeryCaseCreate
from carepool.core import audit
from carepool.core.audit import AuditAction

router = APIRouter(tags=["surgery"])


@router.post("/surgery-cases", status_code=201, summary="Request a surgery case")
def create_case(
    request: Request,
    response: Response,
    body: SurgeryCaseCreate,
    session: DbSession,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    case, created = actions.do_create_surgery_case(
        session,
        actor=caller,
        now=now_of(request),
        institution_id=body.institution_id,
        service_id=body.service_id,
        patient_ref=body.patient_ref,
        patient_name=body.patient_name,
        surgeon_id=body.surgeon_id,
        expected_duration_min=body.expected_duration_min,
        priority=body.priority,
        admission_id=body.admission_id,
        note=body.note,
        idempotency_key=idempotency_key,
    )
    mark_created(response, created=created, location=f"/api/v1/surgery-cases/{case.id}")
    return surgery_service.to_dict(case)


@router.get("/surgery-cases", summary="Surgery cases the caller may see")
def list_cases(
    session: DbSession,
    caller: Caller,
    status: SurgeryStatus | None = None,
    institution: str | None = None,
    surgeon: str | None = None,
    patient: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    rows, total = surgery_service.get_all_cases(
        session,
        caller,
        status=status,
        institution_id=institution,
        surgeon_id=surgeon,
        patient_ref=patient,
        limit=limit,
        offset=offset,
    )
    audit_list(
        session,
        caller,
        entity_type="surgery_case",
        entity_institution=caller.institution_id,
        shown=len(rows),
        total=total,
        qualifiers=[f"patient {patient}"] if patient else [],
    )
    items = [surgery_service.to_dict(c) for c in rows]
    return page(items, total=total, limit=limit, offset=offset)


@router.get("/surgery-cases/{id}", summary="One surgery case")
def get_case(id: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    case = surgery_service.access_surgery_case_by_id(session, caller, id)
    audit_read(
        session,
        caller,
        entity_type="surgery_case",
        entity_id=case.id,
        entity_institution=case.institution_id,
    )
    return surgery_service.to_dict(case)


@router.post(
    "/surgery-cases/{id}/schedule", summary="Book a case into a theatre with its whole team"
)
def schedule_case(
    id: str, body: ScheduleBody, request: Request, session: DbSession, caller: Caller
) -> dict[str, Any]:
    start = aware(body.start, "start")
    assert start is not None
    case = actions.do_schedule_surgery_case(
        session,
        actor=caller,
        now=now_of(request),
        id=id,
        theatre_id=body.theatre_id,
        start=start,
        team=body.team,
    )
    return surgery_service.to_dict(case)


def _transition(action: str) -> Any:
    def endpoint(
        id: str, request: Request, session: DbSession, caller: Caller, body: Reason | None = None
    ) -> dict[str, Any]:
        case = actions.do_transition_surgery_case(
            session,
            actor=caller,
            now=now_of(request),
            id=id,
            action=action,
            reason=body.reason if body else "",
        )
        return surgery_service.to_dict(case)

    return endpoint


for _action in ("start", "complete", "cancel"):
    router.post(
        f"/surgery-cases/{{id}}/{_action}",
        summary=f"Surgery case: {_action}",
        name=f"surgery_case_{_action}",
    )(_transition(_action))


@router.get("/theatre-schedule", summary="Theatres of a member on one day: sessions and cases")
def theatre_schedule(
    request: Request,
    session: DbSession,
    caller: Caller,
    institution: str | None = Query(None, description="the member (default: the caller's)"),
    day: date | None = Query(None, alias="date", description="local date (default: today)"),
) -> dict[str, Any]:
    when = day or surgery_service.today(session, now_of(request))
    schedule, shown = surgery_service.theatre_schedule(
        session, caller, institution_id=institution, day=when
    )
    if shown:
        audit.record(
            session,
            actor=caller,
            action=AuditAction.READ,
            entity_type="theatre_schedule",
            entity_id=f"{schedule['institution_id']}:{when.isoformat()}",
            entity_institution=schedule["institution_id"],
            detail="patients shown",
        )
    return schedule
