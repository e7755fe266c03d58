"""Writes of data quality: runs (a job), threshold overrides, feed schedules, alerts.

`do_run_quality` is a long job like an ingest run: it takes a session *factory*, commits the run
row first (so it can be followed), records progress after every check in short transactions, and
stores results, scores, alerts, outbox events and one audit row in one final transaction. The
checks read the store through Ibis on their own connection (or a Parquet export on DuckDB).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from carepool.core import audit, events
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal
from carepool.core.db import transaction
from carepool.core.errors import FieldError, InvalidInput
from carepool.core.time import ensure_utc, utcnow
from carepool.quality import service
from carepool.quality.config import RunConfig
from carepool.quality.models import (
    ALL_MEMBERS,
    AlertKind,
    AlertStatus,
    FeedSchedule,
    QualityAlert,
    QualityResult,
    QualityRun,
    QualityRunStatus,
    QualityScore,
    QualityThreshold,
)

if TYPE_CHECKING:
    from carepool.quality.checks import Check, Tables
    from carepool.quality.evaluate import CheckResult

ProgressFn = Callable[[int, int, str], None]

FEED_LATE_CHECK = "feed.late"
MEMBER_STALE_CHECK = "member.stale"


def _require_runner(actor: Principal, member: str | None) -> None:
    actor.require_scope("Quality", "write")
    if member is None:
        actor.require_institution(None, "a consortium-wide quality run")
    else:
        actor.require_institution(member, f"the quality run of {member}")


def _url_of(factory: sessionmaker[Session]) -> str:
    with factory() as session:
        bind = session.get_bind()
        return bind.engine.url.render_as_string(hide_password=False)


def selected_checks(config: RunConfig) -> list[Check]:
    from carepool.quality.checks import all_checks

    return [c for c in all_checks() if c.id not in config.disabled]


def do_run_quality(
    factory: sessionmaker[Session],
    *,
    actor: Principal,
    member: str | None = None,
    channel: str = "cli",
    config: RunConfig | None = None,
    tables: Tables | None = None,
    backend: str | None = None,
    as_of: datetime | None = None,
    progress: ProgressFn | None = None,
) -> QualityRun:
    """Run the suite over every member (or `member`'s records), store it, raise alerts.

    `tables` runs the suite elsewhere (a Parquet export on DuckDB); by default it reads the
    store behind `factory`. `as_of` is the time timeliness is measured against (default: now).
    Returns the finished run (status `failed` with the error if the suite itself broke).
    """
    from carepool.quality import checks as checks_mod
    from carepool.quality import evaluate, sources

    _require_runner(actor, member)
    now = ensure_utc(as_of) if as_of is not None else utcnow()
    with transaction(factory) as session:
        settings = (config or RunConfig()).merged_over(service.get_threshold_config(session))
        suite = selected_checks(settings)
        run = QualityRun(
            id=f"qr-{uuid.uuid4().hex[:20]}",
            institution_id=member,
            actor=actor.username,
            channel=channel,
            status=QualityRunStatus.RUNNING,
            backend=backend or "",
            started_at=utcnow(),
            as_of=now,
            checks_total=len(suite),
            settings=settings.as_dict(),
        )
        session.add(run)
    con = None
    try:
        if tables is None:
            con = sources.connect(_url_of(factory))
            tables = sources.load_tables(con)
            backend = sources.backend_name(con)
        known = {f.name for f in fields(checks_mod.Params)}
        params = checks_mod.Params(
            now=now,
            analytes=evaluate.seed_analytes(),
            valid_units=evaluate.valid_units(tables),
            **{k: v for k, v in settings.params.items() if k in known},  # type: ignore[arg-type]
        )
        done = 0

        def step(check: Check, _results: list[CheckResult]) -> None:
            nonlocal done
            done += 1
            with transaction(factory) as s:
                row = s.get(QualityRun, run.id)
                assert row is not None
                row.checks_done = done
            if progress is not None:
                progress(done, len(suite), check.id)

        results = evaluate.run_suite(
            suite, tables, params, thresholds=settings.thresholds, member=member, progress=step
        )
    except Exception as exc:
        with transaction(factory) as session:
            row = session.get(QualityRun, run.id)
            assert row is not None
            row.status = QualityRunStatus.FAILED
            row.error = f"{type(exc).__name__}: {exc}"[:4000]
            row.finished_at = utcnow()
            row.backend = backend or row.backend
            audit.record(
                session,
                actor=actor,
                action=AuditAction.EXECUTE,
                entity_type="quality_run",
                entity_id=run.id,
                entity_institution=member,
                outcome=audit.AuditOutcome.FAILED,
                detail=row.error[:500],
                source=channel,
            )
            return row
    finally:
        if con is not None:
            con.disconnect()
    with transaction(factory) as session:
        row = session.get(QualityRun, run.id)
        assert row is not None
        _store(session, row, results, member=member, alert_drop=settings.alert_drop)
        row.backend = backend or row.backend
        audit.record(
            session,
            actor=actor,
            action=AuditAction.EXECUTE,
            entity_type="quality_run",
            entity_id=row.id,
            entity_institution=member,
            after={
                "checks": row.checks_total,
                "failed": row.checks_failed,
                "backend": row.backend,
            },
            source=channel,
        )
        return row


def _store(
    session: Session,
    run: QualityRun,
    results: list[CheckResult],
    *,
    member: str | None,
    alert_drop: float,
) -> None:
    from carepool.quality.scoring import scores

    for r in results:
        session.add(
            QualityResult(
                run_id=run.id,
                check_id=r.check.id,
                institution_id=r.member,
                category=r.check.category.value,
                subcategory=r.check.subcategory,
                target=r.check.target,
                severity=r.check.severity.value,
                threshold=r.threshold,
                failing=r.failing,
                denominator=r.denominator,
                percent=r.percent,
                passed=r.passed,
                sample=r.sample,
                error=r.error,
                seconds=r.seconds,
            )
        )
    measured = scores(r for r in results if member is None or r.member != ALL_MEMBERS)
    for s in measured:
        session.add(
            QualityScore(
                run_id=run.id,
                institution_id=s.member,
                category=s.category,
                measured_at=run.as_of,
                score=s.score,
                checks_passed=s.checks_passed,
                checks_total=s.checks_total,
            )
        )
    totals = [r for r in results if r.member == ALL_MEMBERS]
    run.checks_failed = sum(not r.passed for r in totals)
    run.checks_done = run.checks_total
    run.status = QualityRunStatus.SUCCEEDED
    run.finished_at = utcnow()
    session.flush()
    alerts = _score_alerts(session, run, measured, alert_drop)
    alerts += _timeliness_alerts(session, run, results, member)
    session.flush()
    for alert in alerts:
        events.emit(
            session,
            type="quality.alert_raised",
            entity_type="quality_alert",
            entity_id=str(alert.id),
            institution_id=alert.institution_id,
            payload={"kind": alert.kind.value, "key": alert.key, "run_id": run.id},
        )
    events.emit(
        session,
        type="quality.run_finished",
        entity_type="quality_run",
        entity_id=run.id,
        institution_id=member,
        payload={"checks": run.checks_total, "failed": run.checks_failed, "alerts": len(alerts)},
    )


def _score_alerts(
    session: Session, run: QualityRun, measured: list[Any], alert_drop: float
) -> list[QualityAlert]:
    """An alert per member and category whose score fell by `alert_drop` points or more since
    the member's previous run (the overall score averages categories and would hide it)."""
    out = []
    for s in measured:
        if s.category == service.OVERALL or s.member == ALL_MEMBERS:
            continue
        before = service.get_previous_score(
            session, institution_id=s.member, category=s.category, before_run=run.id
        )
        if before is None or before - s.score < alert_drop:
            continue
        alert = QualityAlert(
            kind=AlertKind.SCORE_DROP,
            institution_id=s.member,
            key=s.category,
            run_id=run.id,
            message=f"{s.member}'s {s.category} score dropped from {before:.1f} to {s.score:.1f}",
            detail={"category": s.category, "before": round(before, 2), "after": round(s.score, 2)},
            created_at=utcnow(),
        )
        session.add(alert)
        out.append(alert)
    return out


def _timeliness_alerts(
    session: Session, run: QualityRun, results: list[CheckResult], member: str | None
) -> list[QualityAlert]:
    """Open an alert per late feed and stale member; resolve those that are on time again."""
    out = []
    for check_id, kind in (
        (FEED_LATE_CHECK, AlertKind.FEED_LATE),
        (MEMBER_STALE_CHECK, AlertKind.MEMBER_STALE),
    ):
        ran = [r for r in results if r.check.id == check_id and r.member != ALL_MEMBERS]
        if not ran and not any(r.check.id == check_id for r in results):
            continue  # disabled: say nothing either way
        failing = {(r.member, key) for r in ran for key in r.sample}
        for m, key in sorted(failing):
            if service.get_active_alert(session, kind=kind, institution_id=m, key=key):
                continue
            what = (
                f"feed {key.split('/', 1)[-1]} of {m} is late"
                if kind is AlertKind.FEED_LATE
                else f"{m} has sent nothing recently"
            )
            alert = QualityAlert(
                kind=kind,
                institution_id=m,
                key=key,
                run_id=run.id,
                message=what,
                detail={"check": check_id},
                created_at=utcnow(),
            )
            session.add(alert)
            out.append(alert)
        for alert in service.get_alerts(session, institution_id=member, status=None, limit=10_000):
            if (
                alert.kind is kind
                and alert.status is not AlertStatus.RESOLVED
                and (alert.institution_id, alert.key) not in failing
            ):
                alert.status = AlertStatus.RESOLVED
                alert.resolved_at = utcnow()
    return out


# -- settings -------------------------------------------------------------------------------------


def do_set_threshold(
    session: Session,
    *,
    actor: Principal,
    check_id: str,
    threshold: float | None = None,
    enabled: bool | None = None,
    note: str = "",
    source: str = "api",
) -> QualityThreshold:
    """Override one check's threshold (percent) or switch it off, for the whole consortium."""
    from carepool.quality.checks import REGISTRY

    actor.require_scope("Quality", "write")
    actor.require_institution(None, "consortium-wide quality thresholds")
    if check_id not in REGISTRY:
        raise InvalidInput(f"no check {check_id!r}", [FieldError("check_id", "not a check id")])
    if threshold is not None and not 0 <= threshold <= 100:
        raise InvalidInput(
            "a threshold is a percent from 0 to 100", [FieldError("threshold", "0 to 100")]
        )
    row = session.get(QualityThreshold, check_id)
    before = {"threshold": row.threshold, "enabled": row.enabled} if row is not None else None
    if row is None:
        row = QualityThreshold(check_id=check_id, enabled=True)
        session.add(row)
    if threshold is not None:
        row.threshold = float(threshold)
    if enabled is not None:
        row.enabled = enabled
    row.note = note[:300]
    row.updated_at = utcnow()
    row.updated_by = actor.username
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="quality_threshold",
        entity_id=check_id,
        before=before,
        after={"threshold": row.threshold, "enabled": row.enabled},
        source=source,
    )
    session.flush()
    return row


def do_set_feed_schedule(
    session: Session,
    *,
    actor: Principal,
    institution_id: str,
    feed: str,
    every_minutes: int | None,
    note: str = "",
    source: str = "api",
) -> FeedSchedule | None:
    """Agree how often a member's feed must deliver (`every_minutes` None: drop the schedule)."""
    actor.require_scope("Quality", "write")
    actor.require_institution(institution_id, f"the feed schedule of {institution_id}")
    feed = feed.strip()
    if not feed:
        raise InvalidInput(
            "name the feed (hl7v2, fhir, csv, or * for any)", [FieldError("feed", "empty")]
        )
    if every_minutes is not None and every_minutes <= 0:
        raise InvalidInput("the interval must be positive", [FieldError("every_minutes", "> 0")])
    rows = service.get_feed_schedules(session, institution_id=institution_id)
    row = next((r for r in rows if r.feed == feed), None)
    before = {"every_minutes": row.every_minutes} if row is not None else None
    if every_minutes is None:
        if row is not None:
            session.delete(row)
    else:
        if row is None:
            row = FeedSchedule(
                institution_id=institution_id, feed=feed, every_minutes=every_minutes
            )
            session.add(row)
        row.every_minutes = every_minutes
        row.note = note[:300]
        row.updated_at = utcnow()
        row.updated_by = actor.username
    audit.record(
        session,
        actor=actor,
        action=AuditAction.DELETE if every_minutes is None else AuditAction.UPDATE,
        entity_type="feed_schedule",
        entity_id=f"{institution_id}/{feed}",
        entity_institution=institution_id,
        before=before,
        after={"every_minutes": every_minutes} if every_minutes is not None else None,
        source=source,
    )
    session.flush()
    return row if every_minutes is not None else None


def do_acknowledge_alert(
    session: Session, *, actor: Principal, id: int, source: str = "api"
) -> QualityAlert:
    actor.require_scope("Quality", "write")
    alert = service.get_alert(session, id=id)
    actor.require_institution(alert.institution_id, f"quality alert {id}")
    before = alert.status.value
    if alert.status is AlertStatus.OPEN:
        alert.status = AlertStatus.ACKNOWLEDGED
        alert.acknowledged_by = actor.username
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="quality_alert",
        entity_id=str(id),
        entity_institution=alert.institution_id,
        before={"status": before},
        after={"status": alert.status.value},
        source=source,
    )
    session.flush()
    return alert


def export_parquet(
    url: str, directory: Any, *, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Write the normalised record tables of the store at `url` to Parquet files in `directory`."""
    from pathlib import Path

    from carepool.quality import sources

    con = sources.connect(url)
    try:
        return sources.export_parquet(sources.load_tables(con), Path(directory), progress=progress)
    finally:
        con.disconnect()
