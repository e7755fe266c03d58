"""The demo's member feeds: deterministic, ingested, linked across members, scored by quality."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.api.app import create_app
from carepool.catalog.actions import do_import_catalog
from carepool.core import auth, migrate
from carepool.core.auth import Principal, Role
from carepool.core.db import make_engine, make_session_factory
from carepool.core.time import utcnow
from carepool.demo.feeds import (
    SHARED_PEOPLE,
    Feed,
    feeds_already_ingested,
    generate_feeds,
    ingest_demo_feeds,
    ingest_feeds,
)
from carepool.demo.generator import generate, lead_clinic
from carepool.identity import service as identity_service
from carepool.records.models import Observation, Patient

SEED = 20261128
NOW = datetime(2026, 12, 9, 2, 30, tzinfo=UTC)
SYSTEM = Principal.system_actor("test")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return generate(SEED)


def _members_only(doc: dict[str, Any]) -> dict[str, Any]:
    """The catalogue's members without their resources: all the feeds need, imported fast."""
    empty: dict[str, list[Any]] = {k: [] for k, v in doc.items() if isinstance(v, list)}
    return {**doc, **empty, "institutions": doc["institutions"]}


def _import(factory: sessionmaker[Session], doc: dict[str, Any]) -> None:
    with factory() as session, session.begin():
        do_import_catalog(session, actor=SYSTEM, raw=_members_only(doc), source="demo")


def _planted(feeds: list[Feed]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for f in feeds:
        out[f.member] = max(out[f.member], f.planted)
    return dict(out)


def test_same_seed_same_bytes_and_another_seed_differs(doc: dict[str, Any]) -> None:
    first = generate_feeds(SEED, now=NOW, doc=doc)
    assert first == generate_feeds(SEED, now=NOW, doc=doc)
    assert first != generate_feeds(SEED + 1, now=NOW, doc=doc)
    formats = defaultdict(set)
    for f in first:
        formats[f.member.split("-")[0]].add(f.format)
    assert formats == {"ch": {"fhir"}, "br": {"csv"}, "thc": {"hl7v2"}, "vc": {"hl7v2"}}
    # Dr Li's clinic sends, and the CSV export comes with its mapping document.
    assert any(f.member == lead_clinic(doc) for f in first)
    assert all(f.mapping_doc for f in first if f.format == "csv")
    # Township centres send Chinese names and conventional units; some of them planted defects.
    thc = b"".join(f.data for f in first if f.member.startswith("thc-"))
    assert "血红蛋白".encode() in thc and b"g/dL" in thc and b"10^3/uL" in thc
    planted = _planted(first)
    assert planted["ch"] == 0.0 and max(planted.values()) > 0.5


def test_shared_people_are_at_a_clinic_and_the_hospital_under_other_ids(
    doc: dict[str, Any],
) -> None:
    feeds = generate_feeds(SEED, now=NOW, doc=doc)
    hospital = b"".join(f.data for f in feeds if f.member == "ch").decode()
    clinic = next(f for f in feeds if f.member == lead_clinic(doc) and f.planted == 0.0)
    pids = [s for s in clinic.data.decode().replace("\r", "\n").splitlines() if s[:4] == "PID|"]
    names = {p.split("|")[5].replace("^", "") for p in pids}
    shared = [n for n in names if f'"family": "{n[0]}"' in hospital and n[1:] in hospital]
    assert len(shared) >= 10
    assert all("NNCHN" not in p for p in pids)  # the clinic has no national ids
    assert SHARED_PEOPLE == 40


@pytest.mark.slow
def test_demo_feeds_on_sqlite_link_and_score(tmp_path: Path, doc: dict[str, Any]) -> None:
    url = f"sqlite:///{tmp_path / 'feeds.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        _import(factory, doc)
        clinic = lead_clinic(doc)
        with factory() as session, session.begin():
            auth.create_user(
                session,
                username="dr.li",
                display_name="Dr Li",
                role=Role.CLINICIAN,
                institution_id=clinic,
            )
            token = auth.issue_token(session, username="dr.li", ttl=timedelta(hours=1))
        feeds = generate_feeds(SEED, now=utcnow(), doc=doc)
        assert not feeds_already_ingested(factory)
        out = ingest_feeds(factory, feeds)

        # Counts add up, per member and in total.
        for member, c in out["members"].items():
            assert c["received"] == c["stored"] + c["duplicates"] + c["rejected"], member
        totals = out["totals"]
        assert totals["received"] == sum(c["received"] for c in out["members"].values())
        assert totals["stored"] > 3000
        assert set(out["members"]) == {f.member for f in feeds}
        assert out["persons_linked"] >= SHARED_PEOPLE * 3 // 4

        # The member with the most planted defects scores lowest.
        planted = _planted(feeds)
        ranking = out["quality"]["ranking"]
        assert out["quality"]["status"] == "succeeded"
        assert ranking[-1] == max(planted, key=lambda m: planted[m])
        assert set(ranking) == set(out["members"])

        # Dr Li sees the hospital's results of a linked patient of the clinic.
        with factory() as session:
            own = list(session.scalars(select(Patient.id).where(Patient.institution_id == clinic)))
            persons = identity_service.persons_of(session, patient_ids=own)
            linked = [
                p
                for p in own
                if p in persons
                and "ch"
                in {m for _id, m in identity_service.records_of(session, person_id=persons[p])}
            ]
            hospital_results = session.scalar(
                select(Observation.id).where(Observation.institution_id == "ch").limit(1)
            )
        assert linked and hospital_results
        seen_hospital = 0
        with TestClient(create_app(url)) as client:
            headers = {"Authorization": f"Bearer {token}"}
            for patient in linked:
                response = client.get(
                    f"/fhir/Observation?patient={patient}&_count=100", headers=headers
                )
                assert response.status_code == 200, response.text
                performers = {
                    e["resource"]["performer"][0]["reference"]
                    for e in response.json().get("entry", [])
                }
                assert performers == {f"Organization/{clinic}", "Organization/ch"}
                seen_hospital += 1
            # Someone else's patient of the hospital only is not Dr Li's to read.
            with factory() as session:
                stranger = session.scalar(
                    select(Patient.id)
                    .where(Patient.institution_id == "ch")
                    .order_by(Patient.id.desc())
                    .limit(1)
                )
            response = client.get(f"/fhir/Observation?patient={stranger}", headers=headers)
            assert response.status_code in (403, 404) or response.json().get("total") == 0
        assert seen_hospital >= 10

        # Again: the records are there, nothing is added.
        again = ingest_demo_feeds(factory, SEED, now=utcnow(), doc=doc)
        assert again["ingested"] is False and again["patients"] > 0
    finally:
        engine.dispose()


def test_a_few_feeds_on_each_backend(sessions: sessionmaker[Session], doc: dict[str, Any]) -> None:
    """A small path on SQLite and PostgreSQL: the hospital's first bundle and two clinics."""
    _import(sessions, doc)
    clinic = lead_clinic(doc)
    feeds = generate_feeds(SEED, now=utcnow(), doc=doc)
    weekly = next(f for f in feeds if f.filename.endswith("-weekly.hl7"))
    chosen = [
        next(f for f in feeds if f.member == "ch"),
        next(f for f in feeds if f.member == clinic),
        weekly,
    ]
    out = ingest_feeds(sessions, chosen)
    assert set(out["members"]) == {"ch", clinic, weekly.member}
    for c in out["members"].values():
        assert c["received"] == c["stored"] + c["duplicates"] + c["rejected"]
        assert c["rejected"] == 0
    assert out["persons_linked"] >= 1
    assert out["quality"]["ranking"][-1] == weekly.member
