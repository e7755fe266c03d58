"""HTTP routes of the master patient index under /api/v1/identity.

Scopes: `Identity.read` to see persons, candidate pairs, history and runs; `Identity.write` to
decide pairs, merge, unmerge, detach and (consortium-wide callers only) start a link run;
`Consent.read`/`Consent.write` for a person's consent to share across members. A member's user
sees and decides only what involves a record of their member. Every read of a person or a pair
(patient data) is audited.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from carepool.api.deps import Caller, DbSession, session_factory
from carepool.core import audit
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput, NotFound
from carepool.identity import actions, matching, service
from carepool.identity.models import CandidateStatus
from carepool.records.consent import service as consent_service
from carepool.records.consent.models import Sharing

router = APIRouter(prefix="/identity", tags=["identity"])


class LinkRequest(BaseModel):
    auto_link: float = Field(0.99, gt=0, le=1, description="automatic link at or above")
    review: float = Field(0.5, gt=0, le=1, description="review queue at or above")
    training: str = Field("auto", description="auto, priors, u or em (see the model docs)")
    population: int = Field(matching.DEFAULT_POPULATION, ge=1)


class RecordsRequest(BaseModel):
    patient_ids: list[str] | None = Field(
        None, description="the records to look at (relink: null means every linked record)"
    )
    auto_link: float = Field(0.99, gt=0, le=1)
    review: float = Field(0.5, gt=0, le=1)


class Decision(BaseModel):
    note: str = Field("", max_length=2000)


class MergeRequest(BaseModel):
    survivor: str = Field(..., description="the person that remains")
    other: str = Field(..., description="the person merged into it")
    reason: str = Field("", max_length=2000)


class Reason(BaseModel):
    reason: str = Field("", max_length=2000)


class ConsentRequest(BaseModel):
    sharing: Sharing
    note: str = Field("", max_length=2000)


def _read_audit(
    session: DbSession, caller: Principal, entity_type: str, entity_id: str, members: set[str]
) -> None:
    targets: list[str | None] = list(sorted(members)) or [caller.institution_id]
    for member in targets:
        audit.record(
            session,
            actor=caller,
            action=AuditAction.READ,
            entity_type=entity_type,
            entity_id=entity_id,
            entity_institution=member,
        )


def _own(caller: Principal) -> str | None:
    return None if caller.consortium_wide else caller.institution_id


# -- runs -----------------------------------------------------------------------------------------


@router.post("/runs", status_code=201, summary="Run matching over every patient record")
async def post_run(body: LinkRequest, request: Request, caller: Caller) -> dict[str, Any]:
    """Score every candidate pair, link automatically above `auto_link`, queue for review above
    `review`. Needs Identity.write and a consortium-wide account; follow it at /runs/{id}."""
    try:
        thresholds = matching.Thresholds(auto_link=body.auto_link, review=body.review)
        options = matching.ModelOptions(training=body.training, population=body.population)
    except matching.TrainingError as exc:
        raise InvalidInput(str(exc), [FieldError("body", str(exc))]) from exc
    return await run_in_threadpool(
        actions.do_link,
        session_factory(request),
        actor=caller,
        thresholds=thresholds,
        options=options,
        channel="api",
    )


def _thresholds(body: RecordsRequest) -> matching.Thresholds:
    try:
        return matching.Thresholds(auto_link=body.auto_link, review=body.review)
    except matching.TrainingError as exc:
        raise InvalidInput(str(exc), [FieldError("body", str(exc))]) from exc


@router.post("/relink", summary="Re-evaluate the links of records changed since they were made")
def post_relink(body: RecordsRequest, session: DbSession, caller: Caller) -> dict[str, Any]:
    """Links made on demographics a feed has changed since are checked again: a record that
    no longer matches its person is taken out (history `relink`), a doubtful pair goes to
    review, and the changed records are matched again. Consortium-wide accounts only."""
    return actions.do_relink_changed(
        session,
        actor=caller,
        patient_ids=body.patient_ids,
        thresholds=_thresholds(body),
        channel="api",
    )


@router.post("/link-records", summary="Match the given records on arrival (no full run)")
def post_link_records(body: RecordsRequest, session: DbSession, caller: Caller) -> dict[str, Any]:
    if not body.patient_ids:
        raise InvalidInput(
            "name the records to link", [FieldError("body:patient_ids", "a non-empty list")]
        )
    return actions.do_link_records(
        session,
        actor=caller,
        record_ids=body.patient_ids,
        thresholds=_thresholds(body),
        channel="api",
    )


@router.get("/runs", summary="Link runs, newest first")
def list_runs(
    session: DbSession,
    caller: Caller,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    caller.require_scope("Identity", "read")
    items, total = service.get_runs(session, limit=limit, offset=offset)
    return {"items": [service.run_to_dict(r) for r in items], "total": total}


@router.get("/runs/{run_id}", summary="One link run with its phase, progress and counters")
def get_run(run_id: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    caller.require_scope("Identity", "read")
    return service.run_to_dict(service.get_run(session, id=run_id))


# -- review queue ---------------------------------------------------------------------------------


@router.get("/candidates", summary="Candidate pairs to review, most likely first")
def list_candidates(
    session: DbSession,
    caller: Caller,
    status: str = Query("open", description="open, accepted, rejected, superseded or all"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    caller.require_scope("Identity", "read")
    try:
        wanted = None if status == "all" else CandidateStatus(status)
    except ValueError as exc:
        raise InvalidInput(
            f"unknown status {status!r}",
            [FieldError("query:status", "open, accepted, rejected, superseded or all")],
        ) from exc
    items, total = service.get_candidates(
        session, status=wanted, institution_id=_own(caller), limit=limit, offset=offset
    )
    records = service.patient_summaries(
        session, patient_ids=[p for c in items for p in (c.patient_a, c.patient_b)]
    )
    audit.record(
        session,
        actor=caller,
        action=AuditAction.READ,
        entity_type="identity_candidate",
        entity_id=None,
        entity_institution=caller.institution_id,
        detail=f"review queue ({status}): {len(items)} of {total} pairs",
    )
    return {
        "items": [service.candidate_to_dict(c, records) for c in items],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/candidates/{id}", summary="One candidate pair with both records")
def get_candidate(id: int, session: DbSession, caller: Caller) -> dict[str, Any]:
    row = service.access_candidate_by_id(session, caller, id)
    records = service.patient_summaries(session, patient_ids=[row.patient_a, row.patient_b])
    _read_audit(
        session, caller, "identity_candidate", str(id), {row.institution_a, row.institution_b}
    )
    return service.candidate_to_dict(row, records)


@router.post("/candidates/{id}/accept", summary="The pair is one person: merge them")
def accept_candidate(id: int, body: Decision, session: DbSession, caller: Caller) -> dict[str, Any]:
    row, event = actions.do_accept_candidate(session, actor=caller, id=id, note=body.note)
    return {
        "candidate": service.candidate_to_dict(row),
        "merge": service.history_to_dict(event) if event else None,
        "person_id": service.person_of(session, patient_id=row.patient_a),
    }


@router.post("/candidates/{id}/reject", summary="The pair are different people")
def reject_candidate(id: int, body: Decision, session: DbSession, caller: Caller) -> dict[str, Any]:
    row = actions.do_reject_candidate(session, actor=caller, id=id, note=body.note)
    return {"candidate": service.candidate_to_dict(row)}


# -- persons, merge, unmerge ----------------------------------------------------------------------


@router.get("/persons", summary="Persons of the index (a member's user: of their member)")
def list_persons(
    session: DbSession,
    caller: Caller,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    """Active persons, most recently changed first. A member's user sees the persons with a
    record at their member (with every member's record of them); the consortium sees all."""
    caller.require_scope("Identity", "read")
    items, total = service.get_persons(
        session, institution_id=_own(caller), limit=limit, offset=offset
    )
    out = [service.person_to_dict(session, p, with_history=False) for p in items]
    audit.record(
        session,
        actor=caller,
        action=AuditAction.READ,
        entity_type="person",
        entity_id=None,
        entity_institution=caller.institution_id,
        detail=f"persons: {len(items)} of {total}",
    )
    return {"items": out, "total": total, "limit": limit, "offset": offset}


@router.get("/persons/{person_id}", summary="A person with every member's record and history")
def get_person(person_id: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    person = service.access_person_by_id(session, caller, person_id)
    out = service.person_to_dict(session, person)
    out["consent"] = consent_service.to_dict(
        person.id, consent_service.get(session, person_id=person.id)
    )
    _read_audit(session, caller, "person", person.id, set(out["institutions"]))
    return out


@router.get("/patients/{patient_id}/person", summary="The person a patient record belongs to")
def get_person_of_patient(patient_id: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    caller.require_scope("Identity", "read")
    person_id = service.person_of(session, patient_id=patient_id)
    if person_id is None:
        if service.patient_institution(session, patient_id=patient_id) is None:
            raise NotFound("patient", patient_id)
        raise NotFound("linked patient record (run `carepool identity link` first)", patient_id)
    return get_person(person_id, session, caller)


@router.post("/merge", status_code=201, summary="Merge two persons (a steward's decision)")
def merge(body: MergeRequest, session: DbSession, caller: Caller) -> dict[str, Any]:
    event = actions.do_merge_persons(
        session, actor=caller, survivor_id=body.survivor, other_id=body.other, reason=body.reason
    )
    return service.history_to_dict(event)


@router.post("/history/{history_id}/unmerge", status_code=201, summary="Undo a merge")
def unmerge(history_id: int, body: Reason, session: DbSession, caller: Caller) -> dict[str, Any]:
    event = actions.do_unmerge(session, actor=caller, history_id=history_id, reason=body.reason)
    return service.history_to_dict(event)


@router.post(
    "/patients/{patient_id}/detach", status_code=201, summary="Take a record out of its person"
)
def detach(patient_id: str, body: Reason, session: DbSession, caller: Caller) -> dict[str, Any]:
    event = actions.do_detach_record(
        session, actor=caller, patient_id=patient_id, reason=body.reason
    )
    return service.history_to_dict(event)


# -- consent --------------------------------------------------------------------------------------


@router.get("/persons/{person_id}/consent", summary="The person's consent to share")
def get_consent(person_id: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    if not caller.has_scope("Consent", "read"):
        caller.require_scope("Consent", "write")
    person = service.resolve(session, person_id=person_id)
    members = {m for _p, m in service.records_of(session, person_id=person.id)}
    service.require_involved(caller, members, f"the consent of {person.id}")
    _read_audit(session, caller, "consent", person.id, members)
    return consent_service.to_dict(person.id, consent_service.get(session, person_id=person.id))


@router.put("/persons/{person_id}/consent", summary="Record the person's consent to share")
def put_consent(
    person_id: str, body: ConsentRequest, session: DbSession, caller: Caller
) -> dict[str, Any]:
    person, row = actions.do_set_person_consent(
        session, actor=caller, person_id=person_id, sharing=body.sharing, note=body.note
    )
    return consent_service.to_dict(person.id, row)
