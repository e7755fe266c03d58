"""IHTP models and loaders: competition files load, malformed ones fail with a message naming
the entry and the field, and the numpy view matches the models."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carepool.planning.ihtp import (
    IhtpFormatError,
    Instance,
    SolutionArrays,
    load_instance,
    load_solution,
    solution_from_arrays,
    solution_to_arrays,
)
from carepool.planning.ihtp.arrays import GENDER_CODES, WEIGHT_KEYS
from tests.planning.ihtp_factories import OFFICIAL_TEST_INSTANCES, InstanceBuilder, SolutionBuilder

Doc = dict[str, Any]


def base_instance() -> InstanceBuilder:
    return (
        InstanceBuilder.basic(days=3)
        .nurse("n1", shifts=[(0, "early"), (1, "late")])
        .patient("p0")
        .patient("p1", mandatory=False, los=2)
        .occupant("o0", "r1")
    )


def base_solution() -> SolutionBuilder:
    return (
        SolutionBuilder()
        .admit("p0", 0, "r0", "t0")
        .postpone("p1")
        .cover("n0", 0, "early", "r0")
        .cover("n0", 0, "late", "r0", "r1")
        .cover("n1", 1, "late", "r1")
    )


# --------------------------------------------------------------------------------------------
# Competition files
# --------------------------------------------------------------------------------------------


def test_every_competition_instance_loads(ihtc_dir: Path) -> None:
    paths = sorted((ihtc_dir / "instances").glob("*.json"))
    assert len(paths) == 30
    for path in paths:
        inst = load_instance(path)
        raw = json.loads(path.read_text())
        assert len(inst.patients) == len(raw["patients"])
        assert inst.num_shifts == 3 * raw["days"]
        for i, room in enumerate(inst.rooms):
            assert inst.room_index[room.id] == i
        for n, nurse in enumerate(raw["nurses"]):
            for ws in nurse["working_shifts"]:
                g = inst.global_shift(ws["day"], ws["shift"])
                assert inst.shift_label(g) == f"day {ws['day']} shift {ws['shift']}"
                assert inst.nurse_max_load(n, g) == ws["max_load"]


@pytest.mark.parametrize("name", OFFICIAL_TEST_INSTANCES)
def test_official_solution_survives_json_and_array_round_trips(name: str, ihtc_dir: Path) -> None:
    inst = load_instance(str(ihtc_dir / "instances" / f"{name}.json"))
    sol = load_solution(ihtc_dir / "solutions" / "test" / f"sol_{name}.json", inst)
    assert load_solution(sol.to_json_dict(), inst) == sol

    arrays = solution_to_arrays(inst, sol)
    again = solution_to_arrays(inst, solution_from_arrays(inst, arrays))
    for field in ("admission_day", "room", "theater", "room_shift_nurse"):
        np.testing.assert_array_equal(getattr(again, field), getattr(arrays, field))
    admitted = [p for p in sol.patients if p.admitted]
    assert int((arrays.admission_day >= 0).sum()) == len(admitted)


def test_instance_arrays_match_the_models(ihtc_dir: Path) -> None:
    inst = load_instance(ihtc_dir / "instances" / "test07.json")  # 5 age groups, 5 skill levels
    arr = inst.to_arrays()
    longest = max(p.length_of_stay for p in inst.patients)
    assert arr.patient_workload.shape == (len(inst.patients), 3 * longest)
    for p, pat in enumerate(inst.patients):
        los = pat.length_of_stay
        assert arr.patient_workload[p, : 3 * los].tolist() == list(pat.workload_produced)
        assert not arr.patient_workload[p, 3 * los :].any()
        assert arr.patient_skill[p, : 3 * los].tolist() == list(pat.skill_level_required)
        assert arr.patient_age[p] == inst.age_groups.index(pat.age_group)
        assert arr.patient_surgeon[p] == inst.surgeon_index[pat.surgeon_id]
        assert arr.patient_last_day[p] == (pat.surgery_due_day if pat.mandatory else inst.days - 1)
    for o, occ in enumerate(inst.occupants):
        assert arr.occupant_room[o] == inst.room_index[occ.room_id]
        assert arr.occupant_skill[o, : 3 * occ.length_of_stay].tolist() == list(
            occ.skill_level_required
        )
    assert int(arr.nurse_works.sum()) == sum(len(n.working_shifts) for n in inst.nurses)


# --------------------------------------------------------------------------------------------
# The index view on a hand-written instance
# --------------------------------------------------------------------------------------------


def test_arrays_layout() -> None:
    inst = (
        InstanceBuilder(days=2)
        .room("r0", capacity=1)
        .room("r1", capacity=3)
        .theater("t0", availability=[100, 0])
        .surgeon("s0", max_time=[0, 50])
        .surgeon("s1")
        .nurse("n0", skill=1, max_load=7, shifts=[(0, "late"), (1, "early")])
        .patient(
            "p0",
            los=1,
            release=1,
            duration=45,
            surgeon="s1",
            gender="B",
            age="elderly",
            incompatible=["r1"],
            workload=[1, 2, 3],
            skill=[0, 1, 2],
        )
        .patient("p1", mandatory=False, los=2, workload=4)
        .occupant("o0", "r1", los=1, age="infant", workload=[5, 6, 7], skill=[2, 2, 0])
        .build()
    )
    arr = inst.to_arrays()
    assert (arr.days, arr.shifts_per_day, arr.num_shifts) == (2, 3, 6)
    assert arr.room_ids == ("r0", "r1") and arr.patient_ids == ("p0", "p1")
    assert arr.weights.tolist() == [getattr(inst.weights, k) for k in WEIGHT_KEYS]
    assert arr.room_capacity.tolist() == [1, 3]
    assert arr.theater_availability.tolist() == [[100, 0]]
    assert arr.surgeon_max_time.tolist() == [[0, 50], [600, 600]]
    assert arr.nurse_skill.tolist() == [1]
    assert arr.nurse_works.tolist() == [[False, True, False, True, False, False]]
    assert arr.nurse_max_load.tolist() == [[0, 7, 0, 7, 0, 0]]
    assert arr.patient_mandatory.tolist() == [True, False]
    assert arr.patient_gender.tolist() == [GENDER_CODES["B"], GENDER_CODES["A"]]
    assert arr.patient_age.tolist() == [2, 1]
    assert arr.patient_los.tolist() == [1, 2]
    assert arr.patient_release.tolist() == [1, 0]
    assert arr.patient_last_day.tolist() == [1, 1]
    assert arr.patient_duration.tolist() == [45, 60]
    assert arr.patient_surgeon.tolist() == [1, 0]
    assert arr.patient_incompatible.tolist() == [[False, True], [False, False]]
    assert arr.patient_workload.tolist() == [[1, 2, 3, 0, 0, 0], [4, 4, 4, 4, 4, 4]]
    assert arr.patient_skill.tolist() == [[0, 1, 2, 0, 0, 0], [0] * 6]
    assert arr.occupant_room.tolist() == [1]
    assert arr.occupant_age.tolist() == [0]
    assert arr.occupant_los.tolist() == [1]
    assert arr.occupant_workload.tolist() == [[5, 6, 7]]
    assert arr.occupant_skill.tolist() == [[2, 2, 0]]
    assert all(
        a.dtype == np.int64
        for a in (arr.weights, arr.room_capacity, arr.patient_workload, arr.occupant_room)
    )


def test_solution_from_arrays_rejects_impossible_arrays() -> None:
    inst = base_instance().build()
    ok = solution_to_arrays(inst, base_solution().build(inst))
    off_duty = ok.room_shift_nurse.copy()
    off_duty[0, inst.global_shift(2, "night")] = inst.nurse_index["n1"]
    with pytest.raises(IhtpFormatError, match="nurse n1 does not work day 2 shift night"):
        solution_from_arrays(inst, SolutionArrays(ok.admission_day, ok.room, ok.theater, off_duty))
    with pytest.raises(ValueError, match="room_shift_nurse has shape"):
        solution_from_arrays(
            inst, SolutionArrays(ok.admission_day, ok.room, ok.theater, off_duty[:, :3])
        )
    no_room = ok.room.copy()
    no_room[0] = -1
    with pytest.raises(ValueError, match="patient p0 is admitted without"):
        solution_from_arrays(
            inst, SolutionArrays(ok.admission_day, no_room, ok.theater, ok.room_shift_nurse)
        )


def test_patient_last_admission_day() -> None:
    inst = base_instance().build()
    assert inst.patients[0].last_admission_day(inst.days) == 2  # due day (builder default)
    assert inst.patients[1].last_admission_day(inst.days) == 2  # optional: last day


# --------------------------------------------------------------------------------------------
# Malformed instances
# --------------------------------------------------------------------------------------------


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        node: Any = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(path: tuple[str | int, ...]) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        node: Any = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _append(path: tuple[str | int, ...], value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        node: Any = doc
        for key in path:
            node = node[key]
        node.append(value)

    return mutate


def _both(*mutations: Callable[[Doc], None]) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        for m in mutations:
            m(doc)

    return mutate


MALFORMED_INSTANCES: list[tuple[str, Callable[[Doc], None], str]] = [
    ("missing key", _delete(("patients", 1, "gender")),
     "patients[1] (id=p1).gender: required key is missing"),
    ("missing weight", _delete(("weights", "patient_delay")),
     "weights.patient_delay: required key is missing"),
    ("string for int", _set(("patients", 0, "length_of_stay"), "1"),
     "patients[0] (id=p0).length_of_stay: Input should be a valid integer (got '1')"),
    ("bool for int", _set(("rooms", 0, "capacity"), True),
     "rooms[0] (id=r0).capacity: Input should be a valid integer (got True)"),
    ("float for int", _set(("days",), 3.0), "days: Input should be a valid integer (got 3.0)"),
    ("negative", _set(("rooms", 1, "capacity"), -1),
     "rooms[1] (id=r1).capacity: Input should be greater than or equal to 0 (got -1)"),
    ("bad gender", _set(("occupants", 0, "gender"), "C"),
     "occupants[0] (id=o0).gender: Input should be 'A' or 'B' (got 'C')"),
    ("mandatory without due day", _delete(("patients", 0, "surgery_due_day")),
     "patients[0] (id=p0).surgery_due_day: required for mandatory patients"),
    ("unknown surgeon", _set(("patients", 0, "surgeon_id"), "s9"),
     "patients[0] (id=p0).surgeon_id: unknown surgeon 's9'"),
    ("unknown incompatible room", _set(("patients", 1, "incompatible_room_ids"), ["r1", "r9"]),
     "patients[1] (id=p1).incompatible_room_ids[1]: unknown room 'r9'"),
    ("unknown age group", _set(("patients", 1, "age_group"), "teen"),
     "patients[1] (id=p1).age_group: unknown age group 'teen'"),
    ("occupant in unknown room", _set(("occupants", 0, "room_id"), "r9"),
     "occupants[0] (id=o0).room_id: unknown room 'r9'"),
    ("workload length", _set(("patients", 1, "workload_produced"), [1] * 5),
     "patients[1] (id=p1).workload_produced: has 5 entries, expected 6 "
     "(3 shifts x length_of_stay 2)"),
    ("occupant skill length", _set(("occupants", 0, "skill_level_required"), [0] * 6),
     "occupants[0] (id=o0).skill_level_required: has 6 entries, expected 3 "
     "(3 shifts x length_of_stay 1)"),
    ("skill above levels", _set(("patients", 0, "skill_level_required"), [0, 0, 3]),
     "patients[0] (id=p0).skill_level_required[2]: skill level 3 is not below skill_levels=3"),
    ("nurse skill above levels", _set(("nurses", 1, "skill_level"), 5),
     "nurses[1] (id=n1).skill_level: skill level 5 is not below skill_levels=3"),
    ("duplicate patient", _set(("patients", 1, "id"), "p0"),
     "patients[1] (id=p0).id: duplicate id 'p0' (first at patients[0])"),
    ("duplicate room", _set(("rooms", 1, "id"), "r0"),
     "rooms[1] (id=r0).id: duplicate id 'r0' (first at rooms[0])"),
    ("duplicate shift type", _set(("shift_types",), ["early", "late", "early"]),
     "shift_types[2]: duplicate id 'early' (first at shift_types[0])"),
    ("unknown shift in roster", _set(("nurses", 1, "working_shifts", 1, "shift"), "noon"),
     "nurses[1] (id=n1).working_shifts[1].shift: unknown shift type 'noon'"),
    ("roster beyond horizon", _set(("nurses", 1, "working_shifts", 0, "day"), 3),
     "nurses[1] (id=n1).working_shifts[0].day: day 3 is outside the horizon 0..2"),
    ("roster shift twice",
     _append(("nurses", 1, "working_shifts"), {"day": 0, "shift": "early", "max_load": 1}),
     "nurses[1] (id=n1).working_shifts[2]: day 0 shift early is already listed at "
     "working_shifts[0]"),
    ("availability length", _set(("operating_theaters", 1, "availability"), [600, 600]),
     "operating_theaters[1] (id=t1).availability: has 2 entries, expected days=3"),
    ("surgeon time length", _set(("surgeons", 0, "max_surgery_time"), [1, 2, 3, 4]),
     "surgeons[0] (id=s0).max_surgery_time: has 4 entries, expected days=3"),
    ("release beyond horizon", _set(("patients", 1, "surgery_release_day"), 3),
     "patients[1] (id=p1).surgery_release_day: day 3 is outside the horizon 0..2"),
    ("due before release", _both(_set(("patients", 0, "surgery_release_day"), 2),
                                 _set(("patients", 0, "surgery_due_day"), 1)),
     "patients[0] (id=p0).surgery_due_day: day 1 must lie between surgery_release_day=2 and "
     "the last day 2"),
    ("empty document", lambda doc: doc.clear(),
     "days: required key is missing (and 10 more problems)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "message"),
    [pytest.param(m, msg, id=name) for name, m, msg in MALFORMED_INSTANCES],
)
def test_malformed_instance_names_entry_and_field(
    mutate: Callable[[Doc], None], message: str
) -> None:
    doc = base_instance().to_dict()
    load_instance(doc)  # the unmodified document is fine
    mutate(doc)
    with pytest.raises(IhtpFormatError) as err:
        load_instance(doc)
    assert str(err.value) == message


def test_instance_that_is_not_an_object() -> None:
    with pytest.raises(IhtpFormatError, match=r"^Input should be a valid dictionary"):
        load_instance([])  # type: ignore[arg-type]


def test_unreadable_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"days": 3,')
    with pytest.raises(IhtpFormatError, match=r"^not valid JSON: "):
        load_instance(broken)
    with pytest.raises(OSError):
        load_instance(tmp_path / "absent.json")


# --------------------------------------------------------------------------------------------
# Malformed solutions
# --------------------------------------------------------------------------------------------


def _cover(nurse: int, entry: Doc) -> Callable[[Doc], None]:
    return _append(("nurses", nurse, "assignments"), entry)


MALFORMED_SOLUTIONS: list[tuple[str, Callable[[Doc], None], str]] = [
    ("unknown patient", _set(("patients", 1, "id"), "p9"),
     "patients[1] (id=p9).id: unknown patient 'p9'"),
    ("patient admitted twice",
     _append(("patients",), {"id": "p0", "admission_day": 1, "room": "r1",
                             "operating_theater": "t0"}),
     "patients[2] (id=p0).id: patient p0 is already listed at patients[0]"),
    ("patient listed as none and admitted", _append(("patients",), {"id": "p1",
     "admission_day": 1, "room": "r1", "operating_theater": "t0"}),
     "patients[2] (id=p1).id: patient p1 is already listed at patients[1]"),
    ("unknown room", _set(("patients", 0, "room"), "r9"),
     "patients[0] (id=p0).room: unknown room 'r9'"),
    ("unknown theatre", _set(("patients", 0, "operating_theater"), "t9"),
     "patients[0] (id=p0).operating_theater: unknown operating theater 't9'"),
    ("admitted without room", _delete(("patients", 0, "room")),
     "patients[0] (id=p0).room: required for an admitted patient"),
    ("admitted without theatre", _delete(("patients", 0, "operating_theater")),
     "patients[0] (id=p0).operating_theater: required for an admitted patient"),
    ("admission day as string", _set(("patients", 0, "admission_day"), "2"),
     "patients[0] (id=p0).admission_day: must be a day index or \"none\", got '2'"),
    ("admission day as float", _set(("patients", 0, "admission_day"), 1.0),
     "patients[0] (id=p0).admission_day: must be a day index or \"none\", got 1.0"),
    ("negative admission day", _set(("patients", 0, "admission_day"), -1),
     "patients[0] (id=p0).admission_day: must be a day index >= 0, got -1"),
    ("missing admission day", _delete(("patients", 1, "admission_day")),
     "patients[1] (id=p1).admission_day: required key is missing"),
    ("unknown nurse", _set(("nurses", 0, "id"), "n9"), "nurses[0] (id=n9).id: unknown nurse 'n9'"),
    ("nurse listed twice", _append(("nurses",), {"id": "n0", "assignments": []}),
     "nurses[2] (id=n0).id: nurse n0 is already listed at nurses[0]"),
    ("unknown shift name", _cover(0, {"day": 1, "shift": "noon", "rooms": ["r0"]}),
     "nurses[0] (id=n0).assignments[2].shift: unknown shift type 'noon'"),
    ("day beyond horizon", _cover(0, {"day": 3, "shift": "early", "rooms": []}),
     "nurses[0] (id=n0).assignments[2].day: day 3 is outside the horizon 0..2"),
    ("nurse in a shift she does not work", _cover(1, {"day": 2, "shift": "night", "rooms": []}),
     "nurses[1] (id=n1).assignments[1]: nurse n1 does not work day 2 shift night"),
    ("two nurses on one room and shift", _cover(1, {"day": 0, "shift": "early", "rooms": ["r0"]}),
     "nurses[1] (id=n1).assignments[1].rooms[0]: room r0 on day 0 shift early is already "
     "covered at nurses[0] (id=n0).assignments[0].rooms[0]"),
    ("room twice in one shift", _set(("nurses", 0, "assignments", 1, "rooms"), ["r1", "r1"]),
     "nurses[0] (id=n0).assignments[1].rooms[1]: room r1 on day 0 shift late is already "
     "covered at nurses[0] (id=n0).assignments[1].rooms[0]"),
    ("same shift listed twice", _cover(0, {"day": 0, "shift": "early", "rooms": ["r0"]}),
     "nurses[0] (id=n0).assignments[2].rooms[0]: room r0 on day 0 shift early is already "
     "covered at nurses[0] (id=n0).assignments[0].rooms[0]"),
    ("unknown room for nurse", _set(("nurses", 1, "assignments", 0, "rooms"), ["r9"]),
     "nurses[1] (id=n1).assignments[0].rooms[0]: unknown room 'r9'"),
    ("missing rooms key", _delete(("nurses", 0, "assignments", 0, "rooms")),
     "nurses[0] (id=n0).assignments[0].rooms: required key is missing"),
    ("missing nurses section", _delete(("nurses",)), "nurses: required key is missing"),
    ("rooms not a list", _set(("nurses", 0, "assignments", 0, "rooms"), "r0"),
     "nurses[0] (id=n0).assignments[0].rooms: Input should be a valid tuple (got 'r0')"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "message"),
    [pytest.param(m, msg, id=name) for name, m, msg in MALFORMED_SOLUTIONS],
)
def test_malformed_solution_names_entry_and_field(
    mutate: Callable[[Doc], None], message: str
) -> None:
    inst = base_instance().build()
    doc = base_solution().to_dict()
    load_solution(doc, inst)  # the unmodified document is fine
    mutate(doc)
    with pytest.raises(IhtpFormatError) as err:
        load_solution(doc, inst)
    assert str(err.value) == message


def test_not_admitted_patients_need_no_other_key_and_may_be_omitted() -> None:
    inst = base_instance().build()
    sol = load_solution({"patients": [{"id": "p1", "admission_day": "none"}], "nurses": []}, inst)
    assert [p.admitted for p in sol.patients] == [False]
    assert sol.to_json_dict() == {
        "patients": [{"id": "p1", "admission_day": "none"}],
        "nurses": [],
    }


def test_solution_extra_keys_are_ignored() -> None:
    inst = base_instance().build()
    doc = base_solution().to_dict() | {"costs": ["Cost: 1"]}
    doc["patients"][0]["note"] = "ignored"
    assert load_solution(doc, inst) == base_solution().build(inst)


# --------------------------------------------------------------------------------------------
# The error type
# --------------------------------------------------------------------------------------------


def test_format_error_carries_every_problem_and_pickles() -> None:
    doc = base_instance().to_dict()
    doc["rooms"][0]["capacity"] = "two"
    doc["patients"][1]["length_of_stay"] = 0
    with pytest.raises(IhtpFormatError) as err:
        load_instance(doc)
    error = err.value
    # In the order of the instance model's fields: patients come before rooms.
    assert error.path == "patients[1] (id=p1).length_of_stay"
    assert error.reason == "Input should be greater than or equal to 1 (got 0)"
    assert error.problems[1] == (
        "rooms[0] (id=r0).capacity",
        "Input should be a valid integer (got 'two')",
    )
    assert str(error).endswith("(and 1 more problem)")
    clone = pickle.loads(pickle.dumps(error))
    assert isinstance(clone, IhtpFormatError) and clone.problems == error.problems
    assert str(clone) == str(error)


def test_instance_is_immutable() -> None:
    inst: Instance = base_instance().build()
    with pytest.raises(ValueError, match="frozen"):
        inst.days = 5  # type: ignore[misc]
