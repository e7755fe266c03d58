"""Reads of data quality: runs and their results, scorecards over time, alerts, settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carepool.core.errors import NotFound
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

OVERALL = "overall"


def get_run(session: Session, *, id: str) -> QualityRun:
    run = session.get(QualityRun, id)
    if run is None:
        raise NotFound("quality run", id)
    return run


def get_runs(
    session: Session, *, institution_id: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[QualityRun], int]:
    """Runs, newest first; with `institution_id`, the consortium's runs and that member's."""
    stmt = select(QualityRun)
    if institution_id is not None:
        stmt = stmt.where(
            (QualityRun.institution_id == institution_id) | QualityRun.institution_id.is_(None)
        )
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    stmt = stmt.order_by(QualityRun.started_at.desc(), QualityRun.id).limit(limit).offset(offset)
    return list(session.scalars(stmt)), int(total)


def get_results(
    session: Session, *, run_id: str, members: set[str] | None = None
) -> list[QualityResult]:
    """A run's results in check order; `members` limits them (with `*` for the totals)."""
    stmt = select(QualityResult).where(QualityResult.run_id == run_id)
    if members is not None:
        stmt = stmt.where(QualityResult.institution_id.in_(sorted(members)))
    return list(session.scalars(stmt.order_by(QualityResult.id)))


def get_run_scores(session: Session, *, run_id: str) -> list[QualityScore]:
    stmt = select(QualityScore).where(QualityScore.run_id == run_id)
    return list(session.scalars(stmt.order_by(QualityScore.institution_id, QualityScore.category)))


def get_scorecard(session: Session, *, institution_id: str, limit: int = 30) -> dict[str, Any]:
    """One member's scores by category over its last `limit` runs, oldest first."""
    runs = list(
        session.execute(
            select(QualityScore.run_id, QualityScore.measured_at)
            .where(QualityScore.institution_id == institution_id, QualityScore.category == OVERALL)
            .order_by(QualityScore.measured_at.desc(), QualityScore.run_id.desc())
            .limit(limit)
        )
    )
    run_ids = [r.run_id for r in runs]
    rows = list(
        session.scalars(
            select(QualityScore).where(
                QualityScore.institution_id == institution_id, QualityScore.run_id.in_(run_ids)
            )
        )
    )
    by_run: dict[str, dict[str, Any]] = {}
    for s in rows:
        entry = by_run.setdefault(
            s.run_id,
            {"run_id": s.run_id, "measured_at": s.measured_at.isoformat(), "categories": {}},
        )
        entry["categories"][s.category] = {
            "score": round(s.score, 2),
            "checks_passed": s.checks_passed,
            "checks_total": s.checks_total,
        }
    history = sorted(by_run.values(), key=lambda e: (e["measured_at"], e["run_id"]))
    latest = history[-1] if history else None
    return {"member": institution_id, "latest": latest, "history": history}


def get_consortium_scorecard(session: Session) -> dict[str, Any]:
    """Every member's latest scores, ranked by overall score (best first), and the consortium's."""
    latest_at = (
        select(
            QualityScore.institution_id.label("member"),
            func.max(QualityScore.measured_at).label("at"),
        )
        .where(QualityScore.category == OVERALL)
        .group_by(QualityScore.institution_id)
        .subquery()
    )
    rows = list(
        session.scalars(
            select(QualityScore).join(
                latest_at,
                (QualityScore.institution_id == latest_at.c.member)
                & (QualityScore.measured_at == latest_at.c.at),
            )
        )
    )
    members: dict[str, dict[str, Any]] = {}
    for s in rows:
        entry = members.setdefault(
            s.institution_id,
            {
                "member": s.institution_id,
                "run_id": s.run_id,
                "measured_at": s.measured_at.isoformat(),
                "categories": {},
            },
        )
        entry["categories"][s.category] = round(s.score, 2)
    consortium = members.pop(ALL_MEMBERS, None)
    ranked = sorted(
        members.values(), key=lambda e: (-e["categories"].get(OVERALL, 0.0), e["member"])
    )
    for i, entry in enumerate(ranked, start=1):
        entry["rank"] = i
    return {"consortium": consortium, "members": ranked}


def get_previous_score(
    session: Session, *, institution_id: str, category: str, before_run: str
) -> float | None:
    """The member's score in `category` at its latest run other than `before_run`."""
    stmt = (
        select(QualityScore.score)
        .join(QualityRun, QualityRun.id == QualityScore.run_id)
        .where(
            QualityScore.institution_id == institution_id,
            QualityScore.category == category,
            QualityScore.run_id != before_run,
            QualityRun.status == QualityRunStatus.SUCCEEDED,
        )
        .order_by(QualityScore.measured_at.desc(), QualityScore.id.desc())
        .limit(1)
    )
    value = session.scalar(stmt)
    return float(value) if value is not None else None


def get_threshold_config(session: Session) -> RunConfig:
    """The overrides stored in the database, as a run config."""
    config = RunConfig()
    for row in session.scalars(select(QualityThreshold)):
        if row.threshold is not None:
            config.thresholds[row.check_id] = row.threshold
        if not row.enabled:
            config.disabled.add(row.check_id)
    return config


def get_feed_schedules(
    session: Session, *, institution_id: str | None = None
) -> list[FeedSchedule]:
    stmt = select(FeedSchedule)
    if institution_id is not None:
        stmt = stmt.where(FeedSchedule.institution_id == institution_id)
    return list(session.scalars(stmt.order_by(FeedSchedule.institution_id, FeedSchedule.feed)))


def get_alert(session: Session, *, id: int) -> QualityAlert:
    alert = session.get(QualityAlert, id)
    if alert is None:
        raise NotFound("quality alert", str(id))
    return alert


def get_alerts(
    session: Session,
    *,
    institution_id: str | None = None,
    status: AlertStatus | None = AlertStatus.OPEN,
    limit: int = 100,
) -> list[QualityAlert]:
    stmt = select(QualityAlert)
    if institution_id is not None:
        stmt = stmt.where(QualityAlert.institution_id == institution_id)
    if status is not None:
        stmt = stmt.where(QualityAlert.status == status)
    return list(session.scalars(stmt.order_by(QualityAlert.id.desc()).limit(limit)))


def get_active_alert(
    session: Session, *, kind: AlertKind, institution_id: str, key: str
) -> QualityAlert | None:
    stmt = select(QualityAlert).where(
        QualityAlert.kind == kind,
        QualityAlert.institution_id == institution_id,
        QualityAlert.key == key,
        QualityAlert.status != AlertStatus.RESOLVED,
    )
    return session.scalars(stmt.limit(1)).first()


# -- shapes ---------------------------------------------------------------------------------------


def run_to_dict(run: QualityRun) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "member": run.institution_id,
        "actor": run.actor,
        "channel": run.channel,
        "status": run.status.value,
        "backend": run.backend,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "as_of": run.as_of.isoformat(),
        "checks_total": run.checks_total,
        "checks_done": run.checks_done,
        "checks_failed": run.checks_failed,
        "progress": round(run.checks_done / run.checks_total, 4) if run.checks_total else 0.0,
        "settings": run.settings,
        "error": run.error,
    }


def result_to_dict(row: QualityResult) -> dict[str, Any]:
    return {
        "check_id": row.check_id,
        "member": row.institution_id,
        "category": row.category,
        "subcategory": row.subcategory,
        "target": row.target,
        "severity": row.severity,
        "threshold": row.threshold,
        "failing": row.failing,
        "denominator": row.denominator,
        "percent": round(row.percent, 4),
        "passed": row.passed,
        "sample": list(row.sample or []),
        "error": row.error,
        "seconds": round(row.seconds, 3),
    }


def score_to_dict(row: QualityScore) -> dict[str, Any]:
    return {
        "member": row.institution_id,
        "category": row.category,
        "score": round(row.score, 2),
        "checks_passed": row.checks_passed,
        "checks_total": row.checks_total,
        "measured_at": row.measured_at.isoformat(),
    }


def alert_to_dict(row: QualityAlert) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind.value,
        "member": row.institution_id,
        "key": row.key,
        "run_id": row.run_id,
        "status": row.status.value,
        "message": row.message,
        "detail": row.detail,
        "created_at": row.created_at.isoformat(),
        "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
        "acknowledged_by": row.acknowledged_by,
    }


def schedule_to_dict(row: FeedSchedule) -> dict[str, Any]:
    return {
        "member": row.institution_id,
        "feed": row.feed,
        "every_minutes": row.every_minutes,
        "note": row.note,
        "updated_at": row.updated_at.isoformat(),
        "updated_by": row.updated_by,
    }
