"""HTTP routes of the inpatient flow under /api/v1: admissions, bed options, board, cleaning."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response

from carepool.api.deps import Caller, DbSession
from carepool.booking._http import aware, now_of
from carepool.booking._views import IdempotencyKey, audit_list, audit_read, mark_created, page
from carepool.booking.inpatient import actions
from carepool.booking.inpatient import service as inpatient_service
from carepool.booking.inpatient.models import AdmissionStatus
from carepool.booking.inpatient.schemas import (
    AdmissionCreate,
    AdmitBody,
    BedChoice,
    DischargeBody,
    Reason,
    TransferBody,
)
from carepool.core import audit
from carepool.core.audit import AuditAction

router = APIRouter(tags=["inpatient"])


@router.post("/admissions", status_code=201, summary="Request an admission at a member")
def create_admission(
    request: Request,
    response: Response,
    body: AdmissionCreate,
    session: DbSession,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    admission, created = actions.do_create_admission(
        session,
        actor=caller,
        now=now_of(request),
        institution_id=body.institution_id,
        patient_ref=body.patient_ref,
        patient_name=body.patient_name,
        patient_sex=body.patient_sex,
        age=body.age,
        department_id=body.department_id,
        ward_id=body.ward_id,
        needed_features=body.needed_features,
        isolation=body.isolation,
        priority=body.priority,
        expected_stay_days=body.expected_stay_days,
        planned_admit_at=aware(body.planned_admit_at, "planned_admit_at"),
        note=body.note,
        idempotency_key=idempotency_key,
    )
    mark_created(response, created=created, location=f"/api/v1/admissions/{admission.id}")
    return inpatient_service.to_dict(admission)


@router.get("/admissions", summary="Admissions the caller may see")
def list_admissions(
    session: DbSession,
    caller: Caller,
    status: AdmissionStatus | None = None,
    institution: str | None = None,
    ward: str | None = None,
    patient: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    rows, total = inpatient_service.get_all_admissions(
        session,
        caller,
        status=status,
        institution_id=institution,
        ward_id=ward,
        patient_ref=patient,
        limit=limit,
        offset=offset,
    )
    audit_list(
        session,
        caller,
        entity_type="admission",
        entity_institution=caller.institution_id,
        shown=len(rows),
        total=total,
        qualifiers=[f"patient {patient}"] if patient else [],
    )
    items = [inpatient_service.to_dict(a) for a in rows]
    return page(items, total=total, limit=limit, offset=offset)


@router.get("/admissions/{id}", summary="One admission")
def get_admission(id: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    admission = inpatient_service.access_admission_by_id(session, caller, id)
    audit_read(
        session,
        caller,
        entity_type="admission",
        entity_id=admission.id,
        entity_institution=admission.institution_id,
    )
    return inpatient_service.to_dict(admission)


@router.get("/admissions/{id}/bed-options", summary="Suitable free beds for an admission, ranked")
def bed_options(
    id: str,
    request: Request,
    session: DbSession,
    caller: Caller,
    limit: int = Query(20, ge=1, le=200),
) -> dict[str, Any]:
    admission = inpatient_service.access_admission_by_id(session, caller, id)
    return inpatient_service.bed_options(session, admission, now=now_of(request), limit=limit)


@router.post("/admissions/{id}/reserve", summary="Reserve a bed for an admission")
def reserve(
    id: str, body: BedChoice, request: Request, session: DbSession, caller: Caller
) -> dict[str, Any]:
    admission = actions.do_reserve_bed(
        session, actor=caller, now=now_of(request), id=id, bed_id=body.bed_id
    )
    return inpatient_service.to_dict(admission)


@router.post("/admissions/{id}/admit", summary="Admit the patient (into the reserved bed)")
def admit(
    id: str, request: Request, session: DbSession, caller: Caller, body: AdmitBody | None = None
) -> dict[str, Any]:
    admission = actions.do_admit_patient(
        session, actor=caller, now=now_of(request), id=id, bed_id=body.bed_id if body else None
    )
    return inpatient_service.to_dict(admission)


@router.post("/admissions/{id}/transfer", summary="Move an admitted patient to another bed")
def transfer(
    id: str, body: TransferBody, request: Request, session: DbSession, caller: Caller
) -> dict[str, Any]:
    admission = actions.do_transfer_patient(
        session, actor=caller, now=now_of(request), id=id, bed_id=body.bed_id, reason=body.reason
    )
    return inpatient_service.to_dict(admission)


@router.post("/admissions/{id}/discharge", summary="Discharge; the bed goes to cleaning")
def discharge(
    id: str,
    request: Request,
    session: DbSession,
    caller: Caller,
    body: DischargeBody | None = None,
) -> dict[str, Any]:
    admission = actions.do_discharge_patient(
        session, actor=caller, now=now_of(request), id=id, note=body.note if body else ""
    )
    return inpatient_service.to_dict(admission)


@router.post("/admissions/{id}/cancel", summary="Cancel an admission request or reservation")
def cancel(
    id: str, request: Request, session: DbSession, caller: Caller, body: Reason | None = None
) -> dict[str, Any]:
    admission = actions.do_cancel_admission(
        session, actor=caller, now=now_of(request), id=id, reason=body.reason if body else ""
    )
    return inpatient_service.to_dict(admission)


@router.get("/bed-board", summary="Beds of a ward, campus or member with their states")
def bed_board(
    request: Request,
    session: DbSession,
    caller: Caller,
    ward: str | None = Query(None, description="only this ward"),
    campus: str | None = Query(None, description="only this campus"),
    institution: str | None = Query(None, description="only this member"),
) -> dict[str, Any]:
    board, shown = inpatient_service.bed_board(
        session,
        caller,
        now=now_of(request),
        ward_id=ward,
        campus_id=campus,
        institution_id=institution,
    )
    audit.record(
        session,
        actor=caller,
        action=AuditAction.READ,
        entity_type="bed_board",
        entity_id=f"ward={ward or ''};campus={campus or ''};institution={institution or ''}",
        entity_institution=institution,
        detail=(
            f"{board['counts']['total']} beds; patients shown for: {', '.join(shown)}"
            if shown
            else f"{board['counts']['total']} beds; patients masked"
        ),
    )
    return board


@router.post("/beds/{id}/cleaned", summary="Mark a bed cleaned: to_clean -> free")
def bed_cleaned(id: str, request: Request, session: DbSession, caller: Caller) -> dict[str, Any]:
    now = now_of(request)
    row = actions.do_mark_bed_cleaned(session, actor=caller, now=now, bed_id=id)
    bed = inpatient_service.get_bed(session, id)
    return {
        "bed_id": id,
        "housekeeping": row.state.value,
        "state": inpatient_service.bed_state(session, bed, now=now).value,
        "since": row.since.isoformat(),
    }
