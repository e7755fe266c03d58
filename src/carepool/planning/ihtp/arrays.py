"""Numpy views of an IHTC-2024 instance and solution, for solvers that work on integer indices
(e.g. numba kernels), and the way back from arrays to a checked `Solution`.

Conventions shared by every array here:

* An entity's index is its position in the instance list (`instance.rooms[r]`, ...), and the
  `*_ids` tuples map indices back to ids.
* Days are 0..D-1; global shift ``g = day * S + k`` where k indexes `shift_types` (S = 3).
* Integers are ``np.int64`` and flags ``np.bool_``; ``-1`` means "none" in index arrays.
* Ragged per-shift vectors are padded with zeros to the longest stay: patient rows are relative
  to admission (column j is global shift ``a * S + j``), occupant rows are absolute (column g is
  global shift g, since occupants are present from day 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from carepool.planning.ihtp.models import (
    Instance,
    NurseAssignment,
    NurseSchedule,
    PatientAssignment,
    Solution,
    check_solution,
)

__all__ = [
    "GENDER_CODES",
    "WEIGHT_KEYS",
    "IhtpArrays",
    "SolutionArrays",
    "build_arrays",
    "solution_from_arrays",
    "solution_to_arrays",
]

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: Gender → code used in `patient_gender` / `occupant_gender`.
GENDER_CODES: dict[str, int] = {"A": 0, "B": 1}

#: Order of `IhtpArrays.weights`: the official soft components S1..S8 (instance weight keys).
WEIGHT_KEYS: tuple[str, ...] = (
    "room_mixed_age",
    "room_nurse_skill",
    "continuity_of_care",
    "nurse_eccessive_workload",
    "open_operating_theater",
    "surgeon_transfer",
    "patient_delay",
    "unscheduled_optional",
)


@dataclass(frozen=True, eq=False)
class IhtpArrays:
    """Every instance datum as numpy arrays (R rooms, T theatres, U surgeons, N nurses,
    P patients, O occupants, D days, S shifts per day, G = D*S global shifts).

    Sizes and names:
      days, shifts_per_day, num_shifts (G), skill_levels, age_groups (count)
      room_ids[R], theater_ids[T], surgeon_ids[U], nurse_ids[N], patient_ids[P],
      occupant_ids[O], shift_types[S], age_group_names — index → id / name
      weights[8] — in WEIGHT_KEYS order (RoomAgeMix .. ElectiveUnscheduledPatients)
    Resources:
      room_capacity[R]; theater_availability[T, D]; surgeon_max_time[U, D] (minutes)
      nurse_skill[N]; nurse_works[N, G] (bool roster); nurse_max_load[N, G] (0 if off)
    Patients (decisions):
      patient_mandatory[P] (bool); patient_gender[P] (GENDER_CODES); patient_age[P] (rank)
      patient_los[P]; patient_release[P]; patient_last_day[P] (due day if mandatory, else D-1)
      patient_duration[P] (minutes); patient_surgeon[P] (index)
      patient_incompatible[P, R] (bool)
      patient_workload[P, W], patient_skill[P, W] — W = S * max LOS; relative to admission
    Occupants (fixed, present on days 0..los-1):
      occupant_room[O]; occupant_gender[O]; occupant_age[O]; occupant_los[O]
      occupant_workload[O, Wo], occupant_skill[O, Wo] — absolute global shift columns
    """

    days: int
    shifts_per_day: int
    num_shifts: int
    skill_levels: int
    age_groups: int
    room_ids: tuple[str, ...]
    theater_ids: tuple[str, ...]
    surgeon_ids: tuple[str, ...]
    nurse_ids: tuple[str, ...]
    patient_ids: tuple[str, ...]
    occupant_ids: tuple[str, ...]
    shift_types: tuple[str, ...]
    age_group_names: tuple[str, ...]
    weights: IntArray
    room_capacity: IntArray
    theater_availability: IntArray
    surgeon_max_time: IntArray
    nurse_skill: IntArray
    nurse_works: BoolArray
    nurse_max_load: IntArray
    patient_mandatory: BoolArray
    patient_gender: IntArray
    patient_age: IntArray
    patient_los: IntArray
    patient_release: IntArray
    patient_last_day: IntArray
    patient_duration: IntArray
    patient_surgeon: IntArray
    patient_incompatible: BoolArray
    patient_workload: IntArray
    patient_skill: IntArray
    occupant_room: IntArray
    occupant_gender: IntArray
    occupant_age: IntArray
    occupant_los: IntArray
    occupant_workload: IntArray
    occupant_skill: IntArray


def _ints(
    values: list[int] | list[list[int]] | tuple[int, ...], *, shape: tuple[int, ...]
) -> IntArray:
    return np.asarray(values, dtype=np.int64).reshape(shape)


def _padded(rows: list[tuple[int, ...]], width: int) -> IntArray:
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def build_arrays(instance: Instance) -> IhtpArrays:
    """Build the `IhtpArrays` view of `instance` (fresh, writable arrays on every call)."""
    inst = instance
    d, s, g = inst.days, inst.shifts_per_day, inst.num_shifts
    r_count, n_count, p_count = len(inst.rooms), len(inst.nurses), len(inst.patients)

    nurse_works = np.zeros((n_count, g), dtype=np.bool_)
    nurse_max_load = np.zeros((n_count, g), dtype=np.int64)
    for n, nurse in enumerate(inst.nurses):
        for ws in nurse.working_shifts:
            gs = inst.global_shift(ws.day, ws.shift)
            nurse_works[n, gs] = True
            nurse_max_load[n, gs] = ws.max_load

    incompatible = np.zeros((p_count, r_count), dtype=np.bool_)
    for p, pat in enumerate(inst.patients):
        for room_id in pat.incompatible_room_ids:
            incompatible[p, inst.room_index[room_id]] = True

    pats, occs = inst.patients, inst.occupants
    p_width = s * max((p.length_of_stay for p in pats), default=0)
    o_width = s * max((o.length_of_stay for o in occs), default=0)
    return IhtpArrays(
        days=d,
        shifts_per_day=s,
        num_shifts=g,
        skill_levels=inst.skill_levels,
        age_groups=len(inst.age_groups),
        room_ids=tuple(r.id for r in inst.rooms),
        theater_ids=tuple(t.id for t in inst.operating_theaters),
        surgeon_ids=tuple(u.id for u in inst.surgeons),
        nurse_ids=tuple(n.id for n in inst.nurses),
        patient_ids=tuple(p.id for p in pats),
        occupant_ids=tuple(o.id for o in occs),
        shift_types=inst.shift_types,
        age_group_names=inst.age_groups,
        weights=_ints([getattr(inst.weights, k) for k in WEIGHT_KEYS], shape=(len(WEIGHT_KEYS),)),
        room_capacity=_ints([r.capacity for r in inst.rooms], shape=(r_count,)),
        theater_availability=_ints(
            [list(t.availability) for t in inst.operating_theaters],
            shape=(len(inst.operating_theaters), d),
        ),
        surgeon_max_time=_ints(
            [list(u.max_surgery_time) for u in inst.surgeons], shape=(len(inst.surgeons), d)
        ),
        nurse_skill=_ints([n.skill_level for n in inst.nurses], shape=(n_count,)),
        nurse_works=nurse_works,
        nurse_max_load=nurse_max_load,
        patient_mandatory=np.array([p.mandatory for p in pats], dtype=np.bool_).reshape(p_count),
        patient_gender=_ints([GENDER_CODES[p.gender] for p in pats], shape=(p_count,)),
        patient_age=_ints([inst.age_index[p.age_group] for p in pats], shape=(p_count,)),
        patient_los=_ints([p.length_of_stay for p in pats], shape=(p_count,)),
        patient_release=_ints([p.surgery_release_day for p in pats], shape=(p_count,)),
        patient_last_day=_ints([p.last_admission_day(d) for p in pats], shape=(p_count,)),
        patient_duration=_ints([p.surgery_duration for p in pats], shape=(p_count,)),
        patient_surgeon=_ints([inst.surgeon_index[p.surgeon_id] for p in pats], shape=(p_count,)),
        patient_incompatible=incompatible,
        patient_workload=_padded([p.workload_produced for p in pats], p_width),
        patient_skill=_padded([p.skill_level_required for p in pats], p_width),
        occupant_room=_ints([inst.room_index[o.room_id] for o in occs], shape=(len(occs),)),
        occupant_gender=_ints([GENDER_CODES[o.gender] for o in occs], shape=(len(occs),)),
        occupant_age=_ints([inst.age_index[o.age_group] for o in occs], shape=(len(occs),)),
        occupant_los=_ints([o.length_of_stay for o in occs], shape=(len(occs),)),
        occupant_workload=_padded([o.workload_produced for o in occs], o_width),
        occupant_skill=_padded([o.skill_level_required for o in occs], o_width),
    )


@dataclass(frozen=True, eq=False)
class SolutionArrays:
    """A solution by indices: admission_day[P], room[P], theater[P] (all -1 when the patient is
    not admitted) and room_shift_nurse[R, G] (nurse index, -1 when uncovered)."""

    admission_day: IntArray
    room: IntArray
    theater: IntArray
    room_shift_nurse: IntArray


def solution_to_arrays(instance: Instance, solution: Solution) -> SolutionArrays:
    """Index form of a solution that `check_solution` accepts (raises IhtpFormatError if not)."""
    check_solution(instance, solution)
    p_count = len(instance.patients)
    admission = np.full(p_count, -1, dtype=np.int64)
    room = np.full(p_count, -1, dtype=np.int64)
    theater = np.full(p_count, -1, dtype=np.int64)
    for pa in solution.patients:
        if pa.admission_day is None or pa.room is None or pa.operating_theater is None:
            continue
        p = instance.patient_index[pa.id]
        admission[p] = pa.admission_day
        room[p] = instance.room_index[pa.room]
        theater[p] = instance.theater_index[pa.operating_theater]
    nurse = np.full((len(instance.rooms), instance.num_shifts), -1, dtype=np.int64)
    for ns in solution.nurses:
        n = instance.nurse_index[ns.id]
        for asg in ns.assignments:
            g = instance.global_shift(asg.day, asg.shift)
            for room_id in asg.rooms:
                nurse[instance.room_index[room_id], g] = n
    return SolutionArrays(admission, room, theater, nurse)


def solution_from_arrays(instance: Instance, arrays: SolutionArrays) -> Solution:
    """Turn index arrays back into a checked `Solution` (every patient listed, in instance
    order; each nurse lists only shifts where she covers a room).

    Raises IhtpFormatError if the arrays name a nurse in a shift she does not work, and
    ValueError if an admitted patient has no room or theatre or the shapes are wrong.
    """
    p_count, r_count = len(instance.patients), len(instance.rooms)
    for name, arr, shape in (
        ("admission_day", arrays.admission_day, (p_count,)),
        ("room", arrays.room, (p_count,)),
        ("theater", arrays.theater, (p_count,)),
        ("room_shift_nurse", arrays.room_shift_nurse, (r_count, instance.num_shifts)),
    ):
        if arr.shape != shape:
            raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    patients: list[PatientAssignment] = []
    for p, pat in enumerate(instance.patients):
        day = int(arrays.admission_day[p])
        if day < 0:
            patients.append(PatientAssignment(id=pat.id, admission_day=None))
            continue
        r, t = int(arrays.room[p]), int(arrays.theater[p])
        if not (0 <= r < r_count and 0 <= t < len(instance.operating_theaters)):
            raise ValueError(f"patient {pat.id} is admitted without a valid room/theater index")
        patients.append(
            PatientAssignment(
                id=pat.id,
                admission_day=day,
                room=instance.rooms[r].id,
                operating_theater=instance.operating_theaters[t].id,
            )
        )
    s = instance.shifts_per_day
    rooms_of: list[dict[int, list[str]]] = [{} for _ in instance.nurses]  # nurse -> g -> rooms
    for r, g in zip(*np.nonzero(arrays.room_shift_nurse >= 0), strict=True):
        n = int(arrays.room_shift_nurse[r, g])
        if n >= len(instance.nurses):
            raise ValueError(f"room_shift_nurse[{r}, {g}] = {n} is not a nurse index")
        rooms_of[n].setdefault(int(g), []).append(instance.rooms[int(r)].id)
    nurses = [
        NurseSchedule(
            id=nurse.id,
            assignments=tuple(
                NurseAssignment(day=g // s, shift=instance.shift_types[g % s], rooms=tuple(rooms))
                for g, rooms in sorted(rooms_of[n].items())
            ),
        )
        for n, nurse in enumerate(instance.nurses)
    ]
    solution = Solution(patients=tuple(patients), nurses=tuple(nurses))
    check_solution(instance, solution)
    return solution
