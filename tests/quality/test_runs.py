"""Quality runs end to end on SQLite and PostgreSQL: feeds go in through `carepool.ingest`
(HL7 v2 with planted defects, hand-written ADT, FHIR and CSV), the suite runs through Ibis on the
store, results, scores, alerts and events come out; the same suite on DuckDB over a Parquet
export gives the same numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.core.audit import AuditRecord
from carepool.core.events import OutboxEvent
from carepool.quality import actions, service, sources
from carepool.quality.config import RunConfig
from carepool.quality.demo_defects import DefectProfile, hl7_feed
from carepool.quality.models import AlertKind, AlertStatus, QualityAlert
from carepool.records.models import Observation
from tests.ingest import feeds
from tests.quality.conftest import SYSTEM, Feed, Run

NOW = datetime.now(UTC).replace(microsecond=0)
CLEAN = DefectProfile()
MESSY = DefectProfile(
    missing_units=0.15, implausible=0.1, unmapped_codes=0.15, duplicates=0.1, late=0.5
)


def _by(session: Session, run_id: str) -> dict[tuple[str, str], dict[str, object]]:
    return {
        (r.check_id, r.institution_id): service.result_to_dict(r)
        for r in service.get_results(session, run_id=run_id)
    }


def _load(feed: Feed) -> None:
    feed(hl7_feed("hosp", CLEAN, patients=15, now=NOW), source="hosp")
    feed(feeds.hl7_file(feeds.HL7_ADT_ADMIT, feeds.HL7_ADT_DISCHARGE), source="hosp")
    feed(hl7_feed("clinic", MESSY, patients=15, now=NOW), source="clinic")
    feed(feeds.fhir_bundle(), source="clinic", name="bundle.json")


def test_run_finds_planted_defects_and_ranks_members(
    feed: Feed, run_quality: Run, members: sessionmaker[Session]
) -> None:
    _load(feed)
    run = run_quality(as_of=NOW)
    assert run.checks_done == run.checks_total > 25
    with members() as s:
        by = _by(s, run.id)
        assert not [k for k, r in by.items() if r["error"]], "every check runs on this backend"
        for check_id in (
            "observation.unit_present",
            "observation.code_mapped",
            "observation.value_plausible",
            "observation.duplicates",
            "observation.feed_lag",
        ):
            assert by[(check_id, "clinic")]["failing"] > 0, check_id
            assert by[(check_id, "hosp")]["failing"] == 0, check_id
            assert not by[(check_id, "clinic")]["passed"]
        # samples name real records of the member
        sample = by[("observation.code_mapped", "clinic")]["sample"]
        assert isinstance(sample, list) and sample
        rows = s.scalars(select(Observation).where(Observation.id.in_(sample))).all()
        assert {o.institution_id for o in rows} == {"clinic"}
        assert all(o.loinc_code is None for o in rows)
        total = by[("observation.code_mapped", "*")]
        assert total["failing"] == by[("observation.code_mapped", "clinic")]["failing"]
        card = service.get_consortium_scorecard(s)
        assert [m["member"] for m in card["members"]] == ["hosp", "clinic"]
        hosp, clinic = card["members"]
        assert hosp["categories"]["overall"] > clinic["categories"]["overall"]
        assert clinic["categories"]["timeliness"] < 100
        assert s.scalars(
            select(AuditRecord).where(
                AuditRecord.entity_type == "quality_run", AuditRecord.entity_id == run.id
            )
        ).one()
        finished = s.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "quality.run_finished")
        ).one()
        assert finished.entity_id == run.id


def test_member_run_keeps_only_that_member_and_history_builds_a_scorecard(
    feed: Feed, run_quality: Run, members: sessionmaker[Session]
) -> None:
    _load(feed)
    first = run_quality(as_of=NOW)
    second = run_quality(as_of=NOW + timedelta(minutes=5), member="clinic")
    with members() as s:
        members_seen = {r.institution_id for r in service.get_results(s, run_id=second.id)}
        assert members_seen == {"clinic", "*"}
        scores = {x.institution_id for x in service.get_run_scores(s, run_id=second.id)}
        assert scores == {"clinic"}
        card = service.get_scorecard(s, institution_id="clinic")
        assert [h["run_id"] for h in card["history"]] == [first.id, second.id]
        assert set(card["latest"]["categories"]) >= {"completeness", "plausibility", "overall"}


def test_thresholds_from_the_database_and_a_config(
    feed: Feed, run_quality: Run, members: sessionmaker[Session]
) -> None:
    _load(feed)
    with members() as s, s.begin():
        actions.do_set_threshold(s, actor=SYSTEM, check_id="observation.code_mapped", threshold=99)
        actions.do_set_threshold(
            s, actor=SYSTEM, check_id="observation.sex_plausible", enabled=False
        )
    run = run_quality(as_of=NOW, config=RunConfig(thresholds={"observation.unit_present": 100.0}))
    with members() as s:
        by = _by(s, run.id)
        assert by[("observation.code_mapped", "clinic")]["passed"]
        assert by[("observation.code_mapped", "clinic")]["threshold"] == 99
        assert by[("observation.unit_present", "clinic")]["passed"]
        assert not [k for k in by if k[0] == "observation.sex_plausible"]
        assert "observation.sex_plausible" in service.get_run(s, id=run.id).settings["disabled"]


def test_late_feed_and_score_drop_raise_alerts_once_and_resolve(
    feed: Feed, run_quality: Run, members: sessionmaker[Session]
) -> None:
    feed(hl7_feed("hosp", CLEAN, patients=10, now=NOW), source="hosp")
    feed(hl7_feed("clinic", CLEAN, patients=10, now=NOW), source="clinic")
    with members() as s, s.begin():
        actions.do_set_feed_schedule(
            s, actor=SYSTEM, institution_id="hosp", feed="hl7v2", every_minutes=24 * 60
        )
    run_quality(as_of=NOW)
    later = NOW + timedelta(days=2)
    run_quality(as_of=later)
    # the clinic starts sending junk: its score drops
    feed(
        hl7_feed("clinic", DefectProfile(missing_units=0.5, unmapped_codes=0.4), seed=1, now=later),
        source="clinic",
        name="junk.hl7",
    )
    third = run_quality(as_of=later + timedelta(hours=1))
    with members() as s:
        alerts = service.get_alerts(s, status=None)
        kinds = sorted((a.kind.value, a.institution_id, a.key) for a in alerts)
        assert (AlertKind.FEED_LATE.value, "hosp", "hosp/hl7v2") in kinds
        # the late feed costs the hospital its timeliness score; the junk, the clinic's
        # completeness (per category: the overall score averages a drop away)
        assert (AlertKind.SCORE_DROP.value, "hosp", "timeliness") in kinds
        assert (AlertKind.SCORE_DROP.value, "clinic", "completeness") in kinds
        assert len(kinds) == len(set(kinds)), "a condition that persists is not alerted twice"
        drop = next(
            a for a in alerts if a.kind is AlertKind.SCORE_DROP and a.institution_id == "clinic"
        )
        assert drop.run_id == third.id and drop.detail["before"] > drop.detail["after"]
        raised = s.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "quality.alert_raised")
        ).all()
        assert sorted(e.entity_id for e in raised) == sorted(str(a.id) for a in alerts)
    # the hospital's feed arrives again: the late-feed alert resolves
    feed(hl7_feed("hosp", CLEAN, patients=2, seed=2, now=NOW), source="hosp", name="again.hl7")
    run_quality(as_of=datetime.now(UTC) + timedelta(minutes=1))
    with members() as s:
        late = s.scalars(select(QualityAlert).where(QualityAlert.kind == AlertKind.FEED_LATE)).one()
        assert late.status is AlertStatus.RESOLVED and late.resolved_at is not None


def test_stale_member_alert(feed: Feed, run_quality: Run, members: sessionmaker[Session]) -> None:
    feed(hl7_feed("hosp", CLEAN, patients=3, now=NOW), source="hosp")
    run_quality(as_of=NOW + timedelta(days=8))
    with members() as s:
        (alert,) = service.get_alerts(s)
        assert (alert.kind, alert.institution_id, alert.key) == (
            AlertKind.MEMBER_STALE,
            "hosp",
            "hosp",
        )


def test_same_results_on_duckdb_over_a_parquet_export(
    feed: Feed, run_quality: Run, members: sessionmaker[Session], db_url: str, tmp_path: Path
) -> None:
    _load(feed)
    with members() as s, s.begin():
        actions.do_set_feed_schedule(
            s, actor=SYSTEM, institution_id="clinic", feed="*", every_minutes=60
        )
    counts = actions.export_parquet(db_url, tmp_path / "pq")
    assert counts["observation"] > 100 and counts["feed_schedule"] == 1
    on_store = run_quality(as_of=NOW)
    on_duckdb = run_quality(
        as_of=NOW, tables=sources.read_parquet(tmp_path / "pq"), backend="duckdb"
    )
    with members() as s:
        a, b = _by(s, on_store.id), _by(s, on_duckdb.id)
        assert service.get_run(s, id=on_duckdb.id).backend == "duckdb"
        strip = ("seconds",)
        assert {k: {f: v for f, v in r.items() if f not in strip} for k, r in a.items()} == {
            k: {f: v for f, v in r.items() if f not in strip} for k, r in b.items()
        }
