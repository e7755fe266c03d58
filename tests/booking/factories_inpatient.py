"""A small catalogue for the inpatient and surgery tests: wards, rooms, beds of every sex policy,
an isolation room, theatres and a surgical team. Hand-written so each test can name what it uses.

hosp (county hospital), campus hosp-main:
  ward hosp-surg (general surgery)
    room hosp-r1 (2 beds, same_sex_room, oxygen; r1-1 also monitor)
    room hosp-r2 (2 beds, female-only, oxygen)
    room hosp-r3 (1 bed, male-only)
    room hosp-r4 (1 isolation bed, bed.isolation: isolation, oxygen, monitor)
    bed  hosp-obs1 (mixed, no room, no features)
    bed  hosp-oos1 (mixed, in maintenance)
  theatres hosp-t1, hosp-t2 (sessions weekdays 08:00-18:00)
  surgeons hosp-s-li, hosp-s-wang (general surgery); hosp-s-zhao (orthopaedics)
  anaesthetists hosp-a-chen, hosp-a-liu (liu works mornings only); nurses hosp-n1..hosp-n4
hosp campus hosp-west: ward hosp-med (cardiology): room hosp-r5 (2 beds, same_sex_room)
branch (branch hospital): ward branch-w1: bed branch-b1 (mixed)
clinic (village clinic)
"""

from __future__ import annotations

from typing import Any


def _bed(
    id: str,
    *,
    ward: str,
    room: str | None,
    policy: str,
    features: list[str] | None = None,
    type_code: str = "bed.general",
    institution: str = "hosp",
    campus: str = "hosp-main",
    status: str = "in_service",
) -> dict[str, Any]:
    return {
        "id": id,
        "kind": "bed",
        "type_code": type_code,
        "name": f"Bed {id}",
        "institution_id": institution,
        "campus_id": campus,
        "ward_id": ward,
        "room_id": room,
        "gender_policy": policy,
        "features": features or [],
        "status": status,
    }


def _room(id: str, *, ward: str, capacity: int, campus: str = "hosp-main") -> dict[str, Any]:
    return {
        "id": id,
        "kind": "room",
        "type_code": "room.ward",
        "name": f"Room {id}",
        "institution_id": "hosp",
        "campus_id": campus,
        "ward_id": ward,
        "capacity": capacity,
    }


def _staff(id: str, role: str, *, skill: int, specialties: list[str], name: str) -> dict[str, Any]:
    return {
        "id": id,
        "kind": "staff",
        "type_code": f"staff.{role}",
        "name": name,
        "institution_id": "hosp",
        "campus_id": "hosp-main",
        "department_id": "hosp-anaes" if role in ("anaesthetist", "nurse") else "hosp-gs",
        "role": role,
        "skill_level": skill,
        "specialties": specialties,
    }


def _theatre(id: str) -> dict[str, Any]:
    return {
        "id": id,
        "kind": "theatre",
        "type_code": "theatre.general",
        "name": f"Theatre {id}",
        "institution_id": "hosp",
        "campus_id": "hosp-main",
        "department_id": "hosp-anaes",
    }


def _weekdays(id: str, resource: str, start: str, end: str) -> dict[str, Any]:
    return {
        "id": id,
        "resource_id": resource,
        "label": "elective",
        "days": [0, 1, 2, 3, 4],
        "start": start,
        "end": end,
    }


def ward_catalog() -> dict[str, Any]:
    """The catalogue document (a fresh copy each call)."""
    return {
        "format": "carepool.catalog/1",
        "consortium": {"id": "cons", "name": "Test County Consortium", "name_zh": "测试县医共体"},
        "department_codes": [
            {"code": "03.04", "name": "Cardiology", "name_zh": "心血管内科专业"},
            {"code": "04.01", "name": "General surgery", "name_zh": "普通外科专业"},
            {"code": "04.03", "name": "Orthopaedics", "name_zh": "骨科专业"},
            {"code": "26", "name": "Anaesthesiology", "name_zh": "麻醉科"},
        ],
        "institutions": [
            {
                "id": "hosp",
                "name": "County People's Hospital",
                "kind": "general_hospital",
                "grade": "3A",
            },
            {
                "id": "branch",
                "name": "East Branch Hospital",
                "kind": "branch_hospital",
                "grade": "2A",
                "parent_id": "hosp",
            },
            {
                "id": "clinic",
                "name": "Willow Village Clinic",
                "kind": "village_clinic",
                "grade": "unrated",
                "parent_id": "hosp",
            },
        ],
        "campuses": [
            {"id": "hosp-main", "institution_id": "hosp", "name": "Main campus"},
            {"id": "hosp-west", "institution_id": "hosp", "name": "West campus"},
            {"id": "branch-site", "institution_id": "branch", "name": "Branch"},
        ],
        "departments": [
            {"id": "hosp-gs", "institution_id": "hosp", "campus_id": "hosp-main", "code": "04.01"},
            {
                "id": "hosp-anaes",
                "institution_id": "hosp",
                "campus_id": "hosp-main",
                "code": "26",
            },
            {
                "id": "hosp-cardio",
                "institution_id": "hosp",
                "campus_id": "hosp-west",
                "code": "03.04",
            },
            {
                "id": "branch-med",
                "institution_id": "branch",
                "campus_id": "branch-site",
                "code": "03.04",
            },
        ],
        "wards": [
            {
                "id": "hosp-surg",
                "institution_id": "hosp",
                "department_id": "hosp-gs",
                "kind": "general",
                "name": "Surgical ward",
            },
            {
                "id": "hosp-med",
                "institution_id": "hosp",
                "department_id": "hosp-cardio",
                "kind": "general",
                "name": "Cardiology ward",
            },
            {
                "id": "branch-w1",
                "institution_id": "branch",
                "department_id": "branch-med",
                "kind": "general",
                "name": "Branch ward",
            },
        ],
        "resources": [
            _room("hosp-r1", ward="hosp-surg", capacity=2),
            _room("hosp-r2", ward="hosp-surg", capacity=2),
            _room("hosp-r3", ward="hosp-surg", capacity=1),
            _room("hosp-r4", ward="hosp-surg", capacity=1),
            _room("hosp-r5", ward="hosp-med", capacity=2, campus="hosp-west"),
            _bed(
                "hosp-r1-1",
                ward="hosp-surg",
                room="hosp-r1",
                policy="same_sex_room",
                features=["oxygen", "monitor"],
            ),
            _bed(
                "hosp-r1-2",
                ward="hosp-surg",
                room="hosp-r1",
                policy="same_sex_room",
                features=["oxygen"],
            ),
            _bed(
                "hosp-r2-1", ward="hosp-surg", room="hosp-r2", policy="female", features=["oxygen"]
            ),
            _bed(
                "hosp-r2-2", ward="hosp-surg", room="hosp-r2", policy="female", features=["oxygen"]
            ),
            _bed("hosp-r3-1", ward="hosp-surg", room="hosp-r3", policy="male"),
            _bed(
                "hosp-iso1",
                ward="hosp-surg",
                room="hosp-r4",
                policy="mixed",
                type_code="bed.isolation",
                features=["isolation", "oxygen", "monitor"],
            ),
            _bed("hosp-obs1", ward="hosp-surg", room=None, policy="mixed"),
            _bed("hosp-oos1", ward="hosp-surg", room=None, policy="mixed", status="maintenance"),
            _bed(
                "hosp-r5-1",
                ward="hosp-med",
                room="hosp-r5",
                policy="same_sex_room",
                campus="hosp-west",
            ),
            _bed(
                "hosp-r5-2",
                ward="hosp-med",
                room="hosp-r5",
                policy="same_sex_room",
                campus="hosp-west",
            ),
            _bed(
                "branch-b1",
                ward="branch-w1",
                room=None,
                policy="mixed",
                institution="branch",
                campus="branch-site",
            ),
            _theatre("hosp-t1"),
            _theatre("hosp-t2"),
            _staff("hosp-s-li", "surgeon", skill=3, specialties=["04.01"], name="Li Ming"),
            _staff("hosp-s-wang", "surgeon", skill=2, specialties=["04.01"], name="Wang Lei"),
            _staff("hosp-s-zhao", "surgeon", skill=2, specialties=["04.03"], name="Zhao Gang"),
            _staff("hosp-a-chen", "anaesthetist", skill=2, specialties=["26"], name="Chen Jing"),
            _staff("hosp-a-liu", "anaesthetist", skill=2, specialties=["26"], name="Liu Yang"),
            *(
                _staff(f"hosp-n{i}", "nurse", skill=2, specialties=["26"], name=f"Nurse {i}")
                for i in range(1, 5)
            ),
        ],
        "calendar_rules": [
            _weekdays("hosp-t1-elective", "hosp-t1", "08:00", "18:00"),
            _weekdays("hosp-t2-elective", "hosp-t2", "08:00", "18:00"),
            _weekdays("hosp-a-liu-mornings", "hosp-a-liu", "08:00", "12:00"),
        ],
        "services": [
            {
                "id": "hernia-repair",
                "name": "Inguinal hernia repair",
                "category": "surgery",
                "department_code": "04.01",
                "duration_min": 60,
                "preparation_min": 15,
                "turnover_min": 30,
                "price": "3000.00",
                "requirements": [
                    {"kind": "theatre", "count": 1},
                    {
                        "kind": "staff",
                        "role": "surgeon",
                        "min_skill": 1,
                        "specialty": "04.01",
                        "count": 1,
                    },
                    {"kind": "staff", "role": "anaesthetist", "count": 1},
                    {"kind": "staff", "role": "nurse", "count": 2},
                ],
                "offered_by": ["hosp"],
                "orderable_by_roles": ["clinician", "theatre_coordinator"],
                "orderable_by_kinds": ["general_hospital"],
            },
            {
                "id": "cardio-consult",
                "name": "Cardiology consultation",
                "category": "consultation",
                "department_code": "03.04",
                "duration_min": 20,
                "price": "30.00",
                "requirements": [{"kind": "staff", "role": "surgeon", "count": 1}],
                "offered_by": ["hosp"],
            },
        ],
    }
