"""Builders for tiny hand-written IHTP instances and solutions, for validator and solver tests.

    inst = (
        InstanceBuilder(days=3)
        .room("r0", capacity=2)
        .theater("t0")
        .surgeon("s0")
        .nurse("n0")                      # works every shift, skill 2, max_load 100
        .patient("p0", los=2, release=1)  # mandatory, due on the last day
    )
    sol = SolutionBuilder().admit("p0", day=1, room="r0", theater="t0").cover_all("n0", inst)
    report = evaluate(inst, sol)         # = validate(inst.build(), sol.build(inst))

Defaults stay clear of every limit unless a test sets one up: 60-minute surgeries against 600
minutes of theatre and surgeon time, 2-bed rooms, workload 1 against max_load 100, skill
required 0, everyone gender A and "adult". Weights are distinct primes so a
weight applied to the wrong component cannot go unnoticed. `to_dict()` returns a fresh deep copy
that a test may corrupt before loading it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from carepool.planning.ihtp import (
    Instance,
    Report,
    Solution,
    load_instance,
    load_solution,
    validate,
)

#: The organisers' test instances that come with a reference solution and an official score.
OFFICIAL_TEST_INSTANCES: tuple[str, ...] = tuple(f"test{i:02d}" for i in range(1, 11))
SHIFTS: tuple[str, ...] = ("early", "late", "night")
AGES: tuple[str, ...] = ("infant", "adult", "elderly")
WEIGHTS: dict[str, int] = {
    "room_mixed_age": 2,
    "room_nurse_skill": 3,
    "continuity_of_care": 5,
    "nurse_eccessive_workload": 7,
    "open_operating_theater": 11,
    "surgeon_transfer": 13,
    "patient_delay": 17,
    "unscheduled_optional": 19,
}

PerShift = int | Sequence[int]
PerDay = int | Sequence[int]


def _per_shift(value: PerShift, los: int, shifts: int) -> list[int]:
    return [value] * (los * shifts) if isinstance(value, int) else list(value)


def _per_day(value: PerDay, days: int) -> list[int]:
    return [value] * days if isinstance(value, int) else list(value)


class InstanceBuilder:
    """Fluent builder of a competition-format instance dict; every method returns `self`."""

    def __init__(
        self,
        days: int = 3,
        *,
        skill_levels: int = 3,
        age_groups: Sequence[str] = AGES,
        shift_types: Sequence[str] = SHIFTS,
        weights: dict[str, int] | None = None,
    ) -> None:
        self.days = days
        self.shift_types = tuple(shift_types)
        self._data: dict[str, Any] = {
            "days": days,
            "skill_levels": skill_levels,
            "shift_types": list(shift_types),
            "age_groups": list(age_groups),
            "weights": dict(WEIGHTS if weights is None else weights),
            "occupants": [],
            "patients": [],
            "surgeons": [],
            "operating_theaters": [],
            "rooms": [],
            "nurses": [],
        }

    @classmethod
    def basic(cls, days: int = 3, **kwargs: Any) -> InstanceBuilder:
        """Rooms r0, r1 (2 beds), theatres t0, t1, surgeon s0, nurse n0 on every shift."""
        return (
            cls(days, **kwargs)
            .room("r0")
            .room("r1")
            .theater("t0")
            .theater("t1")
            .surgeon("s0")
            .nurse("n0")
        )

    def room(self, id: str, capacity: int = 2) -> InstanceBuilder:
        self._data["rooms"].append({"id": id, "capacity": capacity})
        return self

    def theater(self, id: str, availability: PerDay = 600) -> InstanceBuilder:
        self._data["operating_theaters"].append(
            {"id": id, "availability": _per_day(availability, self.days)}
        )
        return self

    def surgeon(self, id: str, max_time: PerDay = 600) -> InstanceBuilder:
        self._data["surgeons"].append({"id": id, "max_surgery_time": _per_day(max_time, self.days)})
        return self

    def nurse(
        self,
        id: str,
        *,
        skill: int = 2,
        max_load: int = 100,
        shifts: Iterable[tuple[int, str]] | None = None,
    ) -> InstanceBuilder:
        """A nurse working `shifts` ((day, shift name) pairs; default: every shift)."""
        worked = (
            [(d, k) for d in range(self.days) for k in self.shift_types]
            if shifts is None
            else list(shifts)
        )
        self._data["nurses"].append(
            {
                "id": id,
                "skill_level": skill,
                "working_shifts": [{"day": d, "shift": k, "max_load": max_load} for d, k in worked],
            }
        )
        return self

    def occupant(
        self,
        id: str,
        room: str,
        *,
        los: int = 1,
        gender: str = "A",
        age: str = "adult",
        workload: PerShift = 1,
        skill: PerShift = 0,
    ) -> InstanceBuilder:
        """An occupant in `room` from day 0; `workload`/`skill`: constant or full vector."""
        s = len(self.shift_types)
        self._data["occupants"].append(
            {
                "id": id,
                "gender": gender,
                "age_group": age,
                "length_of_stay": los,
                "workload_produced": _per_shift(workload, los, s),
                "skill_level_required": _per_shift(skill, los, s),
                "room_id": room,
            }
        )
        return self

    def patient(
        self,
        id: str,
        *,
        mandatory: bool = True,
        los: int = 1,
        release: int = 0,
        due: int | None = None,
        duration: int = 60,
        surgeon: str | None = None,
        gender: str = "A",
        age: str = "adult",
        incompatible: Sequence[str] = (),
        workload: PerShift = 1,
        skill: PerShift = 0,
    ) -> InstanceBuilder:
        """A patient; mandatory ones are due on the last day unless `due` says otherwise, and
        `surgeon` defaults to the first surgeon declared."""
        s = len(self.shift_types)
        entry: dict[str, Any] = {
            "id": id,
            "mandatory": mandatory,
            "gender": gender,
            "age_group": age,
            "length_of_stay": los,
            "surgery_release_day": release,
        }
        if mandatory:
            entry["surgery_due_day"] = self.days - 1 if due is None else due
        entry |= {
            "surgery_duration": duration,
            "surgeon_id": surgeon if surgeon is not None else self._data["surgeons"][0]["id"],
            "incompatible_room_ids": list(incompatible),
            "workload_produced": _per_shift(workload, los, s),
            "skill_level_required": _per_shift(skill, los, s),
        }
        self._data["patients"].append(entry)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the instance JSON document."""
        return copy.deepcopy(self._data)

    def build(self) -> Instance:
        """The loaded (and checked) `Instance`."""
        return load_instance(self.to_dict())


class SolutionBuilder:
    """Fluent builder of a competition-format solution dict; every method returns `self`."""

    def __init__(self) -> None:
        self._patients: list[dict[str, Any]] = []
        self._nurses: dict[str, dict[tuple[int, str], list[str]]] = {}

    def admit(
        self, patient: str, day: int, room: str = "r0", theater: str = "t0"
    ) -> SolutionBuilder:
        self._patients.append(
            {"id": patient, "admission_day": day, "room": room, "operating_theater": theater}
        )
        return self

    def postpone(self, patient: str) -> SolutionBuilder:
        """List the patient as not admitted (``"admission_day": "none"``)."""
        self._patients.append({"id": patient, "admission_day": "none"})
        return self

    def cover(self, nurse: str, day: int, shift: str, *rooms: str) -> SolutionBuilder:
        """Nurse covers `rooms` in (day, shift); repeated calls add rooms to the same entry."""
        self._nurses.setdefault(nurse, {}).setdefault((day, shift), []).extend(rooms)
        return self

    def cover_all(
        self,
        nurse: str,
        instance: InstanceBuilder | Instance,
        rooms: Sequence[str] | None = None,
        days: Iterable[int] | None = None,
    ) -> SolutionBuilder:
        """Nurse covers `rooms` (default: all) in every shift she works (optionally only on
        `days`)."""
        inst = instance.build() if isinstance(instance, InstanceBuilder) else instance
        room_ids = [r.id for r in inst.rooms] if rooms is None else list(rooms)
        only = None if days is None else set(days)
        spec = inst.nurses[inst.nurse_index[nurse]]
        for ws in spec.working_shifts:
            if only is None or ws.day in only:
                self.cover(nurse, ws.day, ws.shift, *room_ids)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A fresh solution JSON document."""
        return {
            "patients": copy.deepcopy(self._patients),
            "nurses": [
                {
                    "id": nurse,
                    "assignments": [
                        {"day": d, "shift": k, "rooms": list(rooms)}
                        for (d, k), rooms in shifts.items()
                    ],
                }
                for nurse, shifts in self._nurses.items()
            ],
        }

    def build(self, instance: InstanceBuilder | Instance) -> Solution:
        """The loaded (and checked) `Solution` for `instance`."""
        inst = instance.build() if isinstance(instance, InstanceBuilder) else instance
        return load_solution(self.to_dict(), inst)


def evaluate(instance: InstanceBuilder, solution: SolutionBuilder) -> Report:
    """Load both documents and score them with the validator."""
    inst = instance.build()
    return validate(inst, solution.build(inst))
