"""Audited writes on users (the only way accounts are created outside migrations)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from carepool.core import audit, auth, events
from carepool.core.audit import AuditAction
from carepool.core.errors import AlreadyExists, NotFound


def do_create_user(
    session: Session,
    *,
    actor: auth.Principal,
    username: str,
    display_name: str,
    role: auth.Role,
    institution_id: str | None,
    source: str = "api",
) -> auth.User:
    """Create an account; only consortium-wide callers may create users of any member."""
    actor.require_scope("Users", "write")
    actor.require_institution(institution_id, f"users of {institution_id or 'the consortium'}")
    if session.get(auth.User, username) is not None:
        raise AlreadyExists("user", username)
    if institution_id is not None and not session.scalar(
        text("SELECT 1 FROM institution WHERE id = :id"), {"id": institution_id}
    ):
        raise NotFound("institution", institution_id)
    user = auth.create_user(
        session,
        username=username,
        display_name=display_name,
        role=role,
        institution_id=institution_id,
    )
    after = {"username": username, "role": role.value, "institution_id": institution_id}
    audit.record(
        session,
        actor=actor,
        action=AuditAction.CREATE,
        entity_type="user",
        entity_id=username,
        entity_institution=institution_id,
        after=after,
        source=source,
    )
    events.emit(
        session,
        type="user.created",
        entity_type="user",
        entity_id=username,
        institution_id=institution_id,
    )
    return user
