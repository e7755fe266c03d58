"""Tokens and scopes: issue, authenticate, expiry, revocation, narrowing; `auth token`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from carepool.cli import app
from carepool.core import auth
from carepool.core.errors import InvalidInput, PermissionDenied, Unauthenticated
from carepool.core.time import utcnow


def _user(sessions: sessionmaker[Session], role: auth.Role) -> str:
    with sessions() as s, s.begin():
        auth.create_user(s, username="u1", display_name="U One", role=role, institution_id=None)
    return "u1"


def test_token_round_trip_and_scopes(engine, sessions: sessionmaker[Session]) -> None:
    _user(sessions, auth.Role.CONSORTIUM_ADMIN)
    with sessions() as s, s.begin():
        token = auth.issue_token(s, username="u1", ttl=timedelta(hours=1))
    with sessions() as s:
        p = auth.authenticate(s, token=token)
    assert p.username == "u1" and p.consortium_wide
    assert p.has_scope("Catalog", "write") and p.has_scope("Patient", "read")
    assert token.startswith("cpt_")


def test_expired_and_revoked_tokens_are_refused(engine, sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        auth.create_user(
            s,
            username="admin",
            display_name="A",
            role=auth.Role.CONSORTIUM_ADMIN,
            institution_id=None,
        )
        with pytest.raises(InvalidInput, match="lifetime must be positive"):
            auth.issue_token(s, username="admin", ttl=timedelta(seconds=-1))
        old = auth.issue_token(s, username="admin", ttl=timedelta(hours=1))
        s.get(auth.ApiToken, auth.hash_token(old)).expires_at = utcnow() - timedelta(seconds=1)
        revoked = auth.issue_token(s, username="admin", ttl=timedelta(hours=1))
        s.get(auth.ApiToken, auth._hash(revoked)).revoked = True
    with sessions() as s:
        with pytest.raises(Unauthenticated, match="expired"):
            auth.authenticate(s, token=old)
        with pytest.raises(Unauthenticated, match="revoked"):
            auth.authenticate(s, token=revoked)


def test_requested_scopes_only_narrow(engine, sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        auth.create_user(
            s,
            username="admin",
            display_name="A",
            role=auth.Role.CONSORTIUM_ADMIN,
            institution_id=None,
        )
        token = auth.issue_token(
            s, username="admin", ttl=timedelta(hours=1), scopes=["user/*.read", "user/Made.up"]
        )
    with sessions() as s:
        p = auth.authenticate(s, token=token)
    assert p.scopes == frozenset({"user/*.read"})
    with pytest.raises(PermissionDenied, match=r"user/Catalog\.write"):
        p.require_scope("Catalog", "write")


def test_member_scope_is_own_institution_only() -> None:
    p = auth.Principal(
        username="x",
        role=auth.Role.MEMBER_ADMIN,
        institution_id="clinic",
        scopes=frozenset(auth.ROLE_SCOPES[auth.Role.MEMBER_ADMIN]),
    )
    assert p.can_act_for("clinic") and not p.can_act_for("hosp") and not p.can_act_for(None)
    with pytest.raises(PermissionDenied, match="belongs to 'hosp'"):
        p.require_institution("hosp", "resource 'ct'")


def test_cli_token_for_existing_user_only(
    engine, db_url: str, sessions: sessionmaker[Session]
) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["auth", "token", "--user", "ghost", "--db", db_url])
    assert missing.exit_code == 1 and "ghost" in missing.output
    with sessions() as s, s.begin():
        auth.create_user(
            s,
            username="admin",
            display_name="A",
            role=auth.Role.CONSORTIUM_ADMIN,
            institution_id=None,
        )
    ok = runner.invoke(app, ["auth", "token", "--user", "admin", "--db", db_url])
    assert ok.exit_code == 0, ok.output
    with sessions() as s:
        assert auth.authenticate(s, token=ok.stdout.strip()).username == "admin"


class FakeMonotonic:
    """A monotonic clock that only moves when told to (for `PrincipalCache`)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_principal_cache_trusts_a_token_for_its_ttl_only(
    engine, sessions: sessionmaker[Session]
) -> None:
    _user(sessions, auth.Role.CONSORTIUM_ADMIN)
    with sessions() as s, s.begin():
        token = auth.issue_token(s, username="u1", ttl=timedelta(hours=1))
    clock = FakeMonotonic()
    cache = auth.PrincipalCache(ttl=5.0, clock=clock)
    assert cache.authenticate(sessions, token).username == "u1"
    with sessions() as s, s.begin():  # revoked by hand in the database, not through revoke_token
        s.get(auth.ApiToken, auth._hash(token)).revoked = True
    clock.now += 4.9
    assert cache.authenticate(sessions, token).username == "u1"  # within the documented bound
    clock.now += 0.2
    with pytest.raises(Unauthenticated, match="revoked"):
        cache.authenticate(sessions, token)
    with pytest.raises(Unauthenticated, match="revoked"):  # refusals are not cached
        cache.authenticate(sessions, token)


def test_a_revoked_token_stops_working_at_once(client, tokens) -> None:
    headers = tokens.admin()
    assert client.get("/api/v1/institutions", headers=headers).status_code == 200
    token = headers["Authorization"].removeprefix("Bearer ")
    with client.app.state.sessions() as s, s.begin():
        assert auth.revoke_token(s, token=token)
    response = client.get("/api/v1/institutions", headers=headers)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
