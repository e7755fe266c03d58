"""HTTP routes of data quality under /api/v1/quality: checks, runs, scorecards, alerts, settings.

Reading needs `user/Quality.read` (writing `user/Quality.write`). A member's user sees its own
member's results and record samples plus the consortium totals; the scorecard ranking of all
members is open to every reader (scores carry no patient data). Reads of results are audited:
their samples name records.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from carepool.api.deps import Caller, DbSession, session_factory
from carepool.core import audit
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput
from carepool.quality import actions, service
from carepool.quality.config import RunConfig
from carepool.quality.models import ALL_MEMBERS, AlertStatus

router = APIRouter(tags=["quality"])


def _reader(caller: Principal) -> str | None:
    """Require Quality.read; the member whose rows the caller may see (None: every member)."""
    caller.require_scope("Quality", "read")
    return None if caller.consortium_wide else caller.institution_id


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member: str | None = Field(None, description="Only this member's records (default: all)")
    thresholds: dict[str, float] = Field(default_factory=dict)
    disabled: list[str] = Field(default_factory=list)


class ThresholdUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float | None = Field(None, ge=0, le=100)
    enabled: bool | None = None
    note: str = ""


class ScheduleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    every_minutes: int | None = Field(..., gt=0, description="None removes the schedule")
    note: str = ""


@router.get("/quality/checks", summary="The check registry with the thresholds in force")
def list_checks(session: DbSession, caller: Caller) -> dict[str, Any]:
    from carepool.quality.checks import all_checks

    _reader(caller)
    config = service.get_threshold_config(session)
    items = []
    for c in all_checks():
        item = c.as_dict(config.thresholds.get(c.id))
        item["enabled"] = c.id not in config.disabled
        items.append(item)
    return {"items": items, "total": len(items)}


@router.put("/quality/checks/{check_id}", summary="Override a check's threshold or switch it off")
def put_threshold(
    check_id: str, body: ThresholdUpdate, session: DbSession, caller: Caller
) -> dict[str, Any]:
    row = actions.do_set_threshold(
        session,
        actor=caller,
        check_id=check_id,
        threshold=body.threshold,
        enabled=body.enabled,
        note=body.note,
    )
    return {"check_id": row.check_id, "threshold": row.threshold, "enabled": row.enabled}


@router.post("/quality/runs", status_code=201, summary="Run the check suite now")
async def post_run(request: Request, body: RunRequest, caller: Caller) -> dict[str, Any]:
    from carepool.quality.checks import REGISTRY

    bad = [c for c in [*body.thresholds, *body.disabled] if c not in REGISTRY]
    if bad:
        raise InvalidInput(
            "unknown check(s)", [FieldError(f"body:{c}", "not a check id") for c in bad]
        )
    config = RunConfig(thresholds=dict(body.thresholds), disabled=set(body.disabled))
    run = await run_in_threadpool(
        actions.do_run_quality,
        session_factory(request),
        actor=caller,
        member=body.member,
        channel="api",
        config=config,
    )
    return service.run_to_dict(run)


@router.get("/quality/runs", summary="Quality runs, newest first")
def list_runs(
    session: DbSession,
    caller: Caller,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    own = _reader(caller)
    items, total = service.get_runs(session, institution_id=own, limit=limit, offset=offset)
    return {
        "items": [service.run_to_dict(r) for r in items],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


def _visible_run(session: Any, caller: Principal, run_id: str) -> tuple[Any, set[str] | None]:
    own = _reader(caller)
    run = service.get_run(session, id=run_id)
    if own is not None and run.institution_id not in (None, own):
        caller.require_institution(run.institution_id, f"quality run {run_id}")
    return run, ({own, ALL_MEMBERS} if own is not None else None)


@router.get("/quality/runs/{run_id}", summary="One run with its results and scores")
def get_run(
    run_id: str,
    session: DbSession,
    caller: Caller,
    member: str | None = Query(None, description="Only this member's results"),
) -> dict[str, Any]:
    run, members = _visible_run(session, caller, run_id)
    if member is not None:
        if members is not None and member not in members:
            caller.require_institution(member, f"the quality results of {member}")
        members = {member}
    results = service.get_results(session, run_id=run_id, members=members)
    scores = [
        s
        for s in service.get_run_scores(session, run_id=run_id)
        if members is None or s.institution_id in members
    ]
    audit.record(
        session,
        actor=caller,
        action=AuditAction.READ,
        entity_type="quality_run",
        entity_id=run_id,
        entity_institution=caller.institution_id if members is not None else None,
        detail=f"{len(results)} result(s)",
    )
    return {
        **service.run_to_dict(run),
        "results": [service.result_to_dict(r) for r in results],
        "scores": [service.score_to_dict(s) for s in scores],
    }


@router.get(
    "/quality/runs/{run_id}/report.html",
    response_class=HTMLResponse,
    summary="A run as a self-contained HTML report",
)
def get_report(run_id: str, session: DbSession, caller: Caller) -> HTMLResponse:
    from carepool.quality.report import render_run

    run, members = _visible_run(session, caller, run_id)
    results = service.get_results(session, run_id=run_id, members=members)
    scores = [
        s
        for s in service.get_run_scores(session, run_id=run_id)
        if members is None or s.institution_id in members
    ]
    audit.record(
        session,
        actor=caller,
        action=AuditAction.READ,
        entity_type="quality_run",
        entity_id=run_id,
        entity_institution=caller.institution_id if members is not None else None,
        detail="html report",
    )
    return HTMLResponse(render_run(run, results, scores))


@router.get("/quality/scorecard", summary="Every member's latest score, ranked")
def consortium_scorecard(session: DbSession, caller: Caller) -> dict[str, Any]:
    _reader(caller)
    return service.get_consortium_scorecard(session)


@router.get("/quality/scorecard/{member}", summary="One member's scores by category over time")
def member_scorecard(
    member: str, session: DbSession, caller: Caller, limit: int = Query(30, ge=1, le=500)
) -> dict[str, Any]:
    own = _reader(caller)
    if own is not None and member not in (own, ALL_MEMBERS):
        caller.require_institution(member, f"the quality history of {member}")
    return service.get_scorecard(session, institution_id=member, limit=limit)


@router.get("/quality/alerts", summary="Quality alerts (open ones by default)")
def list_alerts(
    session: DbSession,
    caller: Caller,
    status: str = Query("open", description="open, acknowledged, resolved or all"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    own = _reader(caller)
    try:
        wanted = None if status == "all" else AlertStatus(status)
    except ValueError as exc:
        raise InvalidInput(
            f"unknown status {status!r}", [FieldError("query:status", "open, resolved, ...")]
        ) from exc
    items = service.get_alerts(session, institution_id=own, status=wanted, limit=limit)
    return {"items": [service.alert_to_dict(a) for a in items], "total": len(items)}


@router.post("/quality/alerts/{id}/acknowledge", summary="Acknowledge an alert")
def acknowledge_alert(id: int, session: DbSession, caller: Caller) -> dict[str, Any]:
    return service.alert_to_dict(actions.do_acknowledge_alert(session, actor=caller, id=id))


@router.get("/quality/feed-schedules", summary="Agreed delivery intervals per member and feed")
def list_schedules(session: DbSession, caller: Caller) -> dict[str, Any]:
    own = _reader(caller)
    items = service.get_feed_schedules(session, institution_id=own)
    return {"items": [service.schedule_to_dict(r) for r in items], "total": len(items)}


@router.put("/quality/feed-schedules/{member}/{feed}", summary="Agree (or drop) a feed's interval")
def put_schedule(
    member: str, feed: str, body: ScheduleUpdate, session: DbSession, caller: Caller
) -> dict[str, Any]:
    row = actions.do_set_feed_schedule(
        session,
        actor=caller,
        institution_id=member,
        feed=feed,
        every_minutes=body.every_minutes,
        note=body.note,
    )
    return service.schedule_to_dict(row) if row else {"member": member, "feed": feed}
