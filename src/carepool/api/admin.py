"""Platform routes that belong to no single context: who am I, the audit trail, accounts and
tokens (issue, list, revoke, deactivate — every change audited in `core.users`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from carepool.api.deps import Caller, DbSession
from carepool.core import audit, users
from carepool.core.audit import AuditOutcome
from carepool.core.limits import MAX_OFFSET

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
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
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


# -- accounts and tokens ---------------------------------------------------------------------------


class TokenRequest(BaseModel):
    hours: int | None = Field(None, description="Lifetime in hours (default: the setting)")
    scopes: list[str] | None = Field(None, description="Narrow to these scopes")


@router.get("/users/{username}/tokens", summary="A user's tokens (ids, never the tokens)")
def list_tokens(username: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    return {"items": users.get_tokens(session, actor=caller, username=username)}


@router.post("/users/{username}/tokens", status_code=201, summary="Issue a token (shown only once)")
def issue_token(
    username: str, body: TokenRequest, session: DbSession, caller: Caller
) -> dict[str, Any]:
    token, described = users.do_issue_token(
        session, actor=caller, username=username, hours=body.hours, scopes=body.scopes
    )
    return {"token": token, **described}


@router.post("/tokens/{token_id}/revoke", summary="Revoke a token by its id")
def revoke_token(token_id: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    return users.do_revoke_token(session, actor=caller, id=token_id)


@router.delete("/me/token", summary="Revoke the token of this request (sign out a script)")
def revoke_own_token(request: Request, session: DbSession, caller: Caller) -> dict[str, Any]:
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    return users.do_revoke_token(session, actor=caller, token=token)


@router.post("/users/{username}/deactivate", summary="Deactivate an account, revoke its tokens")
def deactivate_user(username: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    user = users.do_set_user_active(session, actor=caller, username=username, active=False)
    return {"username": user.username, "active": user.active}


@router.post("/users/{username}/activate", summary="Reactivate an account (tokens stay revoked)")
def activate_user(username: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    user = users.do_set_user_active(session, actor=caller, username=username, active=True)
    return {"username": user.username, "active": user.active}
