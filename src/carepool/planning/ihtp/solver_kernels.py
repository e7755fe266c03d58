"""Numba kernels of the IHTP solver: incremental state, moves, annealing and greedy construction.

Why this module exists: the local search makes millions of moves per second, which only works
with compiled code over flat arrays. Every kernel is ``njit(cache=True, nogil=True)`` so the
portfolio can run one search per Python thread in parallel and the compile cost is paid once
per machine (numba's on-disk cache).

The state keeps every cost and violation component up to date under four primitive operations
(`admit`, `unadmit`, `move_theatre` and `set_nurse`); a move applies primitives, reads the new
objective and, when rejected, applies the inverse primitives. Every room-shift always has a
nurse when any nurse works that shift, so coverage never breaks and patient moves are priced
with the nurses currently in place (skill, workload and continuity included).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from carepool.planning.ihtp.solver_data import IhtpData

# Soft components.
S_AGE, S_SKILL, S_CONT, S_LOAD, S_OPEN, S_TRANSFER, S_DELAY, S_UNSCHED = range(8)
# Hard components.
H_GENDER, H_COMPAT, H_SURGEON, H_THEATRE, H_MANDATORY, H_ADMDAY, H_CAPACITY, H_PRESENCE, H_UNCOV = (
    range(9)
)

# Move types.
M_ROOM = 0
M_DAY = 1
M_DAYROOM = 2
M_THEATRE = 3
M_SWAPROOM = 4
M_INSERT = 5
M_REMOVE = 6
M_REPLACE = 7
M_NURSE = 8
M_NURSE_SWAP = 9
M_NURSE_BLOCK = 10
M_SWAPDAY = 11
N_MOVES = 12

UNDO_SIZE = 256


class State(NamedTuple):
    """Mutable search state; every array is updated in place by the kernels."""

    adm: np.ndarray  # [Q] admission day (-1 = not admitted; occupants 0)
    room: np.ndarray  # [Q]
    th: np.ndarray  # [P]
    nurse_of: np.ndarray  # [R, G]
    cnt: np.ndarray  # [R, D]
    gcnt: np.ndarray  # [R, D, 2]
    agecnt: np.ndarray  # [R, D, A]
    plist: np.ndarray  # [R, D, K]
    wl: np.ndarray  # [R, G]
    nload: np.ndarray  # [N, G]
    contcnt: np.ndarray  # [Q, N]
    sload: np.ndarray  # [NS, D]
    tload: np.ndarray  # [T, D]
    tcnt: np.ndarray  # [T, D]
    stcnt: np.ndarray  # [NS, D, T]
    snth: np.ndarray  # [NS, D]
    soft: np.ndarray  # [8]
    hard: np.ndarray  # [9]
    order: np.ndarray  # [P] admitted patients first
    pos: np.ndarray  # [P]
    nadm: np.ndarray  # [1]
    undo: np.ndarray  # [UNDO_SIZE]


class Best(NamedTuple):
    """Best feasible solution found by one search thread."""

    adm: np.ndarray
    room: np.ndarray
    th: np.ndarray
    nurse_of: np.ndarray
    cost: np.ndarray  # [1] weighted soft cost, int64 max when none yet


def new_state(dat: IhtpData) -> State:
    """Allocate a zeroed state for `dat` (use `rebuild` to fill it)."""
    D, R, T, NS, N, A = (
        dat.n_days,
        dat.n_rooms,
        dat.n_theatres,
        max(dat.n_surgeons, 1),
        max(dat.n_nurses, 1),
        dat.n_ages,
    )
    P, Q = max(dat.n_patients, 1), max(dat.n_persons, 1)
    G = 3 * D
    i8 = np.int64
    return State(
        adm=np.full(Q, -1, i8),
        room=np.full(Q, -1, i8),
        th=np.full(P, -1, i8),
        nurse_of=np.full((R, G), -1, i8),
        cnt=np.zeros((R, D), i8),
        gcnt=np.zeros((R, D, 2), i8),
        agecnt=np.zeros((R, D, A), i8),
        plist=np.zeros((R, D, dat.cap_slots), i8),
        wl=np.zeros((R, G), i8),
        nload=np.zeros((N, G), i8),
        contcnt=np.zeros((Q, N), np.int32),
        sload=np.zeros((NS, D), i8),
        tload=np.zeros((max(T, 1), D), i8),
        tcnt=np.zeros((max(T, 1), D), i8),
        stcnt=np.zeros((NS, D, max(T, 1)), i8),
        snth=np.zeros((NS, D), i8),
        soft=np.zeros(8, i8),
        hard=np.zeros(9, i8),
        order=np.arange(P, dtype=i8),
        pos=np.arange(P, dtype=i8),
        nadm=np.zeros(1, i8),
        undo=np.zeros(UNDO_SIZE, i8),
    )


def new_best(dat: IhtpData) -> Best:
    """Allocate an empty best-solution record."""
    st = new_state(dat)
    return Best(
        adm=st.adm.copy(),
        room=st.room.copy(),
        th=st.th.copy(),
        nurse_of=st.nurse_of.copy(),
        cost=np.full(1, np.iinfo(np.int64).max, np.int64),
    )


# --------------------------------------------------------------------------------------------
# Random numbers (xorshift64*, explicit state so every thread is reproducible).


@njit(cache=True, nogil=True)
def _rnd_u64(rs: Any) -> Any:
    x = rs[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rs[0] = x
    return x * np.uint64(2685821657736338717)


@njit(cache=True, nogil=True)
def _rnd_int(rs: Any, n: int) -> int:
    return np.int64(_rnd_u64(rs) >> np.uint64(33)) % n


@njit(cache=True, nogil=True)
def _rnd_float(rs: Any) -> float:
    return np.float64(_rnd_u64(rs) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


def new_rng(seed: int) -> np.ndarray:
    """A seeded xorshift state (never zero)."""
    x = (int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    return np.array([x or 1], dtype=np.uint64)


# --------------------------------------------------------------------------------------------
# Primitive state updates.


@njit(cache=True, nogil=True)
def _age_span(agecnt: Any, r: int, d: int, A: int) -> int:
    lo = -1
    hi = -1
    for a in range(A):
        if agecnt[r, d, a] > 0:
            if lo < 0:
                lo = a
            hi = a
    if lo < 0:
        return 0
    return hi - lo


@njit(cache=True, nogil=True)
def _add_person(dat: Any, st: Any, q: int, r: int, a: int) -> bool:
    D = dat.n_days
    e = min(a + dat.los[q], D)
    for d in range(a, e):
        if st.cnt[r, d] >= dat.cap_slots:
            return False
    soft = st.soft
    hard = st.hard
    gq = dat.gender[q]
    aq = dat.age[q]
    A = dat.n_ages
    cap = dat.room_cap[r]
    for d in range(a, e):
        c = st.cnt[r, d]
        span0 = _age_span(st.agecnt, r, d, A)
        gm0 = min(st.gcnt[r, d, 0], st.gcnt[r, d, 1])
        st.plist[r, d, c] = q
        st.cnt[r, d] = c + 1
        st.gcnt[r, d, gq] += 1
        st.agecnt[r, d, aq] += 1
        soft[S_AGE] += _age_span(st.agecnt, r, d, A) - span0
        hard[H_GENDER] += min(st.gcnt[r, d, 0], st.gcnt[r, d, 1]) - gm0
        if c + 1 > cap:
            hard[H_CAPACITY] += 1
        for k in range(3):
            g = 3 * d + k
            j = g - 3 * a
            n = st.nurse_of[r, g]
            w = dat.req_wl[q, j]
            st.wl[r, g] += w
            if n >= 0:
                mx = dat.nurse_max[n, g]
                l0 = st.nload[n, g]
                soft[S_LOAD] += max(0, l0 + w - mx) - max(0, l0 - mx)
                st.nload[n, g] = l0 + w
                sk = dat.req_sk[q, j] - dat.nurse_skill[n]
                if sk > 0:
                    soft[S_SKILL] += sk
                cc = st.contcnt[q, n]
                if cc == 0:
                    soft[S_CONT] += 1
                st.contcnt[q, n] = cc + 1
            elif c == 0:
                hard[H_UNCOV] += 1
    return True


@njit(cache=True, nogil=True)
def _remove_person(dat: Any, st: Any, q: int, r: int, a: int) -> None:
    D = dat.n_days
    e = min(a + dat.los[q], D)
    soft = st.soft
    hard = st.hard
    gq = dat.gender[q]
    aq = dat.age[q]
    A = dat.n_ages
    cap = dat.room_cap[r]
    for d in range(a, e):
        c = st.cnt[r, d]
        span0 = _age_span(st.agecnt, r, d, A)
        gm0 = min(st.gcnt[r, d, 0], st.gcnt[r, d, 1])
        for i in range(c):
            if st.plist[r, d, i] == q:
                st.plist[r, d, i] = st.plist[r, d, c - 1]
                break
        st.cnt[r, d] = c - 1
        st.gcnt[r, d, gq] -= 1
        st.agecnt[r, d, aq] -= 1
        soft[S_AGE] += _age_span(st.agecnt, r, d, A) - span0
        hard[H_GENDER] += min(st.gcnt[r, d, 0], st.gcnt[r, d, 1]) - gm0
        if c > cap:
            hard[H_CAPACITY] -= 1
        for k in range(3):
            g = 3 * d + k
            j = g - 3 * a
            n = st.nurse_of[r, g]
            w = dat.req_wl[q, j]
            st.wl[r, g] -= w
            if n >= 0:
                mx = dat.nurse_max[n, g]
                l0 = st.nload[n, g]
                soft[S_LOAD] += max(0, l0 - w - mx) - max(0, l0 - mx)
                st.nload[n, g] = l0 - w
                sk = dat.req_sk[q, j] - dat.nurse_skill[n]
                if sk > 0:
                    soft[S_SKILL] -= sk
                cc = st.contcnt[q, n] - 1
                if cc == 0:
                    soft[S_CONT] -= 1
                st.contcnt[q, n] = cc
            elif c == 1:
                hard[H_UNCOV] -= 1


@njit(cache=True, nogil=True)
def _add_surgery(dat: Any, st: Any, p: int, d: int, t: int) -> None:
    s = dat.surgeon[p]
    dur = dat.duration[p]
    soft = st.soft
    hard = st.hard
    mx = dat.surg_max[s, d]
    l0 = st.sload[s, d]
    hard[H_SURGEON] += max(0, l0 + dur - mx) - max(0, l0 - mx)
    st.sload[s, d] = l0 + dur
    mx = dat.th_avail[t, d]
    l0 = st.tload[t, d]
    hard[H_THEATRE] += max(0, l0 + dur - mx) - max(0, l0 - mx)
    st.tload[t, d] = l0 + dur
    if st.tcnt[t, d] == 0:
        soft[S_OPEN] += 1
    st.tcnt[t, d] += 1
    if st.stcnt[s, d, t] == 0:
        st.snth[s, d] += 1
        if st.snth[s, d] >= 2:
            soft[S_TRANSFER] += 1
    st.stcnt[s, d, t] += 1


@njit(cache=True, nogil=True)
def _remove_surgery(dat: Any, st: Any, p: int, d: int, t: int) -> None:
    s = dat.surgeon[p]
    dur = dat.duration[p]
    soft = st.soft
    hard = st.hard
    mx = dat.surg_max[s, d]
    l0 = st.sload[s, d]
    hard[H_SURGEON] += max(0, l0 - dur - mx) - max(0, l0 - mx)
    st.sload[s, d] = l0 - dur
    mx = dat.th_avail[t, d]
    l0 = st.tload[t, d]
    hard[H_THEATRE] += max(0, l0 - dur - mx) - max(0, l0 - mx)
    st.tload[t, d] = l0 - dur
    st.tcnt[t, d] -= 1
    if st.tcnt[t, d] == 0:
        soft[S_OPEN] -= 1
    st.stcnt[s, d, t] -= 1
    if st.stcnt[s, d, t] == 0:
        if st.snth[s, d] >= 2:
            soft[S_TRANSFER] -= 1
        st.snth[s, d] -= 1


@njit(cache=True, nogil=True)
def admit(dat: Any, st: Any, p: int, d: int, r: int, t: int) -> bool:
    """Admit patient `p` on day `d` in room `r` with surgery in theatre `t` (False: no slot)."""
    if not _add_person(dat, st, p, r, d):
        return False
    _add_surgery(dat, st, p, d, t)
    st.adm[p] = d
    st.room[p] = r
    st.th[p] = t
    st.soft[S_DELAY] += d - dat.release[p]
    if dat.mandatory[p]:
        st.hard[H_MANDATORY] -= 1
    else:
        st.soft[S_UNSCHED] -= 1
    if dat.incompat[p, r]:
        st.hard[H_COMPAT] += 1
    if d < dat.release[p] or d > dat.due[p]:
        st.hard[H_ADMDAY] += 1
    k = st.nadm[0]
    i = st.pos[p]
    other = st.order[k]
    st.order[k] = p
    st.order[i] = other
    st.pos[p] = k
    st.pos[other] = i
    st.nadm[0] = k + 1
    return True


@njit(cache=True, nogil=True)
def unadmit(dat: Any, st: Any, p: int) -> None:
    """Undo the admission of patient `p`."""
    d = st.adm[p]
    r = st.room[p]
    t = st.th[p]
    _remove_person(dat, st, p, r, d)
    _remove_surgery(dat, st, p, d, t)
    st.adm[p] = -1
    st.room[p] = -1
    st.th[p] = -1
    st.soft[S_DELAY] -= d - dat.release[p]
    if dat.mandatory[p]:
        st.hard[H_MANDATORY] += 1
    else:
        st.soft[S_UNSCHED] += 1
    if dat.incompat[p, r]:
        st.hard[H_COMPAT] -= 1
    if d < dat.release[p] or d > dat.due[p]:
        st.hard[H_ADMDAY] -= 1
    k = st.nadm[0] - 1
    i = st.pos[p]
    other = st.order[k]
    st.order[k] = p
    st.order[i] = other
    st.pos[p] = k
    st.pos[other] = i
    st.nadm[0] = k


@njit(cache=True, nogil=True)
def move_theatre(dat: Any, st: Any, p: int, t: int) -> None:
    """Move the surgery of admitted patient `p` to theatre `t` (same day)."""
    d = st.adm[p]
    _remove_surgery(dat, st, p, d, st.th[p])
    _add_surgery(dat, st, p, d, t)
    st.th[p] = t


@njit(cache=True, nogil=True)
def set_nurse(dat: Any, st: Any, r: int, g: int, n2: int) -> None:
    """Make nurse `n2` (or -1) cover room `r` in global shift `g`."""
    n1 = st.nurse_of[r, g]
    if n1 == n2:
        return
    soft = st.soft
    d = g // 3
    c = st.cnt[r, d]
    w = st.wl[r, g]
    if n1 >= 0:
        mx = dat.nurse_max[n1, g]
        l0 = st.nload[n1, g]
        soft[S_LOAD] += max(0, l0 - w - mx) - max(0, l0 - mx)
        st.nload[n1, g] = l0 - w
    if n2 >= 0:
        mx = dat.nurse_max[n2, g]
        l0 = st.nload[n2, g]
        soft[S_LOAD] += max(0, l0 + w - mx) - max(0, l0 - mx)
        st.nload[n2, g] = l0 + w
    if c > 0:
        if n1 < 0:
            st.hard[H_UNCOV] -= 1
        if n2 < 0:
            st.hard[H_UNCOV] += 1
    for i in range(c):
        q = st.plist[r, d, i]
        req = dat.req_sk[q, g - 3 * st.adm[q]]
        if n1 >= 0:
            x = req - dat.nurse_skill[n1]
            if x > 0:
                soft[S_SKILL] -= x
            cc = st.contcnt[q, n1] - 1
            st.contcnt[q, n1] = cc
            if cc == 0:
                soft[S_CONT] -= 1
        if n2 >= 0:
            x = req - dat.nurse_skill[n2]
            if x > 0:
                soft[S_SKILL] += x
            cc = st.contcnt[q, n2]
            st.contcnt[q, n2] = cc + 1
            if cc == 0:
                soft[S_CONT] += 1
    st.nurse_of[r, g] = n2


@njit(cache=True, nogil=True)
def rebuild(dat: Any, st: Any, adm: Any, room: Any, th: Any, nurse_of: Any) -> int:
    """Reset `st` and load a full solution; returns how many admissions could not be stored."""
    P = dat.n_patients
    Q = dat.n_persons
    st.cnt[:] = 0
    st.gcnt[:] = 0
    st.agecnt[:] = 0
    st.wl[:] = 0
    st.nload[:] = 0
    st.contcnt[:] = 0
    st.sload[:] = 0
    st.tload[:] = 0
    st.tcnt[:] = 0
    st.stcnt[:] = 0
    st.snth[:] = 0
    st.soft[:] = 0
    st.hard[:] = 0
    st.nadm[0] = 0
    for p in range(P):
        st.order[p] = p
        st.pos[p] = p
        st.adm[p] = -1
        st.room[p] = -1
        st.th[p] = -1
        if dat.mandatory[p]:
            st.hard[H_MANDATORY] += 1
        else:
            st.soft[S_UNSCHED] += 1
    st.nurse_of[:, :] = nurse_of
    for o in range(Q - P):
        q = P + o
        st.adm[q] = 0
        st.room[q] = dat.occ_room[o]
        _add_person(dat, st, q, dat.occ_room[o], 0)
    failed = 0
    for p in range(P):
        if adm[p] >= 0 and not admit(dat, st, p, adm[p], room[p], th[p]):
            failed += 1
    return failed


@njit(cache=True, nogil=True)
def objective(dat: Any, st: Any, hw: Any) -> tuple[int, int]:
    """(weighted soft cost, weighted hard penalty) of the current state."""
    s = 0
    for k in range(8):
        s += dat.w_soft[k] * st.soft[k]
    h = 0
    for k in range(9):
        h += hw[k] * st.hard[k]
    return s, h


@njit(cache=True, nogil=True)
def _surgery_delta(dat: Any, st: Any, p: int, d: int, t: int, hw: Any) -> int:
    s = dat.surgeon[p]
    dur = dat.duration[p]
    mx = dat.th_avail[t, d]
    l0 = st.tload[t, d]
    v = hw[H_THEATRE] * (max(0, l0 + dur - mx) - max(0, l0 - mx))
    if st.tcnt[t, d] == 0:
        v += dat.w_soft[S_OPEN]
    if st.stcnt[s, d, t] == 0 and st.snth[s, d] >= 1:
        v += dat.w_soft[S_TRANSFER]
    return v


@njit(cache=True, nogil=True)
def best_theatre(dat: Any, st: Any, p: int, d: int, hw: Any, rs: Any) -> int:
    """Cheapest theatre for the surgery of (not yet admitted) `p` on day `d`; random ties."""
    T = dat.n_theatres
    start = _rnd_int(rs, T)
    best = start
    bv = np.iinfo(np.int64).max
    for i in range(T):
        t = (start + i) % T
        v = _surgery_delta(dat, st, p, d, t, hw)
        if v < bv:
            bv = v
            best = t
    return best


@njit(cache=True, nogil=True)
def save_best(st: Any, best: Any, cost: int) -> None:
    best.adm[:] = st.adm
    best.room[:] = st.room
    best.th[:] = st.th
    best.nurse_of[:, :] = st.nurse_of
    best.cost[0] = cost


# --------------------------------------------------------------------------------------------
# Construction.


@njit(cache=True, nogil=True)
def _window(dat: Any, p: int) -> tuple[int, int]:
    fd = dat.fix_day[p]
    if fd >= 0:
        return fd, fd
    lo = dat.release[p]
    hi = min(dat.due[p], dat.n_days - 1)
    return lo, hi


@njit(cache=True, nogil=True)
def best_insert(dat: Any, st: Any, p: int, hw: Any, rs: Any, only_improving: bool) -> bool:
    """Admit `p` at its cheapest (day, room, theatre); optional ones only when that pays."""
    if dat.fix_day[p] == -2:
        return False
    lo, hi = _window(dat, p)
    s0, h0 = objective(dat, st, hw)
    base = s0 + h0
    bv = np.iinfo(np.int64).max
    bd = -1
    br = -1
    bt = -1
    for d in range(lo, hi + 1):
        t = dat.fix_th[p] if dat.fix_th[p] >= 0 else best_theatre(dat, st, p, d, hw, rs)
        nr = 1 if dat.fix_room[p] >= 0 else dat.comp_cnt[p]
        for i in range(nr):
            r = dat.fix_room[p] if dat.fix_room[p] >= 0 else dat.comp_rooms[p, i]
            if not admit(dat, st, p, d, r, t):
                continue
            s1, h1 = objective(dat, st, hw)
            unadmit(dat, st, p)
            v = s1 + h1 - base
            if v < bv or (v == bv and _rnd_int(rs, 2) == 0):
                bv = v
                bd = d
                br = r
                bt = t
    if bd < 0:
        return False
    if only_improving and bv >= 0:
        return False
    return admit(dat, st, p, bd, br, bt)


@njit(cache=True, nogil=True)
def construct(dat: Any, st: Any, order: Any, hw: Any, rs: Any) -> None:
    """Greedy: pinned-day patients, then mandatory ones in `order`, then optional ones if useful."""
    P = dat.n_patients
    for i in range(P):
        p = order[i]
        if st.adm[p] < 0 and dat.fix_day[p] >= 0:
            best_insert(dat, st, p, hw, rs, False)
    for i in range(P):
        p = order[i]
        if st.adm[p] < 0 and dat.mandatory[p]:
            best_insert(dat, st, p, hw, rs, False)
    for i in range(P):
        p = order[i]
        if st.adm[p] < 0 and not dat.mandatory[p]:
            best_insert(dat, st, p, hw, rs, True)


@njit(cache=True, nogil=True)
def greedy_nurses(dat: Any, st: Any, rs: Any) -> None:
    """Give every room-shift a working nurse: rooms in decreasing workload, least-loaded nurse."""
    R = dat.n_rooms
    G = 3 * dat.n_days
    keys = np.empty(R, np.int64)
    for g in range(G):
        m = dat.shift_nurse_cnt[g]
        for r in range(R):
            keys[r] = -st.wl[r, g] * 1000 + _rnd_int(rs, 1000)
        rooms = np.argsort(keys)
        for i in range(R):
            r = rooms[i]
            if dat.fix_nurse[r, g] >= 0:
                set_nurse(dat, st, r, g, dat.fix_nurse[r, g])
                continue
            if m == 0:
                continue
            bn = -1
            bv = np.iinfo(np.int64).max
            for j in range(m):
                n = dat.shift_nurses[g, j]
                # slack first, skill as tie-breaker
                v = (
                    (st.nload[n, g] + st.wl[r, g] - dat.nurse_max[n, g]) * 100
                    - dat.nurse_skill[n] * 10
                    + _rnd_int(rs, 10)
                )
                if st.nurse_of[r, g] == n:
                    v -= st.wl[r, g] * 100
                if v < bv:
                    bv = v
                    bn = n
            set_nurse(dat, st, r, g, bn)


# --------------------------------------------------------------------------------------------
# Annealing.


@njit(cache=True, nogil=True)
def _rec(st: Any, p: int) -> int:
    """Record patient p's decisions in the undo buffer; returns the slot used."""
    k = st.undo[0]
    b = 1 + 4 * k
    st.undo[b] = p
    st.undo[b + 1] = st.adm[p]
    st.undo[b + 2] = st.room[p]
    st.undo[b + 3] = st.th[p]
    st.undo[0] = k + 1
    return k


@njit(cache=True, nogil=True)
def _undo_patients(dat: Any, st: Any) -> None:
    k = st.undo[0]
    for i in range(k):
        p = st.undo[1 + 4 * i]
        if st.adm[p] >= 0:
            unadmit(dat, st, p)
    for i in range(k - 1, -1, -1):
        b = 1 + 4 * i
        p = st.undo[b]
        if st.undo[b + 1] >= 0:
            admit(dat, st, p, st.undo[b + 1], st.undo[b + 2], st.undo[b + 3])
    st.undo[0] = 0


@njit(cache=True, nogil=True)
def _set_nurse_rec(dat: Any, st: Any, r: int, g: int, n: int) -> None:
    k = st.undo[0]
    b = 1 + 3 * k
    st.undo[b] = r
    st.undo[b + 1] = g
    st.undo[b + 2] = st.nurse_of[r, g]
    st.undo[0] = k + 1
    set_nurse(dat, st, r, g, n)


@njit(cache=True, nogil=True)
def _undo_nurses(dat: Any, st: Any) -> None:
    k = st.undo[0]
    for i in range(k - 1, -1, -1):
        b = 1 + 3 * i
        set_nurse(dat, st, st.undo[b], st.undo[b + 1], st.undo[b + 2])
    st.undo[0] = 0


@njit(cache=True, nogil=True)
def _rand_day(dat: Any, st: Any, p: int, rs: Any, cur: int) -> int:
    lo, hi = _window(dat, p)
    if hi <= lo:
        return lo
    if cur >= 0 and _rnd_int(rs, 2) == 0:
        step = 1 + _rnd_int(rs, 3)
        d = cur + step if _rnd_int(rs, 2) == 0 else cur - step
        return min(hi, max(lo, d))
    return lo + _rnd_int(rs, hi - lo + 1)


@njit(cache=True, nogil=True)
def _rand_room(dat: Any, p: int, rs: Any) -> int:
    if dat.fix_room[p] >= 0:
        return dat.fix_room[p]
    c = dat.comp_cnt[p]
    if c == 0:
        return -1
    return dat.comp_rooms[p, _rnd_int(rs, c)]


@njit(cache=True, nogil=True)
def _theatre_for(dat: Any, st: Any, p: int, d: int, keep: int, hw: Any, rs: Any) -> int:
    if dat.fix_th[p] >= 0:
        return dat.fix_th[p]
    if keep >= 0 and dat.th_avail[keep, d] > 0 and _rnd_int(rs, 4) == 0:
        return keep
    return best_theatre(dat, st, p, d, hw, rs)


@njit(cache=True, nogil=True)
def _pick_admitted(st: Any, rs: Any) -> int:
    n = st.nadm[0]
    if n == 0:
        return -1
    return st.order[_rnd_int(rs, n)]


@njit(cache=True, nogil=True)
def _pick_occupied_shift(dat: Any, st: Any, rs: Any) -> tuple[int, int]:
    R = dat.n_rooms
    D = dat.n_days
    for _ in range(8):
        r = _rnd_int(rs, R)
        d = _rnd_int(rs, D)
        if st.cnt[r, d] > 0:
            return r, 3 * d + _rnd_int(rs, 3)
    return -1, -1


@njit(cache=True, nogil=True)
def _do_move(dat: Any, st: Any, mv: int, hw: Any, rs: Any) -> int:
    """Apply one random move; returns 0 (not applicable), 1 (patient undo) or 2 (nurse undo)."""
    st.undo[0] = 0
    P = dat.n_patients
    if mv == M_ROOM:
        p = _pick_admitted(st, rs)
        if p < 0 or dat.fix_room[p] >= 0:
            return 0
        r2 = _rand_room(dat, p, rs)
        if r2 < 0 or r2 == st.room[p]:
            return 0
        d = st.adm[p]
        t = st.th[p]
        _rec(st, p)
        unadmit(dat, st, p)
        if not admit(dat, st, p, d, r2, t):
            _undo_patients(dat, st)
            return 0
        return 1
    if mv == M_DAY or mv == M_DAYROOM:
        p = _pick_admitted(st, rs)
        if p < 0 or dat.fix_day[p] >= 0:
            return 0
        d = st.adm[p]
        d2 = _rand_day(dat, st, p, rs, d)
        if d2 == d:
            return 0
        r2 = st.room[p]
        if mv == M_DAYROOM:
            r2 = _rand_room(dat, p, rs)
        t = st.th[p]
        _rec(st, p)
        unadmit(dat, st, p)
        t2 = _theatre_for(dat, st, p, d2, t, hw, rs)
        if not admit(dat, st, p, d2, r2, t2):
            _undo_patients(dat, st)
            return 0
        return 1
    if mv == M_THEATRE:
        p = _pick_admitted(st, rs)
        T = dat.n_theatres
        if p < 0 or dat.fix_th[p] >= 0 or T < 2:
            return 0
        t2 = _rnd_int(rs, T)
        if t2 == st.th[p] or dat.th_avail[t2, st.adm[p]] == 0:
            return 0
        st.undo[0] = -1 - st.th[p]  # negative marks a theatre move; encodes the old theatre
        st.undo[1] = p
        move_theatre(dat, st, p, t2)
        return 3
    if mv == M_SWAPROOM:
        p = _pick_admitted(st, rs)
        q = _pick_admitted(st, rs)
        if p < 0 or p == q or dat.fix_room[p] >= 0 or dat.fix_room[q] >= 0:
            return 0
        rp = st.room[p]
        rq = st.room[q]
        if rp == rq or dat.incompat[p, rq] or dat.incompat[q, rp]:
            return 0
        _rec(st, p)
        _rec(st, q)
        dp, tp, dq, tq = st.adm[p], st.th[p], st.adm[q], st.th[q]
        unadmit(dat, st, p)
        unadmit(dat, st, q)
        if not admit(dat, st, p, dp, rq, tp):
            _undo_patients(dat, st)
            return 0
        if not admit(dat, st, q, dq, rp, tq):
            _undo_patients(dat, st)
            return 0
        return 1
    if mv == M_SWAPDAY:
        # exchange the admission days of two patients (rooms and theatres kept when allowed)
        p = _pick_admitted(st, rs)
        q = _pick_admitted(st, rs)
        if p < 0 or p == q or dat.fix_day[p] >= 0 or dat.fix_day[q] >= 0:
            return 0
        dp = st.adm[p]
        dq = st.adm[q]
        if dp == dq:
            return 0
        lo, hi = _window(dat, p)
        if dq < lo or dq > hi:
            return 0
        lo, hi = _window(dat, q)
        if dp < lo or dp > hi:
            return 0
        _rec(st, p)
        _rec(st, q)
        rp, tp, rq, tq = st.room[p], st.th[p], st.room[q], st.th[q]
        unadmit(dat, st, p)
        unadmit(dat, st, q)
        if dat.fix_room[p] < 0 and _rnd_int(rs, 2) == 0 and not dat.incompat[p, rq]:
            rp2 = rq
            rq2 = rp if dat.fix_room[q] < 0 and not dat.incompat[q, rp] else rq
        else:
            rp2 = rp
            rq2 = rq
        if not admit(dat, st, p, dq, rp2, tq if dat.fix_th[p] < 0 else tp):
            _undo_patients(dat, st)
            return 0
        if not admit(dat, st, q, dp, rq2, tp if dat.fix_th[q] < 0 else tq):
            _undo_patients(dat, st)
            return 0
        return 1
    if mv == M_INSERT:
        n = st.nadm[0]
        if n >= P:
            return 0
        p = st.order[n + _rnd_int(rs, P - n)]
        if dat.fix_day[p] == -2:
            return 0
        lo, hi = _window(dat, p)
        if hi < lo:
            return 0
        d = _rand_day(dat, st, p, rs, -1)
        r = _rand_room(dat, p, rs)
        if r < 0:
            return 0
        t = _theatre_for(dat, st, p, d, -1, hw, rs)
        _rec(st, p)
        if not admit(dat, st, p, d, r, t):
            st.undo[0] = 0
            return 0
        return 1
    if mv == M_REMOVE:
        p = _pick_admitted(st, rs)
        if p < 0 or dat.mandatory[p] or dat.fix_day[p] >= 0:
            return 0
        _rec(st, p)
        unadmit(dat, st, p)
        return 1
    if mv == M_REPLACE:
        n = st.nadm[0]
        if n >= P or n == 0:
            return 0
        p = _pick_admitted(st, rs)
        if dat.mandatory[p] or dat.fix_day[p] >= 0:
            return 0
        q = st.order[n + _rnd_int(rs, P - n)]
        if dat.fix_day[q] == -2:
            return 0
        lo, hi = _window(dat, q)
        if hi < lo:
            return 0
        d = st.adm[p]
        if d < lo or d > hi or _rnd_int(rs, 2) == 0:
            d = _rand_day(dat, st, q, rs, min(hi, max(lo, d)))
        r = st.room[p]
        if dat.fix_room[q] >= 0 or dat.incompat[q, r]:
            r = _rand_room(dat, q, rs)
            if r < 0:
                return 0
        _rec(st, p)
        _rec(st, q)
        unadmit(dat, st, p)
        t = _theatre_for(dat, st, q, d, -1, hw, rs)
        if not admit(dat, st, q, d, r, t):
            _undo_patients(dat, st)
            return 0
        return 1
    if mv == M_NURSE:
        r, g = _pick_occupied_shift(dat, st, rs)
        if r < 0 or dat.fix_nurse[r, g] >= 0:
            return 0
        m = dat.shift_nurse_cnt[g]
        if m < 2:
            return 0
        n2 = dat.shift_nurses[g, _rnd_int(rs, m)]
        if n2 == st.nurse_of[r, g]:
            return 0
        _set_nurse_rec(dat, st, r, g, n2)
        return 2
    if mv == M_NURSE_SWAP:
        r, g = _pick_occupied_shift(dat, st, rs)
        if r < 0 or dat.fix_nurse[r, g] >= 0:
            return 0
        r2 = _rnd_int(rs, dat.n_rooms)
        if r2 == r or dat.fix_nurse[r2, g] >= 0:
            return 0
        n1 = st.nurse_of[r, g]
        n2 = st.nurse_of[r2, g]
        if n1 == n2:
            return 0
        _set_nurse_rec(dat, st, r, g, n2)
        _set_nurse_rec(dat, st, r2, g, n1)
        return 2
    if mv == M_NURSE_BLOCK:
        r, g = _pick_occupied_shift(dat, st, rs)
        if r < 0:
            return 0
        m = dat.shift_nurse_cnt[g]
        if m < 1:
            return 0
        d0 = g // 3
        n = -1
        if _rnd_int(rs, 2) == 0:
            # extend a neighbour's nurse (continuity with the previous or next day)
            dd = d0 - 1 if _rnd_int(rs, 2) == 0 else d0 + 1
            if 0 <= dd < dat.n_days:
                n = st.nurse_of[r, 3 * dd + _rnd_int(rs, 3)]
                if n >= 0 and dat.nurse_max[n, g] < 0:
                    n = -1
        if n < 0:
            n = dat.shift_nurses[g, _rnd_int(rs, m)]
        length = 2 + _rnd_int(rs, 6)
        # backward extent
        lo = d0
        while lo - 1 >= 0 and d0 - (lo - 1) < length and dat.nurse_shift_of_day[n, lo - 1] >= 0:
            if st.cnt[r, lo - 1] == 0:
                break
            lo -= 1
        hi = d0
        while (
            hi + 1 < dat.n_days and hi + 1 - lo < length and dat.nurse_shift_of_day[n, hi + 1] >= 0
        ):
            if st.cnt[r, hi + 1] == 0:
                break
            hi += 1
        changed = 0
        for d in range(lo, hi + 1):
            gg = dat.nurse_shift_of_day[n, d]
            if gg < 0 or dat.fix_nurse[r, gg] >= 0 or st.nurse_of[r, gg] == n:
                continue
            if 1 + 3 * (st.undo[0] + 1) >= UNDO_SIZE:
                break
            _set_nurse_rec(dat, st, r, gg, n)
            changed += 1
        if changed == 0:
            return 0
        return 2
    return 0


@njit(cache=True, nogil=True)
def _undo_move(dat: Any, st: Any, kind: int) -> None:
    if kind == 1:
        _undo_patients(dat, st)
    elif kind == 2:
        _undo_nurses(dat, st)
    elif kind == 3:
        t = -1 - st.undo[0]
        move_theatre(dat, st, st.undo[1], t)
        st.undo[0] = 0


@njit(cache=True, nogil=True)
def anneal(
    dat: Any,
    st: Any,
    best: Any,
    rs: Any,
    n_iter: int,
    t_start: float,
    t_end: float,
    hw: Any,
    mcum: Any,
    stats: Any,
) -> None:
    """Simulated annealing for `n_iter` moves, geometric cooling from `t_start` to `t_end`.

    Updates `best` whenever a feasible state beats it. `mcum` is the cumulative probability of
    each move type; `stats[mv, 0..1]` count tried/accepted moves.
    """
    s, h = objective(dat, st, hw)
    cur = s + h
    if h == 0 and s < best.cost[0]:
        save_best(st, best, s)
    temp = t_start
    alpha = math.exp(math.log(t_end / t_start) / max(n_iter, 1))
    nm = mcum.shape[0]
    for _ in range(n_iter):
        temp *= alpha
        u = _rnd_float(rs)
        mv = 0
        while mv < nm - 1 and u >= mcum[mv]:
            mv += 1
        kind = _do_move(dat, st, mv, hw, rs)
        if kind == 0:
            continue
        stats[mv, 0] += 1
        s, h = objective(dat, st, hw)
        new = s + h
        delta = new - cur
        if delta <= 0 or _rnd_float(rs) < math.exp(-delta / temp):
            cur = new
            stats[mv, 1] += 1
            if h == 0 and s < best.cost[0]:
                save_best(st, best, s)
        else:
            _undo_move(dat, st, kind)
