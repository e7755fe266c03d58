"""Typed, immutable models of the IHTC-2024 instance and solution JSON, and their loaders.

The competition files are the contract between solvers, the validator and the organisers'
tools, so the loaders reject anything the official validator would abort on (unknown ids,
a nurse in a shift she does not work, ...) plus the ambiguities it silently accepts (a patient
listed twice, two nurses on one room and shift), always naming the offending entry and field.
Field names are the JSON keys, spelling included (``nurse_eccessive_workload``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from carepool.planning.ihtp.errors import IhtpFormatError

if TYPE_CHECKING:
    from carepool.planning.ihtp.arrays import IhtpArrays

__all__ = [
    "Gender",
    "Instance",
    "Nurse",
    "NurseAssignment",
    "NurseSchedule",
    "Occupant",
    "OperatingTheater",
    "Patient",
    "PatientAssignment",
    "Room",
    "Solution",
    "Surgeon",
    "Weights",
    "WorkingShift",
    "check_solution",
    "load_instance",
    "load_solution",
]

Gender = Literal["A", "B"]
NonNegInt = Annotated[StrictInt, Field(ge=0)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
Id = Annotated[StrictStr, Field(min_length=1)]

JsonSource = str | os.PathLike[str] | Mapping[str, Any]


class _Frozen(BaseModel):
    # Unknown keys are ignored, as the official validator does (solutions carry a "costs" key).
    model_config = ConfigDict(frozen=True, extra="ignore")


def _entry(collection: str, index: int, ident: str) -> str:
    return f"{collection}[{index}] (id={ident})"


# --------------------------------------------------------------------------------------------
# Instance
# --------------------------------------------------------------------------------------------


class Weights(_Frozen):
    """Weights of the eight soft components, keyed as in the instance file."""

    room_mixed_age: NonNegInt
    room_nurse_skill: NonNegInt
    continuity_of_care: NonNegInt
    nurse_eccessive_workload: NonNegInt
    open_operating_theater: NonNegInt
    surgeon_transfer: NonNegInt
    patient_delay: NonNegInt
    unscheduled_optional: NonNegInt


class Room(_Frozen):
    """A ward room with a fixed number of beds."""

    id: Id
    capacity: NonNegInt


class OperatingTheater(_Frozen):
    """An operating theatre; `availability[d]` is minutes open on day d (0 = closed)."""

    id: Id
    availability: tuple[NonNegInt, ...]


class Surgeon(_Frozen):
    """A surgeon; `max_surgery_time[d]` is minutes they may operate on day d (0 = away)."""

    id: Id
    max_surgery_time: tuple[NonNegInt, ...]


class WorkingShift(_Frozen):
    """One rostered shift of a nurse, with the workload she can absorb in it."""

    day: NonNegInt
    shift: Id
    max_load: NonNegInt


class Nurse(_Frozen):
    """A nurse with a fixed roster; she may only be assigned in her `working_shifts`."""

    id: Id
    skill_level: NonNegInt
    working_shifts: tuple[WorkingShift, ...]


class Occupant(_Frozen):
    """A person already in a bed on day 0 (not a decision).

    Per-shift vectors are indexed by the absolute global shift ``day * S + k``.
    """

    id: Id
    gender: Gender
    age_group: Id
    length_of_stay: PositiveInt
    workload_produced: tuple[NonNegInt, ...]
    skill_level_required: tuple[NonNegInt, ...]
    room_id: Id


class Patient(_Frozen):
    """A patient to schedule: admission day (= surgery day), room and theatre are decisions.

    Per-shift vectors are indexed relative to admission: entry j is global shift ``a * S + j``.
    `surgery_due_day` is only meaningful (and required) for mandatory patients.
    """

    id: Id
    mandatory: StrictBool
    gender: Gender
    age_group: Id
    length_of_stay: PositiveInt
    surgery_release_day: NonNegInt
    surgery_due_day: NonNegInt | None = None
    surgery_duration: NonNegInt
    surgeon_id: Id
    incompatible_room_ids: tuple[Id, ...] = ()
    workload_produced: tuple[NonNegInt, ...]
    skill_level_required: tuple[NonNegInt, ...]

    @field_validator("incompatible_room_ids", mode="before")
    @classmethod
    def _null_means_none(cls, value: Any) -> Any:
        # The official validator treats `null` like an empty list.
        return () if value is None else value

    @model_validator(mode="after")
    def _due_day_for_mandatory(self) -> Patient:
        if self.mandatory and self.surgery_due_day is None:
            raise IhtpFormatError("surgery_due_day", "required for mandatory patients")
        return self

    def last_admission_day(self, days: int) -> int:
        """Latest admission day allowed by H6: the due day if mandatory, else the last day."""
        if self.mandatory:
            assert self.surgery_due_day is not None  # enforced by validation
            return self.surgery_due_day
        return days - 1


class Instance(_Frozen):
    """An IHTC-2024 instance, plus id → index maps for code that works on integer indices.

    The position of an entry in its list is its index everywhere (arrays, solver, validator).
    Global shift index: ``g = day * shifts_per_day + shift_types.index(name)``.
    """

    days: PositiveInt
    skill_levels: PositiveInt
    shift_types: tuple[Id, ...] = Field(min_length=1)
    age_groups: tuple[Id, ...] = Field(min_length=1)
    weights: Weights
    occupants: tuple[Occupant, ...]
    patients: tuple[Patient, ...]
    surgeons: tuple[Surgeon, ...]
    operating_theaters: tuple[OperatingTheater, ...]
    rooms: tuple[Room, ...]
    nurses: tuple[Nurse, ...]

    _room_index: dict[str, int] = PrivateAttr(default_factory=dict)
    _theater_index: dict[str, int] = PrivateAttr(default_factory=dict)
    _surgeon_index: dict[str, int] = PrivateAttr(default_factory=dict)
    _nurse_index: dict[str, int] = PrivateAttr(default_factory=dict)
    _patient_index: dict[str, int] = PrivateAttr(default_factory=dict)
    _occupant_index: dict[str, int] = PrivateAttr(default_factory=dict)
    _shift_type_index: dict[str, int] = PrivateAttr(default_factory=dict)
    _age_index: dict[str, int] = PrivateAttr(default_factory=dict)
    _max_load: dict[tuple[int, int], int] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        """Build the id → index maps once (first occurrence wins; duplicates are rejected)."""

        def index(ids: Iterator[str]) -> dict[str, int]:
            result: dict[str, int] = {}
            for i, ident in enumerate(ids):
                result.setdefault(ident, i)
            return result

        self._room_index = index(r.id for r in self.rooms)
        self._theater_index = index(t.id for t in self.operating_theaters)
        self._surgeon_index = index(s.id for s in self.surgeons)
        self._nurse_index = index(n.id for n in self.nurses)
        self._patient_index = index(p.id for p in self.patients)
        self._occupant_index = index(o.id for o in self.occupants)
        self._shift_type_index = index(iter(self.shift_types))
        self._age_index = index(iter(self.age_groups))
        max_load: dict[tuple[int, int], int] = {}
        for n, nurse in enumerate(self.nurses):
            for ws in nurse.working_shifts:
                k = self._shift_type_index.get(ws.shift)
                if k is not None:
                    max_load.setdefault((n, ws.day * len(self.shift_types) + k), ws.max_load)
        self._max_load = max_load

    @model_validator(mode="after")
    def _cross_references(self) -> Instance:
        _check_instance(self)
        return self

    # -- sizes -----------------------------------------------------------------------------

    @property
    def shifts_per_day(self) -> int:
        """S, the number of shift types per day (3 in every competition instance)."""
        return len(self.shift_types)

    @property
    def num_shifts(self) -> int:
        """Total number of global shifts, ``days * shifts_per_day``."""
        return self.days * len(self.shift_types)

    # -- id → index ------------------------------------------------------------------------

    @property
    def room_index(self) -> Mapping[str, int]:
        """Room id → position in `rooms`."""
        return self._room_index

    @property
    def theater_index(self) -> Mapping[str, int]:
        """Operating theatre id → position in `operating_theaters`."""
        return self._theater_index

    @property
    def surgeon_index(self) -> Mapping[str, int]:
        """Surgeon id → position in `surgeons`."""
        return self._surgeon_index

    @property
    def nurse_index(self) -> Mapping[str, int]:
        """Nurse id → position in `nurses`."""
        return self._nurse_index

    @property
    def patient_index(self) -> Mapping[str, int]:
        """Patient id → position in `patients`."""
        return self._patient_index

    @property
    def occupant_index(self) -> Mapping[str, int]:
        """Occupant id → position in `occupants`."""
        return self._occupant_index

    @property
    def shift_type_index(self) -> Mapping[str, int]:
        """Shift name → position k within a day."""
        return self._shift_type_index

    @property
    def age_index(self) -> Mapping[str, int]:
        """Age group name → rank (the order of `age_groups`, used by RoomAgeMix)."""
        return self._age_index

    def global_shift(self, day: int, shift: str) -> int:
        """Global shift index of (day, shift name); KeyError for an unknown shift name."""
        return day * len(self.shift_types) + self._shift_type_index[shift]

    def shift_label(self, g: int) -> str:
        """Human-readable ``day D shift NAME`` for a global shift index."""
        day, k = divmod(g, len(self.shift_types))
        return f"day {day} shift {self.shift_types[k]}"

    def nurse_max_load(self, nurse: int, g: int) -> int | None:
        """Max load of nurse index `nurse` in global shift `g`, or None if she does not work it."""
        return self._max_load.get((nurse, g))

    def to_arrays(self) -> IhtpArrays:
        """The numpy view of this instance for fast solvers (see `ihtp.arrays.IhtpArrays`)."""
        from carepool.planning.ihtp.arrays import build_arrays

        return build_arrays(self)


def _duplicates(collection: str, ids: list[str], *, entries: bool = True) -> None:
    seen: dict[str, int] = {}
    for i, ident in enumerate(ids):
        if ident in seen:
            where = f"{_entry(collection, i, ident)}.id" if entries else f"{collection}[{i}]"
            raise IhtpFormatError(
                where, f"duplicate id {ident!r} (first at {collection}[{seen[ident]}])"
            )
        seen[ident] = i


def _check_per_shift(
    where: str, person: Occupant | Patient, expected: int, skill_levels: int, s: int
) -> None:
    for field in ("workload_produced", "skill_level_required"):
        values: tuple[int, ...] = getattr(person, field)
        if len(values) != expected:
            raise IhtpFormatError(
                f"{where}.{field}",
                f"has {len(values)} entries, expected {expected} "
                f"({s} shifts x length_of_stay {person.length_of_stay})",
            )
    for j, level in enumerate(person.skill_level_required):
        if level >= skill_levels:
            raise IhtpFormatError(
                f"{where}.skill_level_required[{j}]",
                f"skill level {level} is not below skill_levels={skill_levels}",
            )


def _check_instance(inst: Instance) -> None:
    """Cross-reference checks that need the whole instance; raises IhtpFormatError."""
    d, s, levels = inst.days, inst.shifts_per_day, inst.skill_levels
    _duplicates("shift_types", list(inst.shift_types), entries=False)
    _duplicates("age_groups", list(inst.age_groups), entries=False)
    _duplicates("rooms", [e.id for e in inst.rooms])
    _duplicates("operating_theaters", [e.id for e in inst.operating_theaters])
    _duplicates("surgeons", [e.id for e in inst.surgeons])
    _duplicates("nurses", [e.id for e in inst.nurses])
    _duplicates("occupants", [e.id for e in inst.occupants])
    _duplicates("patients", [e.id for e in inst.patients])

    for t, theater in enumerate(inst.operating_theaters):
        if len(theater.availability) != d:
            raise IhtpFormatError(
                f"{_entry('operating_theaters', t, theater.id)}.availability",
                f"has {len(theater.availability)} entries, expected days={d}",
            )
    for u, surgeon in enumerate(inst.surgeons):
        if len(surgeon.max_surgery_time) != d:
            raise IhtpFormatError(
                f"{_entry('surgeons', u, surgeon.id)}.max_surgery_time",
                f"has {len(surgeon.max_surgery_time)} entries, expected days={d}",
            )
    for n, nurse in enumerate(inst.nurses):
        where = _entry("nurses", n, nurse.id)
        if nurse.skill_level >= levels:
            raise IhtpFormatError(
                f"{where}.skill_level",
                f"skill level {nurse.skill_level} is not below skill_levels={levels}",
            )
        seen: dict[tuple[int, str], int] = {}
        for i, ws in enumerate(nurse.working_shifts):
            if ws.shift not in inst.shift_type_index:
                raise IhtpFormatError(
                    f"{where}.working_shifts[{i}].shift", f"unknown shift type {ws.shift!r}"
                )
            if ws.day >= d:
                raise IhtpFormatError(
                    f"{where}.working_shifts[{i}].day",
                    f"day {ws.day} is outside the horizon 0..{d - 1}",
                )
            if (ws.day, ws.shift) in seen:
                raise IhtpFormatError(
                    f"{where}.working_shifts[{i}]",
                    f"day {ws.day} shift {ws.shift} is already listed at "
                    f"working_shifts[{seen[ws.day, ws.shift]}]",
                )
            seen[ws.day, ws.shift] = i
    for o, occ in enumerate(inst.occupants):
        where = _entry("occupants", o, occ.id)
        if occ.age_group not in inst.age_index:
            raise IhtpFormatError(f"{where}.age_group", f"unknown age group {occ.age_group!r}")
        if occ.room_id not in inst.room_index:
            raise IhtpFormatError(f"{where}.room_id", f"unknown room {occ.room_id!r}")
        _check_per_shift(where, occ, s * occ.length_of_stay, levels, s)
    for p, pat in enumerate(inst.patients):
        where = _entry("patients", p, pat.id)
        if pat.age_group not in inst.age_index:
            raise IhtpFormatError(f"{where}.age_group", f"unknown age group {pat.age_group!r}")
        if pat.surgeon_id not in inst.surgeon_index:
            raise IhtpFormatError(f"{where}.surgeon_id", f"unknown surgeon {pat.surgeon_id!r}")
        for i, room_id in enumerate(pat.incompatible_room_ids):
            if room_id not in inst.room_index:
                raise IhtpFormatError(
                    f"{where}.incompatible_room_ids[{i}]", f"unknown room {room_id!r}"
                )
        if pat.surgery_release_day >= d:
            raise IhtpFormatError(
                f"{where}.surgery_release_day",
                f"day {pat.surgery_release_day} is outside the horizon 0..{d - 1}",
            )
        due = pat.surgery_due_day
        if pat.mandatory and due is not None and not pat.surgery_release_day <= due < d:
            raise IhtpFormatError(
                f"{where}.surgery_due_day",
                f"day {due} must lie between surgery_release_day="
                f"{pat.surgery_release_day} and the last day {d - 1}",
            )
        _check_per_shift(where, pat, s * pat.length_of_stay, levels, s)


# --------------------------------------------------------------------------------------------
# Solution
# --------------------------------------------------------------------------------------------


class PatientAssignment(_Frozen):
    """A patient's decision: admitted on `admission_day` in `room` and `operating_theater`,
    or not admitted (`admission_day` is None, written ``"none"`` in JSON)."""

    id: Id
    admission_day: int | None
    room: Id | None = None
    operating_theater: Id | None = None

    @field_validator("admission_day", mode="before")
    @classmethod
    def _day_or_none(cls, value: Any) -> Any:
        if value is None or value == "none":
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'must be a day index or "none", got {value!r}')
        if value < 0:
            raise ValueError(f"must be a day index >= 0, got {value}")
        return value

    @model_validator(mode="after")
    def _admitted_needs_room_and_theater(self) -> PatientAssignment:
        if self.admission_day is not None:
            if self.room is None:
                raise IhtpFormatError("room", "required for an admitted patient")
            if self.operating_theater is None:
                raise IhtpFormatError("operating_theater", "required for an admitted patient")
        return self

    @property
    def admitted(self) -> bool:
        """True when the patient is admitted within this solution."""
        return self.admission_day is not None

    def to_json_dict(self) -> dict[str, Any]:
        """The competition JSON entry for this patient."""
        if self.admission_day is None:
            return {"id": self.id, "admission_day": "none"}
        return {
            "id": self.id,
            "admission_day": self.admission_day,
            "room": self.room,
            "operating_theater": self.operating_theater,
        }


class NurseAssignment(_Frozen):
    """The rooms a nurse covers in one of her working shifts."""

    day: NonNegInt
    shift: Id
    rooms: tuple[Id, ...]


class NurseSchedule(_Frozen):
    """All room assignments of one nurse over the horizon."""

    id: Id
    assignments: tuple[NurseAssignment, ...] = ()


class Solution(_Frozen):
    """An IHTC-2024 solution: patient decisions and nurse-to-room assignments.

    Built through `load_solution` (or `model_validate(..., context={"instance": inst})`) it is
    also checked against the instance; `check_solution` runs that check on any Solution.
    """

    patients: tuple[PatientAssignment, ...]
    nurses: tuple[NurseSchedule, ...]

    @model_validator(mode="after")
    def _against_instance(self, info: ValidationInfo) -> Solution:
        instance = (info.context or {}).get("instance")
        if isinstance(instance, Instance):
            check_solution(instance, self)
        return self

    def to_json_dict(self) -> dict[str, Any]:
        """The competition JSON document for this solution."""
        return {
            "patients": [p.to_json_dict() for p in self.patients],
            "nurses": [
                {
                    "id": n.id,
                    "assignments": [
                        {"day": a.day, "shift": a.shift, "rooms": list(a.rooms)}
                        for a in n.assignments
                    ],
                }
                for n in self.nurses
            ],
        }


def check_solution(instance: Instance, solution: Solution) -> None:
    """Raise IhtpFormatError unless every id in `solution` exists in `instance`, no patient or
    nurse is listed twice, every assignment is in a shift the nurse works, and no room is covered
    by two nurses (or twice) in the same shift."""
    listed: dict[str, int] = {}
    for i, pa in enumerate(solution.patients):
        where = _entry("patients", i, pa.id)
        if pa.id not in instance.patient_index:
            raise IhtpFormatError(f"{where}.id", f"unknown patient {pa.id!r}")
        if pa.id in listed:
            raise IhtpFormatError(
                f"{where}.id", f"patient {pa.id} is already listed at patients[{listed[pa.id]}]"
            )
        listed[pa.id] = i
        if pa.admission_day is None:
            continue
        if pa.room not in instance.room_index:
            raise IhtpFormatError(f"{where}.room", f"unknown room {pa.room!r}")
        if pa.operating_theater not in instance.theater_index:
            raise IhtpFormatError(
                f"{where}.operating_theater", f"unknown operating theater {pa.operating_theater!r}"
            )

    nurses_listed: dict[str, int] = {}
    covered: dict[tuple[str, int], str] = {}  # (room id, global shift) -> where it was covered
    for n, ns in enumerate(solution.nurses):
        where = _entry("nurses", n, ns.id)
        nurse = instance.nurse_index.get(ns.id)
        if nurse is None:
            raise IhtpFormatError(f"{where}.id", f"unknown nurse {ns.id!r}")
        if ns.id in nurses_listed:
            raise IhtpFormatError(
                f"{where}.id", f"nurse {ns.id} is already listed at nurses[{nurses_listed[ns.id]}]"
            )
        nurses_listed[ns.id] = n
        for i, asg in enumerate(ns.assignments):
            at = f"{where}.assignments[{i}]"
            if asg.shift not in instance.shift_type_index:
                raise IhtpFormatError(f"{at}.shift", f"unknown shift type {asg.shift!r}")
            if asg.day >= instance.days:
                raise IhtpFormatError(
                    f"{at}.day", f"day {asg.day} is outside the horizon 0..{instance.days - 1}"
                )
            g = instance.global_shift(asg.day, asg.shift)
            if instance.nurse_max_load(nurse, g) is None:
                raise IhtpFormatError(
                    at, f"nurse {ns.id} does not work day {asg.day} shift {asg.shift}"
                )
            for j, room_id in enumerate(asg.rooms):
                if room_id not in instance.room_index:
                    raise IhtpFormatError(f"{at}.rooms[{j}]", f"unknown room {room_id!r}")
                first = covered.get((room_id, g))
                if first is not None:
                    raise IhtpFormatError(
                        f"{at}.rooms[{j}]",
                        f"room {room_id} on day {asg.day} shift {asg.shift} is already "
                        f"covered at {first}",
                    )
                covered[room_id, g] = f"{where}.assignments[{i}].rooms[{j}]"


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


def _read(source: JsonSource) -> Any:
    if not isinstance(source, str | os.PathLike):
        return source  # already parsed; anything but an object is reported by validation
    text = Path(source).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise IhtpFormatError("", f"not valid JSON: {exc}") from exc


def _format_loc(loc: tuple[int | str, ...], raw: Any) -> str:
    """``('patients', 12, 'surgery_due_day')`` → ``patients[12] (id=p12).surgery_due_day``."""
    out = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            if isinstance(node, Mapping) and isinstance(node.get("id"), str):
                out += f" (id={node['id']})"
        else:
            out += f".{part}" if out else part
            node = node.get(part) if isinstance(node, Mapping) else None
    return out


def _join(base: str, rel: str) -> str:
    if not base or not rel:
        return base or rel
    return base + rel if rel.startswith("[") else f"{base}.{rel}"


def _problem(error: Any, raw: Any) -> tuple[str, str]:
    base = _format_loc(tuple(error["loc"]), raw)
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, IhtpFormatError):
        return _join(base, cause.path), cause.reason
    if isinstance(cause, BaseException):
        return base, str(cause)
    if error["type"] == "missing":
        return base, "required key is missing"
    got = repr(error.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    return base, f"{error['msg']} (got {got})"


def _to_format_error(exc: ValidationError, raw: Any) -> IhtpFormatError:
    problems = [_problem(e, raw) for e in exc.errors()]
    (path, reason), *more = problems
    return IhtpFormatError(path, reason, more=more)


def load_instance(source: JsonSource) -> Instance:
    """Read and check an instance (file path or already-parsed dict).

    Raises IhtpFormatError naming the entry and field for anything malformed; OSError when the
    file cannot be read.
    """
    raw = _read(source)
    try:
        return Instance.model_validate(raw)
    except ValidationError as exc:
        raise _to_format_error(exc, raw) from None


def load_solution(source: JsonSource, instance: Instance) -> Solution:
    """Read a solution (file path or dict) and check it against `instance` (see check_solution).

    Raises IhtpFormatError naming the entry and field for anything malformed; OSError when the
    file cannot be read.
    """
    raw = _read(source)
    try:
        return Solution.model_validate(raw, context={"instance": instance})
    except ValidationError as exc:
        raise _to_format_error(exc, raw) from None
