"""Small hand-written catalogue documents for tests (the demo generator covers scale)."""

from __future__ import annotations

import copy
from typing import Any

_SMALL: dict[str, Any] = {
    "format": "carepool.catalog/1",
    "consortium": {"id": "cons", "name": "Test County Consortium", "name_zh": "测试县医共体"},
    "department_codes": [
        {"code": "03.04", "name": "Cardiology", "name_zh": "心血管内科专业"},
        {"code": "04.01", "name": "General surgery", "name_zh": "普通外科专业"},
        {"code": "32.02", "name": "CT diagnostics", "name_zh": "CT诊断专业"},
        {"code": "02", "name": "General practice", "name_zh": "全科医疗科"},
    ],
    "institutions": [
        {"id": "hosp", "name": "County People's Hospital", "name_zh": "县人民医院",
         "kind": "general_hospital", "grade": "3A", "latitude": 30.1, "longitude": 120.2},
        {"id": "clinic", "name": "Willow Village Clinic", "name_zh": "柳村卫生室",
         "kind": "village_clinic", "grade": "unrated", "parent_id": "hosp"},
    ],
    "campuses": [
        {"id": "hosp-main", "institution_id": "hosp", "name": "Main campus", "name_zh": "本部院区"},
        {"id": "clinic-site", "institution_id": "clinic", "name": "Clinic", "name_zh": "卫生室"},
    ],
    "departments": [
        {"id": "hosp-cardio", "institution_id": "hosp", "campus_id": "hosp-main", "code": "03.04",
         "local_name": "Cardio", "local_name_zh": "心内科"},
        {"id": "hosp-ct", "institution_id": "hosp", "campus_id": "hosp-main", "code": "32.02",
         "local_name": "CT room", "local_name_zh": "CT室"},
        {"id": "clinic-gp", "institution_id": "clinic", "campus_id": "clinic-site", "code": "02",
         "local_name": "GP", "local_name_zh": "全科"},
    ],
    "wards": [
        {"id": "hosp-cardio-w1", "institution_id": "hosp", "department_id": "hosp-cardio",
         "kind": "general", "name": "Cardiology ward 1", "name_zh": "心内一病区", "floor": "5"},
    ],
    "resources": [
        {"id": "hosp-r501", "kind": "room", "type_code": "room.ward", "name": "Room 501",
         "institution_id": "hosp", "campus_id": "hosp-main", "department_id": "hosp-cardio",
         "ward_id": "hosp-cardio-w1", "capacity": 2},
        {"id": "hosp-b501-1", "kind": "bed", "type_code": "bed.general", "name": "Bed 501-1",
         "institution_id": "hosp", "campus_id": "hosp-main", "department_id": "hosp-cardio",
         "ward_id": "hosp-cardio-w1", "room_id": "hosp-r501", "gender_policy": "same_sex_room",
         "features": ["oxygen", "monitor"]},
        {"id": "hosp-b501-2", "kind": "bed", "type_code": "bed.general", "name": "Bed 501-2",
         "institution_id": "hosp", "campus_id": "hosp-main", "department_id": "hosp-cardio",
         "ward_id": "hosp-cardio-w1", "room_id": "hosp-r501", "gender_policy": "same_sex_room",
         "features": ["oxygen"]},
        {"id": "hosp-ct1", "kind": "modality", "type_code": "modality.CT", "name": "CT scanner 1",
         "name_zh": "CT一号机", "institution_id": "hosp", "campus_id": "hosp-main",
         "department_id": "hosp-ct", "manufacturer": "United Imaging", "model": "uCT 760"},
        {"id": "hosp-tech1", "kind": "staff", "type_code": "staff.technician",
         "name": "Li Wei", "name_zh": "李伟", "institution_id": "hosp", "department_id": "hosp-ct",
         "role": "technician", "skill_level": 2, "specialties": ["32.02"]},
        {"id": "hosp-nurse1", "kind": "staff", "type_code": "staff.nurse", "name": "Wang Fang",
         "name_zh": "王芳", "institution_id": "hosp", "department_id": "hosp-cardio",
         "role": "nurse", "skill_level": 1, "specialties": ["03.04"]},
    ],
    "calendar_rules": [
        {"id": "hosp-ct1-weekdays", "resource_id": "hosp-ct1", "label": "open",
         "days": [0, 1, 2, 3, 4], "start": "08:00", "end": "17:00"},
        {"id": "hosp-nurse1-nights", "resource_id": "hosp-nurse1", "label": "night",
         "cycle_days": 4, "anchor": "2026-12-01", "days": [2], "start": "22:00", "end": "06:00"},
    ],
    "calendar_exceptions": [
        {"id": "hosp-ct1-service", "resource_id": "hosp-ct1", "kind": "maintenance",
         "start": "2026-12-02T12:00:00+08:00", "end": "2026-12-02T14:00:00+08:00",
         "reason": "tube calibration"},
    ],
    "services": [
        {"id": "ct-head", "name": "CT head without contrast", "name_zh": "头颅CT平扫",
         "category": "imaging", "department_code": "32.02", "duration_min": 15,
         "preparation_min": 5, "turnover_min": 5, "price": "180.00",
         "requirements": [
             {"kind": "modality", "type_code": "modality.CT", "count": 1},
             {"kind": "staff", "role": "technician", "min_skill": 1, "count": 1},
         ],
         "offered_by": ["hosp"], "orderable_by_roles": ["clinician"],
         "orderable_by_kinds": ["general_hospital", "village_clinic"]},
    ],
}


def small_catalog() -> dict[str, Any]:
    """A two-member catalogue: a county hospital and a village clinic (a fresh copy each call)."""
    return copy.deepcopy(_SMALL)
