"""Reads of ingest: runs with their progress, and the dead-letter store."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carepool.core.errors import NotFound
from carepool.ingest.models import DeadLetter, DeadLetterStatus, IngestRun


def get_run(session: Session, *, id: str) -> IngestRun:
    run = session.get(IngestRun, id)
    if run is None:
        raise NotFound("ingest run", id)
    return run


def get_runs(
    session: Session, *, institution_id: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[IngestRun], int]:
    stmt = select(IngestRun)
    if institution_id is not None:
        stmt = stmt.where(IngestRun.institution_id == institution_id)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    stmt = stmt.order_by(IngestRun.started_at.desc(), IngestRun.id).limit(limit).offset(offset)
    return list(session.scalars(stmt)), int(total)


def run_to_dict(run: IngestRun) -> dict[str, Any]:
    progress = run.bytes_done / run.bytes_total if run.bytes_total else 1.0
    return {
        "run_id": run.id,
        "source": run.institution_id,
        "actor": run.actor,
        "channel": run.channel,
        "status": run.status.value,
        "inputs": run.inputs,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "received": run.received,
        "stored": run.stored,
        "updated": run.updated,
        "duplicates": run.duplicates,
        "rejected": run.rejected,
        "stubs": run.stubs,
        "by_kind": run.by_kind,
        "flags": run.flags,
        "unmodelled": run.unmodelled,
        "warnings": run.warnings,
        "progress": round(min(progress, 1.0), 4),
        "units_done": run.units_done,
        "error": run.error,
    }


def get_dead_letter(session: Session, *, id: int) -> DeadLetter:
    row = session.get(DeadLetter, id)
    if row is None:
        raise NotFound("dead letter", str(id))
    return row


def get_dead_letters(
    session: Session,
    *,
    institution_id: str | None = None,
    status: DeadLetterStatus | None = DeadLetterStatus.OPEN,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[DeadLetter], int]:
    stmt = select(DeadLetter)
    if institution_id is not None:
        stmt = stmt.where(DeadLetter.institution_id == institution_id)
    if status is not None:
        stmt = stmt.where(DeadLetter.status == status)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    stmt = stmt.order_by(DeadLetter.id).limit(limit).offset(offset)
    return list(session.scalars(stmt)), int(total)


def dead_letter_to_dict(row: DeadLetter, *, with_raw: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "run_id": row.run_id,
        "source": row.institution_id,
        "format": row.format,
        "input": row.source,
        "position": row.position,
        "reason": row.reason,
        "rejected": row.rejected,
        "status": row.status.value,
        "occurrences": row.occurrences,
        "bytes": len(row.raw),
        "created_at": row.created_at.isoformat(),
        "last_seen_at": row.last_seen_at.isoformat(),
        "retry_count": row.retry_count,
        "retried_at": row.retried_at.isoformat() if row.retried_at else None,
        "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
        "resolved_by_run": row.resolved_by_run,
    }
    if with_raw:  # as text in the character set the source declared (the bytes are kept as sent)
        encoding = (row.options or {}).get("encoding") or "utf-8"
        out["raw"] = row.raw.decode(encoding, errors="replace")
    return out
