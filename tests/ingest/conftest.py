"""Fixtures for ingest tests: a two-member catalogue and a one-call ingest helper."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from carepool.catalog import actions as catalog_actions
from carepool.core import migrate
from carepool.core.auth import Principal
from carepool.core.db import make_engine, make_session_factory
from carepool.ingest import actions
from tests.factories import small_catalog

SYSTEM = Principal.system_actor("test")

Ingest = Callable[..., actions.RunSummary]


@pytest.fixture()
def members(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """The database with the small catalogue (members `hosp` and `clinic`) loaded."""
    with sessions() as session, session.begin():
        catalog_actions.do_import_catalog(session, actor=SYSTEM, raw=small_catalog())
    return sessions


@pytest.fixture()
def ingest(members: sessionmaker[Session]) -> Ingest:
    def run(
        data: bytes, name: str = "feed", *, source: str = "hosp", **kw: Any
    ) -> actions.RunSummary:
        return actions.do_ingest(
            members,
            actor=kw.pop("actor", SYSTEM),
            institution_id=source,
            inputs=[actions.Input(name=name, data=data, format=kw.pop("format", None))],
            **kw,
        )

    return run


@pytest.fixture(scope="module")
def sqlite_members(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    """A SQLite file of the module's own, migrated, with the small catalogue: for tests that
    ingest many inputs (shared samples, fuzzing) and need no per-test wipe."""
    url = f"sqlite:///{tmp_path_factory.mktemp('members') / 'members.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        catalog_actions.do_import_catalog(session, actor=SYSTEM, raw=small_catalog())
    yield factory
    engine.dispose()
