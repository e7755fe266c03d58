"""`carepool ihtp validate`: exit codes 0/1/2, the readable report and the --json shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from carepool.cli import app
from carepool.planning.ihtp import HARD_CONSTRAINTS, SOFT_COMPONENTS
from tests.planning.ihtp_factories import InstanceBuilder, SolutionBuilder, evaluate

runner = CliRunner()


def write(tmp_path: Path, name: str, doc: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def tiny() -> InstanceBuilder:
    return (
        InstanceBuilder.basic(days=3)
        .nurse("n1", shifts=[(0, "early")])
        .patient("p0", los=2, age="infant")
        .patient("p1", mandatory=False, age="elderly")
        .occupant("o0", "r1")
    )


def feasible() -> SolutionBuilder:
    return SolutionBuilder().admit("p0", 0).admit("p1", 0).cover_all("n0", tiny())


def run(*args: str | Path) -> Any:
    return runner.invoke(app, ["ihtp", "validate", *map(str, args)])


def test_feasible_solution_exits_0_with_readable_tables(tmp_path: Path) -> None:
    result = run(
        write(tmp_path, "i.json", tiny().to_dict()), write(tmp_path, "s.json", feasible().to_dict())
    )
    assert result.exit_code == 0, result.output
    for name in (*HARD_CONSTRAINTS, *SOFT_COMPONENTS):
        assert name in result.stdout
    expected = evaluate(tiny(), feasible())
    assert f"Total violations = 0\nTotal cost = {expected.cost}\n" in result.stdout
    assert "feasible" in result.stdout


def test_infeasible_solution_exits_1(tmp_path: Path) -> None:
    sol = SolutionBuilder().admit("p1", 0).cover_all("n0", tiny())  # mandatory p0 missing
    result = run(
        write(tmp_path, "i.json", tiny().to_dict()), write(tmp_path, "s.json", sol.to_dict())
    )
    assert result.exit_code == 1, result.output
    assert "Total violations = 1" in result.stdout
    assert "infeasible" in result.stdout


def test_json_output_shape(tmp_path: Path) -> None:
    sol = SolutionBuilder().admit("p0", 1, "r1").admit("p1", 1, "r1")  # nobody covered
    inst_path = write(tmp_path, "i.json", tiny().to_dict())
    result = run(inst_path, write(tmp_path, "s.json", sol.to_dict()), "--json")
    assert result.exit_code == 1

    doc = json.loads(result.stdout)  # exactly one JSON object, nothing else on stdout
    assert list(doc) == ["violations", "cost", "hard", "soft"]
    assert list(doc["hard"]) == list(HARD_CONSTRAINTS)
    assert list(doc["soft"]) == list(SOFT_COMPONENTS)
    for comp in doc["soft"].values():
        assert set(comp) == {"count", "weight", "cost"}
        assert comp["cost"] == comp["count"] * comp["weight"]
    assert doc == evaluate(tiny(), sol).to_dict()
    # r1 holds o0 on day 0 and p0/p1 from day 1: every shift of the horizon is uncovered.
    assert doc["hard"]["UncoveredRoom"] == 9
    assert doc["violations"] == sum(doc["hard"].values())
    assert doc["cost"] == sum(c["cost"] for c in doc["soft"].values())


def test_json_output_of_a_feasible_solution_exits_0(tmp_path: Path) -> None:
    result = run(
        write(tmp_path, "i.json", tiny().to_dict()),
        write(tmp_path, "s.json", feasible().to_dict()),
        "--json",
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["violations"] == 0


@pytest.mark.parametrize(
    ("solution", "reason"),
    [
        pytest.param("{not json", "not valid JSON", id="unreadable JSON"),
        pytest.param(
            SolutionBuilder().admit("p7", 0).to_dict(),
            "patients[0] (id=p7).id: unknown patient 'p7'",
            id="unknown id",
        ),
        pytest.param(
            SolutionBuilder().cover("n1", 1, "late", "r0").to_dict(),
            "nurses[0] (id=n1).assignments[0]: nurse n1 does not work day 1 shift late",
            id="nurse off duty",
        ),
        pytest.param(
            SolutionBuilder().admit("p0", 0).postpone("p0").to_dict(),
            "patients[1] (id=p0).id: patient p0 is already listed at patients[0]",
            id="patient twice",
        ),
    ],
)
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_malformed_solution_exits_2(
    tmp_path: Path, solution: Any, reason: str, as_json: bool
) -> None:
    inst_path = write(tmp_path, "i.json", tiny().to_dict())
    sol_path = tmp_path / "s.json"
    sol_path.write_text(solution if isinstance(solution, str) else json.dumps(solution))
    result = run(inst_path, sol_path, *(["--json"] if as_json else []))

    assert result.exit_code == 2
    assert f"solution {sol_path}: " in result.stderr
    assert reason in result.stderr
    if as_json:
        assert reason in json.loads(result.stdout)["error"]
    else:
        assert result.stdout == ""


def test_malformed_instance_exits_2(tmp_path: Path) -> None:
    doc = tiny().to_dict()
    del doc["patients"][0]["surgery_due_day"]
    inst_path = write(tmp_path, "i.json", doc)
    result = run(inst_path, write(tmp_path, "s.json", feasible().to_dict()))
    assert result.exit_code == 2
    assert (
        f"instance {inst_path}: patients[0] (id=p0).surgery_due_day: required for mandatory "
        "patients" in result.stderr
    )


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = run(write(tmp_path, "i.json", tiny().to_dict()), tmp_path / "absent.json", "--json")
    assert result.exit_code == 2
    assert "absent.json" in json.loads(result.stdout)["error"]


def test_official_reference_solution(ihtc_dir: Path) -> None:
    result = run(
        ihtc_dir / "instances" / "test01.json",
        ihtc_dir / "solutions" / "test" / "sol_test01.json",
        "--json",
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["cost"] == 3177


def test_solve_is_still_registered() -> None:
    result = runner.invoke(app, ["ihtp", "--help"])
    assert result.exit_code == 0
    assert "validate" in result.stdout and "solve" in result.stdout
