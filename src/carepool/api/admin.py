"""Platform routes that belong to no single context: who am I, the audit trail."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from carepool.api.deps import Caller, DbSession
from carepool.core import audit
from carepool.core.audit import AuditOutcome

router = APIRouter(tags=["platform"])


@router.get("/me", summary="The caller: user, role, institution and scopes")
def me(caller: Caller) -> dict[str, Any]:
    return {
        "username": caller.username,
        "role": caller.role.value if caller.role else None,
        "institution_id": caller.institution_id,
        "scopes": sorted(caller.scopes),
    }


@router.get("/audit", summary="Audit records, newest first")
def list_audit(
    session: DbSession,
    caller: Caller,
    entity_type: str | None = None,
    entity_id: str | None = None,
    agent: str | None = None,
    outcome: AuditOutcome | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    """Consortium administrators see every record; a member's admin sees their member's."""
    caller.require_scope("Audit", "read")
    institution = None if caller.consortium_wide else caller.institution_id
    rows = audit.get_all(
        session,
        entity_type=entity_type,
        entity_id=entity_id,
        agent=agent,
        outcome=outcome,
        institution_id=institution,
        limit=limit,
        offset=offset,
    )
    return {
        "items": [
            {
                "id": r.id,
                "recorded_at": r.recorded_at.isoformat(),
                "action": r.action.value,
                "outcome": r.outcome.value,
                "agent": r.agent,
                "agent_institution": r.agent_institution,
                "entity_type": r.entity_type,
                "entity_id": r.entity_id,
                "entity_institution": r.entity_institution,
                "source": r.source,
                "detail": r.detail,
                "before": r.before,
                "after": r.after,
            }
            for r in rows
        ],
        "limit": limit,
        "offset": offset,
    }
