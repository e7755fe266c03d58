"""The demo generator: deterministic, realistic in shape, the sizes it promises, importable."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from carepool.catalog import actions as catalog_actions
from carepool.catalog import service as catalog_service
from carepool.catalog.codes import DEPARTMENT_CODES
from carepool.core import auth
from carepool.demo.build import DEMO_USERS, build_demo
from carepool.demo.generator import ROSTER_WEEKS, generate, lead_clinic

SEED = 20261128
START = date(2026, 12, 2)  # a Wednesday: rosters start on Monday 30 November


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return generate(SEED, START)


def _by_kind(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in doc["resources"] if r["kind"] == kind]


def _institutions(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [i for i in doc["institutions"] if i["kind"] == kind]


# -- determinism --------------------------------------------------------------------------------


def test_same_seed_and_start_give_byte_identical_documents(doc: dict[str, Any]) -> None:
    again = generate(SEED, START)
    assert json.dumps(again, ensure_ascii=False) == json.dumps(doc, ensure_ascii=False)


def test_different_seeds_give_different_consortia(doc: dict[str, Any]) -> None:
    other = generate(SEED + 1, START)
    assert json.dumps(other) != json.dumps(doc)
    staff_names = {r["name_zh"] for r in _by_kind(doc, "staff")}
    other_names = {r["name_zh"] for r in _by_kind(other, "staff")}
    assert staff_names != other_names


def test_start_date_moves_rosters_not_the_consortium(doc: dict[str, Any]) -> None:
    later = generate(SEED, START + timedelta(days=7))
    assert later["resources"] == doc["resources"]
    rosters = [r for r in later["calendar_rules"] if "valid_from" in r]
    assert {r["valid_from"] for r in rosters} == {"2026-12-07"}


def test_generator_leaves_global_random_alone() -> None:
    random.seed(99)
    state = random.getstate()
    generate(SEED, START)
    assert random.getstate() == state


# -- shape and size ------------------------------------------------------------------------------


def test_document_is_valid(doc: dict[str, Any]) -> None:
    parsed = catalog_actions.parse_document(doc)
    assert parsed.consortium.timezone == "Asia/Shanghai"
    for section, entries in doc.items():
        if isinstance(entries, list) and entries and "id" in entries[0]:
            ids = [e["id"] for e in entries]
            assert len(ids) == len(set(ids)), f"duplicate ids in {section}"


def test_county_hospital_has_an_east_and_a_west_campus(doc: dict[str, Any]) -> None:
    (county,) = _institutions(doc, "general_hospital")
    assert county["grade"] in ("2A", "3B")
    campuses = [c for c in doc["campuses"] if c["institution_id"] == county["id"]]
    assert sorted(c["id"] for c in campuses) == ["ch-east", "ch-west"]
    assert {"东院区" in c["name_zh"] or "西院区" in c["name_zh"] for c in campuses} == {True}


def test_three_branch_hospitals_with_one_campus_each(doc: dict[str, Any]) -> None:
    branches = _institutions(doc, "branch_hospital")
    assert len(branches) == 3
    assert all(b["parent_id"] == "ch" for b in branches)
    per = Counter(c["institution_id"] for c in doc["campuses"])
    assert all(per[b["id"]] == 1 for b in branches)


def test_clinics_and_centres_are_led_by_their_township(doc: dict[str, Any]) -> None:
    centres = _institutions(doc, "township_health_centre")
    villages = _institutions(doc, "village_clinic")
    assert len(centres) + len(villages) >= 20
    leaders = {i["id"]: i["kind"] for i in doc["institutions"]}
    assert {leaders[v["parent_id"]] for v in villages} <= {
        "township_health_centre",
        "branch_hospital",
    }
    led = Counter(v["parent_id"] for v in villages)
    assert all(led[c["id"]] >= 2 for c in centres)
    for v in villages:
        leader = next(i for i in doc["institutions"] if i["id"] == v["parent_id"])
        km = 111 * max(
            abs(v["latitude"] - leader["latitude"]), abs(v["longitude"] - leader["longitude"])
        )
        assert km < 10, f"{v['id']} lies {km:.0f} km from {leader['id']}"


def test_names_are_chinese_with_pinyin(doc: dict[str, Any]) -> None:
    ascii_name = re.compile(r"^[A-Za-z][A-Za-z' ,.&()\-0-9]*$")
    for inst in doc["institutions"]:
        assert re.search(r"[\u4e00-\u9fff]", inst["name_zh"]), inst
        assert ascii_name.match(inst["name"]), inst["name"]
        assert inst["address"].startswith("青岚县")
        assert 29 < inst["latitude"] < 30.2 and 118.8 < inst["longitude"] < 119.8
    for person in _by_kind(doc, "staff"):
        assert 2 <= len(person["name_zh"]) <= 3
        assert ascii_name.match(person["name"]), person["name"]
    dr_li = next(r for r in _by_kind(doc, "staff") if r["institution_id"] == lead_clinic(doc))
    assert dr_li["name_zh"].startswith("李") and dr_li["name"].startswith("Li ")


def test_members_name_the_same_department_differently(doc: dict[str, Any]) -> None:
    assert {d["code"] for d in doc["departments"]} <= set(DEPARTMENT_CODES)
    names: dict[str, set[str]] = {}
    for d in doc["departments"]:
        names.setdefault(d["code"], set()).add(d["local_name_zh"])
    varied = [code for code, local in names.items() if len(local) > 1]
    assert len(varied) >= 5, names


def test_several_hundred_beds_in_rooms_of_two_to_six(doc: dict[str, Any]) -> None:
    beds = _by_kind(doc, "bed")
    assert 600 <= len(beds) <= 900
    rooms = {r["id"]: r for r in _by_kind(doc, "room") if r["type_code"] == "room.ward"}
    per_room = Counter(b["room_id"] for b in beds)
    assert set(per_room) == set(rooms)
    for room_id, n in per_room.items():
        assert 2 <= n <= 6
        assert rooms[room_id]["capacity"] == n
    assert {b["gender_policy"] for b in beds} >= {"same_sex_room", "female", "mixed"}
    icu = [b for b in beds if b["type_code"] == "bed.icu"]
    assert icu and all({"monitor", "oxygen"} <= set(b["features"]) for b in icu)
    assert sum("ventilator" in b["features"] for b in icu) >= len(icu) // 2
    assert any("isolation" in b["features"] for b in beds)
    assert any(b.get("status") == "closed" for b in beds)


def test_about_ten_theatres_and_imaging_where_it_belongs(doc: dict[str, Any]) -> None:
    theatres = _by_kind(doc, "theatre")
    assert 8 <= len(theatres) <= 12
    assert {t["institution_id"] for t in theatres} == {"ch"} | {
        b["id"] for b in _institutions(doc, "branch_hospital")
    }
    modalities = Counter((m["institution_id"], m["type_code"]) for m in _by_kind(doc, "modality"))
    assert modalities[("ch", "modality.CT")] >= 2 and modalities[("ch", "modality.MR")] >= 1
    kinds = {i["id"]: i["kind"] for i in doc["institutions"]}
    for (member, type_code), _n in modalities.items():
        if type_code in ("modality.CT", "modality.MR"):
            assert kinds[member] == "general_hospital"
    for member, kind in kinds.items():
        if kind in ("branch_hospital", "township_health_centre"):
            assert {"modality.DX", "modality.US", "modality.ECG"} <= {
                t for m, t in modalities if m == member
            }
    sections = {r["type_code"] for r in _by_kind(doc, "lab_section")}
    assert {"lab.haematology", "lab.chemistry", "lab.microbiology"} <= sections
    assert _by_kind(doc, "analyser")


def test_a_few_hundred_staff_with_roles_and_skills(doc: dict[str, Any]) -> None:
    staff = _by_kind(doc, "staff")
    assert 200 <= len(staff) <= 800
    roles = Counter(s["role"] for s in staff)
    assert set(roles) == {"surgeon", "anaesthetist", "physician", "nurse", "technician"}
    assert {s["skill_level"] for s in staff if s["role"] == "nurse"} == {0, 1, 2}
    surgeons = [s for s in staff if s["role"] == "surgeon"]
    assert {"04.01", "04.03", "05.02", "10"} <= {c for s in surgeons for c in s["specialties"]}


def _rules_of(doc: dict[str, Any], resource_id: str) -> dict[str, dict[str, Any]]:
    return {r["label"]: r for r in doc["calendar_rules"] if r["resource_id"] == resource_id}


def test_rosters_rotate_and_run_for_the_coming_weeks(doc: dict[str, Any]) -> None:
    monday = "2026-11-30"
    last = (date(2026, 11, 30) + timedelta(days=7 * ROSTER_WEEKS - 1)).isoformat()
    staff = {s["id"]: s for s in _by_kind(doc, "staff")}
    rotating = [r for r in doc["calendar_rules"] if r["label"] == "night" and r["cycle_days"] == 8]
    assert len(rotating) >= 50
    assert {staff[r["resource_id"]]["role"] for r in rotating} == {"nurse"}
    assert len({r["anchor"] for r in rotating}) == 8  # staggered over the cycle
    nurse = _rules_of(doc, rotating[0]["resource_id"])
    assert {"early", "late", "night"} <= set(nurse)
    assert nurse["late"]["end"] == "00:00"  # runs to midnight
    assert all(r["valid_from"] == monday and r["valid_to"] == last for r in nurse.values())
    surgeon = next(s for s in staff.values() if s["role"] == "surgeon")
    assert len(_rules_of(doc, surgeon["id"])["theatre"]["days"]) == 2
    tech = next(s for s in staff.values() if s["role"] == "technician")
    assert _rules_of(doc, tech["id"])["day"]["days"] == [0, 1, 2, 3, 4]


def test_opening_hours_for_modalities_and_clinics(doc: dict[str, Any]) -> None:
    mr = _rules_of(doc, "ch-east-mr1")
    assert mr["open"]["days"] == [0, 1, 2, 3, 4] and "valid_from" not in mr["open"]
    ct = _rules_of(doc, "ch-east-ct1")
    assert ct["day"]["days"] == list(range(7)) and ct["emergency"]["start"] == "20:00"
    clinic_room = next(r for r in _by_kind(doc, "room") if r["institution_id"] == lead_clinic(doc))
    hours = _rules_of(doc, clinic_room["id"])
    assert (hours["am"]["end"], hours["pm"]["start"]) == ("11:30", "13:30")


def test_calendar_exceptions_fall_in_the_first_fortnight(doc: dict[str, Any]) -> None:
    kinds = Counter(x["kind"] for x in doc["calendar_exceptions"])
    assert kinds["maintenance"] >= 1 and kinds["leave"] >= 1
    resources = {r["id"]: r for r in doc["resources"]}
    ct = [x for x in doc["calendar_exceptions"] if x["resource_id"] == "ch-east-ct2"]
    assert ct and ct[0]["kind"] == "maintenance"
    leave = [x for x in doc["calendar_exceptions"] if x["kind"] == "leave"]
    assert any(resources[x["resource_id"]].get("role") == "nurse" for x in leave)
    first = datetime.fromisoformat("2026-11-30T00:00:00+08:00")
    for x in doc["calendar_exceptions"]:
        start = datetime.fromisoformat(x["start"])
        assert first <= start < first + timedelta(days=14)


def test_service_catalogue_is_offered_where_the_resources_are(doc: dict[str, Any]) -> None:
    services = {s["id"]: s for s in doc["services"]}
    assert 30 <= len(services) <= 50
    assert {
        "ct-head",
        "mr-knee",
        "dr-chest",
        "us-abdomen",
        "ecg",
        "lab-cbc",
        "lab-liver",
        "lab-renal",
        "lab-hba1c",
        "consult-cardiology",
        "consult-gp",
        "lap-cholecystectomy",
        "appendectomy",
        "hip-replacement",
        "cataract-surgery",
        "caesarean-section",
        "gastroscopy",
        "admit-general",
    } <= set(services)
    types_of: dict[str, set[str]] = {}
    for r in doc["resources"]:
        if r.get("status", "in_service") == "in_service":
            types_of.setdefault(r["institution_id"], set()).add(r["type_code"])
    for s in services.values():
        assert s["offered_by"], f"nobody offers {s['id']}"
        assert s["currency"] == "CNY" and float(s["price"]) > 0
        needed = {r["type_code"] for r in s["requirements"] if "type_code" in r}
        for member in s["offered_by"]:
            assert needed <= types_of[member], (s["id"], member)
    assert services["mr-knee"]["offered_by"] == ["ch"]
    assert len(services["consult-gp"]["offered_by"]) >= 20  # every clinic sees patients
    assert "village_clinic" in services["ct-head"]["orderable_by_kinds"]
    assert services["lab-cbc"]["codes"] == {"loinc": "58410-2"}


# -- into a database -----------------------------------------------------------------------------


@pytest.mark.slow
def test_imports_with_no_error_and_exports_the_same_entries(
    engine: Any, db_url: str, sessions: sessionmaker[Session], doc: dict[str, Any]
) -> None:
    """Through `build_demo`, which imports with `do_import_catalog` and adds the demo users."""
    summary = build_demo(db_url, SEED, start_date=START)
    created = summary.imported["created"]
    assert created["resource"] == len(doc["resources"])
    assert created["calendar_rule"] == len(doc["calendar_rules"])
    assert summary.users_created == [spec.username for spec in DEMO_USERS]
    with sessions() as session:
        exported = catalog_service.export_document(session)
        assert catalog_service.counts(session)["resource.bed"] == len(_by_kind(doc, "bed"))
        dr_li = auth.get_user(session, username="dr.li")
        assert dr_li.institution_id == lead_clinic(doc) and "李" in dr_li.display_name
    parsed = catalog_actions.parse_document(doc).model_dump(mode="json")
    for section in ("institutions", "wards", "resources", "calendar_exceptions", "services"):
        assert sorted(parsed[section], key=lambda e: e["id"]) == exported[section], section
