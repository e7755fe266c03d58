"""Anytime solver for the IHTC-2024 Integrated Healthcare Timetabling Problem.

Why this module exists: it turns an instance (and optionally an existing plan and pinned
decisions from live hospital data) into the best admission / room / theatre / nurse plan found
within a time or work budget. The search itself runs in compiled kernels (`solver_kernels`);
this module builds the start solution, runs a portfolio of annealing threads and returns the
best feasible plan in the competition solution format.

Search: a CP-SAT admission plan (`solver_cpsat`: which patients on which day, then rooms for
them), completed by the greedy construction (mandatory patients at their cheapest slot, optional
ones when they pay), then rounds of simulated annealing with hard constraints as weighted
penalties. Round ``k`` runs ``round_iters * growth**k`` moves per thread, cooling geometrically;
each round restarts every thread from the shared best. Once the budget left cannot hold the rest
of the current round and the whole next one, that round becomes the last: it stretches or
shrinks to end with the budget and cools from its current temperature to the final one, so a run
never stops in the middle of a hot round.

Reproducibility: threads synchronise at fixed iteration epochs and draw from per-thread seeded
generators; the CP-SAT planner runs on a deterministic-time budget. With ``max_iterations`` the
last round is fitted by move counts, so a run is exactly reproducible for a given seed and thread
count. With only a time limit the last round is fitted by the measured move rate, so the result
depends on machine speed and load (as any time-limited anytime search does).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carepool.planning.ihtp import solver_kernels as K
from carepool.planning.ihtp.solver_cpsat import plan_admissions, plan_rooms
from carepool.planning.ihtp.solver_data import (
    HARD_NAMES,
    SOFT_NAMES,
    SOFT_WEIGHT_KEYS,
    IhtpData,
    IhtpIndex,
    build_data,
    instance_to_dict,
)
from carepool.planning.ihtp.solver_eval import Evaluation, evaluate

__all__ = ["ProgressPoint", "SolveResult", "SolverParams", "kernel_evaluation", "solve"]

# Hard-violation weights (per unit: per patient, per room-day, per minute of overtime).
HARD_WEIGHTS = np.array([2000, 5000, 40, 40, 5000, 5000, 2000, 5000, 5000], dtype=np.int64)

# Move mix (relative weights), by move type in solver_kernels order.
MOVE_WEIGHTS = {
    K.M_ROOM: 10.0,
    K.M_DAY: 8.0,
    K.M_DAYROOM: 6.0,
    K.M_THEATRE: 3.0,
    K.M_SWAPROOM: 6.0,
    K.M_INSERT: 4.0,
    K.M_REMOVE: 2.0,
    K.M_REPLACE: 3.0,
    K.M_NURSE: 25.0,
    K.M_NURSE_SWAP: 15.0,
    K.M_NURSE_BLOCK: 15.0,
    K.M_SWAPDAY: 3.0,
    K.M_REINSERT: 0.0,
}


@dataclass(frozen=True)
class SolverParams:
    """Tuning knobs of the annealing schedule (defaults are the benchmarked ones)."""

    epoch_iters: int = 50_000
    round_iters: int = 3_000_000
    growth: float = 1.5
    max_round_iters: int = 200_000_000
    t_first: float = 30.0
    t_restart: float = 20.0
    t_end: float = 0.6
    adapt: float = 1.2
    relax: float = 0.98
    weight_floor: float = 1.0
    cpsat: bool = True  # plan admission days with CP-SAT before the greedy (not on warm starts)
    cpsat_det_time: float = 4.0  # CP-SAT deterministic-time budget (per model)
    cpsat_share: float = 0.15  # ... and wall-clock cap, as a share of the time limit
    move_weights: Mapping[int, float] = field(default_factory=lambda: dict(MOVE_WEIGHTS))


@dataclass(frozen=True)
class ProgressPoint:
    """Best feasible cost (None before the first feasible one) after `iterations` moves."""

    seconds: float
    iterations: int
    cost: int | None


@dataclass
class SolveResult:
    """Outcome of `solve`.

    `solution` is the best feasible plan (competition format) or, when none was found, the
    least-violating final state with `feasible` False. `cost`/`violations`/`soft`/`hard` come
    from the plain full evaluation of `solution` (not from the incremental search state).
    """

    solution: dict[str, Any]
    cost: int
    violations: int
    feasible: bool
    soft: dict[str, int]
    hard: dict[str, int]
    seconds: float
    compile_seconds: float
    iterations: int
    trace: list[ProgressPoint]
    threads: int
    seed: int
    move_stats: dict[str, tuple[int, int]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Conversions between solution dicts and arrays.


def _solution_into(
    data: IhtpData,
    index: IhtpIndex,
    sol: Mapping[str, Any],
    adm: np.ndarray,
    room: np.ndarray,
    th: np.ndarray,
    nurse_of: np.ndarray,
) -> None:
    """Write a solution dict's decisions into decision arrays (unknown ids raise KeyError)."""
    pix = {pid: i for i, pid in enumerate(index.patient_ids)}
    rix = {rid: i for i, rid in enumerate(index.room_ids)}
    tix = {tid: i for i, tid in enumerate(index.theatre_ids)}
    nix = {nid: i for i, nid in enumerate(index.nurse_ids)}
    six = {s: i for i, s in enumerate(index.shift_types)}
    for e in sol.get("patients", []) or []:
        p = pix[e["id"]]
        ad = e.get("admission_day", "none")
        if ad == "none" or ad is None:
            continue
        adm[p] = int(ad)
        room[p] = rix[e["room"]] if e.get("room") in rix else -1
        th[p] = tix[e["operating_theater"]] if e.get("operating_theater") in tix else -1
    for e in sol.get("nurses", []) or []:
        n = nix[e["id"]]
        for a in e.get("assignments", []) or []:
            g = int(a["day"]) * 3 + six[a["shift"]]
            if not 0 <= g < 3 * data.n_days or data.nurse_max[n, g] < 0:
                continue  # outside the roster: dropped, the nurse fill repairs it
            for rid in a.get("rooms", []) or []:
                nurse_of[rix[rid], g] = n


def _arrays_to_solution(
    data: IhtpData,
    index: IhtpIndex,
    adm: np.ndarray,
    room: np.ndarray,
    th: np.ndarray,
    nurse_of: np.ndarray,
) -> dict[str, Any]:
    D = data.n_days
    patients: list[dict[str, Any]] = []
    occupied = np.zeros((data.n_rooms, D), dtype=bool)
    for o in range(data.n_persons - data.n_patients):
        occupied[data.occ_room[o], 0 : min(int(data.los[data.n_patients + o]), D)] = True
    for p, pid in enumerate(index.patient_ids):
        if adm[p] < 0:
            patients.append({"id": pid, "admission_day": "none"})
            continue
        a = int(adm[p])
        occupied[room[p], a : min(a + int(data.los[p]), D)] = True
        patients.append(
            {
                "id": pid,
                "admission_day": a,
                "room": index.room_ids[room[p]],
                "operating_theater": index.theatre_ids[th[p]],
            }
        )
    per_nurse: dict[int, dict[int, list[str]]] = {}
    for r in range(data.n_rooms):
        for g in range(3 * D):
            n = int(nurse_of[r, g])
            if n >= 0 and occupied[r, g // 3]:
                per_nurse.setdefault(n, {}).setdefault(g, []).append(index.room_ids[r])
    nurses = []
    for n, nid in enumerate(index.nurse_ids):
        shifts = per_nurse.get(n, {})
        nurses.append(
            {
                "id": nid,
                "assignments": [
                    {"day": g // 3, "shift": index.shift_types[g % 3], "rooms": shifts[g]}
                    for g in sorted(shifts)
                ],
            }
        )
    return {"patients": patients, "nurses": nurses}


def _apply_fixed(data: IhtpData, adm: np.ndarray, room: np.ndarray, th: np.ndarray) -> None:
    """Force pinned decisions onto a start solution (unplaceable ones are left to construction)."""
    for p in range(data.n_patients):
        fd = int(data.fix_day[p])
        if fd == -2 or (fd >= 0 and adm[p] >= 0 and adm[p] != fd):
            adm[p] = -1
        if fd >= 0 and adm[p] < 0 and data.fix_room[p] >= 0 and data.fix_th[p] >= 0:
            adm[p] = fd
        if adm[p] >= 0:
            if data.fix_room[p] >= 0:
                room[p] = data.fix_room[p]
            if data.fix_th[p] >= 0:
                th[p] = data.fix_th[p]
            if room[p] < 0 or th[p] < 0:
                adm[p] = -1


def _mandatory_order(data: IhtpData, rng: np.random.Generator) -> np.ndarray:
    P = data.n_patients
    if P == 0:
        return np.zeros(1, np.int64)
    width = data.due[:P] - data.release[:P]
    keys = np.lexsort((rng.random(P), -data.duration[:P], -data.los[:P], data.due[:P], width))
    return keys.astype(np.int64)


def _adapt_weights(lay: K.Layout, S: np.ndarray, hw: np.ndarray, prm: SolverParams) -> None:
    """Strategic oscillation: raise the weight of every hard constraint still violated at the end
    of an epoch, lower all weights (down to a floor) while the state is feasible, so the search
    may cross infeasible ground but never settles there."""
    hard = K.components(lay, S)[1]
    if hard.any():
        grow = (hw * prm.adapt).astype(np.int64) + 1
        np.copyto(hw, np.minimum(np.where(hard > 0, grow, hw), HARD_WEIGHTS * 1000))
    else:
        floor = np.maximum(1, (HARD_WEIGHTS * prm.weight_floor).astype(np.int64))
        np.copyto(hw, np.maximum(floor, (hw * prm.relax).astype(np.int64)))


def _move_cdf(weights: Mapping[int, float]) -> np.ndarray:
    w = np.array([float(weights.get(m, 0.0)) for m in range(K.N_MOVES)], dtype=np.float64)
    c = np.cumsum(w / w.sum())
    c[-1] = 1.0
    return c


_WARM = False


def toy_instance() -> dict[str, Any]:
    """A two-day, one-room instance (used to compile the kernels; handy in tests)."""
    shifts = ["early", "late", "night"]
    return {
        "days": 2,
        "skill_levels": 2,
        "shift_types": shifts,
        "age_groups": ["young", "old"],
        "weights": dict(zip(SOFT_WEIGHT_KEYS, [1, 1, 1, 1, 1, 1, 1, 10], strict=True)),
        "occupants": [
            {
                "id": "a0",
                "gender": "A",
                "age_group": "old",
                "length_of_stay": 1,
                "workload_produced": [1, 1, 1],
                "skill_level_required": [0, 1, 0],
                "room_id": "r0",
            }
        ],
        "patients": [
            {
                "id": "p0",
                "mandatory": True,
                "gender": "A",
                "age_group": "young",
                "length_of_stay": 2,
                "surgery_release_day": 0,
                "surgery_due_day": 1,
                "surgery_duration": 60,
                "surgeon_id": "s0",
                "incompatible_room_ids": [],
                "workload_produced": [1, 2, 1, 1, 1, 1],
                "skill_level_required": [1, 0, 0, 1, 0, 0],
            }
        ],
        "surgeons": [{"id": "s0", "max_surgery_time": [120, 120]}],
        "operating_theaters": [{"id": "t0", "availability": [240, 240]}],
        "rooms": [{"id": "r0", "capacity": 2}],
        "nurses": [
            {
                "id": "n0",
                "skill_level": 1,
                "working_shifts": [
                    {"day": d, "shift": s, "max_load": 5} for d in range(2) for s in shifts
                ],
            }
        ],
    }


def warmup() -> None:
    """Compile (or load from numba's cache) every kernel once per process."""
    global _WARM
    if _WARM:
        return
    data, _ = build_data(toy_instance())
    lay, X = K.pack(data)
    S = K.new_state(lay)
    best = _new_best(lay)
    rs = K.new_rng(1)
    hw = HARD_WEIGHTS.copy()
    K.rebuild(lay, X, S, _empty_decisions(lay))
    K.greedy_nurses(lay, X, S, rs, False)
    none = np.full(1, -1, np.int64)
    K.construct(lay, X, S, np.zeros(1, np.int64), none, none, hw, rs)
    K.objective(lay, X, S, hw)
    stats = np.zeros((K.N_MOVES, 2), np.int64)
    K.anneal(lay, X, S, best, rs, 100, 1.0, 0.5, hw, _move_cdf(MOVE_WEIGHTS), stats)
    _WARM = True


def _new_best(lay: K.Layout) -> np.ndarray:
    b = np.zeros(lay.n_dec + 1, np.int64)
    b[lay.n_dec] = K.BIG
    return b


def _empty_decisions(lay: K.Layout) -> np.ndarray:
    dec = np.full(lay.n_dec, -1, np.int64)
    return dec


# --------------------------------------------------------------------------------------------
# Public entry point.


def solve(
    instance: Any,
    *,
    time_limit: float,
    seed: int = 0,
    threads: int = 1,
    initial: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
    on_progress: Callable[[ProgressPoint], None] | None = None,
    max_iterations: int | None = None,
    params: SolverParams | None = None,
) -> SolveResult:
    """Search for the cheapest feasible plan of `instance` within `time_limit` seconds.

    `instance`: competition dict, JSON text, path or pydantic model. `initial`: a solution dict
    to start from (warm start; entries outside a nurse's roster are dropped and uncovered
    room-shifts filled). `fixed`: pinned decisions in solution format (see
    `solver_data.build_data`): a given admission day, room or theatre of a patient is never
    changed, ``"admission_day": "none"`` keeps a patient out, and listed nurse assignments are
    kept. `max_iterations` bounds the total number of moves (over all threads); with it the
    result is identical for the same seed and thread count, whatever the machine load.
    `on_progress` is called after every epoch. Parsing, numba compilation (or cache loading),
    the CP-SAT plan and construction count against `time_limit`; the search stops at the first
    epoch boundary after the limit (epochs are short: tens of milliseconds).
    """
    t0 = time.perf_counter()
    prm = params or SolverParams()
    threads = max(1, int(threads))
    inst = instance_to_dict(instance)
    data, index = build_data(inst, fixed)
    deadline = t0 + float(time_limit)

    tc = time.perf_counter()
    warmup()  # numba compiles (first run on a machine) or loads its on-disk cache here
    compile_seconds = time.perf_counter() - tc

    lay, X = K.pack(data)
    hw = HARD_WEIGHTS.copy()
    mcum = _move_cdf(prm.move_weights)
    states = [K.new_state(lay) for _ in range(threads)]
    bests = [_new_best(lay) for _ in range(threads)]
    rngs = [K.new_rng(seed * 7919 + 104729 * i + 1) for i in range(threads)]
    stats = [np.zeros((K.N_MOVES, 2), np.int64) for _ in range(threads)]
    hws = [hw.copy() for _ in range(threads)]

    # Start solution: warm start and pinned decisions, then greedy for whatever is missing.
    S0 = states[0]
    dec = _empty_decisions(lay)
    adm, room, th, nurse_of = K.decisions(lay, dec)
    if initial is not None:
        _solution_into(data, index, initial, adm, room, th, nurse_of)
    _apply_fixed(data, adm, room, th)
    nurse_of[:, :] = np.where(data.fix_nurse >= 0, data.fix_nurse, nurse_of)
    K.rebuild(lay, X, S0, dec)
    K.greedy_nurses(lay, X, S0, rngs[0], True)
    order = _mandatory_order(data, np.random.default_rng(seed))
    target = np.full(max(data.n_patients, 1), -1, np.int64)
    troom = target.copy()
    if prm.cpsat and initial is None and data.n_patients > 0:
        # (a greedy start as hint was tried: it traps CP-SAT's search near the greedy plan)
        plan = plan_admissions(
            data,
            seed=seed,
            det_time=prm.cpsat_det_time,
            wall_time=min(deadline - time.perf_counter(), prm.cpsat_share * float(time_limit)),
        )
        if plan is not None:
            target[: data.n_patients] = plan.day
            rooms = plan_rooms(
                data,
                plan.day,
                seed=seed,
                det_time=prm.cpsat_det_time / 2,
                wall_time=min(deadline - time.perf_counter(), prm.cpsat_share * float(time_limit)),
            )
            if rooms is not None:
                troom[: data.n_patients] = rooms
    K.construct(lay, X, S0, order, target, troom, hw, rngs[0])
    K.greedy_nurses(lay, X, S0, rngs[0], initial is not None)
    for i in range(1, threads):
        K.rebuild(lay, X, states[i], S0)

    trace: list[ProgressPoint] = []
    g_best: int | None = None
    g_thread = -1

    def refresh_best() -> None:
        nonlocal g_best, g_thread
        for i, b in enumerate(bests):
            c = int(b[lay.n_dec])
            if c != K.BIG and (g_best is None or c < g_best):
                g_best, g_thread = c, i

    def report(iters: int) -> None:
        pt = ProgressPoint(time.perf_counter() - t0, iters, g_best)
        if not trace or trace[-1].cost != pt.cost:
            trace.append(pt)
        if on_progress is not None:
            on_progress(pt)

    for i in range(threads):
        K.anneal(lay, X, states[i], bests[i], rngs[i], 0, 1.0, 1.0, hw, mcum, stats[i])
    refresh_best()
    report(0)

    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    total = 0
    rnd = 0
    stop = time.perf_counter() >= deadline
    try:
        search_t0 = time.perf_counter()
        while not stop:
            length = int(min(prm.round_iters * prm.growth**rnd, prm.max_round_iters))
            following = int(min(length * prm.growth, prm.max_round_iters))
            t_hi = prm.t_first if rnd == 0 else prm.t_restart
            if rnd > 0 and g_thread >= 0:
                for i in range(threads):
                    K.rebuild(lay, X, states[i], bests[g_thread])
            done = 0
            # The last round: once the budget left cannot hold the rest of this round and the
            # whole next one, this round stretches (or shrinks) to end exactly with the budget,
            # cooling from its current temperature to t_end, so no run ends in a hot, cut round.
            last = False
            t_from = t_hi
            f0_time = 0.0
            f0_iter = 0
            while not stop:
                now = time.perf_counter()
                left_iters = None if max_iterations is None else (max_iterations - total) // threads
                if not last:
                    if left_iters is not None:
                        budget_fits = left_iters >= (length - done) + following
                    elif total > 0:
                        rate = total / threads / max(now - search_t0, 1e-6)
                        budget_fits = rate * (deadline - now) >= (length - done) + following
                    else:
                        budget_fits = True
                    if not budget_fits:
                        last = True
                        t_from = t_hi * (prm.t_end / t_hi) ** (done / length)
                        f0_time = now
                        f0_iter = done
                        if left_iters is not None:
                            length = done + left_iters
                    elif done >= length:
                        break
                if last and left_iters is None and now >= deadline:
                    break
                n = prm.epoch_iters
                if not last or left_iters is not None:
                    n = min(n, length - done)
                if left_iters is not None:
                    n = min(n, left_iters)
                if n <= 0:
                    stop = True
                    break
                if not last:
                    fa = done / length
                    fb = (done + n) / length
                    ta = t_hi * (prm.t_end / t_hi) ** fa
                    tb = t_hi * (prm.t_end / t_hi) ** fb
                else:
                    if left_iters is not None:
                        span = max(length - f0_iter, 1)
                        fa = (done - f0_iter) / span
                        fb = (done + n - f0_iter) / span
                    else:
                        rate = total / threads / max(now - search_t0, 1e-6)
                        span_t = max(deadline - f0_time, 1e-6)
                        fa = min(1.0, (now - f0_time) / span_t)
                        fb = min(1.0, fa + n / max(rate * span_t, 1.0))
                    ta = t_from * (prm.t_end / t_from) ** fa
                    tb = t_from * (prm.t_end / t_from) ** fb

                def run(i: int, n: int = n, ta: float = ta, tb: float = tb) -> None:
                    K.anneal(
                        lay, X, states[i], bests[i], rngs[i], n, ta, tb, hws[i], mcum, stats[i]
                    )

                if pool is None:
                    run(0)
                else:
                    list(pool.map(run, range(threads)))
                done += n
                total += n * threads
                for i in range(threads):
                    _adapt_weights(lay, states[i], hws[i], prm)
                refresh_best()
                report(total)
                if time.perf_counter() >= deadline:
                    stop = True
            rnd += 1
    except KeyboardInterrupt:
        pass  # anytime: an interrupted run still returns the best plan found so far
    finally:
        if pool is not None:
            pool.shutdown()

    if g_thread >= 0:
        src = bests[g_thread]
    else:  # no feasible state: return the least-penalised current state
        pens = [K.objective(lay, X, st, HARD_WEIGHTS)[1] for st in states]
        src = states[int(np.argmin(pens))]
    sol = _arrays_to_solution(data, index, *K.decisions(lay, src))
    ev: Evaluation = evaluate(inst, sol)
    if g_best is not None and (not ev.feasible or ev.cost != g_best):
        raise AssertionError(f"incremental cost {g_best} disagrees with full evaluation {ev}")
    return SolveResult(
        solution=sol,
        cost=ev.cost,
        violations=ev.violations,
        feasible=ev.feasible,
        soft=dict(ev.soft),
        hard=dict(ev.hard),
        seconds=time.perf_counter() - t0,
        compile_seconds=compile_seconds,
        iterations=total,
        trace=trace,
        threads=threads,
        seed=seed,
        move_stats=move_statistics(stats),
    )


def kernel_evaluation(
    instance: Any, solution: Mapping[str, Any]
) -> tuple[dict[str, int], dict[str, int]]:
    """Raw soft and hard counts of `solution` as the search kernels see it (loaded from scratch).

    For tests: they must equal the validator's counts. Nurse entries outside a nurse's roster are
    dropped (the official validator aborts on them).
    """
    warmup()
    data, index = build_data(instance_to_dict(instance))
    lay, X = K.pack(data)
    S = K.new_state(lay)
    dec = _empty_decisions(lay)
    _solution_into(data, index, solution, *K.decisions(lay, dec))
    if K.rebuild(lay, X, S, dec):
        raise ValueError("more persons in a room than the solver can store")
    soft, hard = K.components(lay, S)
    return (
        {n: int(v) for n, v in zip(SOFT_NAMES, soft, strict=True)},
        {n: int(v) for n, v in zip(HARD_NAMES, hard, strict=True)},
    )


def move_statistics(stats: list[np.ndarray]) -> dict[str, tuple[int, int]]:
    """Tried/accepted counts per move type (diagnostics)."""
    tot = np.sum(stats, axis=0)
    return {K.MOVE_NAMES[m]: (int(tot[m, 0]), int(tot[m, 1])) for m in range(K.N_MOVES)}
