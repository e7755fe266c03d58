"""Plain-Python full evaluation of an IHTP solution, independent of the numba kernels.

Why this module exists: the solver's incremental costs must be checked against a second,
straightforward reading of PROBLEM.md (and that reading against the official validator). This
is that reading, written for clarity, not speed; the solver calls it once on its final answer.
Malformed solutions (unknown ids, a patient listed twice, a nurse outside her roster, two nurses
on one room-shift) raise `ValueError`, as the official validator aborts on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from carepool.planning.ihtp.solver_data import HARD_NAMES, SOFT_NAMES, SOFT_WEIGHT_KEYS


@dataclass(frozen=True)
class Evaluation:
    """Cost and violations of a solution; `soft`/`hard` hold the raw (unweighted) counts."""

    cost: int
    violations: int
    soft: dict[str, int] = field(default_factory=dict)
    hard: dict[str, int] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return self.violations == 0


def evaluate(inst: Mapping[str, Any], sol: Mapping[str, Any]) -> Evaluation:
    """Evaluate `sol` (competition solution dict) on `inst` (competition instance dict)."""
    D = int(inst["days"])
    shifts = list(inst["shift_types"])
    S = len(shifts)
    ages = {a: i for i, a in enumerate(inst["age_groups"])}
    rooms = {r["id"]: r for r in inst["rooms"]}
    theatres = {t["id"]: t for t in inst["operating_theaters"]}
    surgeons = {s["id"]: s for s in inst["surgeons"]}
    nurses = {n["id"]: n for n in inst["nurses"]}
    patients = {p["id"]: p for p in inst["patients"]}
    soft = dict.fromkeys(SOFT_NAMES, 0)
    hard = dict.fromkeys(HARD_NAMES, 0)

    # Decisions.
    admitted: dict[str, tuple[int, str, str]] = {}
    seen: set[str] = set()
    for e in sol.get("patients", []) or []:
        pid = e["id"]
        if pid not in patients:
            raise ValueError(f"unknown patient {pid}")
        if pid in seen:
            raise ValueError(f"patient {pid} listed twice")
        seen.add(pid)
        ad = e.get("admission_day", "none")
        if ad == "none" or ad is None:
            continue
        room, th = e.get("room"), e.get("operating_theater")
        if room not in rooms:
            raise ValueError(f"unknown room {room} for {pid}")
        if th not in theatres:
            raise ValueError(f"unknown theatre {th} for {pid}")
        admitted[pid] = (int(ad), str(room), str(th))

    # Persons present per (room, day): (person dict, admission day).
    present: dict[tuple[str, int], list[tuple[dict[str, Any], int]]] = {}
    stays: list[tuple[dict[str, Any], int, str]] = []
    for o in inst["occupants"]:
        stays.append((o, 0, o["room_id"]))
    for pid, (a, room, _th) in admitted.items():
        stays.append((patients[pid], a, room))
    for person, a, room in stays:
        for d in range(a, min(a + int(person["length_of_stay"]), D)):
            present.setdefault((room, d), []).append((person, a))

    # Nurse assignments.
    nurse_at: dict[tuple[str, int], str] = {}
    load: dict[tuple[str, int], int] = {}
    for e in sol.get("nurses", []) or []:
        nid = e["id"]
        if nid not in nurses:
            raise ValueError(f"unknown nurse {nid}")
        works = {
            (int(w["day"]) * S + shifts.index(w["shift"])): int(w["max_load"])
            for w in nurses[nid]["working_shifts"]
        }
        for a in e.get("assignments", []) or []:
            if a["shift"] not in shifts:
                raise ValueError(f"unknown shift {a['shift']}")
            g = int(a["day"]) * S + shifts.index(a["shift"])
            rlist = a.get("rooms", []) or []
            if rlist and g not in works:
                raise ValueError(f"nurse {nid} does not work shift {g}")
            for rid in rlist:
                if rid not in rooms:
                    raise ValueError(f"unknown room {rid}")
                if (rid, g) in nurse_at:
                    raise ValueError(f"two nurses on room {rid} shift {g}")
                nurse_at[(rid, g)] = nid
                load.setdefault((nid, g), 0)

    # Room-day constraints and costs.
    for (room, d), lst in present.items():
        na = sum(1 for q, _ in lst if q["gender"] == "A")
        hard["RoomGenderMix"] += min(na, len(lst) - na)
        hard["RoomCapacity"] += max(0, len(lst) - int(rooms[room]["capacity"]))
        ag = [ages[q["age_group"]] for q, _ in lst]
        soft["RoomAgeMix"] += max(ag) - min(ag)
        for k in range(S):
            g = d * S + k
            nid = nurse_at.get((room, g))
            if nid is None:
                hard["UncoveredRoom"] += 1
                continue
            skill = int(nurses[nid]["skill_level"])
            for q, a in lst:
                j = g - S * a
                soft["RoomSkillLevel"] += max(0, int(q["skill_level_required"][j]) - skill)
                load[(nid, g)] = load.get((nid, g), 0) + int(q["workload_produced"][j])
    for nid, n in nurses.items():
        for w in n["working_shifts"]:
            g = int(w["day"]) * S + shifts.index(w["shift"])
            soft["ExcessiveNurseWorkload"] += max(0, load.get((nid, g), 0) - int(w["max_load"]))

    # Continuity of care.
    for person, a, room in stays:
        seen_n: set[str] = set()
        for d in range(a, min(a + int(person["length_of_stay"]), D)):
            for k in range(S):
                nid = nurse_at.get((room, d * S + k))
                if nid is not None:
                    seen_n.add(nid)
        soft["ContinuityOfCare"] += len(seen_n)

    # Patients, surgeons and theatres.
    surg_load: dict[tuple[str, int], int] = {}
    th_load: dict[tuple[str, int], int] = {}
    surg_ths: dict[tuple[str, int], set[str]] = {}
    for pid, p in patients.items():
        if pid not in admitted:
            if p["mandatory"]:
                hard["MandatoryUnscheduledPatients"] += 1
            else:
                soft["ElectiveUnscheduledPatients"] += 1
            continue
        a, room, th = admitted[pid]
        if room in (p.get("incompatible_room_ids") or []):
            hard["PatientRoomCompatibility"] += 1
        rel = int(p["surgery_release_day"])
        last = int(p["surgery_due_day"]) if p["mandatory"] else D - 1
        if a < rel or a > last:
            hard["AdmissionDay"] += 1
        soft["PatientDelay"] += a - rel
        sid = p["surgeon_id"]
        dur = int(p["surgery_duration"])
        surg_load[(sid, a)] = surg_load.get((sid, a), 0) + dur
        th_load[(th, a)] = th_load.get((th, a), 0) + dur
        surg_ths.setdefault((sid, a), set()).add(th)
    for (sid, d), v in surg_load.items():
        cap = int(surgeons[sid]["max_surgery_time"][d]) if d < D else 0
        hard["SurgeonOvertime"] += max(0, v - cap)
    for (th, d), v in th_load.items():
        cap = int(theatres[th]["availability"][d]) if d < D else 0
        hard["OperatingTheaterOvertime"] += max(0, v - cap)
        soft["OpenOperatingTheater"] += 1
    for ths in surg_ths.values():
        soft["SurgeonTransfer"] += max(0, len(ths) - 1)

    w = inst["weights"]
    cost = sum(int(w[k]) * soft[n] for k, n in zip(SOFT_WEIGHT_KEYS, SOFT_NAMES, strict=True))
    return Evaluation(cost=cost, violations=sum(hard.values()), soft=soft, hard=hard)
