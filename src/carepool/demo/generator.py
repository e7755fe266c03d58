"""The demo consortium as a catalogue document, generated from a seed.

Qinglan County (青岚县, a fictional county in the hills) runs a county medical community: the
county people's hospital with an east and a west campus, three branch hospitals in the larger
towns, township health centres, and the village clinics that the branches and centres lead.
`generate(seed)` is pure: the same seed and start date give a byte-identical document, and
every random choice comes from one `random.Random(seed)` (never the clock, never global state).
Rosters run for `ROSTER_WEEKS` weeks from the Monday of `start_date`; opening hours are permanent.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from importlib import resources
from typing import Any, Final

import yaml

from carepool.catalog.codes import DEPARTMENT_CODES
from carepool.demo import names

__all__ = ["DEFAULT_START", "ROSTER_WEEKS", "generate", "lead_clinic"]

DEFAULT_START: Final = date(2026, 11, 30)  # a Monday; callers pass the current week's Monday
ROSTER_WEEKS: Final = 6
WEEKLY_ANCHOR: Final = "2024-01-01"  # a Monday: day 0 of permanent weekly rules
TZ: Final = "+08:00"  # Asia/Shanghai has no daylight saving time
WEEKDAYS: Final = (0, 1, 2, 3, 4)
EVERY_DAY: Final = (0, 1, 2, 3, 4, 5, 6)
SATURDAY: Final = (5,)

COUNTY_ZH = "青岚县"
COUNTY_SEAT: Final = (29.6550, 119.2750)  # Chengguan town, where the county hospital stands
ALL_KINDS: Final = [
    "general_hospital",
    "branch_hospital",
    "township_health_centre",
    "village_clinic",
]
HOSPITAL_KINDS: Final = ["general_hospital", "branch_hospital"]
INPATIENT_KINDS: Final = ["general_hospital", "branch_hospital", "township_health_centre"]

# Each member names its departments in its own way; the standard code is what they share.
LOCAL_NAMES: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "01": (
        ("预防保健科", "Preventive care"),
        ("公共卫生科", "Public health"),
        ("防保科", "Prevention"),
    ),
    "02": (("全科医疗科", "General practice"), ("全科", "GP"), ("全科门诊", "GP clinic")),
    "03": (("内科", "Internal medicine"), ("大内科", "Medicine"), ("综合内科", "General medicine")),
    "03.01": (
        ("呼吸内科", "Respiratory"),
        ("呼吸与危重症医学科", "Pulmonary & critical care"),
        ("呼吸科", "Resp. medicine"),
    ),
    "03.02": (("消化内科", "Gastroenterology"), ("消化科", "GI medicine"), ("消化内科", "Gastro")),
    "03.03": (("神经内科", "Neurology"), ("神内科", "Neuro"), ("脑病科", "Neurology dept")),
    "03.04": (("心内科", "Cardio"), ("心血管内科", "Cardiology dept"), ("心血管科", "Cardiology")),
    "03.06": (("肾内科", "Nephrology"), ("肾病科", "Renal medicine")),
    "03.07": (
        ("内分泌科", "Endocrinology"),
        ("内分泌代谢科", "Endocrine & metabolism"),
        ("糖尿病科", "Diabetes"),
    ),
    "04": (("外科", "Surgery"), ("大外科", "Surgical dept"), ("综合外科", "General surgical")),
    "04.01": (("普外科", "General Surgery"), ("普通外科", "Gen Surg"), ("外一科", "Surgery 1")),
    "04.02": (("神经外科", "Neurosurgery"), ("脑外科", "Brain surgery")),
    "04.03": (("骨科", "Orthopaedics"), ("骨伤科", "Ortho & trauma"), ("创伤骨科", "Trauma ortho")),
    "04.04": (("泌尿外科", "Urology"), ("泌尿科", "Uro")),
    "05.01": (("妇科", "Gynaecology"), ("妇科", "Gyn")),
    "05.02": (("产科", "Obstetrics"), ("产科", "Maternity"), ("围产科", "Perinatal care")),
    "07": (("儿科", "Paediatrics"), ("小儿科", "Peds"), ("儿童医学科", "Child health")),
    "10": (("眼科", "Ophthalmology"), ("眼科中心", "Eye centre")),
    "11": (("耳鼻喉科", "ENT"), ("五官科", "Eye-ENT"), ("耳鼻咽喉头颈外科", "ENT & head-neck")),
    "12": (("口腔科", "Dental"), ("牙科", "Dentistry")),
    "14": (("急诊科", "Emergency"), ("急诊医学科", "A&E"), ("急救中心", "Emergency centre")),
    "20": (("康复医学科", "Rehabilitation"), ("康复科", "Rehab"), ("理疗康复科", "Physio & rehab")),
    "26": (
        ("麻醉科", "Anaesthesiology"),
        ("麻醉手术科", "Anaesthesia & theatres"),
        ("手术室", "OR"),
    ),
    "28": (("重症医学科", "ICU"), ("ICU", "Intensive care"), ("重症监护室", "Critical care unit")),
    "30": (("检验科", "Laboratory"), ("医学检验科", "Clinical lab"), ("化验室", "Lab")),
    "31": (("病理科", "Pathology"), ("病理科", "Histopathology")),
    "32": (("医学影像科", "Imaging"), ("放射科", "Radiology"), ("影像科", "Medical imaging")),
    "32.01": (("放射科", "Radiology"), ("DR室", "X-ray"), ("放射科", "X-ray dept")),
    "32.02": (("CT室", "CT room"), ("CT诊断室", "CT")),
    "32.03": (("磁共振室", "MRI"), ("MR室", "MR suite")),
    "32.05": (("超声科", "Ultrasound"), ("B超室", "B-scan"), ("彩超室", "Colour Doppler")),
    "32.06": (("心电图室", "ECG"), ("心电诊断科", "ECG dept"), ("功能检查科", "Function tests")),
    "32.09": (("内镜中心", "Endoscopy"), ("胃镜室", "Gastroscopy suite")),
    "50": (("中医科", "TCM"), ("中医馆", "TCM clinic"), ("国医堂", "Chinese medicine hall")),
}

DEVICES: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "modality.CT": (
        ("United Imaging", "uCT 760"),
        ("Siemens Healthineers", "SOMATOM go.Top"),
        ("GE HealthCare", "Revolution ACT"),
        ("Neusoft Medical", "NeuViz 64"),
    ),
    "modality.MR": (
        ("United Imaging", "uMR 570"),
        ("Siemens Healthineers", "MAGNETOM Amira"),
        ("GE HealthCare", "SIGNA Creator"),
    ),
    "modality.DX": (
        ("Carestream", "DRX-Evolution Plus"),
        ("Wandong Medical", "newVision"),
        ("United Imaging", "uDR 596i"),
        ("Philips", "DigitalDiagnost C90"),
    ),
    "modality.US": (
        ("Mindray", "Resona 7"),
        ("Mindray", "DC-80"),
        ("GE HealthCare", "LOGIQ E10"),
        ("Philips", "EPIQ 5"),
        ("SonoScape", "P50"),
    ),
    "modality.ECG": (
        ("Nihon Kohden", "ECG-2350"),
        ("Edan", "SE-1200 Express"),
        ("Mindray", "BeneHeart R12"),
    ),
    "modality.MG": (("Hologic", "Selenia Dimensions"), ("Siemens Healthineers", "MAMMOMAT")),
    "modality.ES": (("Olympus", "EVIS X1 CV-1500"), ("Fujifilm", "ELUXEO 7000")),
    "analyser.haematology": (("Sysmex", "XN-1000"), ("Mindray", "BC-6800Plus")),
    "analyser.chemistry": (("Roche", "cobas c 503"), ("Beckman Coulter", "AU5800")),
    "analyser.immunoassay": (("Roche", "cobas e 801"), ("Mindray", "CL-6000i")),
    "analyser.coagulation": (("Sysmex", "CS-5100"), ("Stago", "STA R Max")),
    "analyser.urinalysis": (("Sysmex", "UN-2000"), ("Dirui", "FUS-200")),
    "analyser.haematology.small": (("Mindray", "BC-5390"), ("Mindray", "BC-5000")),
    "analyser.chemistry.small": (("Mindray", "BS-240"), ("Mindray", "BS-800M")),
}

_ROLE_ABBR: Final = {
    "surgeon": "sur",
    "anaesthetist": "ana",
    "physician": "phy",
    "nurse": "nur",
    "technician": "tec",
}


@dataclass(frozen=True)
class WardPlan:
    """A department with beds: how many, of which type, and who staffs it."""

    key: str
    code: str
    beds: tuple[int, int]
    doctor_role: str  # "physician" or "surgeon"
    doctors: tuple[int, int]
    bed_type: str = "bed.general"
    kind: str = "general"
    gender: str = "same_sex_room"
    nurse_ratio: float = 0.18  # rostered nurses per bed
    clinic_rooms: int = 1  # outpatient consultation rooms of the department
    specialties: tuple[str, ...] = ()  # of the doctors (default: the department's code)


EAST_WARDS: Final = (
    WardPlan("resp", "03.01", (28, 34), "physician", (5, 6)),
    WardPlan("gastro", "03.02", (26, 32), "physician", (5, 6)),
    WardPlan("neuro", "03.03", (28, 34), "physician", (5, 6)),
    WardPlan("cardio", "03.04", (34, 40), "physician", (6, 8), clinic_rooms=2),
    WardPlan("endo", "03.07", (20, 24), "physician", (4, 5), clinic_rooms=2),
    WardPlan("gensurg", "04.01", (34, 40), "surgeon", (7, 9)),
    WardPlan("neurosurg", "04.02", (18, 22), "surgeon", (4, 5)),
    WardPlan("ortho", "04.03", (32, 38), "surgeon", (6, 8), clinic_rooms=2),
    WardPlan("uro", "04.04", (18, 22), "surgeon", (4, 5)),
    WardPlan("gyn", "05.01", (14, 18), "surgeon", (3, 4), gender="female"),
    WardPlan(
        "obs",
        "05.02",
        (20, 24),
        "surgeon",
        (4, 5),
        bed_type="bed.maternity",
        gender="female",
        nurse_ratio=0.25,
        specialties=("05.02", "05.01"),
    ),
    WardPlan(
        "paeds",
        "07",
        (22, 28),
        "physician",
        (5, 6),
        bed_type="bed.paediatric",
        gender="mixed",
        nurse_ratio=0.2,
    ),
    WardPlan("ophth", "10", (12, 14), "surgeon", (3, 4)),
    WardPlan(
        "icu",
        "28",
        (10, 12),
        "physician",
        (5, 6),
        bed_type="bed.icu",
        kind="icu",
        gender="mixed",
        nurse_ratio=1.2,
        clinic_rooms=0,
    ),
    WardPlan(
        "er",
        "14",
        (8, 10),
        "physician",
        (6, 7),
        bed_type="bed.observation",
        kind="emergency",
        gender="mixed",
        nurse_ratio=0.5,
        clinic_rooms=2,
    ),
)

WEST_WARDS: Final = (
    WardPlan("med", "03", (34, 40), "physician", (5, 6), specialties=("03", "03.04", "03.07")),
    WardPlan("rehab", "20", (22, 28), "physician", (3, 4), nurse_ratio=0.15),
    WardPlan("tcm", "50", (14, 18), "physician", (3, 4), nurse_ratio=0.15),
    WardPlan(
        "daysurg",
        "04",
        (10, 12),
        "surgeon",
        (3, 4),
        bed_type="bed.day",
        kind="day_surgery",
        specialties=("04", "04.01"),
    ),
)

BRANCH_THIRD_WARD: Final = (
    WardPlan(
        "obs",
        "05.02",
        (10, 14),
        "surgeon",
        (2, 3),
        bed_type="bed.maternity",
        gender="female",
        nurse_ratio=0.25,
        specialties=("05.02", "05.01"),
    ),
    WardPlan(
        "paeds",
        "07",
        (10, 12),
        "physician",
        (2, 3),
        bed_type="bed.paediatric",
        gender="mixed",
    ),
    WardPlan("rehab", "20", (12, 16), "physician", (2, 2), nurse_ratio=0.15),
)


@dataclass
class _Dept:
    id: str
    institution_id: str
    campus_id: str
    code: str
    zh: str
    en: str


@dataclass
class _Member:
    id: str
    kind: str
    prefix: str  # id prefix of its entries
    town_zh: str = ""
    town_en: str = ""
    resources: list[dict[str, Any]] = field(default_factory=list)

    def by_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["kind"] == kind]


def _hhmm(value: str) -> str:
    time.fromisoformat(value)  # fail early on a typo in the tables below
    return value


class _Generator:
    def __init__(self, seed: int, start_date: date) -> None:
        self.rng = random.Random(seed)
        self.monday = start_date - timedelta(days=start_date.weekday())
        self.roster_from = self.monday.isoformat()
        self.roster_to = (self.monday + timedelta(days=7 * ROSTER_WEEKS - 1)).isoformat()
        self.institutions: list[dict[str, Any]] = []
        self.campuses: list[dict[str, Any]] = []
        self.departments: list[dict[str, Any]] = []
        self.wards: list[dict[str, Any]] = []
        self.resources: list[dict[str, Any]] = []
        self.rules: list[dict[str, Any]] = []
        self.exceptions: list[dict[str, Any]] = []
        self.members: dict[str, _Member] = {}
        self.staff_seq: dict[tuple[str, str], int] = {}
        self.device_seq: dict[tuple[str, str], int] = {}
        self.floors: dict[str, list[tuple[str, int]]] = {}
        self.villages_taken: set[str] = set()

    # -- organisation -------------------------------------------------------------------------

    def institution(
        self,
        id: str,
        *,
        name: str,
        name_zh: str,
        kind: str,
        grade: str,
        parent_id: str | None,
        address: str,
        lat: float,
        lon: float,
        town: tuple[str, str] = ("", ""),
    ) -> _Member:
        self.institutions.append(
            {
                "id": id,
                "name": name,
                "name_zh": name_zh,
                "kind": kind,
                "grade": grade,
                "parent_id": parent_id,
                "address": address,
                "latitude": round(lat, 5),
                "longitude": round(lon, 5),
                "phone": f"0570-{self.rng.randrange(6000000, 6999999)}",
            }
        )
        member = _Member(id=id, kind=kind, prefix=id, town_zh=town[0], town_en=town[1])
        self.members[id] = member
        return member

    def campus(
        self,
        member: _Member,
        id: str,
        name: str,
        name_zh: str,
        address: str,
        lat: float,
        lon: float,
    ) -> str:
        self.campuses.append(
            {
                "id": id,
                "institution_id": member.id,
                "name": name,
                "name_zh": name_zh,
                "address": address,
                "latitude": round(lat, 5),
                "longitude": round(lon, 5),
            }
        )
        return id

    def department(
        self, member: _Member, campus_id: str, prefix: str, key: str, code: str
    ) -> _Dept:
        zh, en = self.rng.choice(LOCAL_NAMES[code])
        dept = _Dept(f"{prefix}-{key}", member.id, campus_id, code, zh, en)
        self.departments.append(
            {
                "id": dept.id,
                "institution_id": member.id,
                "campus_id": campus_id,
                "code": code,
                "local_name": en,
                "local_name_zh": zh,
            }
        )
        return dept

    # -- resources ----------------------------------------------------------------------------

    def resource(self, member: _Member, **values: Any) -> dict[str, Any]:
        entry = {k: v for k, v in values.items() if v not in (None, [], "")}
        entry["institution_id"] = member.id
        self.resources.append(entry)
        member.resources.append(entry)
        return entry

    def device(
        self,
        member: _Member,
        dept: _Dept,
        kind: str,
        type_code: str,
        label: tuple[str, str],
        *,
        key: str,
        catalogue: str | None = None,
        capacity: int | None = None,
    ) -> str:
        """A modality, theatre, lab section or analyser; `key` numbers it within its campus."""
        seq_key = (dept.campus_id, key)
        n = self.device_seq[seq_key] = self.device_seq.get(seq_key, 0) + 1
        rid = f"{dept.campus_id if member.kind == 'general_hospital' else member.id}-{key}{n}"
        models = DEVICES.get(catalogue or type_code)
        make = self.rng.choice(models) if models else ("", "")
        self.resource(
            member,
            id=rid,
            kind=kind,
            type_code=type_code,
            name=f"{label[0]} {n}",
            name_zh=f"{label[1]}{n}",
            campus_id=dept.campus_id,
            department_id=dept.id,
            capacity=capacity,
            manufacturer=make[0],
            model=make[1],
        )
        return rid

    def next_floor(self, campus_id: str) -> tuple[str, int]:
        slots = self.floors[campus_id]
        return slots.pop(0)

    def ward(
        self,
        member: _Member,
        dept: _Dept,
        plan: WardPlan,
        *,
        building: str,
        floor: int,
        closed_room: bool = False,
    ) -> tuple[str, int]:
        """A ward with rooms of 2 to 6 beds; returns (ward id, number of beds)."""
        ward_id = f"{dept.id}-w1"
        if plan.kind == "emergency":
            name, name_zh = f"{dept.en} observation", f"{dept.zh}留观室"
        elif dept.zh.endswith("室"):
            name, name_zh = dept.en, dept.zh
        else:
            name, name_zh = f"{dept.en} ward", f"{dept.zh}病区"
        self.wards.append(
            {
                "id": ward_id,
                "institution_id": member.id,
                "department_id": dept.id,
                "kind": plan.kind,
                "name": name,
                "name_zh": name_zh,
                "building": building,
                "floor": str(floor),
            }
        )
        target = self.rng.randint(*plan.beds)
        sizes = self._room_sizes(plan, target)
        county = member.kind == "general_hospital"
        closed_index = self.rng.randrange(1, len(sizes)) if closed_room and len(sizes) > 1 else -1
        bed_no = 0
        for i, size in enumerate(sizes):
            room_no = f"{floor}{i + 1:02d}"
            room_id = f"{ward_id}-r{room_no}"
            status = "closed" if i == closed_index else None
            isolation = i == len(sizes) - 1 and (plan.code == "03.01" or plan.kind == "icu")
            self.resource(
                member,
                id=room_id,
                kind="room",
                type_code="room.ward",
                name=f"Room {room_no}",
                name_zh=f"{room_no}病房",
                status=status,
                campus_id=dept.campus_id,
                department_id=dept.id,
                ward_id=ward_id,
                capacity=size,
            )
            gender = plan.gender
            if plan.code == "04.04" and gender == "same_sex_room" and self.rng.random() < 0.5:
                gender = "male"
            for _ in range(size):
                bed_no += 1
                bed_type = "bed.isolation" if isolation and plan.kind != "icu" else plan.bed_type
                self.resource(
                    member,
                    id=f"{ward_id}-b{bed_no:02d}",
                    kind="bed",
                    type_code=bed_type,
                    name=f"Bed {bed_no}",
                    name_zh=f"{bed_no}床",
                    status=status,
                    campus_id=dept.campus_id,
                    department_id=dept.id,
                    ward_id=ward_id,
                    room_id=room_id,
                    gender_policy=gender,
                    features=self._bed_features(plan, county, first_room=i == 0, iso=isolation),
                )
        return ward_id, bed_no

    def _room_sizes(self, plan: WardPlan, target: int) -> list[int]:
        choices: tuple[int, ...]
        weights: tuple[int, ...]
        if plan.kind == "icu":
            choices, weights = (4, 6), (1, 1)
        elif plan.kind == "emergency":
            choices, weights = (2, 3, 4), (1, 2, 2)
        elif plan.bed_type == "bed.maternity":
            choices, weights = (2, 3), (2, 3)
        else:
            choices, weights = (2, 3, 4, 6), (2, 6, 2, 1)
        sizes: list[int] = []
        while sum(sizes) < target:
            sizes.append(self.rng.choices(choices, weights=weights)[0])
        if plan.code == "03.01" or plan.kind == "icu":
            sizes.append(2)  # the isolation room
        return sizes

    def _bed_features(
        self, plan: WardPlan, county: bool, *, first_room: bool, iso: bool
    ) -> list[str]:
        rng = self.rng
        if plan.kind == "icu":
            out = {"oxygen", "suction", "monitor"}
            if rng.random() < 0.75 or iso:
                out.add("ventilator")
            if iso:
                out.add("isolation")
            return sorted(out)
        out = set()
        if county or rng.random() < 0.7:
            out.add("oxygen")
        if county or rng.random() < 0.4:
            out.add("suction")
        if first_room or plan.kind == "emergency" or (plan.code == "03.04" and rng.random() < 0.4):
            out.add("monitor")
        if iso:
            out |= {"isolation", "oxygen", "monitor"}
        if plan.bed_type == "bed.maternity" or (plan.bed_type == "bed.paediatric" and first_room):
            out.add("cot")
        if plan.code == "04.03" and rng.random() < 0.06:
            out.add("bariatric")
        return sorted(out)

    # -- staff and their rosters --------------------------------------------------------------

    def staff(
        self,
        member: _Member,
        dept: _Dept,
        role: str,
        *,
        skill: int,
        specialties: Iterable[str],
        female: float = 0.5,
        ward_id: str | None = None,
        surname: str | None = None,
    ) -> str:
        seq_key = (member.id, role)
        n = self.staff_seq[seq_key] = self.staff_seq.get(seq_key, 0) + 1
        rid = f"{member.prefix}-{_ROLE_ABBR[role]}{n:03d}"
        zh, en = names.person(self.rng, female=self.rng.random() < female, surname=surname)
        if role == "nurse":
            licence = f"20{self.rng.randrange(10**9, 10**10)}"
        elif role == "technician":
            licence = ""
        else:
            licence = f"1{self.rng.randrange(10**13, 10**14)}"
        self.resource(
            member,
            id=rid,
            kind="staff",
            type_code=f"staff.{role}",
            name=en,
            name_zh=zh,
            campus_id=dept.campus_id,
            department_id=dept.id,
            ward_id=ward_id,
            role=role,
            skill_level=skill,
            specialties=sorted(set(specialties)),
            license_no=licence,
        )
        return rid

    def skill(self, weights: tuple[int, ...]) -> int:
        return self.rng.choices(range(len(weights)), weights=weights)[0]

    def rule(
        self,
        resource_id: str,
        label: str,
        days: Iterable[int],
        start: str,
        end: str,
        *,
        cycle: int = 7,
        anchor: date | None = None,
        roster: bool = False,
    ) -> None:
        """A calendar rule; `roster` rules run for the coming weeks only, from the Monday."""
        entry: dict[str, Any] = {
            "id": f"{resource_id}-{label}",
            "resource_id": resource_id,
            "label": label.replace("-", "_"),
            "cycle_days": cycle,
            "anchor": (anchor or self.monday).isoformat() if roster else WEEKLY_ANCHOR,
            "days": sorted(set(days)),
            "start": _hhmm(start),
            "end": _hhmm(end),
        }
        if roster:
            entry["valid_from"] = self.roster_from
            entry["valid_to"] = self.roster_to
        self.rules.append(entry)

    def clinic_hours(self, resource_id: str, *, saturday: bool) -> None:
        """Mornings and afternoons with a lunch break; Saturday mornings when `saturday`."""
        self.rule(
            resource_id, "am", WEEKDAYS + SATURDAY if saturday else WEEKDAYS, "08:00", "11:30"
        )
        self.rule(resource_id, "pm", WEEKDAYS, "13:30", "17:00")

    def round_the_clock(self, resource_id: str) -> None:
        self.rule(resource_id, "day", EVERY_DAY, "08:00", "20:00")
        self.rule(resource_id, "emergency", EVERY_DAY, "20:00", "08:00")

    def nurse_rotation(self, nid: str, i: int) -> None:
        """Early, early, late, late, off, night, night, off: eight days, staggered by `i`."""
        anchor = self.monday - timedelta(days=i % 8)
        self.rule(nid, "early", (0, 1), "08:00", "16:00", cycle=8, anchor=anchor, roster=True)
        self.rule(nid, "late", (2, 3), "16:00", "00:00", cycle=8, anchor=anchor, roster=True)
        self.rule(nid, "night", (5, 6), "00:00", "08:00", cycle=8, anchor=anchor, roster=True)

    def icu_rotation(self, nid: str, i: int) -> None:
        """Twelve-hour shifts: day, night, off, off; staggered by `i`."""
        anchor = self.monday - timedelta(days=i % 4)
        self.rule(nid, "day", (0,), "08:00", "20:00", cycle=4, anchor=anchor, roster=True)
        self.rule(nid, "night", (1,), "20:00", "08:00", cycle=4, anchor=anchor, roster=True)

    def duty_rota(self, ids: list[str], label: str, start: str, end: str) -> None:
        """One night on duty every len(ids) days, in turn."""
        if len(ids) < 2:
            return
        for i, rid in enumerate(ids):
            self.rule(rid, label, (i,), start, end, cycle=len(ids), roster=True)

    def weekday_shift(self, rid: str, label: str = "day", *, saturday_am: bool = False) -> None:
        self.rule(rid, label, WEEKDAYS, "08:00", "17:30", roster=True)
        if saturday_am:
            self.rule(rid, f"{label}-sat", SATURDAY, "08:00", "12:00", roster=True)

    def doctors(
        self,
        member: _Member,
        dept: _Dept,
        role: str,
        n: int,
        *,
        specialties: tuple[str, ...],
        ward_id: str | None,
        female: float,
        head_skill: int = 3,
        skills: tuple[int, ...] = (3, 4, 2, 1),
        surname: str | None = None,
        night_duty: bool = True,
        saturday_am: bool = False,
    ) -> list[str]:
        """`n` doctors of one department: a head, then a mix of grades; rostered by role."""
        ids = []
        for i in range(n):
            skill = head_skill if i == 0 else self.skill(skills)
            ids.append(
                self.staff(
                    member,
                    dept,
                    role,
                    skill=skill,
                    specialties=specialties,
                    female=female,
                    ward_id=ward_id,
                    surname=surname if i == 0 else None,
                )
            )
        for i, rid in enumerate(ids):
            if role == "surgeon":
                theatre_days = {i % 5, (i + 2) % 5}
                self.rule(rid, "theatre", theatre_days, "08:00", "17:00", roster=True)
                self.rule(rid, "ward", set(WEEKDAYS) - theatre_days, "08:00", "17:30", roster=True)
            else:
                label = "clinic" if ward_id is None else "ward"
                if role == "anaesthetist":
                    label = "theatre"
                self.weekday_shift(rid, label, saturday_am=saturday_am)
        if night_duty:
            self.duty_rota(ids, "night-duty", "17:30", "08:00")
        return ids

    def ward_nurses(
        self, member: _Member, dept: _Dept, ward_id: str, beds: int, plan: WardPlan
    ) -> list[str]:
        n = max(4, round(beds * plan.nurse_ratio))
        ids = []
        for i in range(n):
            skill = 2 if i == 0 else self.skill((3, 5, 2))
            nid = self.staff(
                member,
                dept,
                "nurse",
                skill=skill,
                specialties=[dept.code],
                female=0.95,
                ward_id=ward_id,
            )
            ids.append(nid)
            if i == 0:
                self.weekday_shift(nid, "day")  # the head nurse
            elif plan.kind == "icu":
                self.icu_rotation(nid, i)
            else:
                self.nurse_rotation(nid, i)
        return ids

    # -- members ------------------------------------------------------------------------------

    def county_hospital(self) -> _Member:
        lat, lon = COUNTY_SEAT
        ch = self.institution(
            "ch",
            name="Qinglan County People's Hospital",
            name_zh="青岚县人民医院",
            kind="general_hospital",
            grade="3B",
            parent_id=None,
            address="青岚县城关镇人民路88号",
            lat=lat,
            lon=lon,
            town=("城关", "Chengguan"),
        )
        east = self.campus(
            ch,
            "ch-east",
            "East campus (main)",
            "东院区（本部）",
            "青岚县城关镇人民路88号",
            lat + 0.0041,
            lon + 0.0062,
        )
        west = self.campus(
            ch,
            "ch-west",
            "West campus",
            "西院区",
            "青岚县城关镇解放西路216号",
            lat - 0.0032,
            lon - 0.0185,
        )
        self.floors[east] = [("A", f) for f in range(3, 13)] + [("B", f) for f in range(3, 12)]
        self.floors[west] = [("1", f) for f in range(2, 8)]

        # Inpatient departments of the east campus.
        closed_ward = self.rng.choice([p.key for p in EAST_WARDS if p.kind == "general"])
        for plan in EAST_WARDS:
            dept = self.department(ch, east, "ch-east", plan.key, plan.code)
            building, floor = ("B", 2) if plan.kind == "icu" else ("B", 1)
            if plan.kind == "general":
                building, floor = self.next_floor(east)
            self._inpatient_department(
                ch, dept, plan, building, floor, closed_room=plan.key == closed_ward
            )
        ent = self.department(ch, east, "ch-east", "ent", "11")
        self.doctors(ch, ent, "surgeon", 3, specialties=("11",), ward_id=None, female=0.3)
        self._consultation_rooms(ch, ent, 1, saturday=True)
        path = self.department(ch, east, "ch-east", "path", "31")
        self.doctors(
            ch,
            path,
            "physician",
            2,
            specialties=("31",),
            ward_id=None,
            female=0.5,
            night_duty=False,
        )
        for _ in range(2):
            self.weekday_shift(
                self.staff(ch, path, "technician", skill=self.skill((2, 3, 1)), specialties=["31"])
            )
        self._theatres(ch, east, "ch-east", general=4, hybrid=1, day=0, anaesthetists=9)
        self._county_lab(ch, east, "ch-east")
        self._county_imaging(ch, east)

        # The west campus: general medicine, rehabilitation, TCM and day surgery.
        for plan in WEST_WARDS:
            dept = self.department(ch, west, "ch-west", plan.key, plan.code)
            building, floor = self.next_floor(west)
            self._inpatient_department(ch, dept, plan, building, floor)
        dental = self.department(ch, west, "ch-west", "dental", "12")
        self.doctors(
            ch,
            dental,
            "physician",
            2,
            specialties=("12",),
            ward_id=None,
            female=0.5,
            head_skill=2,
            night_duty=False,
            saturday_am=True,
        )
        self._consultation_rooms(ch, dental, 2, saturday=True)
        self._theatres(ch, west, "ch-west", general=1, hybrid=0, day=1, anaesthetists=3)
        self._small_lab(ch, west, "ch-west", chemistry=True, techs=4)
        self._imaging(ch, west, "ch-west", ct=True, us=2, techs=5)
        return ch

    def _inpatient_department(
        self,
        member: _Member,
        dept: _Dept,
        plan: WardPlan,
        building: str,
        floor: int,
        *,
        closed_room: bool = False,
    ) -> None:
        ward_id, beds = self.ward(
            member, dept, plan, building=building, floor=floor, closed_room=closed_room
        )
        female = (
            0.85 if plan.code.startswith("05") else (0.2 if plan.doctor_role == "surgeon" else 0.5)
        )
        specialties = plan.specialties or (plan.code,)
        doctor_ids = self.doctors(
            member,
            dept,
            plan.doctor_role,
            self.rng.randint(*plan.doctors),
            specialties=specialties,
            ward_id=ward_id,
            female=female,
            head_skill=3 if member.kind == "general_hospital" else 2,
        )
        if plan.code == "03.02":  # gastroenterologists who also scope
            for rid in doctor_ids[:3]:
                entry = next(r for r in member.resources if r["id"] == rid)
                entry["specialties"] = sorted({*entry["specialties"], "32.09"})
        self.ward_nurses(member, dept, ward_id, beds, plan)
        self._consultation_rooms(member, dept, plan.clinic_rooms, saturday=plan.kind == "emergency")

    def _consultation_rooms(self, member: _Member, dept: _Dept, n: int, *, saturday: bool) -> None:
        for i in range(1, n + 1):
            rid = f"{dept.id}-clinic{i}"
            self.resource(
                member,
                id=rid,
                kind="room",
                type_code="room.consultation",
                name=f"{dept.en} clinic room {i}",
                name_zh=f"{dept.zh}{i}诊室",
                campus_id=dept.campus_id,
                department_id=dept.id,
                capacity=1,
            )
            self.clinic_hours(rid, saturday=saturday)

    def _theatres(
        self,
        member: _Member,
        campus_id: str,
        prefix: str,
        *,
        general: int,
        hybrid: int,
        day: int,
        anaesthetists: int,
    ) -> None:
        dept = self.department(member, campus_id, prefix, "anaes", "26")
        theatres = []
        for type_code, n, label in (
            ("theatre.general", general, ("Operating theatre", "手术间")),
            ("theatre.hybrid", hybrid, ("Hybrid theatre", "复合手术间")),
            ("theatre.day", day, ("Day-surgery theatre", "日间手术间")),
        ):
            for _ in range(n):
                theatres.append(self.device(member, dept, "theatre", type_code, label, key="or"))
        for i, tid in enumerate(theatres):
            if i == 0 and member.kind == "general_hospital" and prefix == "ch-east":
                self.round_the_clock(tid)  # the emergency theatre
            else:
                self.rule(tid, "elective", WEEKDAYS, "08:00", "18:00")
        doctors = self.doctors(
            member,
            dept,
            "anaesthetist",
            anaesthetists,
            specialties=("26",),
            ward_id=None,
            female=0.45,
            head_skill=3 if member.kind == "general_hospital" else 2,
            night_duty=False,
        )
        self.duty_rota(doctors, "on-call", "17:30", "08:00")
        for _ in range(max(3, round(len(theatres) * 2.5))):
            nid = self.staff(
                member,
                dept,
                "nurse",
                skill=self.skill((2, 5, 3)),
                specialties=["26"],
                female=0.9,
            )
            self.weekday_shift(nid, "theatre")

    def _county_lab(self, member: _Member, campus_id: str, prefix: str) -> None:
        dept = self.department(member, campus_id, prefix, "lab", "30")
        sections = (
            ("haem", "lab.haematology", ("Haematology section", "临检室"), True),
            ("chem", "lab.chemistry", ("Clinical chemistry section", "生化室"), True),
            ("immu", "lab.immunology", ("Immunology section", "免疫室"), False),
            ("micro", "lab.microbiology", ("Microbiology section", "微生物室"), False),
        )
        analysers = {
            "haem": (
                ("analyser.haematology", 2, ("Haematology analyser", "血细胞分析仪")),
                ("analyser.coagulation", 1, ("Coagulation analyser", "凝血分析仪")),
                ("analyser.urinalysis", 1, ("Urine analyser", "尿液分析仪")),
            ),
            "chem": (("analyser.chemistry", 2, ("Chemistry analyser", "生化分析仪")),),
            "immu": (("analyser.immunoassay", 2, ("Immunoassay analyser", "化学发光免疫分析仪")),),
            "micro": (),
        }
        for key, type_code, label, emergency in sections:
            sid = f"{prefix}-lab-{key}"
            self.resource(
                member,
                id=sid,
                kind="lab_section",
                type_code=type_code,
                name=label[0],
                name_zh=label[1],
                campus_id=campus_id,
                department_id=dept.id,
            )
            if emergency:
                self.round_the_clock(sid)
            else:
                self.rule(sid, "open", WEEKDAYS, "08:00", "17:30")
                self.rule(sid, "sat-am", SATURDAY, "08:00", "12:00")
            for a_type, n, a_label in analysers[key]:
                for _ in range(n):
                    self.device(member, dept, "analyser", a_type, a_label, key=f"an-{key}")
        techs = [
            self.staff(member, dept, "technician", skill=self.skill((3, 4, 2)), specialties=["30"])
            for _ in range(self.rng.randint(10, 12))
        ]
        for tid in techs:
            self.weekday_shift(tid)
        self.duty_rota(techs, "night-duty", "17:30", "08:00")

    def _small_lab(
        self, member: _Member, campus_id: str, prefix: str, *, chemistry: bool, techs: int
    ) -> None:
        dept = self.department(member, campus_id, prefix, "lab", "30")
        haem = f"{prefix}-lab-haem"
        self.resource(
            member,
            id=haem,
            kind="lab_section",
            type_code="lab.haematology",
            name="Haematology section",
            name_zh="临检室",
            campus_id=campus_id,
            department_id=dept.id,
        )
        self.rule(haem, "open", WEEKDAYS, "07:30", "17:00")
        self.rule(haem, "sat-am", SATURDAY, "07:30", "11:30")
        self.device(
            member,
            dept,
            "analyser",
            "analyser.haematology",
            ("Haematology analyser", "血细胞分析仪"),
            key="an-haem",
            catalogue="analyser.haematology.small",
        )
        self.device(
            member,
            dept,
            "analyser",
            "analyser.urinalysis",
            ("Urine analyser", "尿液分析仪"),
            key="an-haem",
        )
        if chemistry:
            chem = f"{prefix}-lab-chem"
            self.resource(
                member,
                id=chem,
                kind="lab_section",
                type_code="lab.chemistry",
                name="Clinical chemistry section",
                name_zh="生化室",
                campus_id=campus_id,
                department_id=dept.id,
            )
            self.rule(chem, "open", WEEKDAYS, "07:30", "17:00")
            self.device(
                member,
                dept,
                "analyser",
                "analyser.chemistry",
                ("Chemistry analyser", "生化分析仪"),
                key="an-chem",
                catalogue="analyser.chemistry.small",
            )
        poct = f"{prefix}-lab-poct"
        self.resource(
            member,
            id=poct,
            kind="lab_section",
            type_code="lab.point_of_care",
            name="Point-of-care testing",
            name_zh="床旁检验",
            campus_id=campus_id,
            department_id=dept.id,
        )
        for _ in range(techs):
            tid = self.staff(
                member, dept, "technician", skill=self.skill((3, 4, 1)), specialties=["30"]
            )
            self.weekday_shift(tid, saturday_am=True)

    def _county_imaging(self, member: _Member, campus_id: str) -> None:
        prefix = "ch-east"
        plan = (
            ("dr", "32.01", "dx", "modality.DX", 2, ("DR room", "DR机房"), 4),
            ("ct", "32.02", "ct", "modality.CT", 2, ("CT scanner", "CT机"), 5),
            ("mr", "32.03", "mr", "modality.MR", 1, ("MR scanner", "磁共振"), 3),
            ("us", "32.05", "us", "modality.US", 4, ("Ultrasound room", "超声诊室"), 5),
            ("ecg", "32.06", "ecg", "modality.ECG", 2, ("ECG room", "心电图室"), 2),
        )
        for dkey, code, key, type_code, n, label, techs in plan:
            dept = self.department(member, campus_id, prefix, dkey, code)
            ids = [
                self.device(member, dept, "modality", type_code, label, key=key) for _ in range(n)
            ]
            for i, mid in enumerate(ids):
                if key in ("ct", "dx") and i == 0:
                    self.round_the_clock(mid)
                elif key == "mr":
                    self.rule(mid, "open", WEEKDAYS, "08:00", "20:00")
                    self.rule(mid, "sat-am", SATURDAY, "08:00", "12:00")
                elif key in ("us", "ecg"):
                    self.clinic_hours(mid, saturday=True)
                else:
                    self.rule(mid, "open", WEEKDAYS, "08:00", "17:30")
            if key == "dx":
                mg = self.device(
                    member,
                    dept,
                    "modality",
                    "modality.MG",
                    ("Mammography unit", "乳腺钼靶机"),
                    key="mg",
                )
                self.rule(mg, "open", (1, 3), "08:00", "12:00")
            staff = [
                self.staff(
                    member, dept, "technician", skill=self.skill((2, 4, 2)), specialties=[code]
                )
                for _ in range(techs)
            ]
            for tid in staff:
                self.weekday_shift(tid)
            if key in ("ct", "dx"):
                self.duty_rota(staff, "night-duty", "17:30", "08:00")
        endo = self.department(member, campus_id, prefix, "endoscopy", "32.09")
        for _ in range(2):
            room = self.device(
                member,
                endo,
                "room",
                "room.procedure",
                ("Endoscopy room", "内镜检查室"),
                key="es-room",
                capacity=1,
            )
            self.rule(room, "am", WEEKDAYS, "08:00", "12:00")
            self.rule(room, "pm", WEEKDAYS, "14:00", "17:00")
            scope = self.device(
                member, endo, "modality", "modality.ES", ("Endoscope", "内镜"), key="es"
            )
            self.rule(scope, "am", WEEKDAYS, "08:00", "12:00")
            self.rule(scope, "pm", WEEKDAYS, "14:00", "17:00")
        for _ in range(3):
            nid = self.staff(
                member,
                endo,
                "nurse",
                skill=self.skill((1, 3, 2)),
                specialties=["32.09"],
                female=0.95,
            )
            self.weekday_shift(nid)

    def _imaging(
        self, member: _Member, campus_id: str, prefix: str, *, ct: bool, us: int, techs: int
    ) -> None:
        """One imaging department with DR, ultrasound and ECG (and CT at the west campus)."""
        dept = self.department(member, campus_id, prefix, "imaging", "32")
        if ct:
            cid = self.device(
                member, dept, "modality", "modality.CT", ("CT scanner", "CT机"), key="ct"
            )
            self.rule(cid, "open", WEEKDAYS, "08:00", "17:30")
            self.rule(cid, "sat-am", SATURDAY, "08:00", "12:00")
        dx = self.device(member, dept, "modality", "modality.DX", ("DR room", "DR机房"), key="dx")
        self.rule(dx, "open", WEEKDAYS, "08:00", "17:30")
        self.rule(dx, "sat-am", SATURDAY, "08:00", "12:00")
        for _ in range(us):
            uid = self.device(
                member, dept, "modality", "modality.US", ("Ultrasound room", "B超室"), key="us"
            )
            self.clinic_hours(uid, saturday=member.kind != "general_hospital")
        eid = self.device(
            member, dept, "modality", "modality.ECG", ("ECG room", "心电图室"), key="ecg"
        )
        self.clinic_hours(eid, saturday=member.kind != "general_hospital")
        specialties = ["32", "32.01", "32.05", "32.06"] + (["32.02"] if ct else [])
        for _ in range(techs):
            tid = self.staff(
                member, dept, "technician", skill=self.skill((3, 4, 2)), specialties=specialties
            )
            self.weekday_shift(tid, saturday_am=True)

    def branch(self, town: tuple[str, str, str], lat: float, lon: float, variant: int) -> _Member:
        zh, py, suffix = town
        bid = f"br-{py.lower()}"
        street = self.rng.choice(names.STREETS)
        br = self.institution(
            bid,
            name=f"Qinglan County People's Hospital {py} Branch",
            name_zh=f"青岚县人民医院{zh}分院",
            kind="branch_hospital",
            grade="2B",
            parent_id="ch",
            address=f"{COUNTY_ZH}{zh}{suffix}{street[0]}{self.rng.randint(1, 199)}号",
            lat=lat,
            lon=lon,
            town=(zh + suffix, py),
        )
        site = self.campus(
            br, f"{bid}-main", "Main site", "院本部", self.institutions[-1]["address"], lat, lon
        )
        self.floors[site] = [("1", f) for f in range(2, 7)]
        plans = [
            WardPlan(
                "med",
                "03",
                (24, 30),
                "physician",
                (4, 6),
                specialties=("03", "03.04", "03.01", "03.07"),
                clinic_rooms=2,
            ),
            WardPlan(
                "surg",
                "04",
                (18, 24),
                "surgeon",
                (3, 5),
                specialties=("04", "04.01"),
            ),
            BRANCH_THIRD_WARD[variant % len(BRANCH_THIRD_WARD)],
            WardPlan(
                "er",
                "14",
                (4, 6),
                "physician",
                (2, 3),
                bed_type="bed.observation",
                kind="emergency",
                gender="mixed",
                nurse_ratio=1.0,
                clinic_rooms=1,
            ),
        ]
        for plan in plans:
            dept = self.department(br, site, bid, plan.key, plan.code)
            building, floor = self.next_floor(site) if plan.kind != "emergency" else ("1", 1)
            self._inpatient_department(br, dept, plan, building, floor)
            if plan.key == "surg":  # one orthopaedic surgeon in the surgical team
                self.doctors(
                    br,
                    dept,
                    "surgeon",
                    1,
                    specialties=("04", "04.03"),
                    ward_id=None,
                    female=0.2,
                    head_skill=2,
                    night_duty=False,
                )
        self._outpatient(br, site, bid, gp=(2, 3))
        self._theatres(br, site, bid, general=1, hybrid=0, day=0, anaesthetists=2)
        self._small_lab(br, site, bid, chemistry=True, techs=3)
        self._imaging(br, site, bid, ct=False, us=2, techs=4)
        return br

    def _outpatient(
        self, member: _Member, campus_id: str, prefix: str, *, gp: tuple[int, int]
    ) -> None:
        """General practice, preventive care and (often) TCM, open Monday to Saturday morning."""
        dept = self.department(member, campus_id, prefix, "gp", "02")
        n = self.rng.randint(*gp)
        self.doctors(
            member,
            dept,
            "physician",
            n,
            specialties=("02",),
            ward_id=None,
            female=0.5,
            head_skill=2,
            night_duty=False,
            saturday_am=True,
        )
        self._consultation_rooms(member, dept, min(n, 3), saturday=True)
        prev = self.department(member, campus_id, prefix, "prev", "01")
        self.doctors(
            member,
            prev,
            "physician",
            self.rng.randint(1, 2),
            specialties=("01", "02"),
            ward_id=None,
            female=0.6,
            head_skill=1,
            night_duty=False,
        )
        if member.kind == "branch_hospital" or self.rng.random() < 0.6:
            tcm = self.department(member, campus_id, prefix, "tcm", "50")
            self.doctors(
                member,
                tcm,
                "physician",
                self.rng.randint(1, 2),
                specialties=("50",),
                ward_id=None,
                female=0.4,
                head_skill=2,
                night_duty=False,
                saturday_am=True,
            )
            self._consultation_rooms(member, tcm, 1, saturday=True)
        for _ in range(self.rng.randint(2, 3)):
            nid = self.staff(
                member,
                dept,
                "nurse",
                skill=self.skill((2, 4, 2)),
                specialties=["02"],
                female=0.95,
            )
            self.weekday_shift(nid, "clinic", saturday_am=True)

    def township_centre(self, town: tuple[str, str, str], lat: float, lon: float) -> _Member:
        zh, py, suffix = town
        tid = f"thc-{py.lower()}"
        street = self.rng.choice(names.STREETS)
        thc = self.institution(
            tid,
            name=f"{py} Township Health Centre",
            name_zh=f"{zh}{suffix}卫生院",
            kind="township_health_centre",
            grade="1",
            parent_id="ch",
            address=f"{COUNTY_ZH}{zh}{suffix}{street[0]}{self.rng.randint(1, 99)}号",
            lat=lat,
            lon=lon,
            town=(zh + suffix, py),
        )
        site = self.campus(
            thc, f"{tid}-main", "Main site", "院本部", self.institutions[-1]["address"], lat, lon
        )
        plan = WardPlan(
            "med", "03", (10, 20), "physician", (2, 3), specialties=("02", "03"), clinic_rooms=0
        )
        dept = self.department(thc, site, tid, plan.key, plan.code)
        self._inpatient_department(thc, dept, plan, "1", 2)
        self._outpatient(thc, site, tid, gp=(2, 4))
        self._small_lab(
            thc, site, tid, chemistry=self.rng.random() < 0.5, techs=self.rng.randint(1, 2)
        )
        self._imaging(thc, site, tid, ct=False, us=1, techs=2)
        return thc

    def village_clinic(
        self, leader: _Member, lat: float, lon: float, *, doctor_li: bool
    ) -> _Member:
        vzh, vpy = names.village(self.rng, self.villages_taken)
        vid = f"vc-{leader.town_en.lower()}-{vpy.lower().replace(chr(39), '')}"
        town_zh = leader.town_zh
        vc = self.institution(
            vid,
            name=f"{vpy} Village Clinic, {leader.town_en}",
            name_zh=f"{town_zh}{vzh}村卫生室",
            kind="village_clinic",
            grade="unrated",
            parent_id=leader.id,
            address=f"{COUNTY_ZH}{town_zh}{vzh}村{self.rng.randint(1, 60)}号",
            lat=lat,
            lon=lon,
            town=(leader.town_zh, leader.town_en),
        )
        site = self.campus(
            vc, f"{vid}-site", "Clinic", "卫生室", self.institutions[-1]["address"], lat, lon
        )
        dept = self.department(vc, site, vid, "gp", "02")
        n = 2 if self.rng.random() < 0.4 else 1
        self.doctors(
            vc,
            dept,
            "physician",
            n,
            specialties=("02",),
            ward_id=None,
            female=0.3,
            head_skill=1,
            skills=(2, 1),
            surname="李" if doctor_li else None,
            night_duty=False,
            saturday_am=True,
        )
        if self.rng.random() < 0.3:
            nid = self.staff(
                vc, dept, "nurse", skill=self.skill((3, 2)), specialties=["02"], female=0.95
            )
            self.weekday_shift(nid, "clinic", saturday_am=True)
        self._consultation_rooms(vc, dept, 1, saturday=True)
        return vc

    # -- the whole consortium ----------------------------------------------------------------

    def towns(self) -> list[tuple[tuple[str, str, str], float, float]]:
        """Towns with their coordinates, scattered 8 to 30 km around the county seat."""
        out = []
        for town in names.TOWNS:
            bearing = self.rng.uniform(0, 2 * math.pi)
            dist = self.rng.uniform(0.07, 0.27)
            lat = COUNTY_SEAT[0] + dist * math.cos(bearing)
            lon = COUNTY_SEAT[1] + dist * math.sin(bearing) * 1.15
            out.append((town, lat, lon))
        return out

    def build(self) -> dict[str, Any]:
        self.county_hospital()
        towns = self.towns()
        self.rng.shuffle(towns)
        n_thc = self.rng.randint(6, 7)
        branch_towns = sorted(towns[:3], key=lambda t: t[0][1])
        thc_towns = sorted(towns[3 : 3 + n_thc], key=lambda t: t[0][1])
        leaders = []
        for i, (town, lat, lon) in enumerate(branch_towns):
            leaders.append((self.branch(town, lat, lon, variant=i), lat, lon, (1, 2)))
        for town, lat, lon in thc_towns:
            leaders.append((self.township_centre(town, lat, lon), lat, lon, (2, 4)))
        first = True
        for leader, lat, lon, per in leaders[3:] + leaders[:3]:
            for _ in range(self.rng.randint(*per)):
                vlat = lat + self.rng.uniform(-0.05, 0.05)
                vlon = lon + self.rng.uniform(-0.05, 0.05)
                self.village_clinic(leader, vlat, vlon, doctor_li=first)
                first = False
        self.calendar_exceptions()
        return {
            "format": "carepool.catalog/1",
            "consortium": {
                "id": "qinglan",
                "name": "Qinglan County Medical Community",
                "name_zh": "青岚县医共体",
                "timezone": "Asia/Shanghai",
            },
            "department_codes": [
                {"code": code, "name": en, "name_zh": zh}
                for code, (en, zh) in sorted(DEPARTMENT_CODES.items())
            ],
            "institutions": self.institutions,
            "campuses": self.campuses,
            "departments": self.departments,
            "wards": self.wards,
            "resources": self.resources,
            "calendar_rules": self.rules,
            "calendar_exceptions": self.exceptions,
            "services": services(self.members.values()),
        }

    def at(self, day: int, hhmm: str) -> str:
        moment = datetime.combine(self.monday + timedelta(days=day), time.fromisoformat(hhmm))
        return moment.isoformat(timespec="minutes") + TZ

    def calendar_exceptions(self) -> None:
        """A few one-off changes in the first fortnight, the kind a bed manager runs into."""
        rng = self.rng
        by_id = {r["id"]: r for r in self.resources}

        def pick(pred: Any) -> dict[str, Any]:
            return rng.choice([r for r in self.resources if pred(r)])

        def add(rid: str, kind: str, start: str, end: str, reason: str, key: str) -> None:
            assert rid in by_id
            self.exceptions.append(
                {
                    "id": f"{rid}-{key}",
                    "resource_id": rid,
                    "kind": kind,
                    "start": start,
                    "end": end,
                    "reason": reason,
                }
            )

        add(
            "ch-east-ct2",
            "maintenance",
            self.at(2, "08:00"),
            self.at(2, "18:00"),
            "X-ray tube replacement / 球管更换",
            "tube",
        )
        nurse = pick(
            lambda r: r.get("role") == "nurse" and r.get("ward_id", "").startswith("ch-east-cardio")
        )
        add(
            nurse["id"],
            "leave",
            self.at(3, "00:00"),
            self.at(10, "00:00"),
            "annual leave / 年休假",
            "annual-leave",
        )
        surgeon = pick(
            lambda r: (
                r.get("role") == "surgeon"
                and r["id"].startswith("ch-")
                and "04.03" in r.get("specialties", [])
            )
        )
        add(
            surgeon["id"],
            "leave",
            self.at(7, "00:00"),
            self.at(12, "00:00"),
            "training course in the provincial hospital / 省级医院进修",
            "training",
        )
        add(
            "ch-west-or2",
            "closure",
            self.at(4, "08:00"),
            self.at(4, "18:00"),
            "laminar-flow maintenance / 层流净化维护",
            "airflow",
        )
        add(
            "ch-east-mr1",
            "extra",
            self.at(5, "13:00"),
            self.at(5, "18:00"),
            "extra Saturday session to cut the waiting list / 周六加班减少候检",
            "extra-sat",
        )
        us = pick(lambda r: r.get("type_code") == "modality.US" and r["id"].startswith("br-"))
        add(
            us["id"],
            "maintenance",
            self.at(1, "14:00"),
            self.at(1, "17:30"),
            "probe repair / 探头维修",
            "probe",
        )
        room = pick(
            lambda r: r.get("type_code") == "room.consultation" and r["id"].startswith("vc-")
        )
        add(
            room["id"],
            "closure",
            self.at(8, "08:00"),
            self.at(8, "17:00"),
            "village doctor at county training day / 乡村医生培训",
            "training-day",
        )
        thc_us = pick(lambda r: r.get("type_code") == "modality.US" and r["id"].startswith("thc-"))
        thc_us["status"] = "maintenance"  # out of service until the engineer comes


def _matches(resource: dict[str, Any], req: dict[str, Any]) -> bool:
    if resource["kind"] != req["kind"] or resource.get("status", "in_service") != "in_service":
        return False
    if "type_code" in req and resource["type_code"] != req["type_code"]:
        return False
    if "role" in req and resource.get("role") != req["role"]:
        return False
    if "min_skill" in req and resource.get("skill_level", 0) < req["min_skill"]:
        return False
    return "specialty" not in req or req["specialty"] in resource.get("specialties", [])


def _offers(member: _Member, requirements: list[dict[str, Any]]) -> bool:
    """Whether a member holds enough matching resources for every requirement at once.

    Requirements that ask for the same kind, type, role and specialty add up (an operating
    surgeon and an assistant are two surgeons), and so do all requirements for one role.
    """
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    per_role: dict[tuple[str, str | None], int] = {}
    for req in requirements:
        key = (req["kind"], req.get("type_code"), req.get("role"), req.get("specialty"))
        group = groups.setdefault(key, {**req, "count": 0, "min_skill": req.get("min_skill", 0)})
        group["count"] += req["count"]
        group["min_skill"] = min(group["min_skill"], req.get("min_skill", 0))
        role_key = (req["kind"], req.get("role"))
        per_role[role_key] = per_role.get(role_key, 0) + req["count"]
    for req in [*requirements, *groups.values()]:
        if sum(_matches(r, req) for r in member.by_kind(req["kind"])) < req["count"]:
            return False
    for (kind, role), wanted in per_role.items():
        if sum(role is None or r.get("role") == role for r in member.by_kind(kind)) < wanted:
            return False
    return True


def services(members: Iterable[_Member]) -> list[dict[str, Any]]:
    """The service catalogue of `services.yaml`, each offered by the members that can."""
    members = list(members)
    kinds = {"all": ALL_KINDS, "hospitals": HOSPITAL_KINDS, "inpatient": INPATIENT_KINDS}
    out = []
    for spec in _service_specs():
        duration, preparation, turnover = spec["minutes"]
        requirements = [{**r, "count": r.get("count", 1)} for r in spec["requirements"]]
        orderable = spec["orderable_by_kinds"]
        out.append(
            {
                "id": spec["id"],
                "name": spec["name"],
                "name_zh": spec["name_zh"],
                "category": spec["category"],
                "department_code": spec.get("department_code"),
                "codes": dict(spec.get("codes", {})),
                "duration_min": duration,
                "preparation_min": preparation,
                "turnover_min": turnover,
                "price": spec["price"],
                "currency": "CNY",
                "requirements": requirements,
                "offered_by": sorted(m.id for m in members if _offers(m, requirements)),
                "orderable_by_roles": list(spec["orderable_by_roles"]),
                "orderable_by_kinds": list(
                    kinds[orderable] if isinstance(orderable, str) else orderable
                ),
            }
        )
    return out


@functools.cache
def _service_specs() -> tuple[dict[str, Any], ...]:
    text = resources.files("carepool.demo").joinpath("services.yaml").read_text(encoding="utf-8")
    return tuple(yaml.safe_load(text))


def lead_clinic(doc: dict[str, Any]) -> str:
    """The village clinic where the demo's village doctor (Dr Li) works: the first one."""
    return next(i["id"] for i in doc["institutions"] if i["kind"] == "village_clinic")


def generate(seed: int, start_date: date | None = None) -> dict[str, Any]:
    """The demo catalogue document for `seed` (JSON-ready; same inputs, same bytes).

    Rosters start on the Monday of `start_date` (default: `DEFAULT_START`) and run for
    `ROSTER_WEEKS` weeks; the one-off calendar exceptions fall in the first fortnight.
    """
    return _Generator(seed, start_date or DEFAULT_START).build()
