"""Fixtures for quality tests on both databases: the two-member catalogue, feeds ingested
through `carepool.ingest`, and a one-call quality run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from carepool.catalog import actions as catalog_actions
from carepool.core.auth import Principal
from carepool.ingest import actions as ingest_actions
from carepool.quality import actions
from carepool.quality.models import QualityRun
from tests.factories import small_catalog

SYSTEM = Principal.system_actor("test")

Feed = Callable[..., ingest_actions.RunSummary]
Run = Callable[..., QualityRun]


@pytest.fixture()
def members(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """The database with the small catalogue (members `hosp` and `clinic`)."""
    with sessions() as session, session.begin():
        catalog_actions.do_import_catalog(session, actor=SYSTEM, raw=small_catalog())
    return sessions


@pytest.fixture()
def feed(members: sessionmaker[Session]) -> Feed:
    def ingest(data: bytes, *, source: str, name: str = "feed.hl7", **kw: Any) -> Any:
        summary = ingest_actions.do_ingest(
            members,
            actor=SYSTEM,
            institution_id=source,
            inputs=[ingest_actions.Input(name=name, data=data)],
            **kw,
        )
        assert summary.status == "succeeded", summary.as_dict()
        return summary

    return ingest


@pytest.fixture()
def run_quality(members: sessionmaker[Session]) -> Run:
    def run(*, as_of: datetime | None = None, **kw: Any) -> QualityRun:
        result = actions.do_run_quality(members, actor=kw.pop("actor", SYSTEM), as_of=as_of, **kw)
        assert result.status.value == "succeeded", result.error
        return result

    return run
