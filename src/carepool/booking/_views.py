"""Response pieces shared by the booking sub-flow routes (inpatient, surgery, referrals, orders).

Each route keeps its own signature (and so its OpenAPI operation); only the repeated tail of an
idempotent create, the read audit and the page envelope live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Header, Response
from sqlalchemy.orm import Session

from carepool.core import audit
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal

__all__ = ["IdempotencyKey", "audit_list", "audit_read", "mark_created", "page"]

# The optional Idempotency-Key header of a write route that may be retried (default None).
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)]


def mark_created(response: Response, *, created: bool, location: str) -> None:
    """201 with Location for a new row; 200 (same Location) when an Idempotency-Key replayed."""
    if not created:
        response.status_code = 200
    response.headers["Location"] = location


def audit_read(
    session: Session,
    caller: Principal,
    *,
    entity_type: str,
    entity_id: str | None,
    entity_institution: str | None,
    detail: str = "",
) -> None:
    """One READ audit row for what was shown to the caller (one entity, or a page of them)."""
    audit.record(
        session,
        actor=caller,
        action=AuditAction.READ,
        entity_type=entity_type,
        entity_id=entity_id,
        entity_institution=entity_institution,
        detail=detail,
    )


def audit_list(
    session: Session,
    caller: Principal,
    *,
    entity_type: str,
    entity_institution: str | None,
    shown: int,
    total: int,
    qualifiers: Sequence[str] = (),
) -> None:
    """One READ audit row for a listed page: `list: <shown> of <total>[, <qualifier>...]`."""
    audit_read(
        session,
        caller,
        entity_type=entity_type,
        entity_id=None,
        entity_institution=entity_institution,
        detail=f"list: {shown} of {total}" + "".join(f", {q}" for q in qualifiers),
    )


def page(items: list[dict[str, Any]], *, total: int, limit: int, offset: int) -> dict[str, Any]:
    """The list envelope every booking list route returns."""
    return {"items": items, "total": total, "limit": limit, "offset": offset}
