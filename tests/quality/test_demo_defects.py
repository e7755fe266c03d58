"""Planted defects: `hl7_feed` plants exactly the shares it is given, and the demo's members,
each planted with a different share of one mix, come out of a quality run ranked in that order,
with the weekly village batch's results after death found."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from carepool.catalog.actions import do_import_catalog
from carepool.core import migrate
from carepool.core.auth import Principal
from carepool.core.db import make_engine, make_session_factory
from carepool.core.time import utcnow
from carepool.demo.feeds import DEFECT_SHARES, generate_feeds, ingest_feeds, member_roles
from carepool.demo.generator import generate
from carepool.quality import service
from carepool.quality.demo_defects import DefectProfile, hl7_feed, plant

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def _segments(data: bytes) -> list[list[str]]:
    return [m.split("\r") for m in data.decode().strip().split("\n")]


def _obx(messages: list[list[str]]) -> list[list[str]]:
    return [s.split("|") for m in messages for s in m if s.startswith("OBX|")]


def test_hl7_feed_plants_exactly_the_shares_it_is_given() -> None:
    profile = DefectProfile(
        missing_units=0.1,
        implausible=0.05,
        unmapped_codes=0.2,
        duplicates=0.1,
        late=0.25,
        after_death=0.3,
    )
    data = hl7_feed("thc-x", profile, patients=10, now=NOW)  # 40 results
    assert data == hl7_feed("thc-x", profile, patients=10, now=NOW)
    messages = _segments(data)
    first = [m for m in messages if not m[0].split("|")[9].endswith("R")]
    resent = [m for m in messages if m[0].split("|")[9].endswith("R")]
    obx = _obx(first)
    assert len(first) == 10 and len(obx) == 40
    assert sum(f[6] == "" for f in obx) == 4
    assert sum(float(f[5]) > 1000 for f in obx) == 2  # unit slips
    assert sum(f[3].startswith("ZZ") for f in obx) == 8
    assert len(_obx(resent)) == 4
    late = NOW - timedelta(hours=profile.late_hours)
    assert sum(f[14] == late.strftime("%Y%m%d%H%M%S+0000") for f in obx) == 10
    dead = [s for m in first for s in m if s.startswith("PID|") and s.endswith("|Y")]
    assert len(dead) == 3
    # Every result carries at most one defect: the shares above add up to 28 of 40.
    with pytest.raises(ValueError, match="more than all"):
        hl7_feed("thc-x", profile.scaled(2.0), patients=10, now=NOW)


def test_plant_rounds_half_up_and_places_each_item_once() -> None:
    fates = plant(random.Random(1), 10, [0.25, 0.15, 0.05], "items")
    assert sorted(fates) == [-1] * 4 + [0] * 3 + [1] * 2 + [2]


def _members_only(doc: dict[str, Any]) -> dict[str, Any]:
    empty: dict[str, list[Any]] = {k: [] for k, v in doc.items() if isinstance(v, list)}
    return {**doc, **empty, "institutions": doc["institutions"]}


@pytest.mark.slow
def test_demo_members_rank_in_the_order_of_their_planted_shares(tmp_path: Path) -> None:
    """The whole demo feed on SQLite: the scorecard's ranking is the order of the members'
    planted shares (the clean hospital first, the weekly village batch last), the scores a
    clear step apart, and the weekly batch's results after death are found."""
    seed = 20261128
    doc = generate(seed)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    factory: sessionmaker[Session] = make_session_factory(engine)
    try:
        with factory() as session, session.begin():
            do_import_catalog(session, actor=Principal.system_actor("test"), raw=_members_only(doc))
        # Lateness is measured against the time of ingest: the feeds are written for now.
        out = ingest_feeds(factory, generate_feeds(seed, now=utcnow(), doc=doc))
        roles = member_roles(doc)
        weekly = next(m for m, r in roles.items() if r == "village:1")
        expected = sorted(roles, key=lambda m: (m == weekly, DEFECT_SHARES.get(roles[m], 0.0), m))
        assert out["quality"]["ranking"] == expected
        scores = [out["quality"]["scores"][m] for m in expected]
        assert scores[0] == 100.0
        assert all(round(a - b, 2) >= 0.1 for a, b in pairwise(scores)), scores
        with factory() as session:
            results = {
                (r.check_id, r.institution_id): r
                for r in service.get_results(session, run_id=out["quality"]["run_id"])
            }
        for check_id in ("observation.before_death", "encounter.before_death"):
            found = results[(check_id, weekly)]
            assert found.failing > 0 and not found.passed, check_id
            assert results[(check_id, "ch")].denominator > 0  # the hospital's deaths are clean
            assert results[(check_id, "ch")].failing == 0
        assert {m for (c, m), r in results.items() if r.failing and "death" in c} == {weekly, "*"}
    finally:
        engine.dispose()
