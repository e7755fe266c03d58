"""Fixtures shared by the whole suite: databases on SQLite and PostgreSQL, the app, callers.

Every database test runs once per backend. PostgreSQL tests skip with a reason when no server
answers, except under CI=true, where they fail instead. Each test starts with empty tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from carepool.api.app import create_app
from carepool.core import auth, migrate
from carepool.core.db import Base, make_engine, make_session_factory

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"
PG_ADMIN_DSN = os.environ.get("CAREPOOL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The consortium's shared data folder (`../shared`); tests that need it skip without it."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"../shared is absent ({SHARED_DIR}); this test uses third-party sample data")
    return SHARED_DIR


@pytest.fixture(scope="session")
def ihtc_dir(shared_dir: Path) -> Path:
    """IHTC-2024 instances, best-known values and reference solutions."""
    path = shared_dir / "benchmarks" / "ihtc2024"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


def _pg_reachable() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # any failure means: no server to test against
        return f"{type(exc).__name__}: {exc}".strip()


def new_pg_database(prefix: str = "carepool_test") -> tuple[str, str]:
    """Create an empty PostgreSQL database; returns (name, SQLAlchemy URL)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_available() -> None:
    reason = _pg_reachable()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true requires PostgreSQL at {PG_ADMIN_DSN}, but: {reason}")
    pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_DSN} ({reason})")


# `make test-fast` runs SQLite only (CAREPOOL_TEST_BACKENDS=sqlite); CI runs both.
BACKENDS = (
    ["sqlite", "postgresql"]
    if IN_CI
    else [
        b.strip()
        for b in os.environ.get("CAREPOOL_TEST_BACKENDS", "sqlite,postgresql").split(",")
        if b.strip() in ("sqlite", "postgresql")
    ]
)


@pytest.fixture(scope="session", params=BACKENDS)
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated, empty database on each backend, shared by the tests of one worker."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "carepool.db"
        url = f"sqlite:///{path}"
        migrate.upgrade(url)
        yield url
        return
    request.getfixturevalue("pg_available")
    name, url = new_pg_database()
    try:
        migrate.upgrade(url)
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture()
def new_db_url(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[str]:
    """A second, empty, migrated database on the same backend (for round trips)."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'second.db'}"
        migrate.upgrade(url)
        yield url
        return
    name, url = new_pg_database("carepool_test2")
    try:
        migrate.upgrade(url)
        yield url
    finally:
        drop_pg_database(name)


def wipe(engine: Engine) -> None:
    """Delete every row of every table, children first."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture()
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    wipe(eng)
    yield eng
    eng.dispose()


@pytest.fixture()
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture()
def app(engine: Engine, db_url: str) -> Any:
    application = create_app(db_url)
    yield application
    application.state.engine.dispose()
    application.state.audit_engine.dispose()


@pytest.fixture()
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


class Tokens:
    """Make users and bearer headers for tests: `tokens.headers(role, institution)`."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._n = 0

    def headers(self, role: auth.Role | str, institution_id: str | None = None) -> dict[str, str]:
        role = auth.Role(role)
        self._n += 1
        username = f"{role.value}-{self._n}"
        with self._sessions() as session, session.begin():
            auth.create_user(
                session,
                username=username,
                display_name=username,
                role=role,
                institution_id=institution_id,
            )
            token = auth.issue_token(session, username=username, ttl=auth_ttl())
        return {"Authorization": f"Bearer {token}"}

    def admin(self) -> dict[str, str]:
        return self.headers(auth.Role.CONSORTIUM_ADMIN)


def auth_ttl() -> Any:
    from datetime import timedelta

    return timedelta(hours=1)


@pytest.fixture()
def tokens(sessions: sessionmaker[Session]) -> Tokens:
    return Tokens(sessions)
