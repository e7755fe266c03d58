"""IHTC-2024 integrated healthcare timetabling: typed models, numpy views and the validator.

`load_instance` / `load_solution` read and check the competition JSON, `validate` scores a
solution exactly as the official validator does, and `Instance.to_arrays` gives solvers an
index-based view. The validator never imports a solver, so it can judge any of them.
"""

from carepool.planning.ihtp.arrays import (
    IhtpArrays,
    SolutionArrays,
    build_arrays,
    solution_from_arrays,
    solution_to_arrays,
)
from carepool.planning.ihtp.errors import IhtpFormatError
from carepool.planning.ihtp.models import (
    Instance,
    Nurse,
    NurseAssignment,
    NurseSchedule,
    Occupant,
    OperatingTheater,
    Patient,
    PatientAssignment,
    Room,
    Solution,
    Surgeon,
    Weights,
    WorkingShift,
    check_solution,
    load_instance,
    load_solution,
)
from carepool.planning.ihtp.validator import (
    HARD_CONSTRAINTS,
    SOFT_COMPONENTS,
    Report,
    SoftComponent,
    validate,
)

__all__ = [
    "HARD_CONSTRAINTS",
    "SOFT_COMPONENTS",
    "IhtpArrays",
    "IhtpFormatError",
    "Instance",
    "Nurse",
    "NurseAssignment",
    "NurseSchedule",
    "Occupant",
    "OperatingTheater",
    "Patient",
    "PatientAssignment",
    "Report",
    "Room",
    "SoftComponent",
    "Solution",
    "SolutionArrays",
    "Surgeon",
    "Weights",
    "WorkingShift",
    "build_arrays",
    "check_solution",
    "load_instance",
    "load_solution",
    "solution_from_arrays",
    "solution_to_arrays",
    "validate",
]
