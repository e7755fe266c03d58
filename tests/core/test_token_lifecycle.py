"""Token and account lifecycle: issue with a bounded lifetime, list, revoke, deactivate — through
the CLI and the HTTP API, every change audited, effective on another node within the cache time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from carepool.catalog import actions as catalog_actions
from carepool.cli import app as cli_app
from carepool.core import auth
from carepool.core.audit import AuditRecord
from carepool.core.auth import Principal, Role
from carepool.core.users import do_create_user
from tests.factories import small_catalog

runner = CliRunner()


@pytest.fixture()
def people(app: Any) -> Any:
    """The small catalogue and two users: a clinic doctor and a consortium admin."""
    with app.state.sessions() as session, session.begin():
        system = Principal.system_actor("test")
        catalog_actions.do_import_catalog(session, actor=system, raw=small_catalog())
        for username, role, member in (
            ("doc", Role.CLINICIAN, "clinic"),
            ("boss", Role.CONSORTIUM_ADMIN, None),
            ("hosp.admin", Role.MEMBER_ADMIN, "hosp"),
        ):
            do_create_user(
                session,
                actor=system,
                username=username,
                display_name=username,
                role=role,
                institution_id=member,
            )
    return app


def _cli(db_url: str, *args: str) -> Any:
    return runner.invoke(cli_app, ["auth", *args, "--db", db_url, "--json"])


def _audits(app: Any, entity_type: str) -> list[AuditRecord]:
    with app.state.sessions() as session:
        return list(
            session.scalars(
                select(AuditRecord)
                .where(AuditRecord.entity_type == entity_type)
                .order_by(AuditRecord.id)
            )
        )


def test_cli_refuses_lifetimes_out_of_range_and_audits_issuing(people: Any, db_url: str) -> None:
    for hours in ("0", "-5", "100000"):
        result = _cli(db_url, "token", "--user", "doc", "--hours", hours)
        assert result.exit_code == 1, result.stdout
        assert "token lifetime must be 1 to 2160 hours" in result.stdout
    result = _cli(db_url, "token", "--user", "doc")
    assert result.exit_code == 0, result.stdout
    out = json.loads(result.stdout)
    assert out["expires_in_hours"] == 720
    issued = _audits(people, "api_token")
    assert [a.entity_id for a in issued] == [out["id"]]
    assert issued[0].after["username"] == "doc" and "token" not in issued[0].after


def test_revoke_and_deactivate_through_the_api(people: Any, client: TestClient) -> None:
    with people.state.sessions() as session, session.begin():
        boss = {"Authorization": f"Bearer {auth.issue_token(session, username='boss', ttl=_h())}"}
    made = client.post("/api/v1/users/doc/tokens", json={"hours": 2}, headers=boss)
    assert made.status_code == 201, made.text
    first = {"Authorization": f"Bearer {made.json()['token']}"}
    second_made = client.post("/api/v1/users/doc/tokens", json={}, headers=boss).json()
    second = {"Authorization": f"Bearer {second_made['token']}"}
    assert client.get("/api/v1/me", headers=first).status_code == 200
    assert (
        client.post("/api/v1/users/doc/tokens", json={"hours": 0}, headers=boss).status_code == 422
    )

    # a user revokes their own token; the other one still works
    assert client.delete("/api/v1/me/token", headers=first).status_code == 200
    assert client.get("/api/v1/me", headers=first).status_code == 401
    assert client.get("/api/v1/me", headers=second).status_code == 200
    listed = client.get("/api/v1/users/doc/tokens", headers=boss).json()["items"]
    assert {t["id"]: t["revoked"] for t in listed} == {
        made.json()["id"]: True,
        second_made["id"]: False,
    }
    assert all("token" not in t for t in listed)

    # a member admin of another member may not touch this clinic's account
    with people.state.sessions() as session, session.begin():
        other = auth.issue_token(session, username="hosp.admin", ttl=_h())
    refused = client.post(
        "/api/v1/users/doc/deactivate", headers={"Authorization": f"Bearer {other}"}
    )
    assert refused.status_code == 403

    # deactivation: every token stops at once, no new one, the change audited
    assert client.post("/api/v1/users/doc/deactivate", headers=boss).json() == {
        "username": "doc",
        "active": False,
    }
    assert client.get("/api/v1/me", headers=second).status_code == 401
    again = client.post("/api/v1/users/doc/tokens", json={}, headers=boss)
    assert again.status_code == 403 and "deactivated" in again.json()["detail"]
    changes = [a.detail for a in _audits(people, "user") if a.entity_id == "doc"]
    assert changes[-1] == "deactivated"
    revoked = [a for a in _audits(people, "api_token") if a.detail == "revoked"]
    assert [a.entity_id for a in revoked] == [made.json()["id"]]

    # reactivation does not bring the old tokens back
    assert client.post("/api/v1/users/doc/activate", headers=boss).status_code == 200
    assert client.get("/api/v1/me", headers=second).status_code == 401


def _h() -> Any:
    from datetime import timedelta

    return timedelta(hours=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def second_node(people: Any, db_url: str) -> Iterator[str]:
    """Another API process over the same database."""
    port = _free_port()
    env = {**os.environ, "CAREPOOL_DATABASE_URL": db_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "carepool.cli", "serve", "--port", str(port), "--db", db_url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("the second node did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.slow
def test_a_revocation_reaches_another_node_within_the_cache_time(
    people: Any, db_url: str, second_node: str
) -> None:
    out = json.loads(_cli(db_url, "token", "--user", "doc").stdout)
    headers = {"Authorization": f"Bearer {out['token']}"}
    assert httpx.get(f"{second_node}/api/v1/me", headers=headers).status_code == 200  # cached
    result = _cli(db_url, "revoke", "--id", out["id"])
    assert result.exit_code == 0, result.stdout
    revoked_at = time.monotonic()
    status = 200
    while time.monotonic() - revoked_at < auth.principals.ttl + 5:
        status = httpx.get(f"{second_node}/api/v1/me", headers=headers).status_code
        if status == 401:
            break
        time.sleep(0.25)
    assert status == 401
