"""CP-SAT admission planner: which patients to admit on which day (start solution of the search).

Why this module exists: on tight instances (beds and surgeon time nearly exhausted, many
mandatory patients) the annealing cannot repack admissions well enough: it leaves optional
patients out that fit, or delays patients more than needed. Choosing admission days is a
multi-dimensional packing problem over time, which a CP-SAT model solves well in a few seconds.

The model is a relaxation of the admission part of the problem: one boolean per (patient,
admissible day); surgeon time per day exactly; theatre time per day pooled over the theatres
that are opened (a theatre-day is either open with its full availability or closed); beds per
day pooled over all rooms, per gender minus the beds of rooms that occupants of the other gender
hold that day. Objective: unscheduled optional patients, admission delay and open theatres, with
the instance's weights. Rooms, theatres and nurses are then chosen by the greedy construction
and the annealing, which also repairs whatever the pooling let through (mixed genders in a room,
a surgery that does not fit one theatre).

Determinism: the search uses ``interleave_search`` and a deterministic-time budget, so for a
given seed and worker count the plan is the same on every machine (a wall-clock cap applies only
as a safety net).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from carepool.planning.ihtp.solver_data import IhtpData

__all__ = ["AdmissionPlan", "plan_admissions", "plan_rooms"]

# Soft weight indices (solver_data.SOFT_NAMES order).
_W_OPEN, _W_DELAY, _W_UNSCHED = 4, 6, 7


@dataclass(frozen=True)
class AdmissionPlan:
    """Admission day per patient (-1 = not admitted), the model's status and objective."""

    day: np.ndarray
    room: np.ndarray  # room per patient (-1 = not admitted or left to the greedy)
    status: str
    objective: float
    bound: float
    seconds: float


def _window(data: IhtpData, p: int) -> tuple[int, int]:
    fd = int(data.fix_day[p])
    if fd >= 0:
        return fd, fd
    return int(data.release[p]), min(int(data.due[p]), data.n_days - 1)


def plan_admissions(
    data: IhtpData,
    *,
    seed: int = 0,
    workers: int = 1,
    det_time: float = 10.0,
    wall_time: float = 30.0,
    hint: np.ndarray | None = None,
) -> AdmissionPlan | None:
    """Solve the admission relaxation; None when no plan was found (then use the greedy).

    `hint` (admission day per patient, -1 = out) seeds the search, e.g. with a warm start.
    """
    D = data.n_days
    P = data.n_patients
    T = data.n_theatres
    if P == 0 or wall_time <= 0:
        return None
    m = cp_model.CpModel()
    w = data.w_soft
    max_th = data.th_avail.max(axis=0) if T else np.zeros(D, np.int64)
    x: dict[tuple[int, int], cp_model.IntVar] = {}
    by_day: list[list[int]] = [[] for _ in range(D)]  # patients with a variable on day d
    unsched = []
    unsched_of: dict[int, cp_model.IntVar] = {}
    delay_terms = []
    for p in range(P):
        if int(data.fix_day[p]) == -2:
            continue
        lo, hi = _window(data, p)
        s = int(data.surgeon[p])
        dur = int(data.duration[p])
        vs = []
        for d in range(lo, hi + 1):
            # a surgery longer than its surgeon's day or than every theatre that day cannot be
            # placed without overtime
            if dur > data.surg_max[s, d] or dur > max_th[d]:
                continue
            v = m.new_bool_var(f"x{p}_{d}")
            x[p, d] = v
            by_day[d].append(p)
            vs.append(v)
            if d > data.release[p]:
                delay_terms.append((d - int(data.release[p])) * v)
        if data.mandatory[p] or data.fix_day[p] >= 0:
            if not vs:
                return None
            m.add_exactly_one(vs)
        elif vs:
            m.add_at_most_one(vs)
            u = m.new_bool_var(f"u{p}")
            m.add(sum(vs) + u == 1)
            unsched.append(u)
            unsched_of[p] = u

    # surgeon time per day
    for s in range(data.n_surgeons):
        for d in range(D):
            terms = [
                int(data.duration[p]) * x[p, d] for p in by_day[d] if int(data.surgeon[p]) == s
            ]
            if terms:
                m.add(sum(terms) <= int(data.surg_max[s, d]))

    # theatre time per day, pooled over the open theatres
    opens = []
    for d in range(D):
        if not by_day[d]:
            continue
        cap_terms = []
        for t in range(T):
            a = int(data.th_avail[t, d])
            if a <= 0:
                continue
            is_open = m.new_bool_var(f"o{t}_{d}")
            opens.append(is_open)
            cap_terms.append(a * is_open)
        m.add(sum(int(data.duration[p]) * x[p, d] for p in by_day[d]) <= sum(cap_terms))

    # beds per day, per gender (rooms held by occupants of the other gender are lost to it)
    n_occ = data.n_persons - P
    occ_cnt = np.zeros((data.n_rooms, D, 2), np.int64)
    for j in range(n_occ):
        q = P + j
        r = int(data.occ_room[j])
        occ_cnt[r, : min(int(data.los[q]), D), int(data.gender[q])] += 1
    total_cap = int(data.room_cap.sum())
    for d in range(D):
        present: list[list[cp_model.IntVar]] = [[], []]
        for p in range(P):
            L = int(data.los[p])
            g = int(data.gender[p])
            for a in range(max(0, d - L + 1), d + 1):
                xv = x.get((p, a))
                if xv is not None:
                    present[g].append(xv)
        occ_here = int(occ_cnt[:, d, :].sum())
        if present[0] or present[1]:
            m.add(sum(present[0]) + sum(present[1]) <= total_cap - occ_here)
        for g in (0, 1):
            if not present[g]:
                continue
            other = occ_cnt[:, d, 1 - g] > 0
            room_cap = int(data.room_cap[~other].sum())
            m.add(sum(present[g]) <= room_cap - int(occ_cnt[~other, d, g].sum()))

    m.minimize(
        int(w[_W_UNSCHED]) * sum(unsched)
        + int(w[_W_DELAY]) * sum(delay_terms)
        + int(w[_W_OPEN]) * sum(opens)
    )
    if hint is not None:
        for (p, d), v in x.items():
            m.add_hint(v, int(hint[p]) == d)
        for p, u in unsched_of.items():
            m.add_hint(u, not any(int(hint[p]) == d and (p, d) in x for d in range(D)))
        for is_open in opens:
            m.add_hint(is_open, True)

    solver = cp_model.CpSolver()
    prm = solver.parameters
    prm.num_workers = max(1, int(workers))
    prm.interleave_search = prm.num_workers > 1
    prm.max_deterministic_time = float(det_time)
    prm.max_time_in_seconds = float(wall_time)
    prm.random_seed = int(seed) % (2**31)
    status = solver.solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    day = np.full(P, -1, np.int64)
    for (p, d), v in x.items():
        if solver.boolean_value(v):
            day[p] = d
    return AdmissionPlan(
        day=day,
        room=np.full(P, -1, np.int64),
        status=solver.status_name(status),
        objective=float(solver.objective_value),
        bound=float(solver.best_objective_bound),
        seconds=float(solver.wall_time),
    )


def plan_rooms(
    data: IhtpData,
    day: np.ndarray,
    *,
    seed: int = 0,
    det_time: float = 2.0,
    wall_time: float = 10.0,
) -> np.ndarray | None:
    """Rooms for patients admitted on the given days: capacity, gender and compatibility hold
    exactly; an optional patient may be dropped (at its unscheduled cost), a mandatory one not.

    Returns the room per patient (-1 = not admitted), or None when no assignment was found.
    """
    D = data.n_days
    P = data.n_patients
    R = data.n_rooms
    if P == 0 or wall_time <= 0:
        return None
    m = cp_model.CpModel()
    y: dict[tuple[int, int], cp_model.IntVar] = {}
    per_rd: dict[tuple[int, int], list[tuple[int, cp_model.IntVar]]] = {}
    dropped = []
    for p in range(P):
        a = int(day[p])
        if a < 0:
            continue
        fr = int(data.fix_room[p])
        rooms = [fr] if fr >= 0 else [int(r) for r in data.comp_rooms[p, : data.comp_cnt[p]]]
        vs = []
        for r in rooms:
            v = m.new_bool_var(f"y{p}_{r}")
            y[p, r] = v
            vs.append(v)
            for d in range(a, min(a + int(data.los[p]), D)):
                per_rd.setdefault((r, d), []).append((p, v))
        if data.mandatory[p] or data.fix_day[p] >= 0:
            if not vs:
                return None
            m.add_exactly_one(vs)
        else:
            m.add_at_most_one(vs)
            u = m.new_bool_var(f"u{p}")
            m.add(sum(vs) + u == 1)
            dropped.append(u)
    occ = np.zeros((R, D, 2), np.int64)
    for o in range(data.n_persons - P):
        q = P + o
        occ[int(data.occ_room[o]), : min(int(data.los[q]), D), int(data.gender[q])] += 1
    for (r, d), lst in per_rd.items():
        free = int(data.room_cap[r]) - int(occ[r, d].sum())
        m.add(sum(v for _, v in lst) <= max(free, 0))
        genders = {int(data.gender[p]) for p, _ in lst}
        if len(genders) == 2 or (occ[r, d].sum() > 0):
            if occ[r, d, 0] > 0 and occ[r, d, 1] > 0:
                return None  # occupants already mix genders: nothing to plan around
            held = 0 if occ[r, d, 0] > 0 else 1 if occ[r, d, 1] > 0 else -1
            gv = m.new_bool_var(f"g{r}_{d}")  # true: gender 1 in this room-day
            if held >= 0:
                m.add(gv == held)
            for p, v in lst:
                if int(data.gender[p]) == 1:
                    m.add_implication(v, gv)
                else:
                    m.add_implication(v, ~gv)
    m.minimize(int(data.w_soft[_W_UNSCHED]) * sum(dropped))
    solver = cp_model.CpSolver()
    prm = solver.parameters
    prm.num_workers = 1
    prm.max_deterministic_time = float(det_time)
    prm.max_time_in_seconds = float(wall_time)
    prm.random_seed = int(seed) % (2**31)
    status = solver.solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    room = np.full(P, -1, np.int64)
    for (p, r), v in y.items():
        if solver.boolean_value(v):
            room[p] = r
    return room
