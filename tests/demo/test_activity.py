"""The demo's simulated month: volumes and states, occupancy, no double booking, every write
audited, the same month for the same seed, and no second month when the demo is built again."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from carepool.booking import service as booking_service
from carepool.booking.inpatient import actions as inpatient_actions
from carepool.booking.inpatient import service as inpatient_service
from carepool.booking.inpatient.models import PatientSex
from carepool.booking.models import ResourceClaim
from carepool.booking.orders import service as order_service
from carepool.booking.surgery import service as surgery_service
from carepool.catalog import service as catalog_service
from carepool.catalog.actions import do_import_catalog
from carepool.catalog.models import InstitutionKind, ResourceKind
from carepool.core.auth import Principal
from carepool.core.db import make_engine, make_session_factory
from carepool.demo.activity import has_activity, pool_counts, simulate
from carepool.demo.build import build_demo
from carepool.demo.generator import generate
from carepool.records import actions as records_actions
from carepool.records import service as records_service
from tests.factories import small_catalog

SEED = 20261128
CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 12, 9, 10, 30, tzinfo=CST)  # a Wednesday morning in Shanghai
ROSTERS = date(2026, 11, 23)  # the Monday two weeks before NOW's: the fortnight had staff
SYSTEM = Principal.system_actor("test")
ENTITIES = (  # table, audit entity type
    ("appointment", "appointment"),
    ("admission", "admission"),
    ("referral", "referral"),
    ("service_order", "order"),
    ("surgery_case", "surgery_case"),
)


def _count(conn: Connection, sql: str) -> int:
    return int(conn.execute(text(sql)).scalar_one())


def _overlapping_claims(conn: Connection) -> int:
    """Active claims of one resource lane whose times overlap (must be none)."""
    return _count(
        conn,
        "SELECT count(*) FROM resource_claim a JOIN resource_claim b "
        "ON a.resource_id = b.resource_id AND a.lane = b.lane AND a.id < b.id "
        "AND a.active AND b.active AND a.start_at < b.end_at AND b.start_at < a.end_at",
    )


def _unaudited(conn: Connection) -> dict[str, int]:
    """Rows without the audit record of their creation, per table (must be none)."""
    return {
        table: _count(
            conn,
            f"SELECT count(*) FROM {table} x WHERE NOT EXISTS (SELECT 1 FROM audit_event e "
            f"WHERE e.entity_type = '{kind}' AND e.entity_id = x.id AND e.action = 'C')",
        )
        for table, kind in ENTITIES
    }


def _wrong_sex(conn: Connection) -> tuple[int, int]:
    """(patients in a bed of the other sex's policy, same-sex rooms that held both sexes)."""
    single = _count(
        conn,
        "SELECT count(*) FROM resource_claim c JOIN admission a ON a.id = c.owner_id "
        "JOIN resource b ON b.id = c.resource_id WHERE c.purpose = 'admission' AND c.active "
        "AND ((b.gender_policy = 'female' AND a.patient_sex <> 'female') "
        "OR (b.gender_policy = 'male' AND a.patient_sex <> 'male'))",
    )
    mixed_rooms = _count(
        conn,
        "SELECT count(*) FROM resource_claim c1 "
        "JOIN resource b1 ON b1.id = c1.resource_id JOIN admission a1 ON a1.id = c1.owner_id "
        "JOIN resource b2 ON b2.room_id = b1.room_id AND b2.id <> b1.id "
        "JOIN resource_claim c2 ON c2.resource_id = b2.id JOIN admission a2 ON a2.id = c2.owner_id "
        "WHERE c1.purpose = 'admission' AND c2.purpose = 'admission' AND c1.active AND c2.active "
        "AND b1.gender_policy = 'same_sex_room' AND b2.gender_policy = 'same_sex_room' "
        "AND c1.start_at < c2.end_at AND c2.start_at < c1.end_at "
        "AND a1.patient_sex <> a2.patient_sex",
    )
    return single, mixed_rooms


def _appointment_set(session: Session) -> list[tuple[str, ...]]:
    rows, _ = booking_service.get_all_appointments(session, SYSTEM, limit=100_000)
    return sorted(
        (
            a.service_id,
            a.institution_id,
            a.requester_institution_id or "",
            a.start_at.isoformat(),
            a.patient_ref,
            a.patient_name,
            a.status.value,
        )
        for a in rows
    )


def _demo_with_few_beds() -> dict[str, Any]:
    """The demo catalogue with beds left in one ward of each kind per member kind (filling
    every ward costs most of a simulation; everything else is the demo's)."""
    doc = generate(SEED, ROSTERS)
    kind_of = {i["id"]: i["kind"] for i in doc["institutions"]}
    keep: dict[tuple[str, str], str] = {}
    for ward in doc["wards"]:
        keep.setdefault((kind_of[ward["institution_id"]], ward["kind"]), ward["id"])
    wards = set(keep.values())
    doc["resources"] = [
        r for r in doc["resources"] if r["kind"] != "bed" or r.get("ward_id") in wards
    ]
    return doc


def _import(sessions: Any, doc: dict[str, Any]) -> None:
    with sessions() as session, session.begin():
        do_import_catalog(session, actor=SYSTEM, raw=doc, source="demo")


def _simulate(sessions: Any, **window: int) -> dict[str, Any]:
    with sessions() as session, session.begin():
        rosters = datetime(ROSTERS.year, ROSTERS.month, ROSTERS.day, tzinfo=CST)
        return simulate(session, seed=SEED, start=rosters, now=NOW, **window).as_dict()


# -- cheap: the pool is left alone when it already has activity --------------------------------


def test_a_pool_with_activity_is_left_alone(engine: Any, sessions: Any) -> None:
    with sessions() as session, session.begin():
        do_import_catalog(session, actor=SYSTEM, raw=small_catalog())
        assert not has_activity(session)
        patient, _ = records_actions.do_register_patient(
            session, actor=SYSTEM, institution_id="hosp", local_id="000001"
        )
        inpatient_actions.do_create_admission(
            session,
            actor=SYSTEM,
            now=NOW,
            institution_id="hosp",
            patient_ref=patient.id,
            patient_sex=PatientSex.FEMALE,
            age=40,
            expected_stay_days=3,
        )
    with sessions() as session, session.begin():
        assert has_activity(session)
        summary = simulate(session, seed=SEED, start=NOW - timedelta(days=30), now=NOW)
    assert summary.simulated is False
    assert summary.admissions["total"] == 1 and summary.admissions["requested"] == 1
    assert summary.appointments["total"] == 0 and summary.surgery_cases["total"] == 0


# -- a short month on each backend, twice: the same seed gives the same month ------------------


@pytest.mark.slow
def test_same_seed_same_month(engine: Any, sessions: Any, db_url: str, new_db_url: str) -> None:
    window = {"days_back": 2, "days_ahead": 3}
    doc = _demo_with_few_beds()
    _import(sessions, doc)
    first = _simulate(sessions, **window)
    other = make_engine(new_db_url)
    try:
        other_sessions = make_session_factory(other)
        _import(other_sessions, doc)
        second = _simulate(other_sessions, **window)
        with sessions() as a, other_sessions() as b:
            assert _appointment_set(a) == _appointment_set(b)
    finally:
        other.dispose()
    for key in ("appointments", "referrals", "orders", "admissions", "surgery_cases", "beds"):
        assert first[key] == second[key], key
    assert first["appointments"]["total"] > 100 and first["admissions"]["discharged"] > 10
    assert first["referrals"]["total"] > 5 and first["surgery_cases"]["completed"] > 5
    with engine.connect() as conn:
        assert _overlapping_claims(conn) == 0
        assert _unaudited(conn) == {table: 0 for table, _ in ENTITIES}
        assert _wrong_sex(conn) == (0, 0)


# -- the whole month, on SQLite ----------------------------------------------------------------


@pytest.mark.slow
def test_a_living_month_on_sqlite(tmp_path: Any) -> None:
    """Built as `carepool demo` builds it; then built again, which adds no second month."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    activity = build_demo(url, SEED, start_date=ROSTERS, now=NOW).activity
    assert activity["simulated"] is True
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert _overlapping_claims(conn) == 0
            assert _unaudited(conn) == {table: 0 for table, _ in ENTITIES}
            assert _wrong_sex(conn) == (0, 0)
            _check_transitions_audited(conn)
        with make_session_factory(engine)() as session:
            _check_appointments(session, activity)
            _check_referrals_orders_and_cases(session, activity)
            _check_wards(session, activity)
            _check_patients(session)
            _check_county_busier_than_branches(session)
    finally:
        engine.dispose()

    again = build_demo(url, SEED, start_date=ROSTERS, now=NOW).activity
    assert again["simulated"] is False
    for key in ("appointments", "referrals", "orders", "admissions", "surgery_cases"):
        assert again[key] == activity[key], key


def _check_transitions_audited(conn: Connection) -> None:
    """Every appointment that moved on, and every discharge, left an update record."""
    assert (
        _count(
            conn,
            "SELECT count(*) FROM appointment x WHERE x.status <> 'booked' AND NOT EXISTS "
            "(SELECT 1 FROM audit_event e WHERE e.entity_type = 'appointment' "
            "AND e.entity_id = x.id AND e.action = 'U')",
        )
        == 0
    )
    assert (
        _count(
            conn,
            "SELECT count(*) FROM admission x WHERE x.status = 'discharged' AND NOT EXISTS "
            "(SELECT 1 FROM audit_event e WHERE e.entity_type = 'admission' "
            "AND e.entity_id = x.id AND e.detail = 'discharge')",
        )
        == 0
    )
    assert _count(conn, "SELECT count(*) FROM event_outbox") > _count(
        conn, "SELECT count(*) FROM appointment"
    )


def _check_appointments(session: Session, activity: dict[str, Any]) -> None:
    counts = activity["appointments"]
    assert counts["total"] >= 500, counts
    for state in ("booked", "arrived", "fulfilled", "cancelled", "noshow"):
        assert counts[state] > 0, (state, counts)
    rows, _ = booking_service.get_all_appointments(session, SYSTEM, limit=100_000)
    past = [a for a in rows if a.end_at < NOW - timedelta(hours=1)]  # late ones may yet come
    seen_or_missed = [a for a in past if a.status.value in ("fulfilled", "noshow")]
    missed = sum(a.status.value == "noshow" for a in seen_or_missed)
    assert 0.03 <= missed / len(seen_or_missed) <= 0.10, (missed, len(seen_or_missed))
    assert not [a.id for a in past if a.status.value in ("booked", "held")]
    assert all(a.cancel_reason for a in rows if a.status.value == "cancelled")
    future = [a for a in rows if a.start_at > NOW and a.status.value == "booked"]
    assert len(future) >= 100
    # The diary empties with distance: the coming week holds more than the one after.
    week = sum(a.start_at < NOW + timedelta(days=7) for a in future)
    assert week > len(future) - week
    services = {a.service_id for a in rows}
    kinds = {catalog_service.get(session, kind="service", id=s).category.value for s in services}
    assert {"imaging", "lab", "consultation", "procedure"} <= kinds
    # Clinics book at the county hospital: the pool, not each member's own diary.
    assert any(
        a.requester_institution_id and a.requester_institution_id.startswith("vc-") for a in rows
    )


def _check_referrals_orders_and_cases(session: Session, activity: dict[str, Any]) -> None:
    referrals = activity["referrals"]
    for state in ("requested", "accepted", "declined", "booked", "report_returned"):
        assert referrals[state] > 0, (state, referrals)
    assert referrals["attended"] + referrals["report_returned"] > 0

    orders = activity["orders"]
    assert orders["completed"] > 0, orders
    placed, _ = order_service.get_all_orders(session, SYSTEM, limit=100_000)
    routed = [o for o in placed if o.performing_institution_id]
    assert routed and all(o.performing_institution_id != o.ordering_institution_id for o in routed)
    assert any(o.result_ref for o in placed if o.status.value == "completed")

    cases = activity["surgery_cases"]
    for state in ("scheduled", "completed", "cancelled"):
        assert cases[state] > 0, (state, cases)
    listed, _ = surgery_service.get_all_cases(session, SYSTEM, limit=100_000)
    for case in listed:
        if case.status.value not in ("scheduled", "in_theatre", "completed"):
            continue
        service = catalog_service.get(session, kind="service", id=case.service_id)
        assert len(case.team) == sum(r.count for r in service.requirements), case.id
        assert case.start_at is not None
        if case.status.value == "scheduled":
            assert case.start_at > NOW - timedelta(hours=1), case.id
    assert any(c.admission_id for c in listed)


def _check_wards(session: Session, activity: dict[str, Any]) -> None:
    occupancy = activity["occupancy"]
    assert 0.70 <= occupancy["general"] <= 0.95, occupancy
    assert occupancy["icu"] >= occupancy["general"], occupancy
    beds = activity["beds"]
    for state in ("occupied", "free", "reserved", "to_clean", "out_of_service"):
        assert beds[state] > 0, (state, beds)
    admissions = activity["admissions"]
    for state in ("requested", "admitted", "discharged"):
        assert admissions[state] > 0, (state, admissions)
    rows, _ = inpatient_service.get_all_admissions(session, SYSTEM, limit=100_000)
    assert sum(len(a.bed_history) >= 2 for a in rows) >= 3  # transferred
    # The board agrees with what the summary reported.
    assert pool_counts(session, now=NOW)["beds"] == beds


def _check_patients(session: Session) -> None:
    """Registered patients of the members, and one name and one sex per patient everywhere."""
    members = {i.id for i in catalog_service.get_all(session, kind="institution", limit=1000)[0]}
    names: dict[str, set[str]] = defaultdict(set)
    sexes: dict[str, set[str]] = defaultdict(set)
    appointments, _ = booking_service.get_all_appointments(session, SYSTEM, limit=100_000)
    admissions, _ = inpatient_service.get_all_admissions(session, SYSTEM, limit=100_000)
    for a in appointments:
        names[a.patient_ref].add(a.patient_name)
    for b in admissions:
        names[b.patient_ref].add(b.patient_name)
        sexes[b.patient_ref].add(b.patient_sex.value)
    assert all(a.patient_id == a.patient_ref for a in [*appointments, *admissions])
    for ref, seen in names.items():
        record = records_service.get(session, kind="patient", id=ref)  # a registered patient
        assert record.institution_id in members and re.fullmatch(r"\d{6}", record.local_id), ref
        assert len(seen) == 1 and re.search(r"[\u4e00-\u9fff]", next(iter(seen))), (ref, seen)
    assert all(len(s) == 1 for s in sexes.values())


def _busy_share(session: Session, resource_ids: list[str]) -> float:
    """Share of weekday daytime (08:00-17:30) of the past fortnight the resources were claimed."""
    if not resource_ids:
        return 0.0
    claims = session.scalars(
        select(ResourceClaim).where(
            ResourceClaim.resource_id.in_(resource_ids),
            ResourceClaim.active.is_(True),
            ResourceClaim.start_at >= NOW - timedelta(days=14),
            ResourceClaim.end_at <= NOW - timedelta(days=1),
        )
    )
    busy = 0.0
    for c in claims:
        local = c.start_at.astimezone(CST)
        if local.weekday() < 5 and 8 <= local.hour < 17:
            busy += (c.end_at - c.start_at).total_seconds() / 60
    weekdays = sum(
        (NOW - timedelta(days=d)).weekday() < 5 for d in range(1, 14)
    )  # whole days before today
    return busy / (len(resource_ids) * weekdays * 570)


def _check_county_busier_than_branches(session: Session) -> None:
    """The county's MR scanner is booked most of the day; the branches' scanners stay idle."""

    def modalities(kind: InstitutionKind, type_codes: tuple[str, ...]) -> list[str]:
        members = {
            i.id
            for i in catalog_service.get_all(
                session, kind="institution", filters={"kind": kind}, limit=1000
            )[0]
        }
        resources, _ = catalog_service.get_all(
            session, kind="resource", filters={"kind": ResourceKind.MODALITY}, limit=100_000
        )
        return [
            r.id for r in resources if r.institution_id in members and r.type_code in type_codes
        ]

    county_mr = _busy_share(session, modalities(InstitutionKind.GENERAL_HOSPITAL, ("modality.MR",)))
    branch_scanners = _busy_share(
        session, modalities(InstitutionKind.BRANCH_HOSPITAL, ("modality.DX", "modality.US"))
    )
    assert county_mr >= 0.6, county_mr
    assert branch_scanners <= 0.3, branch_scanners
    tomorrow = NOW.replace(hour=8, minute=0) + timedelta(days=1)
    free = booking_service.search_slots(
        session,
        service_id="dr-chest",
        start=tomorrow,
        end=tomorrow + timedelta(hours=9),
        now=NOW,
        limit=1000,
    )
    assert {s.institution_id for s in free if s.institution_id.startswith("br-")}
