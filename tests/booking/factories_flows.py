"""The small catalogue grown for referral and order tests.

Distances from the village clinic (30.20 N, 120.20 E): the county hospital `hosp` 11 km south,
the township centre `town` 6 km north-east, the branch hospital `east` 39 km east. CT head is
offered by `hosp` and `east`; a blood count (`cbc`, lab) by `hosp` and `town`; a cardiology
consultation by `hosp`, where a cardiologist sees patients on weekday mornings.
"""

from __future__ import annotations

from typing import Any

from tests.factories import small_catalog


def flows_catalog() -> dict[str, Any]:
    doc = small_catalog()
    for inst in doc["institutions"]:
        if inst["id"] == "clinic":
            inst.update(latitude=30.2, longitude=120.2)
    doc["department_codes"].append(
        {"code": "30", "name": "Laboratory medicine", "name_zh": "医学检验科"}
    )
    doc["institutions"] += [
        {
            "id": "east",
            "name": "East Branch Hospital",
            "name_zh": "东部分院",
            "kind": "branch_hospital",
            "grade": "2A",
            "parent_id": "hosp",
            "latitude": 30.2,
            "longitude": 120.6,
        },
        {
            "id": "town",
            "name": "Maple Town Health Centre",
            "name_zh": "枫镇卫生院",
            "kind": "township_health_centre",
            "grade": "1",
            "parent_id": "hosp",
            "latitude": 30.24,
            "longitude": 120.24,
        },
    ]
    doc["campuses"] += [
        {"id": "east-main", "institution_id": "east", "name": "East", "name_zh": "东院"},
        {"id": "town-main", "institution_id": "town", "name": "Town", "name_zh": "镇院"},
    ]
    doc["departments"] += [
        {
            "id": "east-ct",
            "institution_id": "east",
            "campus_id": "east-main",
            "code": "32.02",
            "local_name": "CT",
            "local_name_zh": "CT室",
        },
        {
            "id": "town-lab",
            "institution_id": "town",
            "campus_id": "town-main",
            "code": "30",
            "local_name": "Lab",
            "local_name_zh": "检验科",
        },
    ]
    doc["resources"] += [
        {
            "id": "east-ct1",
            "kind": "modality",
            "type_code": "modality.CT",
            "name": "East CT",
            "institution_id": "east",
            "campus_id": "east-main",
            "department_id": "east-ct",
        },
        {
            "id": "east-tech1",
            "kind": "staff",
            "type_code": "staff.technician",
            "name": "Zhao Min",
            "institution_id": "east",
            "department_id": "east-ct",
            "role": "technician",
            "skill_level": 2,
        },
        {
            "id": "hosp-an1",
            "kind": "analyser",
            "type_code": "analyser.haematology",
            "name": "Haematology analyser",
            "institution_id": "hosp",
            "campus_id": "hosp-main",
        },
        {
            "id": "town-an1",
            "kind": "analyser",
            "type_code": "analyser.haematology",
            "name": "Town haematology analyser",
            "institution_id": "town",
            "campus_id": "town-main",
            "department_id": "town-lab",
        },
        {
            "id": "hosp-dr1",
            "kind": "staff",
            "type_code": "staff.physician",
            "name": "Zhang Hua",
            "name_zh": "张华",
            "institution_id": "hosp",
            "department_id": "hosp-cardio",
            "role": "physician",
            "skill_level": 3,
            "specialties": ["03.04"],
        },
    ]
    doc["calendar_rules"] += [
        {
            "id": "east-ct1-weekdays",
            "resource_id": "east-ct1",
            "days": [0, 1, 2, 3, 4],
            "start": "08:00",
            "end": "17:00",
        },
        {
            "id": "hosp-dr1-mornings",
            "resource_id": "hosp-dr1",
            "days": [0, 1, 2, 3, 4],
            "start": "08:00",
            "end": "12:00",
        },
        {
            "id": "town-an1-days",
            "resource_id": "town-an1",
            "days": [0, 1, 2, 3, 4],
            "start": "08:00",
            "end": "11:00",
        },
    ]
    ct = next(s for s in doc["services"] if s["id"] == "ct-head")
    ct["offered_by"] = ["hosp", "east"]
    ct["orderable_by_kinds"] = [
        "general_hospital",
        "branch_hospital",
        "township_health_centre",
        "village_clinic",
    ]
    doc["services"] += [
        {
            "id": "cbc",
            "name": "Complete blood count",
            "name_zh": "血常规",
            "category": "lab",
            "department_code": "30",
            "duration_min": 10,
            "price": "25.00",
            "requirements": [{"kind": "analyser", "type_code": "analyser.haematology"}],
            "offered_by": ["hosp", "town"],
            "orderable_by_roles": ["clinician"],
        },
        {
            "id": "cardio-consult",
            "name": "Cardiology consultation",
            "name_zh": "心内科专家门诊",
            "category": "consultation",
            "department_code": "03.04",
            "duration_min": 20,
            "price": "50.00",
            "requirements": [
                {"kind": "staff", "role": "physician", "min_skill": 2, "specialty": "03.04"}
            ],
            "offered_by": ["hosp"],
            "orderable_by_roles": ["clinician"],
        },
    ]
    return doc
