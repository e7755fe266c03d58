"""The executable specification of IHTC-2024 scoring: one function per hard constraint and per
soft component, counting exactly as the official `IHTP_Validator.cc` does.

Every function takes a `Schedule` (who is in which room on which day, which nurse covers which
room in which shift) and returns the raw count; `validate` weighs the soft counts with the
instance weights. Only days inside the horizon are evaluated. This module is deliberately plain
Python and must never import a solver: solvers are checked against it, not the other way round.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from carepool.planning.ihtp.models import Instance, Solution, check_solution

__all__ = [
    "HARD_CONSTRAINTS",
    "SOFT_COMPONENTS",
    "Admission",
    "Report",
    "Schedule",
    "SoftComponent",
    "Stay",
    "admission_day",
    "build_schedule",
    "continuity_of_care",
    "elective_unscheduled_patients",
    "excessive_nurse_workload",
    "mandatory_unscheduled_patients",
    "nurse_presence",
    "open_operating_theater",
    "operating_theater_overtime",
    "patient_delay",
    "patient_room_compatibility",
    "room_age_mix",
    "room_capacity",
    "room_gender_mix",
    "room_skill_level",
    "surgeon_overtime",
    "surgeon_transfer",
    "uncovered_room",
    "validate",
]

NO_NURSE = -1


# --------------------------------------------------------------------------------------------
# The schedule: a derived, index-based view of (instance, solution)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """An admitted patient, by indices into the instance lists."""

    patient: int
    day: int
    room: int
    theater: int


@dataclass(frozen=True)
class Stay:
    """One person in a bed: an occupant (fixed, from day 0) or an admitted patient.

    `workload` and `skill_required` are indexed relative to `start_day`: the value for global
    shift g is entry ``g - start_day * S`` (occupants start on day 0, so that is g itself).
    """

    id: str
    is_occupant: bool
    gender: str
    age_rank: int
    room: int
    start_day: int
    length_of_stay: int
    workload: tuple[int, ...]
    skill_required: tuple[int, ...]

    def days(self, horizon: int) -> range:
        """Days of the stay inside the horizon (a stay running past the end is truncated)."""
        return range(self.start_day, min(horizon, self.start_day + self.length_of_stay))


@dataclass(frozen=True)
class Schedule:
    """Occupancy and coverage derived from a solution, shared by all the counting functions.

    `room_day[r][d]` lists indices into `stays`; `room_shift_nurse[r][g]` is the nurse index
    covering room r in global shift g (NO_NURSE if none); `nurse_shift_rooms[n, g]` lists the
    rooms nurse n covers in g.
    """

    instance: Instance
    admissions: tuple[Admission, ...]
    stays: tuple[Stay, ...]
    room_day: tuple[tuple[tuple[int, ...], ...], ...]
    room_shift_nurse: tuple[tuple[int, ...], ...]
    nurse_shift_rooms: Mapping[tuple[int, int], tuple[int, ...]]


def build_schedule(instance: Instance, solution: Solution) -> Schedule:
    """Derive the index-based `Schedule` of `solution`.

    Assumes every id resolves (as `check_solution` guarantees); it does not reject a nurse in a
    non-working shift or a doubly covered room, so NursePresence stays countable: like the
    official validator, a later assignment to the same room and shift overrides an earlier one.
    """
    inst = instance
    s = inst.shifts_per_day
    admissions = tuple(
        Admission(
            patient=inst.patient_index[pa.id],
            day=pa.admission_day,
            room=inst.room_index[pa.room],
            theater=inst.theater_index[pa.operating_theater],
        )
        for pa in solution.patients
        if pa.admission_day is not None and pa.room is not None and pa.operating_theater is not None
    )
    stays: list[Stay] = [
        Stay(
            id=o.id,
            is_occupant=True,
            gender=o.gender,
            age_rank=inst.age_index[o.age_group],
            room=inst.room_index[o.room_id],
            start_day=0,
            length_of_stay=o.length_of_stay,
            workload=o.workload_produced,
            skill_required=o.skill_level_required,
        )
        for o in inst.occupants
    ]
    for adm in admissions:
        p = inst.patients[adm.patient]
        stays.append(
            Stay(
                id=p.id,
                is_occupant=False,
                gender=p.gender,
                age_rank=inst.age_index[p.age_group],
                room=adm.room,
                start_day=adm.day,
                length_of_stay=p.length_of_stay,
                workload=p.workload_produced,
                skill_required=p.skill_level_required,
            )
        )
    room_day: list[list[list[int]]] = [[[] for _ in range(inst.days)] for _ in inst.rooms]
    for i, stay in enumerate(stays):
        for d in stay.days(inst.days):
            room_day[stay.room][d].append(i)

    room_shift_nurse = [[NO_NURSE] * inst.num_shifts for _ in inst.rooms]
    nurse_shift_rooms: dict[tuple[int, int], list[int]] = defaultdict(list)
    for ns in solution.nurses:
        n = inst.nurse_index[ns.id]
        for asg in ns.assignments:
            g = asg.day * s + inst.shift_type_index[asg.shift]
            for room_id in asg.rooms:
                r = inst.room_index[room_id]
                room_shift_nurse[r][g] = n
                nurse_shift_rooms[n, g].append(r)
    return Schedule(
        instance=inst,
        admissions=admissions,
        stays=tuple(stays),
        room_day=tuple(tuple(tuple(day) for day in room) for room in room_day),
        room_shift_nurse=tuple(tuple(row) for row in room_shift_nurse),
        nurse_shift_rooms=MappingProxyType({k: tuple(v) for k, v in nurse_shift_rooms.items()}),
    )


def _occupied_shifts(sched: Schedule) -> list[tuple[int, int, tuple[int, ...]]]:
    """(room, global shift, stays present) for every shift of every occupied room-day."""
    s = sched.instance.shifts_per_day
    return [
        (r, d * s + k, present)
        for r, days in enumerate(sched.room_day)
        for d, present in enumerate(days)
        if present
        for k in range(s)
    ]


def _surgery_days(sched: Schedule) -> list[Admission]:
    """Admissions whose surgery day lies inside the horizon (the only ones with loads)."""
    return [a for a in sched.admissions if a.day < sched.instance.days]


# --------------------------------------------------------------------------------------------
# Hard constraints
# --------------------------------------------------------------------------------------------


def room_gender_mix(sched: Schedule) -> int:
    """RoomGenderMix (H1): Σ over (room, day) of min(#gender A, #gender B) present."""
    total = 0
    for days in sched.room_day:
        for present in days:
            a = sum(1 for i in present if sched.stays[i].gender == "A")
            total += min(a, len(present) - a)
    return total


def patient_room_compatibility(sched: Schedule) -> int:
    """PatientRoomCompatibility (H2): admitted patients placed in an incompatible room."""
    inst = sched.instance
    return sum(
        1
        for a in sched.admissions
        if inst.rooms[a.room].id in inst.patients[a.patient].incompatible_room_ids
    )


def surgeon_overtime(sched: Schedule) -> int:
    """SurgeonOvertime (H3): Σ over (surgeon, day) of minutes operated beyond max_surgery_time."""
    inst = sched.instance
    load: dict[tuple[int, int], int] = defaultdict(int)
    for a in _surgery_days(sched):
        p = inst.patients[a.patient]
        load[inst.surgeon_index[p.surgeon_id], a.day] += p.surgery_duration
    return sum(
        max(0, minutes - inst.surgeons[u].max_surgery_time[d]) for (u, d), minutes in load.items()
    )


def operating_theater_overtime(sched: Schedule) -> int:
    """OperatingTheaterOvertime (H4): Σ over (theatre, day) of minutes beyond availability."""
    inst = sched.instance
    load: dict[tuple[int, int], int] = defaultdict(int)
    for a in _surgery_days(sched):
        load[a.theater, a.day] += inst.patients[a.patient].surgery_duration
    return sum(
        max(0, minutes - inst.operating_theaters[t].availability[d])
        for (t, d), minutes in load.items()
    )


def mandatory_unscheduled_patients(sched: Schedule) -> int:
    """MandatoryUnscheduledPatients (H5): mandatory patients not admitted."""
    admitted = {a.patient for a in sched.admissions}
    return sum(
        1 for p, pat in enumerate(sched.instance.patients) if pat.mandatory and p not in admitted
    )


def admission_day(sched: Schedule) -> int:
    """AdmissionDay (H6): admitted before the release day, or after the due day (mandatory)
    or the last day of the horizon (optional)."""
    inst = sched.instance
    count = 0
    for a in sched.admissions:
        p = inst.patients[a.patient]
        if a.day < p.surgery_release_day or a.day > p.last_admission_day(inst.days):
            count += 1
    return count


def room_capacity(sched: Schedule) -> int:
    """RoomCapacity (H7): Σ over (room, day) of people present beyond the room's capacity."""
    return sum(
        max(0, len(present) - sched.instance.rooms[r].capacity)
        for r, days in enumerate(sched.room_day)
        for present in days
    )


def nurse_presence(sched: Schedule) -> int:
    """NursePresence: (room, shift) pairs covered by a nurse who does not work that shift.

    Always 0 after `check_solution`, which rejects such a solution as malformed (the official
    validator aborts on it); kept so that unchecked schedules are still scored honestly.
    """
    inst = sched.instance
    return sum(
        1
        for row in sched.room_shift_nurse
        for g, n in enumerate(row)
        if n != NO_NURSE and inst.nurse_max_load(n, g) is None
    )


def uncovered_room(sched: Schedule) -> int:
    """UncoveredRoom: (room, shift) pairs with someone present and no nurse assigned."""
    return sum(1 for r, g, _ in _occupied_shifts(sched) if sched.room_shift_nurse[r][g] == NO_NURSE)


# --------------------------------------------------------------------------------------------
# Soft components (raw counts; `validate` applies the weights)
# --------------------------------------------------------------------------------------------


def room_age_mix(sched: Schedule) -> int:
    """RoomAgeMix (S1): Σ over occupied (room, day) of max age rank − min age rank present."""
    total = 0
    for days in sched.room_day:
        for present in days:
            if present:
                ranks = [sched.stays[i].age_rank for i in present]
                total += max(ranks) - min(ranks)
    return total


def room_skill_level(sched: Schedule) -> int:
    """RoomSkillLevel (S2): Σ over (room, shift) and each person present of the skill the
    person requires beyond the covering nurse's level.

    An uncovered shift adds nothing here (it is an UncoveredRoom violation; the official
    validator reads out of bounds in that case, so no official number exists for it).
    """
    inst = sched.instance
    s = inst.shifts_per_day
    total = 0
    for r, g, present in _occupied_shifts(sched):
        n = sched.room_shift_nurse[r][g]
        if n == NO_NURSE:
            continue
        level = inst.nurses[n].skill_level
        for i in present:
            stay = sched.stays[i]
            total += max(0, stay.skill_required[g - stay.start_day * s] - level)
    return total


def continuity_of_care(sched: Schedule) -> int:
    """ContinuityOfCare (S3): Σ over occupants and admitted patients of the number of distinct
    nurses covering their room during the shifts of their stay inside the horizon."""
    s = sched.instance.shifts_per_day
    total = 0
    for stay in sched.stays:
        row = sched.room_shift_nurse[stay.room]
        nurses = {row[d * s + k] for d in stay.days(sched.instance.days) for k in range(s)}
        nurses.discard(NO_NURSE)
        total += len(nurses)
    return total


def excessive_nurse_workload(sched: Schedule) -> int:
    """ExcessiveNurseWorkload (S4): Σ over (nurse, working shift) of the workload produced by
    everyone in the rooms she covers beyond her max_load for that shift."""
    inst = sched.instance
    s = inst.shifts_per_day
    total = 0
    for n, nurse in enumerate(inst.nurses):
        for ws in nurse.working_shifts:
            g = inst.global_shift(ws.day, ws.shift)
            load = 0
            for r in sched.nurse_shift_rooms.get((n, g), ()):
                for i in sched.room_day[r][ws.day]:
                    stay = sched.stays[i]
                    load += stay.workload[g - stay.start_day * s]
            total += max(0, load - ws.max_load)
    return total


def open_operating_theater(sched: Schedule) -> int:
    """OpenOperatingTheater (S5): (theatre, day) pairs with at least one surgery."""
    return len({(a.theater, a.day) for a in _surgery_days(sched)})


def surgeon_transfer(sched: Schedule) -> int:
    """SurgeonTransfer (S6): Σ over (surgeon, day) of distinct theatres used minus one."""
    inst = sched.instance
    theaters: dict[tuple[str, int], set[int]] = defaultdict(set)
    for a in _surgery_days(sched):
        theaters[inst.patients[a.patient].surgeon_id, a.day].add(a.theater)
    return sum(len(used) - 1 for used in theaters.values())


def patient_delay(sched: Schedule) -> int:
    """PatientDelay (S7): Σ over admitted patients of days admitted after the release day."""
    inst = sched.instance
    return sum(
        max(0, a.day - inst.patients[a.patient].surgery_release_day) for a in sched.admissions
    )


def elective_unscheduled_patients(sched: Schedule) -> int:
    """ElectiveUnscheduledPatients (S8): optional patients not admitted."""
    admitted = {a.patient for a in sched.admissions}
    return sum(
        1
        for p, pat in enumerate(sched.instance.patients)
        if not pat.mandatory and p not in admitted
    )


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

Counter = Callable[[Schedule], int]

#: Hard constraints in the official validator's order, by its names.
HARD_CONSTRAINTS: Mapping[str, Counter] = MappingProxyType(
    {
        "RoomGenderMix": room_gender_mix,
        "PatientRoomCompatibility": patient_room_compatibility,
        "SurgeonOvertime": surgeon_overtime,
        "OperatingTheaterOvertime": operating_theater_overtime,
        "MandatoryUnscheduledPatients": mandatory_unscheduled_patients,
        "AdmissionDay": admission_day,
        "RoomCapacity": room_capacity,
        "NursePresence": nurse_presence,
        "UncoveredRoom": uncovered_room,
    }
)

#: Soft components in the official order: name → (key in the instance `weights`, counter).
SOFT_COMPONENTS: Mapping[str, tuple[str, Counter]] = MappingProxyType(
    {
        "RoomAgeMix": ("room_mixed_age", room_age_mix),
        "RoomSkillLevel": ("room_nurse_skill", room_skill_level),
        "ContinuityOfCare": ("continuity_of_care", continuity_of_care),
        "ExcessiveNurseWorkload": ("nurse_eccessive_workload", excessive_nurse_workload),
        "OpenOperatingTheater": ("open_operating_theater", open_operating_theater),
        "SurgeonTransfer": ("surgeon_transfer", surgeon_transfer),
        "PatientDelay": ("patient_delay", patient_delay),
        "ElectiveUnscheduledPatients": ("unscheduled_optional", elective_unscheduled_patients),
    }
)


@dataclass(frozen=True)
class SoftComponent:
    """A soft component's raw count, its instance weight and the weighted cost."""

    count: int
    weight: int

    @property
    def cost(self) -> int:
        """Weighted cost, ``weight * count``."""
        return self.weight * self.count


@dataclass(frozen=True)
class Report:
    """The score of a solution: hard violation counts and weighted soft costs by official name.

    `violations` and `cost` are the official "Total violations" and "Total cost"; a solution is
    feasible when `violations` is 0 (the cost is reported either way).
    """

    hard: Mapping[str, int]
    soft: Mapping[str, SoftComponent]
    violations: int = field(init=False)
    cost: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "violations", sum(self.hard.values()))
        object.__setattr__(self, "cost", sum(c.cost for c in self.soft.values()))

    @property
    def feasible(self) -> bool:
        """True when no hard constraint is violated."""
        return self.violations == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"violations", "cost", "hard": {name: n}, "soft": {name: {...}}}``."""
        return {
            "violations": self.violations,
            "cost": self.cost,
            "hard": dict(self.hard),
            "soft": {
                name: {"count": c.count, "weight": c.weight, "cost": c.cost}
                for name, c in self.soft.items()
            },
        }


def validate(instance: Instance, solution: Solution) -> Report:
    """Score `solution` exactly as the official IHTC-2024 validator does.

    Raises IhtpFormatError when the solution does not fit the instance (see `check_solution`).
    """
    check_solution(instance, solution)
    sched = build_schedule(instance, solution)
    weights = instance.weights
    return Report(
        hard={name: count(sched) for name, count in HARD_CONSTRAINTS.items()},
        soft={
            name: SoftComponent(count=count(sched), weight=getattr(weights, key))
            for name, (key, count) in SOFT_COMPONENTS.items()
        },
    )
