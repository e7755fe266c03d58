"""Flat numpy view of an IHTC-2024 instance, built for the solver's numba kernels.

Why this module exists: the numba kernels cannot walk Python objects, so the solver needs every
instance fact as a dense integer array. It builds them from the plain competition JSON dict, so it
does not depend on the typed models (which may evolve separately); `instance_to_dict` accepts a
path, a JSON string, a dict or a pydantic model and returns the competition dict.

Persons: indices ``0..P-1`` are the patients to schedule, ``P..P+O-1`` the occupants (fixed
admission on day 0 in a fixed room, no surgery). Per-shift vectors (workload, skill) are stored
relative to the admission day, padded with zeros up to the longest stay.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

# Soft cost component order (matches the validator names in PROBLEM.md §5).
SOFT_NAMES = (
    "RoomAgeMix",
    "RoomSkillLevel",
    "ContinuityOfCare",
    "ExcessiveNurseWorkload",
    "OpenOperatingTheater",
    "SurgeonTransfer",
    "PatientDelay",
    "ElectiveUnscheduledPatients",
)
SOFT_WEIGHT_KEYS = (
    "room_mixed_age",
    "room_nurse_skill",
    "continuity_of_care",
    "nurse_eccessive_workload",
    "open_operating_theater",
    "surgeon_transfer",
    "patient_delay",
    "unscheduled_optional",
)
# Hard violation component order (PROBLEM.md §4).
HARD_NAMES = (
    "RoomGenderMix",
    "PatientRoomCompatibility",
    "SurgeonOvertime",
    "OperatingTheaterOvertime",
    "MandatoryUnscheduledPatients",
    "AdmissionDay",
    "RoomCapacity",
    "NursePresence",
    "UncoveredRoom",
)


class IhtpData(NamedTuple):
    """Dense arrays of one instance (plus pinned decisions); passed as-is to numba kernels."""

    n_days: int
    n_rooms: int
    n_theatres: int
    n_surgeons: int
    n_nurses: int
    n_ages: int
    n_patients: int
    n_persons: int
    room_cap: np.ndarray  # [R]
    th_avail: np.ndarray  # [T, D] minutes
    surg_max: np.ndarray  # [NS, D] minutes
    nurse_skill: np.ndarray  # [N]
    nurse_max: np.ndarray  # [N, G] max load, -1 when not working
    nurse_shift_of_day: np.ndarray  # [N, D] global shift worked that day or -1
    shift_nurses: np.ndarray  # [G, N] nurses working shift g (first shift_nurse_cnt[g])
    shift_nurse_cnt: np.ndarray  # [G]
    los: np.ndarray  # [Q]
    gender: np.ndarray  # [Q] 0/1
    age: np.ndarray  # [Q]
    release: np.ndarray  # [P]
    due: np.ndarray  # [P] last admissible day (due day if mandatory, D-1 otherwise)
    mandatory: np.ndarray  # [P] bool
    duration: np.ndarray  # [P]
    surgeon: np.ndarray  # [P]
    incompat: np.ndarray  # [P, R] bool
    comp_rooms: np.ndarray  # [P, R] compatible rooms (first comp_cnt[p])
    comp_cnt: np.ndarray  # [P]
    occ_room: np.ndarray  # [O]
    req_wl: np.ndarray  # [Q, 3*maxlos] workload, relative to admission
    req_sk: np.ndarray  # [Q, 3*maxlos] skill required, relative to admission
    w_soft: np.ndarray  # [8] weights
    fix_day: np.ndarray  # [P] pinned admission day or -1 (-2 = pinned "not admitted")
    fix_room: np.ndarray  # [P] pinned room or -1
    fix_th: np.ndarray  # [P] pinned theatre or -1
    fix_nurse: np.ndarray  # [R, G] pinned nurse or -1
    cap_slots: int  # size of the per-room-day person lists


@dataclass(frozen=True)
class IhtpIndex:
    """Id <-> index maps of one instance (Python side only)."""

    patient_ids: list[str]
    occupant_ids: list[str]
    room_ids: list[str]
    theatre_ids: list[str]
    nurse_ids: list[str]
    shift_types: list[str]

    def room(self, rid: str) -> int:
        return self.room_ids.index(rid)


def instance_to_dict(instance: Any) -> dict[str, Any]:
    """Return the competition JSON dict of `instance` (path, JSON text, dict, or pydantic model)."""
    if isinstance(instance, Mapping):
        return dict(instance)
    if isinstance(instance, Path):
        return dict(json.loads(instance.read_text()))
    if isinstance(instance, str):
        text = instance.lstrip()
        if text.startswith("{"):
            return dict(json.loads(text))
        return dict(json.loads(Path(instance).read_text()))
    dump = getattr(instance, "model_dump", None)
    if callable(dump):
        try:
            return dict(dump(mode="json", by_alias=True))
        except TypeError:
            return dict(dump())
    to_dict = getattr(instance, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    raise TypeError(f"cannot read an IHTP instance from {type(instance).__name__}")


def build_data(
    inst: Mapping[str, Any], fixed: Mapping[str, Any] | None = None
) -> tuple[IhtpData, IhtpIndex]:
    """Build the solver arrays of a competition instance dict, with optional pinned decisions.

    `fixed` uses the solution format; every key given is pinned: ``{"patients": [{"id": "p1",
    "admission_day": 3, "room": "r0"}, {"id": "p2", "admission_day": 5, "operating_theater":
    "t1"}, {"id": "p3", "admission_day": "none"}], "nurses": [{"id": "n0", "assignments":
    [{"day": 0, "shift": "early", "rooms": ["r1"]}]}]}``.
    """
    D = int(inst["days"])
    shift_types = list(inst["shift_types"])
    S = len(shift_types)
    if S != 3:
        raise ValueError("the solver assumes three shift types per day")
    G = S * D
    ages = list(inst["age_groups"])
    rooms = list(inst["rooms"])
    theatres = list(inst["operating_theaters"])
    surgeons = list(inst["surgeons"])
    nurses = list(inst["nurses"])
    patients = list(inst["patients"])
    occupants = list(inst["occupants"])
    R, T, NS, N, P, n_occ = (
        len(rooms),
        len(theatres),
        len(surgeons),
        len(nurses),
        len(patients),
        len(occupants),
    )
    Q = P + n_occ
    room_ix = {r["id"]: i for i, r in enumerate(rooms)}
    th_ix = {t["id"]: i for i, t in enumerate(theatres)}
    surg_ix = {s["id"]: i for i, s in enumerate(surgeons)}
    nurse_ix = {n["id"]: i for i, n in enumerate(nurses)}
    shift_ix = {s: i for i, s in enumerate(shift_types)}
    age_ix = {a: i for i, a in enumerate(ages)}

    room_cap = np.array([int(r["capacity"]) for r in rooms], dtype=np.int64)
    th_avail = np.zeros((T, D), dtype=np.int64)
    for i, t in enumerate(theatres):
        th_avail[i, :] = np.asarray(t["availability"][:D], dtype=np.int64)
    surg_max = np.zeros((max(NS, 1), D), dtype=np.int64)
    for i, s in enumerate(surgeons):
        surg_max[i, :] = np.asarray(s["max_surgery_time"][:D], dtype=np.int64)

    nurse_skill = np.array([int(n["skill_level"]) for n in nurses], dtype=np.int64)
    nurse_max = np.full((max(N, 1), G), -1, dtype=np.int64)
    nurse_sod = np.full((max(N, 1), D), -1, dtype=np.int64)
    for i, n in enumerate(nurses):
        for ws in n["working_shifts"]:
            d = int(ws["day"])
            if not 0 <= d < D:
                continue
            g = d * S + shift_ix[ws["shift"]]
            nurse_max[i, g] = int(ws["max_load"])
            nurse_sod[i, d] = g
    shift_nurses = np.full((G, max(N, 1)), -1, dtype=np.int64)
    shift_nurse_cnt = np.zeros(G, dtype=np.int64)
    for g in range(G):
        for i in range(N):
            if nurse_max[i, g] >= 0:
                shift_nurses[g, shift_nurse_cnt[g]] = i
                shift_nurse_cnt[g] += 1

    los = np.zeros(Q, dtype=np.int64)
    gender = np.zeros(Q, dtype=np.int64)
    age = np.zeros(Q, dtype=np.int64)
    persons = patients + occupants
    for q, x in enumerate(persons):
        los[q] = int(x["length_of_stay"])
        gender[q] = 0 if x["gender"] == "A" else 1
        age[q] = age_ix[x["age_group"]]
    maxlen = max(1, int(los.max()) * S if Q else 1)
    req_wl = np.zeros((max(Q, 1), maxlen), dtype=np.int64)
    req_sk = np.zeros((max(Q, 1), maxlen), dtype=np.int64)
    for q, x in enumerate(persons):
        wl = list(x["workload_produced"])
        sk = list(x["skill_level_required"])
        req_wl[q, : len(wl)] = wl
        req_sk[q, : len(sk)] = sk

    release = np.zeros(max(P, 1), dtype=np.int64)
    due = np.zeros(max(P, 1), dtype=np.int64)
    mandatory = np.zeros(max(P, 1), dtype=np.bool_)
    duration = np.zeros(max(P, 1), dtype=np.int64)
    surgeon = np.zeros(max(P, 1), dtype=np.int64)
    incompat = np.zeros((max(P, 1), R), dtype=np.bool_)
    comp_rooms = np.full((max(P, 1), R), -1, dtype=np.int64)
    comp_cnt = np.zeros(max(P, 1), dtype=np.int64)
    for p, x in enumerate(patients):
        release[p] = int(x["surgery_release_day"])
        mandatory[p] = bool(x["mandatory"])
        due[p] = int(x["surgery_due_day"]) if mandatory[p] else D - 1
        duration[p] = int(x["surgery_duration"])
        surgeon[p] = surg_ix[x["surgeon_id"]]
        for rid in x.get("incompatible_room_ids", []) or []:
            incompat[p, room_ix[rid]] = True
        for r in range(R):
            if not incompat[p, r]:
                comp_rooms[p, comp_cnt[p]] = r
                comp_cnt[p] += 1
    occ_room = np.zeros(max(n_occ, 1), dtype=np.int64)
    for o, x in enumerate(occupants):
        occ_room[o] = room_ix[x["room_id"]]

    w = inst["weights"]
    w_soft = np.array([int(w[k]) for k in SOFT_WEIGHT_KEYS], dtype=np.int64)

    fix_day = np.full(max(P, 1), -1, dtype=np.int64)
    fix_room = np.full(max(P, 1), -1, dtype=np.int64)
    fix_th = np.full(max(P, 1), -1, dtype=np.int64)
    fix_nurse = np.full((R, G), -1, dtype=np.int64)
    if fixed:
        pat_ix = {x["id"]: i for i, x in enumerate(patients)}
        for e in fixed.get("patients", []) or []:
            p = pat_ix[e["id"]]
            if "admission_day" in e:
                ad = e["admission_day"]
                fix_day[p] = -2 if ad == "none" or ad is None else int(ad)
            if e.get("room") is not None:
                fix_room[p] = room_ix[e["room"]]
            if e.get("operating_theater") is not None:
                fix_th[p] = th_ix[e["operating_theater"]]
        for e in fixed.get("nurses", []) or []:
            n = nurse_ix[e["id"]]
            for a in e.get("assignments", []) or []:
                g = int(a["day"]) * S + shift_ix[a["shift"]]
                for rid in a.get("rooms", []) or []:
                    fix_nurse[room_ix[rid], g] = n

    max_cap = int(room_cap.max()) if R else 1
    cap_slots = max(4, min(max(Q, 1), 2 * max_cap + 4))

    data = IhtpData(
        n_days=D,
        n_rooms=R,
        n_theatres=T,
        n_surgeons=NS,
        n_nurses=N,
        n_ages=max(1, len(ages)),
        n_patients=P,
        n_persons=Q,
        room_cap=room_cap,
        th_avail=th_avail,
        surg_max=surg_max,
        nurse_skill=nurse_skill if N else np.zeros(1, dtype=np.int64),
        nurse_max=nurse_max,
        nurse_shift_of_day=nurse_sod,
        shift_nurses=shift_nurses,
        shift_nurse_cnt=shift_nurse_cnt,
        los=los if Q else np.zeros(1, dtype=np.int64),
        gender=gender if Q else np.zeros(1, dtype=np.int64),
        age=age if Q else np.zeros(1, dtype=np.int64),
        release=release,
        due=due,
        mandatory=mandatory,
        duration=duration,
        surgeon=surgeon,
        incompat=incompat,
        comp_rooms=comp_rooms,
        comp_cnt=comp_cnt,
        occ_room=occ_room,
        req_wl=req_wl,
        req_sk=req_sk,
        w_soft=w_soft,
        fix_day=fix_day,
        fix_room=fix_room,
        fix_th=fix_th,
        fix_nurse=fix_nurse,
        cap_slots=cap_slots,
    )
    index = IhtpIndex(
        patient_ids=[x["id"] for x in patients],
        occupant_ids=[x["id"] for x in occupants],
        room_ids=[r["id"] for r in rooms],
        theatre_ids=[t["id"] for t in theatres],
        nurse_ids=[n["id"] for n in nurses],
        shift_types=shift_types,
    )
    return data, index
