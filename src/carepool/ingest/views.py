"""HTTP routes of ingest under /api/v1: post a feed, follow runs, work dead letters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from carepool.api.deps import Caller, DbSession, session_factory
from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput
from carepool.ingest import actions, service
from carepool.ingest.models import DeadLetterStatus

router = APIRouter(tags=["ingest"])

MAX_BODY = 256 * 1024 * 1024


def _read_scope(caller: Principal) -> str | None:
    """Ingest.read (or .write); members see their own runs, the consortium sees all."""
    if not caller.has_scope("Ingest", "read"):
        caller.require_scope("Ingest", "write")
    return None if caller.consortium_wide else caller.institution_id


@router.post(
    "/ingest",
    status_code=201,
    summary="Ingest a feed (the request body is the file: HL7 v2, FHIR R4 JSON/NDJSON or CSV)",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "text/plain": {"schema": {"type": "string"}},
                "application/fhir+json": {"schema": {"type": "object"}},
            },
            "required": True,
        }
    },
)
async def post_ingest(
    request: Request,
    response: Response,
    caller: Caller,
    source: str = Query(..., description="The member (institution id) that sent the feed"),
    format: str | None = Query(None, description="hl7v2, fhir or csv (default: detected)"),
    mapping: str | None = Query(None, description="CSV: a shipped mapping name (synthea)"),
    filename: str = Query("request", description="The file's name (CSV tables are told by it)"),
    encoding: str | None = Query(
        None, description="The character set the source declared (gb18030, ...; default: detected)"
    ),
) -> dict[str, Any]:
    """Run an ingest over the body as member `source`; answers with the run's summary.

    Needs `user/Ingest.write` and, for a member's user, that `source` is the user's member.
    """
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidInput(f"the body is larger than {MAX_BODY} bytes; split the feed")
    if not body:
        raise InvalidInput("the body is empty", [FieldError("body", "send the feed's bytes")])
    factory = session_factory(request)
    summary = await run_in_threadpool(
        actions.do_ingest,
        factory,
        actor=caller,
        institution_id=source,
        inputs=[actions.Input(name=filename, data=body)],
        format=format,
        mapping=mapping,
        encoding=encoding,
        channel="api",
    )
    response.headers["Location"] = f"/api/v1/ingest/runs/{summary.run_id}"
    answer = summary.as_dict()
    if summary.status == "succeeded":
        # the patients it stored are matched against the index on arrival
        answer["linking"] = await run_in_threadpool(
            actions.do_link_run, factory, run_id=summary.run_id
        )
    return answer


@router.get("/ingest/runs", summary="Ingest runs, newest first")
def list_runs(
    session: DbSession,
    caller: Caller,
    source: str | None = Query(None),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    own = _read_scope(caller)
    items, total = service.get_runs(
        session, institution_id=own or source, limit=limit, offset=offset
    )
    return {
        "items": [service.run_to_dict(r) for r in items],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/ingest/runs/{run_id}", summary="One run with its progress and counters")
def get_run(run_id: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    own = _read_scope(caller)
    run = service.get_run(session, id=run_id)
    caller.require_institution(run.institution_id, f"ingest run {run_id}") if own else None
    return service.run_to_dict(run)


@router.get("/ingest/dead-letters", summary="Dead letters (open ones by default)")
def list_dead_letters(
    session: DbSession,
    caller: Caller,
    source: str | None = Query(None),
    status: str = Query("open", description="open, resolved, discarded or all"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    own = _read_scope(caller)
    try:
        wanted = None if status == "all" else DeadLetterStatus(status)
    except ValueError as exc:
        raise InvalidInput(
            f"unknown status {status!r}", [FieldError("query:status", "open, resolved, ...")]
        ) from exc
    items, total = service.get_dead_letters(
        session, institution_id=own or source, status=wanted, limit=limit, offset=offset
    )
    return {
        "items": [service.dead_letter_to_dict(r) for r in items],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/ingest/dead-letters/{id}", summary="One dead letter with its original bytes")
def get_dead_letter(id: int, session: DbSession, caller: Caller) -> dict[str, Any]:
    own = _read_scope(caller)
    row = service.get_dead_letter(session, id=id)
    if own:
        caller.require_institution(row.institution_id, f"dead letter {id}")
    return service.dead_letter_to_dict(row, with_raw=True)


@router.post("/ingest/dead-letters/{id}/retry", summary="Feed a dead letter through again")
async def retry_dead_letter(id: int, request: Request, caller: Caller) -> dict[str, Any]:
    letter, summary = await run_in_threadpool(
        actions.do_retry_dead_letter,
        session_factory(request),
        actor=caller,
        id=id,
        channel="api",
    )
    return {"dead_letter": service.dead_letter_to_dict(letter), "run": summary.as_dict()}


@router.post("/ingest/dead-letters/{id}/discard", summary="Mark a dead letter as not to retry")
def discard_dead_letter(id: int, session: DbSession, caller: Caller) -> dict[str, Any]:
    row = actions.do_discard_dead_letter(session, actor=caller, id=id, channel="api")
    return service.dead_letter_to_dict(row)
