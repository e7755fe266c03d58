"""Pooled server connections: no ping on the hot path, idle ones pinged and replaced if dead."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from carepool.core import db


def _kill(url: str, pid: int) -> None:
    admin = create_engine(url.replace("postgresql://", "postgresql+psycopg://"), poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
    admin.dispose()


@pytest.fixture()
def pg_url(db_url: str) -> str:
    if not db_url.startswith("postgresql"):
        pytest.skip("pooled server connections only")
    return db_url


@pytest.mark.parametrize(("idle_after", "pings"), [(10.0, 0), (0.0, 2)])
def test_only_idle_connections_are_pinged(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, idle_after: float, pings: int
) -> None:
    engine = db.make_engine(pg_url, pool_size=1, max_overflow=0)
    seen: list[object] = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda c: seen.append(c) or ping(c))
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", idle_after)
    for _ in range(3):  # one new connection, then twice the same one from the pool
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 2")
    assert len(seen) == pings
    engine.dispose()


def test_an_idle_connection_that_died_is_replaced(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.make_engine(pg_url, pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        first = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    _kill(pg_url, first)
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)  # every pooled connection counts as idle
    with engine.connect() as conn:
        second = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    assert second != first
    engine.dispose()


def test_a_connection_that_died_while_recently_used_fails_once(pg_url: str) -> None:
    """The price of no ping under load: one request fails, then the pool starts afresh."""
    engine = db.make_engine(pg_url, pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        first = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    _kill(pg_url, first)
    with pytest.raises(OperationalError), engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != first
    engine.dispose()
