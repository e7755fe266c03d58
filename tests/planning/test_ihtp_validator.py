"""The IHTP validator: official scores reproduced exactly, and every hard constraint and soft
component counted exactly on tiny hand-written cases."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carepool.planning.ihtp import (
    HARD_CONSTRAINTS,
    SOFT_COMPONENTS,
    IhtpFormatError,
    Instance,
    Solution,
    SolutionArrays,
    load_instance,
    load_solution,
    solution_from_arrays,
    solution_to_arrays,
    validate,
)
from carepool.planning.ihtp.validator import build_schedule, nurse_presence
from tests.planning.ihtp_factories import (
    OFFICIAL_TEST_INSTANCES,
    WEIGHTS,
    InstanceBuilder,
    SolutionBuilder,
    evaluate,
)

# Labels of the "costs" line the organisers left in their reference solutions (weighted costs).
COST_LABELS = {
    "Unscheduled": "ElectiveUnscheduledPatients",
    "Delay": "PatientDelay",
    "OpenOT": "OpenOperatingTheater",
    "AgeMix": "RoomAgeMix",
    "Skill": "RoomSkillLevel",
    "Excess": "ExcessiveNurseWorkload",
    "Continuity": "ContinuityOfCare",
    "SurgeonTransfer": "SurgeonTransfer",
}


def hard(instance: InstanceBuilder, solution: SolutionBuilder, name: str) -> int:
    return evaluate(instance, solution).hard[name]


def soft(instance: InstanceBuilder, solution: SolutionBuilder, name: str) -> int:
    return evaluate(instance, solution).soft[name].count


# --------------------------------------------------------------------------------------------
# Official reference solutions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OFFICIAL_TEST_INSTANCES)
def test_reproduces_official_scores(
    name: str, ihtc_dir: Path, official_scores: dict[str, tuple[int, int]]
) -> None:
    instance = load_instance(ihtc_dir / "instances" / f"{name}.json")
    solution_path = ihtc_dir / "solutions" / "test" / f"sol_{name}.json"
    report = validate(instance, load_solution(solution_path, instance))

    assert (report.violations, report.cost) == official_scores[name]
    assert report.hard == dict.fromkeys(HARD_CONSTRAINTS, 0)

    # The organisers' per-component breakdown, kept in the file's "costs" line.
    (line,) = json.loads(solution_path.read_text())["costs"]
    breakdown = {label: int(v) for label, v in re.findall(r"(\w+):\s*(\d+)", line)}
    assert breakdown.pop("Cost") == report.cost
    assert {COST_LABELS[k]: v for k, v in breakdown.items()} == {
        name: comp.cost for name, comp in report.soft.items()
    }


def _crude_solution(instance_path: Path) -> tuple[Instance, Solution]:
    """Mandatory patients on their release day in their first compatible room and theatre 0;
    every room covered in every shift by the first nurse who works it."""
    inst = load_instance(instance_path)
    arr = inst.to_arrays()
    p_count = len(inst.patients)
    admission = np.where(arr.patient_mandatory, arr.patient_release, -1)
    room = np.where(admission >= 0, np.argmin(arr.patient_incompatible, axis=1), -1)
    theater = np.where(admission >= 0, 0, -1)
    first_nurse = np.where(arr.nurse_works.any(axis=0), np.argmax(arr.nurse_works, axis=0), -1)
    nurse = np.tile(first_nurse, (len(inst.rooms), 1))
    sol = solution_from_arrays(
        inst, SolutionArrays(admission, room, theater, nurse.astype(np.int64))
    )
    assert len(sol.patients) == p_count
    return inst, sol


@pytest.mark.parametrize("name", ["i19", "i20", "test10"])
def test_large_instances_are_validated(name: str, ihtc_dir: Path) -> None:
    inst, sol = _crude_solution(ihtc_dir / "instances" / f"{name}.json")
    report = validate(inst, sol)

    assert report.hard["MandatoryUnscheduledPatients"] == 0
    assert report.hard["UncoveredRoom"] == 0  # every shift has at least one nurse on duty
    assert report.hard["AdmissionDay"] == 0
    assert report.soft["PatientDelay"].count == 0
    optional = sum(not p.mandatory for p in inst.patients)
    assert report.soft["ElectiveUnscheduledPatients"].count == optional


# --------------------------------------------------------------------------------------------
# Hard constraints
# --------------------------------------------------------------------------------------------


def test_room_gender_mix() -> None:
    inst = (
        InstanceBuilder.basic(days=3)
        .room("r2", capacity=3)
        .patient("p0", los=2, gender="A")
        .patient("p1", los=2, gender="B")
        .patient("p2", los=1, gender="A")
        .occupant("o0", "r2", los=1, gender="B")
    )
    same_gender = SolutionBuilder().admit("p0", 0, "r0").admit("p2", 0, "r0")
    assert hard(inst, same_gender, "RoomGenderMix") == 0

    # r0: A,B,A on day 0 -> min(2, 1) = 1; A,B on day 1 -> 1.
    mixed = SolutionBuilder().admit("p0", 0, "r0").admit("p1", 0, "r0").admit("p2", 0, "r0")
    assert hard(inst, mixed, "RoomGenderMix") == 2

    with_occupant = SolutionBuilder().admit("p0", 0, "r2").admit("p2", 0, "r2")
    # r2 day 0: A, A, occupant B -> 1; day 1: A only -> 0.
    assert hard(inst, with_occupant, "RoomGenderMix") == 1


def test_room_gender_mix_counts_the_minority_size() -> None:
    inst = InstanceBuilder.basic(days=1).room("r2", capacity=5)
    for p, gender in [("p0", "A"), ("p1", "A"), ("p2", "B"), ("p3", "B"), ("p4", "B")]:
        inst.patient(p, gender=gender)
    sol = SolutionBuilder()
    for p in ("p0", "p1", "p2", "p3", "p4"):
        sol.admit(p, 0, "r2")
    assert hard(inst, sol, "RoomGenderMix") == 2  # min(2 A, 3 B)


def test_patient_room_compatibility() -> None:
    inst = InstanceBuilder.basic().patient("p0", incompatible=["r0"]).patient("p1")
    elsewhere = SolutionBuilder().admit("p0", 0, "r1").admit("p1", 0, "r0")
    assert hard(inst, elsewhere, "PatientRoomCompatibility") == 0
    excluded = SolutionBuilder().admit("p0", 0, "r0").admit("p1", 0, "r0")
    assert hard(inst, excluded, "PatientRoomCompatibility") == 1


def test_surgeon_overtime() -> None:
    inst = (
        InstanceBuilder.basic(days=3)
        .surgeon("s1", max_time=[100, 600, 0])
        .patient("p0", duration=60, surgeon="s1")
        .patient("p1", duration=60, surgeon="s1")
        .patient("p2", duration=30, surgeon="s1")
    )
    spread = SolutionBuilder().admit("p0", 0).admit("p1", 1).admit("p2", 1, theater="t1")
    assert hard(inst, spread, "SurgeonOvertime") == 0
    # Day 0: 120 min against 100 -> 20; day 2 (surgeon away): 30 -> 30. Theatres do not matter.
    crowded = SolutionBuilder().admit("p0", 0).admit("p1", 0, theater="t1").admit("p2", 2)
    assert hard(inst, crowded, "SurgeonOvertime") == 50


def test_operating_theater_overtime() -> None:
    inst = (
        InstanceBuilder.basic(days=3)
        .theater("t2", availability=[100, 600, 0])
        .patient("p0", duration=60)
        .patient("p1", duration=60)
        .patient("p2", duration=30)
    )
    spread = SolutionBuilder().admit("p0", 0, theater="t2").admit("p1", 0).admit("p2", 2)
    assert hard(inst, spread, "OperatingTheaterOvertime") == 0
    # t2 day 0: 120 against 100 -> 20; t2 day 2 (closed): 30.
    crowded = (
        SolutionBuilder()
        .admit("p0", 0, theater="t2")
        .admit("p1", 0, theater="t2")
        .admit("p2", 2, theater="t2")
    )
    assert hard(inst, crowded, "OperatingTheaterOvertime") == 50


def test_mandatory_unscheduled_patients() -> None:
    inst = (
        InstanceBuilder.basic()
        .patient("p0")
        .patient("p1")
        .patient("p2", mandatory=False)
        .patient("p3")
    )
    everyone = SolutionBuilder().admit("p0", 0).admit("p1", 0, "r1").admit("p3", 1, "r1")
    assert hard(inst, everyone, "MandatoryUnscheduledPatients") == 0
    # p0 omitted, p1 listed as "none"; the optional p2 does not count here.
    missing = SolutionBuilder().postpone("p1").admit("p3", 0)
    assert hard(inst, missing, "MandatoryUnscheduledPatients") == 2


def test_admission_day() -> None:
    inst = (
        InstanceBuilder.basic(days=4)
        .patient("p0", release=1, due=2)
        .patient("p1", release=0, due=1)
        .patient("p2", mandatory=False, release=1, los=3)
        .patient("p3", mandatory=False, release=1, los=3)
    )
    in_window = (
        SolutionBuilder().admit("p0", 2).admit("p1", 0, "r1").admit("p2", 1).admit("p3", 3, "r1")
    )
    assert hard(inst, in_window, "AdmissionDay") == 0
    # Before release (p0), after the due day (p1), optional past the last day (p2, day 4 = D).
    # p3 on the last day is fine even though its stay leaves the horizon.
    outside = (
        SolutionBuilder().admit("p0", 0).admit("p1", 2, "r1").admit("p2", 4).admit("p3", 3, "r1")
    )
    assert hard(inst, outside, "AdmissionDay") == 3


def test_room_capacity_counts_everyone_present_per_day() -> None:
    inst = (
        InstanceBuilder.basic(days=3)
        .room("r2", capacity=1)
        .occupant("o0", "r2", los=2)
        .patient("p0", los=2)
        .patient("p1", los=1)
    )
    fits = SolutionBuilder().admit("p0", 2, "r2").admit("p1", 0, "r0")
    assert hard(inst, fits, "RoomCapacity") == 0
    # r2: day 0 occupant only; day 1 occupant + p0 + p1 -> 2 over; day 2 p0 alone.
    over = SolutionBuilder().admit("p0", 1, "r2").admit("p1", 1, "r2")
    assert hard(inst, over, "RoomCapacity") == 2


def test_room_capacity_ignores_days_past_the_horizon() -> None:
    inst = InstanceBuilder.basic(days=3).room("r2", capacity=0).patient("p0", los=5)
    assert hard(inst, SolutionBuilder().admit("p0", 2, "r2"), "RoomCapacity") == 1
    assert hard(inst, SolutionBuilder().admit("p0", 0, "r2"), "RoomCapacity") == 3


def test_nurse_presence() -> None:
    inst_b = InstanceBuilder.basic(days=2).nurse("n1", shifts=[(0, "early")]).patient("p0")
    inst = inst_b.build()
    assert (
        validate(inst, SolutionBuilder().cover("n1", 0, "early", "r0").build(inst)).hard[
            "NursePresence"
        ]
        == 0
    )

    # The loaders reject a nurse in a shift she does not work (the official validator aborts);
    # an unchecked Solution still gets an honest count from the counting function.
    doc = SolutionBuilder().cover("n1", 1, "late", "r0", "r1").cover("n1", 0, "early", "r0")
    unchecked = Solution.model_validate(doc.to_dict())
    assert nurse_presence(build_schedule(inst, unchecked)) == 2
    with pytest.raises(IhtpFormatError, match="does not work day 1 shift late"):
        validate(inst, unchecked)


def test_uncovered_room() -> None:
    inst = InstanceBuilder.basic(days=3).patient("p0", los=2).occupant("o0", "r1", los=1)
    admitted = SolutionBuilder().admit("p0", 0, "r0")
    assert hard(inst, admitted.cover_all("n0", inst), "UncoveredRoom") == 0
    # r0 occupied on days 0-1 (6 shifts), 2 covered; r1 occupied on day 0 (3 shifts), none.
    partial = SolutionBuilder().admit("p0", 0, "r0").cover("n0", 0, "early", "r0")
    partial.cover("n0", 0, "late", "r0")
    assert hard(inst, partial, "UncoveredRoom") == 7
    # Covering an empty room costs nothing.
    empty = SolutionBuilder().postpone("p0").cover_all("n0", inst, rooms=["r1"], days=[0])
    assert hard(inst, empty.cover("n0", 2, "night", "r0"), "UncoveredRoom") == 0


# --------------------------------------------------------------------------------------------
# Soft components
# --------------------------------------------------------------------------------------------


def test_room_age_mix() -> None:
    inst = (
        InstanceBuilder.basic(days=2)
        .patient("p0", age="infant")
        .patient("p1", age="elderly")
        .patient("p2", age="elderly")
        .occupant("o0", "r1", age="adult")
    )
    same = SolutionBuilder().admit("p1", 0, "r0").admit("p2", 0, "r0").admit("p0", 1, "r1")
    assert soft(inst, same, "RoomAgeMix") == 0
    # r0 day 0: infant + elderly -> 2; r1 day 0: adult occupant + elderly -> 1.
    mixed = SolutionBuilder().admit("p0", 0, "r0").admit("p1", 0, "r0").admit("p2", 0, "r1")
    assert soft(inst, mixed, "RoomAgeMix") == 3


def test_room_skill_level_uses_admission_relative_vectors() -> None:
    inst = (
        InstanceBuilder(days=3)
        .room("r0")
        .room("r1")
        .theater("t0")
        .surgeon("s0")
        .nurse("n0", skill=1)
        .nurse("n2", skill=2)
        .patient("p0", skill=[0, 2, 2])  # late and night of the admission day need level 2
        .occupant("o0", "r1", skill=[2, 0, 0])  # absolute shifts: day 0 early needs level 2
    )
    qualified = SolutionBuilder().admit("p0", 1, "r0").cover_all("n2", inst)
    assert soft(inst, qualified, "RoomSkillLevel") == 0
    # p0 on day 1 (shifts 3,4,5 -> entries 0,1,2): late and night 2 - 1 = 1 each; o0 early: 1.
    under = SolutionBuilder().admit("p0", 1, "r0").cover_all("n0", inst)
    assert soft(inst, under, "RoomSkillLevel") == 3
    # An uncovered room adds no skill cost (it is an UncoveredRoom violation instead).
    uncovered = SolutionBuilder().admit("p0", 1, "r0").cover_all("n0", inst, rooms=["r0"])
    assert soft(inst, uncovered, "RoomSkillLevel") == 2


def test_continuity_of_care() -> None:
    inst = (
        InstanceBuilder(days=3)
        .room("r0", capacity=3)
        .room("r1")
        .theater("t0")
        .surgeon("s0")
        .nurse("n0")
        .nurse("n1")
        .patient("p0", los=3)
        .patient("p1", los=3)
        .occupant("o0", "r1")
    )
    one_nurse = SolutionBuilder().admit("p0", 0).admit("p1", 2).cover_all("n0", inst)
    assert soft(inst, one_nurse, "ContinuityOfCare") == 3  # the minimum: one per person

    split = SolutionBuilder().admit("p0", 0).admit("p1", 2)
    split.cover_all("n0", inst, rooms=["r0"], days=[0]).cover_all("n1", inst, ["r0"], [1, 2])
    split.cover("n0", 0, "early", "r1").cover("n1", 0, "late", "r1").cover("n0", 0, "night", "r1")
    # p0: n0 (day 0), n1 (days 1-2) -> 2.  p1 (admitted on the last day, stay truncated): n1 -> 1.
    # o0: n0, n1, n0 -> 2.
    assert soft(inst, split, "ContinuityOfCare") == 5

    # Uncovered shifts do not count as a nurse: p0 covered only on day 0 by n0 -> 1; o0 and
    # p1 never covered -> 0.
    sparse = SolutionBuilder().admit("p0", 0).admit("p1", 2)
    sparse.cover_all("n0", inst, rooms=["r0"], days=[0])
    assert soft(inst, sparse, "ContinuityOfCare") == 1


def test_excessive_nurse_workload() -> None:
    inst_b = (
        InstanceBuilder(days=2)
        .room("r0", capacity=3)
        .room("r1")
        .theater("t0")
        .surgeon("s0")
        .nurse("n0", max_load=2)
        .nurse("n1", max_load=100)
        .patient("p0", workload=[3, 1, 0])
        .patient("p1", workload=1)
        .occupant("o0", "r0", workload=[2, 2, 2])
    )
    relaxed = SolutionBuilder().admit("p0", 0, "r0").admit("p1", 0, "r1").cover_all("n1", inst_b)
    assert soft(inst_b, relaxed, "ExcessiveNurseWorkload") == 0
    # n0 covers r0 and r1 on day 0: early 3+2+1 = 6 -> 4, late 1+2+1 = 4 -> 2, night 0+2+1 -> 1.
    busy = SolutionBuilder().admit("p0", 0, "r0").admit("p1", 0, "r1")
    busy.cover_all("n0", inst_b, days=[0])
    assert soft(inst_b, busy, "ExcessiveNurseWorkload") == 7


def test_open_operating_theater() -> None:
    inst = InstanceBuilder.basic(days=2)
    for p in ("p0", "p1", "p2", "p3"):
        inst.patient(p)
    assert soft(inst, SolutionBuilder(), "OpenOperatingTheater") == 0
    sol = (
        SolutionBuilder()
        .admit("p0", 0, "r0", "t0")
        .admit("p1", 0, "r0", "t0")
        .admit("p2", 0, "r1", "t1")
        .admit("p3", 1, "r1", "t0")
    )
    assert soft(inst, sol, "OpenOperatingTheater") == 3


def test_surgeon_transfer() -> None:
    inst = InstanceBuilder.basic(days=2).surgeon("s1")
    inst.patient("p0").patient("p1").patient("p2", surgeon="s1").patient("p3", surgeon="s1")
    inst.patient("p4")
    same_theater = (
        SolutionBuilder()
        .admit("p0", 0, "r0", "t0")
        .admit("p1", 0, "r0", "t0")
        .admit("p2", 0, "r1", "t1")
        .admit("p3", 0, "r1", "t1")
    )
    assert soft(inst, same_theater, "SurgeonTransfer") == 0
    # s0 uses t0 and t1 on day 0 -> 1; s0 on day 1 and s1 on day 0 use one theatre each.
    moved = (
        SolutionBuilder()
        .admit("p0", 0, "r0", "t0")
        .admit("p1", 0, "r0", "t1")
        .admit("p2", 0, "r1", "t0")
        .admit("p3", 0, "r1", "t0")
        .admit("p4", 1, "r0", "t1")
    )
    assert soft(inst, moved, "SurgeonTransfer") == 1


def test_patient_delay() -> None:
    inst = (
        InstanceBuilder.basic(days=3)
        .patient("p0", release=0)
        .patient("p1", mandatory=False, release=1)
        .patient("p2", release=2)
    )
    on_time = SolutionBuilder().admit("p0", 0).admit("p1", 1).admit("p2", 2, "r1")
    assert soft(inst, on_time, "PatientDelay") == 0
    # p0 two days late; p2 admitted before its release (an AdmissionDay violation) adds 0.
    late = SolutionBuilder().admit("p0", 2).admit("p1", 1).admit("p2", 1, "r1")
    assert soft(inst, late, "PatientDelay") == 2


def test_elective_unscheduled_patients() -> None:
    inst = (
        InstanceBuilder.basic()
        .patient("p0", mandatory=False)
        .patient("p1", mandatory=False)
        .patient("p2", mandatory=False)
        .patient("p3")
    )
    everyone = SolutionBuilder().admit("p0", 0).admit("p1", 0).admit("p2", 1, "r1").admit("p3", 2)
    assert soft(inst, everyone, "ElectiveUnscheduledPatients") == 0
    # p0 omitted, p1 "none"; the mandatory p3 counts as a hard violation, not here.
    skipped = SolutionBuilder().postpone("p1").admit("p2", 0)
    assert soft(inst, skipped, "ElectiveUnscheduledPatients") == 2


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def test_report_totals_and_weights() -> None:
    inst = (
        InstanceBuilder.basic(days=3)
        .patient("p0", release=0, age="infant")
        .patient("p1", mandatory=False, release=1, age="elderly")
        .patient("p2")
    )
    sol = SolutionBuilder().admit("p0", 1).admit("p1", 1).cover_all("n0", inst)
    report = evaluate(inst, sol)

    assert list(report.hard) == list(HARD_CONSTRAINTS)
    assert list(report.soft) == list(SOFT_COMPONENTS)
    assert report.hard["MandatoryUnscheduledPatients"] == 1
    assert report.violations == 1 and not report.feasible
    for name, (key, _) in SOFT_COMPONENTS.items():
        assert report.soft[name].weight == WEIGHTS[key]
        assert report.soft[name].cost == WEIGHTS[key] * report.soft[name].count
    # Age mix 2 (day 1), continuity 2 (one nurse each), one theatre open, delay 1.
    counts = {name: c.count for name, c in report.soft.items() if c.count}
    assert counts == {
        "RoomAgeMix": 2,
        "ContinuityOfCare": 2,
        "OpenOperatingTheater": 1,
        "PatientDelay": 1,
    }
    assert report.cost == 2 * 2 + 2 * 5 + 1 * 11 + 1 * 17
    assert report.to_dict() == {
        "violations": 1,
        "cost": report.cost,
        "hard": dict(report.hard),
        "soft": {
            n: {"count": c.count, "weight": c.weight, "cost": c.cost}
            for n, c in report.soft.items()
        },
    }


def test_feasible_solution_has_no_violation() -> None:
    inst = InstanceBuilder.basic(days=3).patient("p0", los=2).occupant("o0", "r1", los=3)
    report = evaluate(inst, SolutionBuilder().admit("p0", 0).cover_all("n0", inst))
    assert report.feasible and report.violations == 0
    assert report.cost == 2 * WEIGHTS["continuity_of_care"] + WEIGHTS["open_operating_theater"]


# --------------------------------------------------------------------------------------------
# Properties on random solutions of a small instance
# --------------------------------------------------------------------------------------------

_PROPERTY_INSTANCE = (
    InstanceBuilder(days=4)
    .room("r0", capacity=1)
    .room("r1", capacity=2)
    .room("r2", capacity=2)
    .theater("t0", availability=[120, 60, 0, 240])
    .theater("t1", availability=90)
    .surgeon("s0", max_time=[90, 0, 120, 60])
    .surgeon("s1")
    .nurse("n0", skill=0, max_load=3, shifts=[(d, k) for d in range(4) for k in ("early", "late")])
    .nurse("n1", skill=1, max_load=4, shifts=[(d, "night") for d in range(4)] + [(0, "early")])
    .nurse("n2", skill=2, max_load=5)
    .occupant("o0", "r0", los=2, gender="B", age="infant", workload=2, skill=1)
    .occupant("o1", "r2", los=1, age="elderly", workload=[1, 2, 3], skill=[2, 1, 0])
)
for _i in range(6):
    _PROPERTY_INSTANCE.patient(
        f"p{_i}",
        mandatory=_i % 2 == 0,
        los=1 + _i % 3,
        release=_i % 3,
        duration=30 + 15 * _i,
        surgeon=f"s{_i % 2}",
        gender="AB"[_i % 2],
        age=("infant", "adult", "elderly")[_i % 3],
        incompatible=["r2"] if _i == 3 else [],
        workload=1 + _i % 3,
        skill=_i % 3,
    )
_INST = _PROPERTY_INSTANCE.build()
_ARR = _INST.to_arrays()


@st.composite
def random_solutions(draw: st.DrawFn) -> SolutionArrays:
    p_count, r_count = len(_INST.patients), len(_INST.rooms)
    admission = np.array(
        [draw(st.integers(-1, _INST.days)) for _ in range(p_count)], dtype=np.int64
    )
    room = np.array([draw(st.integers(0, r_count - 1)) for _ in range(p_count)], dtype=np.int64)
    theater = np.array([draw(st.integers(0, 1)) for _ in range(p_count)], dtype=np.int64)
    room[admission < 0] = -1
    theater[admission < 0] = -1
    nurse = np.full((r_count, _INST.num_shifts), -1, dtype=np.int64)
    for g in range(_INST.num_shifts):
        on_duty = np.flatnonzero(_ARR.nurse_works[:, g]).tolist()
        for r in range(r_count):
            nurse[r, g] = draw(st.sampled_from([-1, *on_duty]))
    return SolutionArrays(admission, room, theater, nurse)


@settings(max_examples=60, deadline=None)
@given(arrays=random_solutions(), data=st.data())
def test_report_is_invariant_under_reordering_and_array_round_trip(
    arrays: SolutionArrays, data: st.DataObject
) -> None:
    sol = solution_from_arrays(_INST, arrays)
    report = validate(_INST, sol)

    assert report.violations == sum(report.hard.values())
    assert report.cost == sum(c.weight * c.count for c in report.soft.values())
    assert all(v >= 0 for v in report.hard.values())
    assert all(c.count >= 0 for c in report.soft.values())
    assert report.hard["NursePresence"] == 0

    shuffled = Solution(
        patients=tuple(data.draw(st.permutations(sol.patients))),
        nurses=tuple(data.draw(st.permutations(sol.nurses))),
    )
    assert validate(_INST, shuffled) == report
    back = solution_to_arrays(_INST, shuffled)
    for field in ("admission_day", "room", "theater", "room_shift_nurse"):
        np.testing.assert_array_equal(getattr(back, field), getattr(arrays, field))
    # Solutions survive a trip through the competition JSON.
    assert validate(_INST, load_solution(sol.to_json_dict(), _INST)) == report
