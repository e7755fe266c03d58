"""The IHTP solver: results checked by the independent validator, warm starts, pinned decisions,
reproducibility, the kernels' incremental costs against the validator, and the CLI.

Runs use iteration budgets (`max_iterations`), never wall-clock assertions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from carepool.cli import app
from carepool.planning.ihtp import load_instance, load_solution, validate
from carepool.planning.ihtp.solver import SolveResult, kernel_evaluation, solve
from carepool.planning.ihtp.solver_eval import evaluate
from tests.planning.ihtp_factories import OFFICIAL_TEST_INSTANCES, InstanceBuilder

SHIFTS = ("early", "late", "night")
LONG = 600.0  # time limit that never binds: the iteration budget ends these runs


def check(inst: dict[str, Any], res: SolveResult) -> Any:
    """Validator report of a result; the solver's own figures must agree with it."""
    model = load_instance(inst)
    report = validate(model, load_solution(res.solution, model))
    assert report.violations == res.violations
    assert report.feasible == res.feasible
    assert report.cost == res.cost
    soft, hard = kernel_evaluation(inst, res.solution)
    assert hard == dict(report.hard)
    assert soft == {k: c.count for k, c in report.soft.items()}
    return report


def small_hospital() -> InstanceBuilder:
    b = (
        InstanceBuilder(days=5)
        .room("r0", capacity=2)
        .room("r1", capacity=2)
        .room("r2", capacity=1)
        .theater("t0", availability=[240, 240, 0, 240, 240])
        .theater("t1", availability=120)
        .surgeon("s0", max_time=[240, 240, 240, 0, 240])
        .surgeon("s1")
        .nurse("n0", skill=2, max_load=6, shifts=[(d, "early") for d in range(5)])
        .nurse("n1", skill=1, max_load=6, shifts=[(d, "late") for d in range(5)])
        .nurse("n2", skill=0, max_load=6, shifts=[(d, "night") for d in range(5)])
        .nurse("n3", skill=1, max_load=4, shifts=[(d, "early") for d in range(0, 5, 2)])
        .occupant("o0", "r0", los=2, gender="B", age="elderly", workload=2, skill=1)
    )
    b.patient("p0", los=3, release=0, due=1, duration=120, gender="A", age="adult")
    b.patient("p1", los=2, release=1, due=3, duration=90, gender="B", surgeon="s1")
    b.patient("p2", los=4, release=0, due=2, duration=60, incompatible=["r0", "r1"])
    b.patient("p3", mandatory=False, los=2, release=2, duration=200, age="infant")
    b.patient("p4", mandatory=False, los=1, release=0, duration=30, gender="B", skill=2)
    b.patient("p5", los=2, release=3, due=4, duration=60, gender="B", workload=3)
    return b


def test_small_hand_written_instance_is_solved_feasibly() -> None:
    inst = small_hospital().to_dict()
    res = solve(inst, time_limit=LONG, seed=1, max_iterations=20_000)
    report = check(inst, res)
    assert report.feasible
    placed = {p["id"]: p for p in res.solution["patients"]}
    assert placed["p2"]["room"] == "r2"  # the only compatible room
    assert all(placed[p]["admission_day"] != "none" for p in ("p0", "p1", "p2", "p5"))
    assert res.trace and res.trace[-1].cost == res.cost


def test_impossible_instance_reports_infeasible_and_cli_exits_1(tmp_path: Path) -> None:
    b = InstanceBuilder.basic(days=2).patient("p0", incompatible=["r0", "r1"])
    inst = b.to_dict()
    res = solve(inst, time_limit=LONG, max_iterations=2_000)
    assert not res.feasible
    check(inst, res)
    path = tmp_path / "i.json"
    path.write_text(json.dumps(inst))
    out = tmp_path / "s.json"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            *("ihtp", "solve", str(path), "--time-limit", "60", "--max-iterations", "2000"),
            *("-o", str(out), "--json", "--quiet"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert not out.exists()
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["feasible"] is False and doc["output"] is None


def test_cli_writes_a_valid_solution_and_json_summary(tmp_path: Path) -> None:
    path = tmp_path / "i.json"
    path.write_text(json.dumps(small_hospital().to_dict()))
    out = tmp_path / "s.json"
    result = CliRunner().invoke(
        app,
        [
            *("ihtp", "solve", str(path), "-t", "60", "--max-iterations", "5000", "--seed", "3"),
            *("--threads", "2", "-o", str(out), "--json", "--quiet"),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["feasible"] and doc["output"] == str(out)
    assert doc["iterations"] <= 5000
    model = load_instance(path)
    report = validate(model, load_solution(out, model))
    assert report.feasible and report.cost == doc["cost"]
    check_out = CliRunner().invoke(app, ["ihtp", "validate", str(path), str(out)])
    assert check_out.exit_code == 0


@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_and_budget_give_the_same_solution(threads: int) -> None:
    inst = small_hospital().to_dict()
    runs = [
        solve(inst, time_limit=LONG, seed=7, threads=threads, max_iterations=30_000)
        for _ in range(2)
    ]
    assert runs[0].solution == runs[1].solution
    assert runs[0].cost == runs[1].cost
    assert runs[0].iterations == runs[1].iterations <= 30_000


def test_warm_start_is_never_worse_than_the_start() -> None:
    inst = small_hospital().to_dict()
    first = solve(inst, time_limit=LONG, seed=2, max_iterations=3_000)
    assert first.feasible
    again = solve(inst, time_limit=LONG, seed=5, initial=first.solution, max_iterations=2_000)
    assert again.feasible and again.cost <= first.cost
    # a zero budget returns the warm start itself (nothing to improve, nothing lost)
    same = solve(inst, time_limit=LONG, seed=5, initial=first.solution, max_iterations=1)
    assert same.cost <= first.cost


def test_fixed_decisions_are_kept() -> None:
    inst = small_hospital().to_dict()
    fixed = {
        "patients": [
            {"id": "p0", "admission_day": 1, "room": "r1", "operating_theater": "t0"},
            {"id": "p1", "admission_day": 3, "operating_theater": "t1"},  # pinned surgery
            {"id": "p4", "admission_day": "none"},  # kept out
            {"id": "p5", "room": "r1"},
        ],
        "nurses": [{"id": "n1", "assignments": [{"day": 1, "shift": "late", "rooms": ["r1"]}]}],
    }
    for seed in range(3):
        res = solve(inst, time_limit=LONG, seed=seed, fixed=fixed, max_iterations=10_000)
        check(inst, res)
        assert res.feasible
        got = {p["id"]: p for p in res.solution["patients"]}
        assert (got["p0"]["admission_day"], got["p0"]["room"]) == (1, "r1")
        assert got["p0"]["operating_theater"] == "t0"
        assert (got["p1"]["admission_day"], got["p1"]["operating_theater"]) == (3, "t1")
        assert got["p4"]["admission_day"] == "none"
        assert got["p5"]["room"] == "r1"
        n1 = next(n for n in res.solution["nurses"] if n["id"] == "n1")
        assert any(a["day"] == 1 and "r1" in a["rooms"] for a in n1["assignments"])


def test_fixed_decisions_override_a_warm_start() -> None:
    inst = small_hospital().to_dict()
    start = solve(inst, time_limit=LONG, seed=0, max_iterations=3_000).solution
    day0 = next(p for p in start["patients"] if p["id"] == "p0")["admission_day"]
    pin = 0 if day0 == 1 else 1
    fixed = {"patients": [{"id": "p0", "admission_day": pin}]}
    res = solve(inst, time_limit=LONG, initial=start, fixed=fixed, max_iterations=3_000)
    check(inst, res)
    assert next(p for p in res.solution["patients"] if p["id"] == "p0")["admission_day"] == pin


def test_evaluations_match_the_validator_on_reference_solutions(ihtc_dir: Path) -> None:
    for name in OFFICIAL_TEST_INSTANCES[:6]:
        inst = json.loads((ihtc_dir / "instances" / f"{name}.json").read_text())
        sol = json.loads((ihtc_dir / "solutions" / "test" / f"sol_{name}.json").read_text())
        model = load_instance(inst)
        report = validate(model, load_solution(sol, model))
        soft, hard = kernel_evaluation(inst, sol)
        assert hard == dict(report.hard), name
        assert soft == {k: c.count for k, c in report.soft.items()}, name
        mine = evaluate(inst, sol)
        assert (mine.cost, mine.violations) == (report.cost, report.violations), name


def test_real_instance_short_run_is_feasible_and_validated(ihtc_dir: Path) -> None:
    inst = json.loads((ihtc_dir / "instances" / "i02.json").read_text())
    res = solve(inst, time_limit=LONG, seed=0, threads=2, max_iterations=200_000)
    assert check(inst, res).feasible


# --------------------------------------------------------------------------------------------
# Generated instances.


@st.composite
def instances(draw: st.DrawFn) -> dict[str, Any]:
    days = draw(st.integers(2, 5))
    b = InstanceBuilder(days=days)
    n_rooms = draw(st.integers(1, 3))
    for r in range(n_rooms):
        b.room(f"r{r}", capacity=draw(st.integers(1, 3)))
    for t in range(draw(st.integers(1, 2))):
        b.theater(
            f"t{t}",
            availability=draw(
                st.lists(st.sampled_from([0, 60, 300]), min_size=days, max_size=days)
            ),
        )
    n_surgeons = draw(st.integers(1, 2))
    for s in range(n_surgeons):
        b.surgeon(f"s{s}", max_time=draw(st.sampled_from([120, 600])))
    b.nurse("n0", skill=draw(st.integers(0, 2)), max_load=draw(st.integers(1, 8)))
    for n in range(1, draw(st.integers(1, 3))):
        worked = [(d, draw(st.sampled_from(SHIFTS))) for d in range(days) if draw(st.booleans())]
        b.nurse(
            f"n{n}", skill=draw(st.integers(0, 2)), max_load=draw(st.integers(1, 8)), shifts=worked
        )
    for o in range(draw(st.integers(0, 2))):
        b.occupant(f"a{o}", f"r{o % n_rooms}", los=draw(st.integers(1, days + 1)), gender="A")
    ages = ("infant", "adult", "elderly")
    for p in range(draw(st.integers(1, 6))):
        los = draw(st.integers(1, days + 1))
        release = draw(st.integers(0, days - 1))
        mandatory = draw(st.booleans())
        b.patient(
            f"p{p}",
            mandatory=mandatory,
            los=los,
            release=release,
            due=draw(st.integers(release, days - 1)) if mandatory else None,
            duration=draw(st.sampled_from([30, 60, 120])),
            surgeon=f"s{draw(st.integers(0, n_surgeons - 1))}",
            gender=draw(st.sampled_from("AB")),
            age=draw(st.sampled_from(ages)),
            incompatible=[f"r{r}" for r in range(n_rooms) if draw(st.integers(0, 3)) == 0],
            workload=draw(st.lists(st.integers(0, 4), min_size=3 * los, max_size=3 * los)),
            skill=draw(st.lists(st.integers(0, 2), min_size=3 * los, max_size=3 * los)),
        )
    return b.to_dict()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inst=instances(), seed=st.integers(0, 1000))
def test_generated_instances_agree_with_the_validator(inst: dict[str, Any], seed: int) -> None:
    res = solve(inst, time_limit=LONG, seed=seed, max_iterations=3_000)
    report = check(inst, res)
    if not any(p["mandatory"] for p in inst["patients"]):
        # admitting nobody is feasible (occupants share a gender; nurse n0 works every shift)
        caps = {r["id"]: r["capacity"] for r in inst["rooms"]}
        crowded = any(
            sum(1 for o in inst["occupants"] if o["room_id"] == r) > caps[r] for r in caps
        )
        if not crowded:
            assert report.feasible


# --------------------------------------------------------------------------------------------
# CP-SAT admission planner (start solution).


def test_admission_plan_respects_windows_pins_and_capacities() -> None:
    from carepool.planning.ihtp.solver_cpsat import plan_admissions, plan_rooms
    from carepool.planning.ihtp.solver_data import build_data

    inst = small_hospital().to_dict()
    fixed = {"patients": [{"id": "p1", "admission_day": 3}, {"id": "p4", "admission_day": "none"}]}
    data, index = build_data(inst, fixed)
    plan = plan_admissions(data, seed=1, det_time=1.0, wall_time=30.0)
    assert plan is not None
    day = {pid: int(plan.day[i]) for i, pid in enumerate(index.patient_ids)}
    assert day["p1"] == 3 and day["p4"] == -1
    for p in inst["patients"]:
        if p["mandatory"]:
            assert p["surgery_release_day"] <= day[p["id"]] <= p["surgery_due_day"]
        elif day[p["id"]] >= 0:
            assert p["surgery_release_day"] <= day[p["id"]] < inst["days"]
    # surgeon time per day holds exactly in the plan
    limits = {s["id"]: s["max_surgery_time"] for s in inst["surgeons"]}
    used: dict[tuple[str, int], int] = {}
    for p in inst["patients"]:
        if day[p["id"]] >= 0:
            key = (p["surgeon_id"], day[p["id"]])
            used[key] = used.get(key, 0) + p["surgery_duration"]
    assert all(v <= limits[s][d] for (s, d), v in used.items())

    rooms = plan_rooms(data, plan.day, seed=1, det_time=1.0, wall_time=30.0)
    assert rooms is not None
    occupied: dict[tuple[int, int], list[int]] = {}
    for o in range(data.n_persons - data.n_patients):
        q = data.n_patients + o
        for d in range(min(int(data.los[q]), data.n_days)):
            occupied.setdefault((int(data.occ_room[o]), d), []).append(q)
    for p in range(data.n_patients):
        if rooms[p] < 0:
            assert not data.mandatory[p] or plan.day[p] < 0
            continue
        assert not data.incompat[p, rooms[p]]
        a = int(plan.day[p])
        for d in range(a, min(a + int(data.los[p]), data.n_days)):
            occupied.setdefault((int(rooms[p]), d), []).append(p)
    for (r, _d), persons in occupied.items():
        assert len(persons) <= data.room_cap[r]
        assert len({int(data.gender[q]) for q in persons}) == 1


@pytest.mark.parametrize("cpsat", [False, True])
def test_start_with_or_without_the_cpsat_plan_is_validated(cpsat: bool) -> None:
    from carepool.planning.ihtp.solver import SolverParams

    inst = small_hospital().to_dict()
    res = solve(
        inst, time_limit=LONG, seed=4, max_iterations=5_000, params=SolverParams(cpsat=cpsat)
    )
    assert check(inst, res).feasible
