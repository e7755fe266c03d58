"""The demo's clinical feeds: each member sends its records its own way, and some send them badly.

`generate_feeds(seed, now=...)` writes, deterministically, what the members of the demo consortium
send the data middle platform:

- the county hospital (`ch`): FHIR R4 transaction bundles (LOINC codes, SI units), a few hundred
  patients with a CBC and a chemistry panel, one outpatient visit each; a few of them died after
  their visit (`deceasedDateTime`). Its data is clean;
- the first branch hospital: a CSV export with its own column names, local test codes and
  department names, and the mapping document that explains them;
- the township health centres: HL7 v2 ORU^R01 with Chinese local test names and conventional
  units (g/dL, 10^3/uL, mg/dL), and a batch from `quality.demo_defects`;
- four village clinics (Dr Li's first): HL7 v2 ADT^A04 and ORU^R01 for their patients, and a
  small batch from `quality.demo_defects`; one of them sends a weekly batch full of defects
  instead (`DEMO_PROFILES["village"]`), with results filed after a patient's recorded death.

Every member but the hospital sends some results badly, each a different share (`DEFECT_SHARES`)
of one mix of defects (`DEFECT_MIX`: late deliveries, missing units, unmapped local codes,
re-sent duplicates, unit slips), planted exactly: the more a member gets wrong, the lower it
scores, so the scorecard ranks the members in the order of their shares.

Forty people are patients of a village clinic and of the county hospital, under different local
ids; both write their names in characters, but the clinic has no national id and sometimes a
typo in the phone number, so only probabilistic linkage finds them.

`ingest_feeds(factory, feeds)` feeds them through `carepool.ingest` as the system actor, then
runs identity linking and one quality run, and returns the counts.
"""

from __future__ import annotations

import csv
import io
import json
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from carepool.core.auth import Principal
from carepool.demo import names
from carepool.demo.generator import generate, lead_clinic
from carepool.identity import actions as identity_actions
from carepool.identity.normalise import national_id_check_char
from carepool.ingest import actions as ingest_actions
from carepool.ingest.models import IngestRun
from carepool.quality import actions as quality_actions
from carepool.quality import service as quality_service
from carepool.quality.demo_defects import (
    DEMO_PROFILES,
    IMPLAUSIBLE,
    LATE,
    MISSING_UNIT,
    RESENT,
    RESULTS_PER_PATIENT,
    UNMAPPED_CODE,
    DefectProfile,
    hl7_feed,
    plant,
)
from carepool.records.models import Patient

__all__ = [
    "DEFECT_MIX",
    "DEFECT_SHARES",
    "SHARED_PEOPLE",
    "Feed",
    "Person",
    "feeds_already_ingested",
    "generate_feeds",
    "ingest_feeds",
    "member_roles",
]

ProgressFn = Callable[[str, int, int], None]

SHARED_PEOPLE = 40  # patients of both a village clinic and the county hospital
HOSPITAL_PATIENTS = 240  # county hospital patients in all (the shared ones among them)
BRANCH_PATIENTS = 60
TOWNSHIP_PATIENTS = 15
VILLAGE_ONLY = 4  # patients a village clinic has that the hospital does not
VILLAGES = 4  # village clinics that send feeds (Dr Li's first)
SHARED_AT_LEAD = 16  # of the shared people, at Dr Li's clinic
TOWNSHIP_BATCH = 30  # patients in a township centre's batch with planted defects
VILLAGE_BATCH = 10  # patients in a village clinic's batch with planted defects
DECEASED_EVERY = 25  # one hospital patient in this many (not a shared one) died after the visit

# The one mix of defects members get wrong (shares of the defective results, adding up to 1).
DEFECT_MIX = DefectProfile(
    late=0.4, missing_units=0.2, unmapped_codes=0.25, duplicates=0.1, implausible=0.05
)
# The share of each member's results planted with a defect, by role, cleanest first: the order
# the scorecard ranks them in (the hospital, clean, first; the weekly village batch last).
DEFECT_SHARES: dict[str, float] = {
    "branch": 0.02,
    "village:0": 0.05,  # Dr Li's clinic
    "village:3": 0.08,
    "village:2": 0.11,
    **{f"township:{t}": x for t, x in enumerate((0.14, 0.19, 0.24, 0.3, 0.36, 0.42, 0.48))},
}

# (LOINC, display, SI unit, low, high, decimals, Chinese name, conventional unit, factor SI->conv)
_CBC = (
    (
        "26464-8",
        "Leukocytes [#/volume] in Blood",
        "10*9/L",
        4.0,
        10.0,
        1,
        "白细胞计数",
        "10^3/uL",
        1.0,
    ),
    (
        "26453-1",
        "Erythrocytes [#/volume] in Blood",
        "10*12/L",
        3.8,
        5.6,
        2,
        "红细胞计数",
        "10^6/uL",
        1.0,
    ),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/L", 115.0, 165.0, 0, "血红蛋白", "g/dL", 0.1),
    (
        "26515-7",
        "Platelets [#/volume] in Blood",
        "10*9/L",
        120.0,
        350.0,
        0,
        "血小板计数",
        "10^3/uL",
        1.0,
    ),
)
_CHEM = (
    ("14749-6", "Glucose [Moles/volume] in Serum or Plasma", "mmol/L", 3.9, 6.8, 1, "葡萄糖",
     "mg/dL", 18.016),
    ("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L", 50.0, 110.0, 0, "肌酐",
     "mg/dL", 1 / 88.42),
    ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L",
     8.0, 45.0, 0, "丙氨酸氨基转移酶", "U/L", 1.0),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.2, 1, "钾",
     "mmol/L", 1.0),
)  # fmt: skip
_HOSPITAL_DEPARTMENTS = ("心血管内科", "呼吸与危重症医学科", "内分泌科", "普通外科", "全科医学科")
_CLINIC_DEPARTMENT = "全科"
_CLINIC_TESTS = (_CBC[2], _CHEM[0])  # what a village clinic measures: haemoglobin and glucose
_AREA_CODE = "331023"  # a county's six digits in the resident id
_SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Feed:
    """One file a member sends: its bytes, format, and (CSV) the mapping document that reads it.

    `planted` is the share of results this feed was written with a defect in, for the demo's
    story and its tests.
    """

    member: str
    format: str
    filename: str
    data: bytes
    mapping_doc: dict[str, Any] | None = None
    planted: float = 0.0


@dataclass(frozen=True)
class Person:
    """Someone the demo's feeds know: their facts as the county hospital records them."""

    key: int
    family: str
    given: str
    sex: str  # male | female
    birth: date
    national_id: str
    phone: str
    clinic: str | None = None  # the village clinic that also knows them
    clinic_id: str = ""
    hospital_id: str = ""

    @property
    def name(self) -> str:
        return self.family + self.given


# -- people ---------------------------------------------------------------------------------------


def _person(rng: random.Random, key: int) -> Person:
    female = rng.random() < 0.5
    surname = rng.choices(names.SURNAMES, weights=[w for *_, w in names.SURNAMES])[0][0]
    zh, _en = names.person(rng, female=female, surname=surname)
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 65))
    order = rng.randrange(0, 10, 2) + (0 if female else 1)  # odd for men
    first17 = f"{_AREA_CODE}{born:%Y%m%d}{rng.randrange(100):02d}{order}"
    return Person(
        key=key,
        family=surname,
        given=zh[len(surname) :],
        sex="female" if female else "male",
        birth=born,
        national_id=first17 + national_id_check_char(first17),
        phone=f"1{rng.choice('3589')}{rng.randrange(10**9):09d}",
    )


def _typo(rng: random.Random, phone: str) -> str:
    i = rng.randrange(3, len(phone))
    digit = str((int(phone[i]) + rng.randrange(1, 10)) % 10)
    return phone[:i] + digit + phone[i + 1 :]


def _recent(rng: random.Random, now: datetime) -> datetime:
    """A time in the two and a half days before `now`: results arrive well within 72 hours."""
    return now - timedelta(minutes=rng.randrange(180, 60 * 60))


def _value(rng: random.Random, low: float, high: float, dec: int) -> float:
    return round(rng.uniform(low * 0.9, high * 1.1), dec)


# -- formats --------------------------------------------------------------------------------------


def _ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def _hl7_pid(person: Person, local_id: str, facility: str, phone: str, nid: bool) -> str:
    ids = f"{local_id}^^^{facility}^MR"
    if nid:
        ids += f"~{person.national_id}^^^CHN^NNCHN"
    sex = "M" if person.sex == "male" else "F"
    return (
        f"PID|1||{ids}||{person.family}^{person.given}||{person.birth:%Y%m%d}|{sex}|||"
        f"^^{facility}||{phone}"
    )


def _hl7_oru(
    rng: random.Random,
    *,
    facility: str,
    control: str,
    pid: str,
    observed: datetime,
    now: datetime,
    department: str,
    tests: tuple[tuple[Any, ...], ...],
) -> str:
    obx = []
    for n, (_loinc, _display, _si, low, high, dec, zh, conv, factor) in enumerate(tests, 1):
        raw = _value(rng, low, high, dec)
        places = max(dec, 1) if factor != 1.0 else dec
        value, lo, hi = (round(x * factor, places) for x in (raw, low, high))
        flag = "H" if value > hi else "L" if value < lo else "N"
        obx.append(
            f"OBX|{n}|NM|L{n:02d}^{zh}^L||{value:.{places}f}|{conv}|"
            f"{lo:.{places}f}-{hi:.{places}f}|{flag}|||F|||{_ts(observed)}"
        )
    return "\r".join(
        [
            f"MSH|^~\\&|LIS|{facility}||CAREPOOL|{_ts(now)}||ORU^R01^ORU_R01|{control}|P|2.5.1",
            pid,
            _pv1(facility, "检验科", department, f"V{control}", observed - timedelta(minutes=30)),
            f"OBR|1|{control}|{control}^{facility}|PANEL^化验^L|||{_ts(observed)}"
            f"{'|' * 15}{_ts(now)}|||F",  # OBR-22 reported, OBR-25 final
            *obx,
        ]
    )


def _pv1(facility: str, location: str, department: str, visit: str, start: datetime) -> str:
    """An outpatient visit: location (PV1-3), department (PV1-10), visit number (PV1-19) and its
    start (PV1-44)."""
    fields = [""] * 45
    fields[:4] = ["PV1", "1", "O", f"{location}^^^{facility}"]
    fields[10] = department
    fields[19] = f"{visit}^^^{facility}"
    fields[44] = _ts(start)
    return "|".join(fields)


def _hl7_adt(*, facility: str, control: str, pid: str, when: datetime, department: str) -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|HIS|{facility}||CAREPOOL|{_ts(when)}||ADT^A04|{control}|P|2.4",
            f"EVN|A04|{_ts(when)}",
            pid,
            _pv1(facility, department, department, f"V{control}", when),
        ]
    )


def _hl7_file(messages: list[str]) -> bytes:
    return ("\n".join(messages) + "\n").encode("utf-8")


def _fhir_bundle(entries: list[dict[str, Any]], bundle_id: str) -> bytes:
    bundle = {"resourceType": "Bundle", "id": bundle_id, "type": "transaction", "entry": entries}
    return json.dumps(bundle, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _fhir_entries(
    rng: random.Random, person: Person, *, observed: datetime, died: datetime | None = None
) -> list[dict[str, Any]]:
    pid = f"ch-p-{person.key:05d}"
    enc = f"ch-e-{person.key:05d}"
    identifiers = [
        {
            "type": {"coding": [{"code": "MR"}]},
            "system": "urn:carepool:ch:mrn",
            "value": person.hospital_id,
        }
    ]
    # The hospital misses the national id of one patient in six.
    if person.key % 6:
        identifiers.append(
            {
                "type": {"coding": [{"code": "NNCHN"}]},
                "system": "urn:oid:2.16.156.10011.1.1",
                "value": person.national_id,
            }
        )
    patient = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": identifiers,
        "name": [{"family": person.family, "given": [person.given]}],
        "gender": person.sex,
        "birthDate": person.birth.isoformat(),
        "telecom": [{"system": "phone", "value": person.phone}],
    }
    if died is not None:
        patient["deceasedDateTime"] = died.isoformat()
    encounter = {
        "resourceType": "Encounter",
        "id": enc,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "serviceType": {"text": _HOSPITAL_DEPARTMENTS[person.key % len(_HOSPITAL_DEPARTMENTS)]},
        "subject": {"reference": f"urn:uuid:{pid}"},
        "period": {"start": (observed - timedelta(hours=1)).isoformat()},
    }
    entries = [
        {"fullUrl": f"urn:uuid:{pid}", "resource": patient, "request": _post("Patient")},
        {"fullUrl": f"urn:uuid:{enc}", "resource": encounter, "request": _post("Encounter")},
    ]
    for n, (loinc, display, si, low, high, dec, *_rest) in enumerate(_CBC + _CHEM, 1):
        oid = f"ch-o-{person.key:05d}-{n:02d}"
        obs = {
            "resourceType": "Observation",
            "id": oid,
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": display}]},
            "subject": {"reference": f"urn:uuid:{pid}"},
            "encounter": {"reference": f"urn:uuid:{enc}"},
            "effectiveDateTime": observed.isoformat(),
            "valueQuantity": {
                "value": _value(rng, low, high, dec),
                "unit": si,
                "system": "http://unitsofmeasure.org",
                "code": si,
            },
            "referenceRange": [{"low": {"value": low}, "high": {"value": high}}],
        }
        entries.append(
            {"fullUrl": f"urn:uuid:{oid}", "resource": obs, "request": _post("Observation")}
        )
    return entries


def _post(kind: str) -> dict[str, str]:
    return {"method": "POST", "url": kind}


# -- the branch's CSV export ----------------------------------------------------------------------

_BRANCH_CODES = {
    "T01": "718-7",
    "T02": "26464-8",
    "T03": "26515-7",
    "T04": "14749-6",
    "T05": "14682-9",
}
_BRANCH_TESTS = {
    "T01": ("HGB", 115.0, 165.0, 0, "g/L"),
    "T02": ("WBC", 4.0, 10.0, 1, "x10E9/L"),
    "T03": ("PLT", 120.0, 350.0, 0, "x10E9/L"),
    "T04": ("GLU", 3.9, 6.8, 1, "mmol/l"),
    "T05": ("CREA", 50.0, 110.0, 0, "umol/l"),
}
_BRANCH_DEPARTMENTS = {"大内科": "03", "外一科": "04.01", "全科门诊": "02"}


def _branch_mapping(member: str) -> dict[str, Any]:
    return {
        "format": "carepool.csv-mapping/1",
        "name": f"{member}-his",
        "description": "Branch hospital HIS export (patients, visits, lab results)",
        "id_system": f"{member}-his",
        "timezone": "Asia/Shanghai",
        "date_formats": ["%d.%m.%Y %H:%M", "%d.%m.%Y"],
        "code_system": f"urn:carepool:{member}:lab",
        "local_codes": dict(_BRANCH_CODES),
        "units": {"x10E9/L": "10*9/L", "mmol/l": "mmol/L", "umol/l": "umol/L"},
        "departments": dict(_BRANCH_DEPARTMENTS),
        "tables": [
            {
                "name": "patients",
                "files": ["*patients*.csv"],
                "record": "patient",
                "columns": {
                    "local_id": "PatNo",
                    "name": "PatName",
                    "sex": "Sex",
                    "birth_date": "DOB",
                    "national_id": "IDCard",
                    "phone": "Tel",
                },
                "identifiers": [
                    {"column": "IDCard", "system": "urn:oid:2.16.156.10011.1.1", "type": "NNCHN"}
                ],
                "values": {"sex": {"1": "male", "2": "female"}},
            },
            {
                "name": "visits",
                "files": ["*visits*.csv"],
                "record": "encounter",
                "columns": {
                    "local_id": "VisitNo",
                    "patient": "PatNo",
                    "department": "Dept",
                    "start_at": "VisitTime",
                },
                "defaults": {"status": "finished", "encounter_class": "outpatient"},
            },
            {
                "name": "results",
                "files": ["*results*.csv"],
                "record": "observation",
                "columns": {
                    "patient": "PatNo",
                    "encounter": "VisitNo",
                    "code": "ItemCode",
                    "text": "ItemName",
                    "value": "Result",
                    "unit": "Unit",
                    "effective_at": "ReportTime",
                },
                "defaults": {"status": "final"},
            },
        ],
    }


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _branch_feeds(
    rng: random.Random,
    member: str,
    people: list[Person],
    now: datetime,
    *,
    profile: DefectProfile,
    defects: random.Random,
) -> list[Feed]:
    """The branch's export; `profile` says which share of results carry a defect (a blank unit,
    a unit slip, a code the mapping does not know, a row exported twice under another name, a
    result of days ago), planted exactly with `defects`."""
    patients, visits, results = [], [], []
    depts = sorted(_BRANCH_DEPARTMENTS)
    n_tests = len(_BRANCH_TESTS)
    faults = plant(defects, len(people) * n_tests, profile.result_shares(), "branch results")
    late = now - timedelta(hours=profile.late_hours)
    for i, p in enumerate(people):
        local = f"B{p.key:06d}"
        patients.append(
            [local, p.name, "1" if p.sex == "male" else "2", f"{p.birth:%d.%m.%Y}",
             p.national_id, p.phone]
        )  # fmt: skip
        visit = f"{local}-1"
        when = (_recent(rng, now)).astimezone(_SHANGHAI)
        visits.append([visit, local, depts[p.key % len(depts)], f"{when:%d.%m.%Y %H:%M}"])
        for j, (code, (name, low, high, dec, unit)) in enumerate(_BRANCH_TESTS.items()):
            value = _value(rng, low, high, dec)
            fault = faults[i * n_tests + j]
            shown_code, shown_name, shown_unit = code, name, unit
            reported = when + timedelta(hours=2)
            if fault == MISSING_UNIT:
                shown_unit = ""
            elif fault == IMPLAUSIBLE:
                value *= 1000
            elif fault == UNMAPPED_CODE:
                shown_code, shown_name = f"X{j + 1:02d}", f"自定义项目{j + 1}"
            elif fault == LATE:
                reported = late.astimezone(_SHANGHAI)
            row = [local, visit, shown_code, shown_name, f"{value:.{dec}f}", shown_unit,
                   f"{reported:%d.%m.%Y %H:%M}"]  # fmt: skip
            results.append(row)
            if fault == RESENT:
                results.append([*row[:3], name.lower(), *row[4:]])
    mapping = _branch_mapping(member)
    return [
        Feed(member, "csv", f"{member}-patients.csv",
             _csv(["PatNo", "PatName", "Sex", "DOB", "IDCard", "Tel"], patients), mapping),
        Feed(member, "csv", f"{member}-visits.csv",
             _csv(["VisitNo", "PatNo", "Dept", "VisitTime"], visits), mapping),
        Feed(member, "csv", f"{member}-results.csv",
             _csv(["PatNo", "VisitNo", "ItemCode", "ItemName", "Result", "Unit", "ReportTime"],
                  results), mapping, planted=profile.total),
    ]  # fmt: skip


# -- all of it ------------------------------------------------------------------------------------


def _batch_profile(share: float, base_results: int, batch_patients: int) -> DefectProfile:
    """The mix for a batch of `batch_patients` sent besides `base_results` clean results, so
    that `share` of all the member's results carry a defect."""
    batch = batch_patients * RESULTS_PER_PATIENT
    return DEFECT_MIX.scaled(share * (base_results + batch) / batch)


def _senders(doc: dict[str, Any]) -> tuple[dict[str, list[str]], list[str]]:
    """The catalogue's members by kind, and the village clinics that send (Dr Li's first)."""
    kinds: dict[str, list[str]] = {}
    for inst in doc["institutions"]:
        kinds.setdefault(inst["kind"], []).append(inst["id"])
    lead = lead_clinic(doc)
    others = [v for v in kinds.get("village_clinic", []) if v != lead]
    return kinds, [lead, *others[: VILLAGES - 1]]


def member_roles(doc: dict[str, Any]) -> dict[str, str]:
    """Each sending member's role: `hospital`, `branch`, `township:<n>` or `village:<n>` (0 is
    Dr Li's clinic, 1 the one with the weekly batch); the keys of `DEFECT_SHARES`."""
    kinds, villages = _senders(doc)
    roles = {"ch": "hospital"}
    roles.update({m: "branch" for m in kinds.get("branch_hospital", [])[:1]})
    roles.update(
        {m: f"township:{t}" for t, m in enumerate(kinds.get("township_health_centre", []))}
    )
    roles.update({m: f"village:{v}" for v, m in enumerate(villages)})
    return roles


def generate_feeds(seed: int, *, now: datetime, doc: dict[str, Any] | None = None) -> list[Feed]:
    """What the members of the demo consortium for `seed` send (same inputs, same bytes).

    `doc` is the consortium's catalogue document (`generator.generate(seed)` if not given): the
    members come from it. Results are observed in the days before `now`.
    """
    doc = doc if doc is not None else generate(seed)
    now = now.astimezone(UTC).replace(microsecond=0)
    kinds, villages = _senders(doc)
    lead = villages[0]
    rng = random.Random(f"carepool-demo-feeds:{seed}")

    people = [_person(rng, k) for k in range(1, HOSPITAL_PATIENTS + 1)]
    # The shared ones: the first SHARED_AT_LEAD at Dr Li's clinic, the rest spread over the others.
    shared: list[Person] = []
    for i, p in enumerate(people[:SHARED_PEOPLE]):
        clinic = lead if i < SHARED_AT_LEAD else villages[1 + i % (len(villages) - 1)]
        shared.append(replace(p, clinic=clinic, clinic_id=f"C{rng.randrange(10**5):05d}"))
    people = [
        replace(p, hospital_id=f"ZY{2026_00000 + p.key * 7:d}")
        for p in shared + people[SHARED_PEOPLE:]
    ]
    feeds: list[Feed] = []

    # County hospital: FHIR bundles of 60 patients each.
    chunk = 60
    for b in range(0, len(people), chunk):
        entries: list[dict[str, Any]] = []
        for p in people[b : b + chunk]:
            observed = _recent(rng, now)
            dies = p.key > SHARED_PEOPLE and p.key % DECEASED_EVERY == 0
            died = observed + timedelta(hours=2) if dies else None
            entries += _fhir_entries(rng, p, observed=observed, died=died)
        n = b // chunk + 1
        feeds.append(
            Feed("ch", "fhir", f"ch-bundle-{n:03d}.json", _fhir_bundle(entries, f"ch-{n}"))
        )

    # The first branch: a CSV export with a mapping document.
    branches = kinds.get("branch_hospital", [])
    if branches:
        branch_people = [_person(rng, 10_000 + k) for k in range(BRANCH_PATIENTS)]
        feeds += _branch_feeds(
            rng,
            branches[0],
            branch_people,
            now,
            profile=DEFECT_MIX.scaled(DEFECT_SHARES["branch"]),
            defects=random.Random(f"carepool-demo-defects:{seed}"),
        )

    # Township centres: HL7 ORU with Chinese names and conventional units, and planted defects.
    for t, member in enumerate(kinds.get("township_health_centre", [])):
        facility = member.upper()
        messages = []
        for k in range(TOWNSHIP_PATIENTS):
            p = _person(rng, 20_000 + t * 100 + k)
            observed = _recent(rng, now)
            pid = _hl7_pid(p, f"T{t}{k:04d}", facility, p.phone, nid=True)
            messages.append(
                _hl7_oru(rng, facility=facility, control=f"{facility}-{k:04d}", pid=pid,
                         observed=observed, now=observed + timedelta(hours=2), department="内科",
                         tests=_CBC + _CHEM[:2])
            )  # fmt: skip
        feeds.append(Feed(member, "hl7v2", f"{member}-lis.hl7", _hl7_file(messages)))
        share = DEFECT_SHARES.get(f"township:{t}", 0.0)
        if share:
            base = TOWNSHIP_PATIENTS * len(_CBC + _CHEM[:2])
            profile = _batch_profile(share, base, TOWNSHIP_BATCH)
            data = hl7_feed(member, profile, patients=TOWNSHIP_BATCH, seed=seed, now=now)
            feeds.append(
                Feed(member, "hl7v2", f"{member}-lis-batch.hl7", data, planted=profile.total)
            )

    # Village clinics: ADT when a patient registers, ORU for the few tests they run.
    for v, member in enumerate(villages):
        facility = member.upper()
        messages = []
        mine = [p for p in shared if p.clinic == member]
        mine += [
            replace(
                _person(rng, 30_000 + v * 100 + k),
                clinic=member,
                clinic_id=f"C{90_000 + v * 100 + k:05d}",
            )
            for k in range(VILLAGE_ONLY)
        ]
        for k, p in enumerate(mine):
            # The clinic has no national id; a third of its phone numbers carry a typo.
            phone = _typo(rng, p.phone) if rng.random() < 0.34 else p.phone
            pid = _hl7_pid(p, p.clinic_id, facility, phone, nid=False)
            seen = _recent(rng, now)
            messages.append(
                _hl7_adt(facility=facility, control=f"{facility}-A{k:04d}", pid=pid, when=seen,
                         department=_CLINIC_DEPARTMENT)
            )  # fmt: skip
            messages.append(
                _hl7_oru(rng, facility=facility, control=f"{facility}-R{k:04d}", pid=pid,
                         observed=seen + timedelta(minutes=20), now=seen + timedelta(hours=1),
                         department=_CLINIC_DEPARTMENT, tests=_CLINIC_TESTS)
            )  # fmt: skip
        feeds.append(Feed(member, "hl7v2", f"{member}-his.hl7", _hl7_file(messages)))
        if v == 1:
            profile = DEMO_PROFILES["village"]
            data = hl7_feed(member, profile, patients=12, seed=seed, now=now)
            feeds.append(Feed(member, "hl7v2", f"{member}-weekly.hl7", data, planted=profile.total))
        elif share := DEFECT_SHARES.get(f"village:{v}", 0.0):
            profile = _batch_profile(share, len(_CLINIC_TESTS) * len(mine), VILLAGE_BATCH)
            data = hl7_feed(member, profile, patients=VILLAGE_BATCH, seed=seed, now=now)
            feeds.append(Feed(member, "hl7v2", f"{member}-lis.hl7", data, planted=profile.total))
    return feeds


# -- ingest ---------------------------------------------------------------------------------------


@dataclass
class FeedsSummary:
    members: dict[str, dict[str, int]] = field(default_factory=dict)
    linking: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def feeds_already_ingested(factory: sessionmaker[Session]) -> bool:
    """Whether feeds were already ingested into the store (the demo's or anyone's): an ingest
    run exists. Patients alone do not count — the demo's bookings register walk-in patients
    before the feeds arrive, and the feeds then update those records."""
    with factory() as session:
        return session.scalar(select(IngestRun.id).limit(1)) is not None


def ingest_demo_feeds(
    factory: sessionmaker[Session],
    seed: int,
    *,
    now: datetime,
    doc: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """The demo's step: generate and ingest the feeds for `seed`, unless records exist already.

    Returns `ingest_feeds`'s counts, or `{"ingested": False, "patients": n, ...}` when skipped.
    """
    if feeds_already_ingested(factory):
        with factory() as session:
            patients = session.scalar(select(func.count()).select_from(Patient)) or 0
            runs = session.scalar(select(func.count()).select_from(IngestRun)) or 0
        return {"ingested": False, "patients": patients, "ingest_runs": runs}
    began = time.perf_counter()
    feeds = generate_feeds(seed, now=now, doc=doc)
    generated = round(time.perf_counter() - began, 2)
    out = ingest_feeds(factory, feeds, progress)
    out["seconds"] = {"generate": generated, **out["seconds"]}
    out["seconds"]["total"] = round(time.perf_counter() - began, 2)
    return out


_ACTOR = Principal.system_actor("demo-feeds")


def _run_quality(factory: sessionmaker[Session], *, as_of: datetime | None) -> Any:
    """One quality run over every member. On SQLite the suite runs on DuckDB over a Parquet
    export of the store, the way a large store is checked; the results are the same as on
    SQLite itself, which now takes about as long (a few seconds)."""
    with factory() as session:
        url = session.get_bind().engine.url.render_as_string(hide_password=False)
    if not url.startswith("sqlite"):
        return quality_actions.do_run_quality(factory, actor=_ACTOR, channel="demo", as_of=as_of)
    from carepool.quality import sources

    with tempfile.TemporaryDirectory(prefix="carepool-demo-quality-") as directory:
        quality_actions.export_parquet(url, directory)
        tables = sources.read_parquet(Path(directory))
        return quality_actions.do_run_quality(
            factory, actor=_ACTOR, channel="demo", as_of=as_of, tables=tables, backend="duckdb"
        )


def ingest_feeds(
    factory: sessionmaker[Session],
    feeds: list[Feed],
    progress: ProgressFn | None = None,
    *,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Ingest `feeds` member by member, link identities, run quality once; return the counts.

    Counts per member: received, stored, duplicates, rejected (received = stored + duplicates +
    rejected). `as_of` is the time the quality run measures timeliness against (default: now).
    """
    step = progress or (lambda _stage, _done, _total: None)
    out = FeedsSummary()
    began = time.perf_counter()
    # One run per member and mapping (the CSV files of a member share one document).
    groups: dict[tuple[str, str], list[Feed]] = {}
    for f in feeds:
        key = (f.member, json.dumps(f.mapping_doc, sort_keys=True) if f.mapping_doc else "")
        groups.setdefault(key, []).append(f)
    step("feeds", 0, len(groups))
    for n, ((member, _mapping), items) in enumerate(groups.items(), 1):
        summary = ingest_actions.do_ingest(
            factory,
            actor=_ACTOR,
            institution_id=member,
            inputs=[ingest_actions.Input(f.filename, f.data, f.format) for f in items],
            mapping_doc=items[0].mapping_doc,
            channel="demo",
        )
        counts = out.members.setdefault(
            member, {"received": 0, "stored": 0, "duplicates": 0, "rejected": 0}
        )
        for k in counts:
            counts[k] += getattr(summary, k)
        step("feeds", n, len(groups))
    out.seconds["ingest"] = round(time.perf_counter() - began, 2)

    t = time.perf_counter()
    step("linking", 0, 1)
    run = identity_actions.do_link(factory, actor=_ACTOR, channel="demo")
    out.linking = {
        k: run.get(k) for k in ("records", "auto_links", "review", "persons", "new_persons")
    }
    step("linking", 1, 1)
    out.seconds["linking"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    step("quality", 0, 1)
    qrun = _run_quality(factory, as_of=as_of)
    with factory() as session:
        card = quality_service.get_consortium_scorecard(session)
    out.quality = {
        "run_id": qrun.id,
        "status": qrun.status.value,
        "scores": {e["member"]: e["categories"].get("overall") for e in card["members"]},
        "ranking": [e["member"] for e in card["members"]],
    }
    step("quality", 1, 1)
    out.seconds["quality"] = round(time.perf_counter() - t, 2)
    totals = {
        k: sum(c[k] for c in out.members.values())
        for k in ("received", "stored", "duplicates", "rejected")
    }
    return {
        "ingested": True,
        "feeds": len(feeds),
        "totals": totals,
        "members": out.members,
        "persons_linked": out.linking.get("auto_links", 0),
        "linking": out.linking,
        "quality": out.quality,
        "seconds": out.seconds,
    }
