"""Audited writes on users and tokens: create, issue, revoke, deactivate (the only way these
change outside migrations and tests)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from carepool.core import audit, auth, events
from carepool.core.audit import AuditAction
from carepool.core.errors import AlreadyExists, InvalidInput, NotFound


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


def _token_row(session: Session, *, id: str) -> auth.ApiToken:
    if len(id) < 8 or not all(c in "0123456789abcdef" for c in id):
        raise NotFound("token", id)
    rows = list(
        session.scalars(select(auth.ApiToken).where(auth.ApiToken.token_hash.startswith(id)))
    )
    if len(rows) != 1:
        raise NotFound("token", id)
    return rows[0]


def token_to_dict(row: auth.ApiToken) -> dict[str, Any]:
    return {
        "id": auth.token_id(row.token_hash),
        "username": row.username,
        "institution_id": row.institution_id,
        "scopes": list(row.scopes),
        "issued_at": row.issued_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "revoked": row.revoked,
    }


def get_tokens(session: Session, *, actor: auth.Principal, username: str) -> list[dict[str, Any]]:
    """A user's tokens (ids, never the tokens), newest first; for whoever may manage the user."""
    user = auth.get_user(session, username=username)
    if actor.username != username:
        actor.require_scope("Users", "read")
        actor.require_institution(user.institution_id, f"the tokens of user {username!r}")
    rows = session.scalars(
        select(auth.ApiToken)
        .where(auth.ApiToken.username == username)
        .order_by(auth.ApiToken.issued_at.desc())
    )
    return [token_to_dict(r) for r in rows]


def do_issue_token(
    session: Session,
    *,
    actor: auth.Principal,
    username: str,
    hours: int | None = None,
    scopes: list[str] | None = None,
    source: str = "api",
) -> tuple[str, dict[str, Any]]:
    """Issue a bearer token for `username` (lifetime checked by `auth.token_lifetime`);
    returns the token — shown once, stored only as a hash — and its description."""
    user = auth.get_user(session, username=username)
    actor.require_scope("Users", "write")
    actor.require_institution(user.institution_id, f"tokens for user {username!r}")
    token = auth.issue_token(
        session, username=username, ttl=auth.token_lifetime(hours), scopes=scopes
    )
    row = session.get(auth.ApiToken, auth.hash_token(token))
    assert row is not None
    described = token_to_dict(row)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.CREATE,
        entity_type="api_token",
        entity_id=described["id"],
        entity_institution=user.institution_id,
        after=described,
        source=source,
    )
    return token, described


def do_revoke_token(
    session: Session,
    *,
    actor: auth.Principal,
    id: str | None = None,
    token: str | None = None,
    source: str = "api",
) -> dict[str, Any]:
    """Revoke a token named by its id (or by the token itself). Anyone may revoke their own;
    revoking another user's needs `Users.write` for that user's member. It stops working at once
    in this process and within the principal cache time (5 s) in every other."""
    if (id is None) == (token is None):
        raise InvalidInput("name the token by its id or give the token itself, not both")
    row = (
        session.get(auth.ApiToken, auth.hash_token(token))
        if token is not None
        else _token_row(session, id=id or "")
    )
    if row is None:
        raise NotFound("token", "(the given token)")
    if row.username != actor.username:
        actor.require_scope("Users", "write")
        actor.require_institution(row.institution_id, f"the tokens of user {row.username!r}")
    before = token_to_dict(row)
    if not row.revoked:
        auth.revoke_hash(session, token_hash=row.token_hash)
        session.refresh(row)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="api_token",
        entity_id=before["id"],
        entity_institution=row.institution_id,
        before=before,
        after=token_to_dict(row),
        detail="revoked" if not before["revoked"] else "already revoked",
        source=source,
    )
    return token_to_dict(row)


def do_set_user_active(
    session: Session,
    *,
    actor: auth.Principal,
    username: str,
    active: bool,
    source: str = "api",
) -> auth.User:
    """Deactivate (or reactivate) an account. A deactivated user's tokens stop working (at
    once here, within the principal cache time elsewhere) and no new one can be issued;
    deactivating also revokes them, so reactivating does not bring old tokens back."""
    user = auth.get_user(session, username=username)
    actor.require_scope("Users", "write")
    actor.require_institution(user.institution_id, f"user {username!r}")
    if active is False and username == actor.username:
        raise InvalidInput("you cannot deactivate your own account")
    before = {"username": username, "active": user.active}
    revoked = 0
    if user.active and not active:
        for row in session.scalars(
            select(auth.ApiToken).where(
                auth.ApiToken.username == username, auth.ApiToken.revoked.is_(False)
            )
        ):
            auth.revoke_hash(session, token_hash=row.token_hash)
            revoked += 1
        auth.principals.forget_user(username)
        event.listen(
            session, "after_commit", lambda _s: auth.principals.forget_user(username), once=True
        )
    user.active = active
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="user",
        entity_id=username,
        entity_institution=user.institution_id,
        before=before,
        after={"username": username, "active": active, "tokens_revoked": revoked},
        detail="activated" if active else "deactivated",
        source=source,
    )
    events.emit(
        session,
        type="user.activated" if active else "user.deactivated",
        entity_type="user",
        entity_id=username,
        institution_id=user.institution_id,
    )
    return user
