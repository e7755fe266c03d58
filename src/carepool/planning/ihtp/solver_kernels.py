"""Numba kernels of the IHTP solver: incremental state, moves, annealing and greedy construction.

Why this module exists: the local search makes millions of moves per second, which only works
with compiled code over flat arrays. Every kernel is ``njit(cache=True, nogil=True)`` so the
portfolio can run one search per Python thread in parallel and the compile cost is paid once
per machine (numba's on-disk cache).

Memory layout: all instance data live in one flat int64 vector ``X`` and all search state in
one flat int64 vector ``S``; a `Layout` of plain ints gives dimensions and offsets. (Passing
tuples of many arrays between numba functions costs an atomic reference-count update per array
access, which made moves ~50x slower and would make threads fight over shared counters.)

The state keeps every cost and violation component up to date under four primitives (`admit`,
`unadmit`, `move_theatre`, `set_nurse`); a move applies primitives, reads the new objective and,
when rejected, applies the inverse primitives. Every room-shift always has a nurse when any nurse
works that shift, so coverage never breaks and patient moves are priced with the nurses in place
(skill, workload and continuity included).
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
M_REINSERT = 12
N_MOVES = 13
MOVE_NAMES = (
    "room",
    "day",
    "day+room",
    "theatre",
    "swap-rooms",
    "insert",
    "remove",
    "replace",
    "nurse",
    "swap-nurses",
    "nurse-block",
    "swap-days",
    "best-reinsert",
)

UNDO_SIZE = 256
BIG = np.iinfo(np.int64).max


class Layout(NamedTuple):
    """Dimensions and offsets into the flat data vector X and state vector S (ints only)."""

    D: int
    G: int
    R: int
    T: int
    NS: int
    N: int
    A: int
    P: int
    Q: int
    K: int
    W: int
    # data offsets (X)
    cap: int
    avail: int
    smax: int
    nskill: int
    nmax: int
    nsod: int
    snur: int
    snc: int
    los: int
    gender: int
    age: int
    rel: int
    due: int
    mand: int
    dur: int
    surg: int
    incompat: int
    comp: int
    compc: int
    occroom: int
    rwl: int
    rsk: int
    wsoft: int
    fday: int
    froom: int
    fth: int
    fnurse: int
    xsize: int
    # state offsets (S); decisions first so a best copy is one slice
    adm: int
    room: int
    th: int
    nurse: int
    n_dec: int
    cnt: int
    gcnt: int
    agec: int
    plist: int
    wl: int
    nload: int
    cont: int
    sload: int
    tload: int
    tcnt: int
    stcnt: int
    snth: int
    soft: int
    hard: int
    order: int
    pos: int
    nadm: int
    undo: int
    ssize: int


def pack(data: IhtpData) -> tuple[Layout, np.ndarray]:
    """Flatten `data` into (layout, X)."""
    D = data.n_days
    G = 3 * D
    R = data.n_rooms
    T = max(data.n_theatres, 1)
    NS = max(data.n_surgeons, 1)
    N = max(data.n_nurses, 1)
    A = data.n_ages
    P = max(data.n_patients, 1)
    Q = max(data.n_persons, 1)
    K = data.cap_slots
    W = data.req_wl.shape[1]
    n_occ = max(data.n_persons - data.n_patients, 1)
    parts: list[tuple[str, np.ndarray, int]] = [
        ("cap", data.room_cap, R),
        ("avail", data.th_avail, T * D),
        ("smax", data.surg_max, NS * D),
        ("nskill", data.nurse_skill, N),
        ("nmax", data.nurse_max, N * G),
        ("nsod", data.nurse_shift_of_day, N * D),
        ("snur", data.shift_nurses, G * N),
        ("snc", data.shift_nurse_cnt, G),
        ("los", data.los, Q),
        ("gender", data.gender, Q),
        ("age", data.age, Q),
        ("rel", data.release, P),
        ("due", data.due, P),
        ("mand", data.mandatory, P),
        ("dur", data.duration, P),
        ("surg", data.surgeon, P),
        ("incompat", data.incompat, P * R),
        ("comp", data.comp_rooms, P * R),
        ("compc", data.comp_cnt, P),
        ("occroom", data.occ_room, n_occ),
        ("rwl", data.req_wl, Q * W),
        ("rsk", data.req_sk, Q * W),
        ("wsoft", data.w_soft, 8),
        ("fday", data.fix_day, P),
        ("froom", data.fix_room, P),
        ("fth", data.fix_th, P),
        ("fnurse", data.fix_nurse, R * G),
    ]
    offs: dict[str, int] = {}
    o = 0
    for name, _arr, size in parts:
        offs[name] = o
        o += size
    X = np.zeros(o, np.int64)
    for name, arr, size in parts:
        flat = np.asarray(arr).astype(np.int64).ravel()
        X[offs[name] : offs[name] + min(size, flat.size)] = flat[:size]
    s_parts = [
        ("adm", Q),
        ("room", Q),
        ("th", P),
        ("nurse", R * G),
        ("cnt", R * D),
        ("gcnt", R * D * 2),
        ("agec", R * D * A),
        ("plist", R * D * K),
        ("wl", R * G),
        ("nload", N * G),
        ("cont", Q * N),
        ("sload", NS * D),
        ("tload", T * D),
        ("tcnt", T * D),
        ("stcnt", NS * D * T),
        ("snth", NS * D),
        ("soft", 8),
        ("hard", 9),
        ("order", P),
        ("pos", P),
        ("nadm", 1),
        ("undo", UNDO_SIZE),
    ]
    so: dict[str, int] = {}
    o2 = 0
    for name, size in s_parts:
        so[name] = o2
        o2 += size
    lay = Layout(
        D=D,
        G=G,
        R=R,
        T=T,
        NS=NS,
        N=N,
        A=A,
        P=data.n_patients,
        Q=data.n_persons,
        K=K,
        W=W,
        xsize=o,
        n_dec=so["cnt"],
        ssize=o2,
        **offs,
        **so,
    )
    return lay, X


def new_state(lay: Layout) -> np.ndarray:
    """A zeroed state vector (use `rebuild` to fill it)."""
    return np.zeros(lay.ssize, np.int64)


def decisions(lay: Layout, S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Views (adm[Q], room[Q], th[P], nurse_of[R, G]) into a state or best vector."""
    Q = max(lay.Q, 1)
    P = max(lay.P, 1)
    adm = S[lay.adm : lay.adm + Q]
    room = S[lay.room : lay.room + Q]
    th = S[lay.th : lay.th + P]
    nurse = S[lay.nurse : lay.nurse + lay.R * lay.G].reshape(lay.R, lay.G)
    return adm, room, th, nurse


def components(lay: Layout, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(soft[8], hard[9]) raw counts of a state vector."""
    return S[lay.soft : lay.soft + 8], S[lay.hard : lay.hard + 9]


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
    return int(np.int64(_rnd_u64(rs) >> np.uint64(33)) % n)


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
def _age_span(L: Any, S: Any, base: int) -> int:
    lo = -1
    hi = -1
    for a in range(L.A):
        if S[base + a] > 0:
            if lo < 0:
                lo = a
            hi = a
    if lo < 0:
        return 0
    return hi - lo


@njit(cache=True, nogil=True)
def _add_person(L: Any, X: Any, S: Any, q: int, r: int, a: int) -> bool:
    D = L.D
    e = min(a + X[L.los + q], D)
    for d in range(a, e):
        if S[L.cnt + r * D + d] >= L.K:
            return False
    so = L.soft
    ha = L.hard
    gq = X[L.gender + q]
    aq = X[L.age + q]
    cap = X[L.cap + r]
    rowq = q * L.W
    for d in range(a, e):
        rd = r * D + d
        c = S[L.cnt + rd]
        ab = L.agec + rd * L.A
        span0 = _age_span(L, S, ab)
        gb = L.gcnt + rd * 2
        gm0 = min(S[gb], S[gb + 1])
        S[L.plist + rd * L.K + c] = q
        S[L.cnt + rd] = c + 1
        S[gb + gq] += 1
        S[ab + aq] += 1
        S[so + S_AGE] += _age_span(L, S, ab) - span0
        S[ha + H_GENDER] += min(S[gb], S[gb + 1]) - gm0
        if c + 1 > cap:
            S[ha + H_CAPACITY] += 1
        for k in range(3):
            g = 3 * d + k
            j = rowq + g - 3 * a
            n = S[L.nurse + r * L.G + g]
            w = X[L.rwl + j]
            S[L.wl + r * L.G + g] += w
            if n >= 0:
                ng = n * L.G + g
                mx = X[L.nmax + ng]
                l0 = S[L.nload + ng]
                S[so + S_LOAD] += max(0, l0 + w - mx) - max(0, l0 - mx)
                S[L.nload + ng] = l0 + w
                sk = X[L.rsk + j] - X[L.nskill + n]
                if sk > 0:
                    S[so + S_SKILL] += sk
                ci = L.cont + q * L.N + n
                if S[ci] == 0:
                    S[so + S_CONT] += 1
                S[ci] += 1
            elif c == 0:
                S[ha + H_UNCOV] += 1
    return True


@njit(cache=True, nogil=True)
def _remove_person(L: Any, X: Any, S: Any, q: int, r: int, a: int) -> None:
    D = L.D
    e = min(a + X[L.los + q], D)
    so = L.soft
    ha = L.hard
    gq = X[L.gender + q]
    aq = X[L.age + q]
    cap = X[L.cap + r]
    rowq = q * L.W
    for d in range(a, e):
        rd = r * D + d
        c = S[L.cnt + rd]
        ab = L.agec + rd * L.A
        span0 = _age_span(L, S, ab)
        gb = L.gcnt + rd * 2
        gm0 = min(S[gb], S[gb + 1])
        pb = L.plist + rd * L.K
        for i in range(c):
            if S[pb + i] == q:
                S[pb + i] = S[pb + c - 1]
                break
        S[L.cnt + rd] = c - 1
        S[gb + gq] -= 1
        S[ab + aq] -= 1
        S[so + S_AGE] += _age_span(L, S, ab) - span0
        S[ha + H_GENDER] += min(S[gb], S[gb + 1]) - gm0
        if c > cap:
            S[ha + H_CAPACITY] -= 1
        for k in range(3):
            g = 3 * d + k
            j = rowq + g - 3 * a
            n = S[L.nurse + r * L.G + g]
            w = X[L.rwl + j]
            S[L.wl + r * L.G + g] -= w
            if n >= 0:
                ng = n * L.G + g
                mx = X[L.nmax + ng]
                l0 = S[L.nload + ng]
                S[so + S_LOAD] += max(0, l0 - w - mx) - max(0, l0 - mx)
                S[L.nload + ng] = l0 - w
                sk = X[L.rsk + j] - X[L.nskill + n]
                if sk > 0:
                    S[so + S_SKILL] -= sk
                ci = L.cont + q * L.N + n
                S[ci] -= 1
                if S[ci] == 0:
                    S[so + S_CONT] -= 1
            elif c == 1:
                S[ha + H_UNCOV] -= 1


@njit(cache=True, nogil=True)
def _add_surgery(L: Any, X: Any, S: Any, p: int, d: int, t: int, sign: int) -> None:
    """Add (sign=1) or remove (sign=-1) the surgery of `p` on day `d` in theatre `t`."""
    s = X[L.surg + p]
    dur = sign * X[L.dur + p]
    so = L.soft
    ha = L.hard
    sd = s * L.D + d
    mx = X[L.smax + sd]
    l0 = S[L.sload + sd]
    S[ha + H_SURGEON] += max(0, l0 + dur - mx) - max(0, l0 - mx)
    S[L.sload + sd] = l0 + dur
    td = t * L.D + d
    mx = X[L.avail + td]
    l0 = S[L.tload + td]
    S[ha + H_THEATRE] += max(0, l0 + dur - mx) - max(0, l0 - mx)
    S[L.tload + td] = l0 + dur
    sdt = L.stcnt + sd * L.T + t
    if sign > 0:
        if S[L.tcnt + td] == 0:
            S[so + S_OPEN] += 1
        S[L.tcnt + td] += 1
        if S[sdt] == 0:
            S[L.snth + sd] += 1
            if S[L.snth + sd] >= 2:
                S[so + S_TRANSFER] += 1
        S[sdt] += 1
    else:
        S[L.tcnt + td] -= 1
        if S[L.tcnt + td] == 0:
            S[so + S_OPEN] -= 1
        S[sdt] -= 1
        if S[sdt] == 0:
            if S[L.snth + sd] >= 2:
                S[so + S_TRANSFER] -= 1
            S[L.snth + sd] -= 1


@njit(cache=True, nogil=True)
def _swap_order(L: Any, S: Any, p: int, k: int) -> None:
    i = S[L.pos + p]
    other = S[L.order + k]
    S[L.order + k] = p
    S[L.order + i] = other
    S[L.pos + p] = k
    S[L.pos + other] = i


@njit(cache=True, nogil=True)
def admit(L: Any, X: Any, S: Any, p: int, d: int, r: int, t: int) -> bool:
    """Admit patient `p` on day `d` in room `r` with surgery in theatre `t` (False: no slot)."""
    if not _add_person(L, X, S, p, r, d):
        return False
    _add_surgery(L, X, S, p, d, t, 1)
    S[L.adm + p] = d
    S[L.room + p] = r
    S[L.th + p] = t
    S[L.soft + S_DELAY] += d - X[L.rel + p]
    if X[L.mand + p]:
        S[L.hard + H_MANDATORY] -= 1
    else:
        S[L.soft + S_UNSCHED] -= 1
    if X[L.incompat + p * L.R + r]:
        S[L.hard + H_COMPAT] += 1
    if d < X[L.rel + p] or d > X[L.due + p]:
        S[L.hard + H_ADMDAY] += 1
    k = S[L.nadm]
    _swap_order(L, S, p, k)
    S[L.nadm] = k + 1
    return True


@njit(cache=True, nogil=True)
def unadmit(L: Any, X: Any, S: Any, p: int) -> None:
    """Undo the admission of patient `p`."""
    d = S[L.adm + p]
    r = S[L.room + p]
    t = S[L.th + p]
    _remove_person(L, X, S, p, r, d)
    _add_surgery(L, X, S, p, d, t, -1)
    S[L.adm + p] = -1
    S[L.room + p] = -1
    S[L.th + p] = -1
    S[L.soft + S_DELAY] -= d - X[L.rel + p]
    if X[L.mand + p]:
        S[L.hard + H_MANDATORY] += 1
    else:
        S[L.soft + S_UNSCHED] += 1
    if X[L.incompat + p * L.R + r]:
        S[L.hard + H_COMPAT] -= 1
    if d < X[L.rel + p] or d > X[L.due + p]:
        S[L.hard + H_ADMDAY] -= 1
    k = S[L.nadm] - 1
    _swap_order(L, S, p, k)
    S[L.nadm] = k


@njit(cache=True, nogil=True)
def move_theatre(L: Any, X: Any, S: Any, p: int, t: int) -> None:
    """Move the surgery of admitted patient `p` to theatre `t` (same day)."""
    d = S[L.adm + p]
    _add_surgery(L, X, S, p, d, S[L.th + p], -1)
    _add_surgery(L, X, S, p, d, t, 1)
    S[L.th + p] = t


@njit(cache=True, nogil=True)
def set_nurse(L: Any, X: Any, S: Any, r: int, g: int, n2: int) -> None:
    """Make nurse `n2` (or -1) cover room `r` in global shift `g`."""
    ri = L.nurse + r * L.G + g
    n1 = S[ri]
    if n1 == n2:
        return
    so = L.soft
    d = g // 3
    rd = r * L.D + d
    c = S[L.cnt + rd]
    w = S[L.wl + r * L.G + g]
    if n1 >= 0:
        ng = n1 * L.G + g
        mx = X[L.nmax + ng]
        l0 = S[L.nload + ng]
        S[so + S_LOAD] += max(0, l0 - w - mx) - max(0, l0 - mx)
        S[L.nload + ng] = l0 - w
    if n2 >= 0:
        ng = n2 * L.G + g
        mx = X[L.nmax + ng]
        l0 = S[L.nload + ng]
        S[so + S_LOAD] += max(0, l0 + w - mx) - max(0, l0 - mx)
        S[L.nload + ng] = l0 + w
    if c > 0:
        if n1 < 0:
            S[L.hard + H_UNCOV] -= 1
        if n2 < 0:
            S[L.hard + H_UNCOV] += 1
    pb = L.plist + rd * L.K
    sk1 = X[L.nskill + n1] if n1 >= 0 else 0
    sk2 = X[L.nskill + n2] if n2 >= 0 else 0
    for i in range(c):
        q = S[pb + i]
        req = X[L.rsk + q * L.W + g - 3 * S[L.adm + q]]
        cb = L.cont + q * L.N
        if n1 >= 0:
            x = req - sk1
            if x > 0:
                S[so + S_SKILL] -= x
            S[cb + n1] -= 1
            if S[cb + n1] == 0:
                S[so + S_CONT] -= 1
        if n2 >= 0:
            x = req - sk2
            if x > 0:
                S[so + S_SKILL] += x
            if S[cb + n2] == 0:
                S[so + S_CONT] += 1
            S[cb + n2] += 1
    S[ri] = n2


@njit(cache=True, nogil=True)
def rebuild(L: Any, X: Any, S: Any, dec: Any) -> int:
    """Reset `S` and load the decisions `dec` (a best vector or the decision prefix of a state).

    Returns how many admissions could not be stored (more persons in a room than slots).
    """
    P = L.P
    Q = L.Q
    dcopy = dec[: L.n_dec].copy()
    S[:] = 0
    for p in range(max(P, 1)):
        S[L.order + p] = p
        S[L.pos + p] = p
        S[L.adm + p] = -1
        S[L.room + p] = -1
        S[L.th + p] = -1
    for p in range(P):
        if X[L.mand + p]:
            S[L.hard + H_MANDATORY] += 1
        else:
            S[L.soft + S_UNSCHED] += 1
    for i in range(L.R * L.G):
        S[L.nurse + i] = dcopy[L.nurse + i]
    for o in range(Q - P):
        q = P + o
        S[L.adm + q] = 0
        S[L.room + q] = X[L.occroom + o]
        _add_person(L, X, S, q, X[L.occroom + o], 0)
    failed = 0
    for p in range(P):
        d = dcopy[L.adm + p]
        if d >= 0 and not admit(L, X, S, p, d, dcopy[L.room + p], dcopy[L.th + p]):
            failed += 1
    return failed


@njit(cache=True, nogil=True)
def objective(L: Any, X: Any, S: Any, hw: Any) -> tuple[int, int]:
    """(weighted soft cost, weighted hard penalty) of the current state."""
    s = 0
    for k in range(8):
        s += X[L.wsoft + k] * S[L.soft + k]
    h = 0
    for k in range(9):
        h += hw[k] * S[L.hard + k]
    return s, h


@njit(cache=True, nogil=True)
def _surgery_delta(L: Any, X: Any, S: Any, p: int, d: int, t: int, hw: Any) -> int:
    s = X[L.surg + p]
    dur = X[L.dur + p]
    td = t * L.D + d
    mx = X[L.avail + td]
    l0 = S[L.tload + td]
    v = hw[H_THEATRE] * (max(0, l0 + dur - mx) - max(0, l0 - mx))
    if S[L.tcnt + td] == 0:
        v += X[L.wsoft + S_OPEN]
    sd = s * L.D + d
    if S[L.stcnt + sd * L.T + t] == 0 and S[L.snth + sd] >= 1:
        v += X[L.wsoft + S_TRANSFER]
    return v


@njit(cache=True, nogil=True)
def best_theatre(L: Any, X: Any, S: Any, p: int, d: int, hw: Any, rs: Any) -> int:
    """Cheapest theatre for the surgery of (not yet admitted) `p` on day `d`; random ties."""
    T = L.T
    start = _rnd_int(rs, T)
    best = start
    bv = BIG
    for i in range(T):
        t = (start + i) % T
        v = _surgery_delta(L, X, S, p, d, t, hw)
        if v < bv:
            bv = v
            best = t
    return best


# --------------------------------------------------------------------------------------------
# Construction.


@njit(cache=True, nogil=True)
def _window(L: Any, X: Any, p: int) -> tuple[int, int]:
    fd = X[L.fday + p]
    if fd >= 0:
        return fd, fd
    return X[L.rel + p], min(X[L.due + p], L.D - 1)


@njit(cache=True, nogil=True)
def best_insert(L: Any, X: Any, S: Any, p: int, hw: Any, rs: Any, only_improving: bool) -> bool:
    """Admit `p` at its cheapest (day, room, theatre); optional ones only when that pays."""
    lo, hi = _window(L, X, p)
    return best_insert_in(L, X, S, p, lo, hi, hw, rs, only_improving)


@njit(cache=True, nogil=True)
def best_insert_in(
    L: Any, X: Any, S: Any, p: int, lo: int, hi: int, hw: Any, rs: Any, only_improving: bool
) -> bool:
    """`best_insert` over admission days lo..hi only."""
    if X[L.fday + p] == -2:
        return False
    s0, h0 = objective(L, X, S, hw)
    base = s0 + h0
    bv = BIG
    bd = -1
    br = -1
    bt = -1
    fr = X[L.froom + p]
    ft = X[L.fth + p]
    nr = 1 if fr >= 0 else X[L.compc + p]
    for d in range(lo, hi + 1):
        t = ft if ft >= 0 else best_theatre(L, X, S, p, d, hw, rs)
        for i in range(nr):
            r = fr if fr >= 0 else X[L.comp + p * L.R + i]
            if not admit(L, X, S, p, d, r, t):
                continue
            s1, h1 = objective(L, X, S, hw)
            unadmit(L, X, S, p)
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
    return admit(L, X, S, p, bd, br, bt)


@njit(cache=True, nogil=True)
def construct(
    L: Any, X: Any, S: Any, order: Any, target: Any, troom: Any, hw: Any, rs: Any
) -> None:
    """Greedy: patients with a `target` day (>= 0; the CP-SAT admission plan) on that day, in
    room `troom` when given (>= 0), else in their cheapest room; then pinned-day patients, then
    the other mandatory ones in `order`, then optional ones when they pay."""
    P = L.P
    for k in range(2):
        for i in range(P):
            p = order[i]
            d = target[p]
            if S[L.adm + p] >= 0 or d < 0 or X[L.fday + p] == -2:
                continue
            r = troom[p]
            if k == 0 and r >= 0:
                ft = X[L.fth + p]
                t = ft if ft >= 0 else best_theatre(L, X, S, p, d, hw, rs)
                admit(L, X, S, p, d, r, t)
            elif k == 1:
                best_insert_in(L, X, S, p, d, d, hw, rs, False)
    for i in range(P):
        p = order[i]
        if S[L.adm + p] < 0 and X[L.fday + p] >= 0:
            best_insert(L, X, S, p, hw, rs, False)
    for i in range(P):
        p = order[i]
        if S[L.adm + p] < 0 and X[L.mand + p]:
            best_insert(L, X, S, p, hw, rs, False)
    for i in range(P):
        p = order[i]
        if S[L.adm + p] < 0 and not X[L.mand + p]:
            best_insert(L, X, S, p, hw, rs, True)


@njit(cache=True, nogil=True)
def greedy_nurses(L: Any, X: Any, S: Any, rs: Any, only_missing: bool) -> None:
    """Give room-shifts a working nurse: rooms by decreasing workload, least-loaded nurse first.

    Pinned assignments are always applied; with `only_missing`, assigned room-shifts are kept.
    """
    R = L.R
    G = L.G
    keys = np.empty(R, np.int64)
    for g in range(G):
        m = X[L.snc + g]
        for r in range(R):
            keys[r] = -S[L.wl + r * G + g] * 1000 + _rnd_int(rs, 1000)
        rooms = np.argsort(keys)
        for i in range(R):
            r = rooms[i]
            fn = X[L.fnurse + r * G + g]
            if fn >= 0:
                set_nurse(L, X, S, r, g, fn)
                continue
            if m == 0 or (only_missing and S[L.nurse + r * G + g] >= 0):
                continue
            bn = -1
            bv = BIG
            w = S[L.wl + r * G + g]
            cur = S[L.nurse + r * G + g]
            for j in range(m):
                n = X[L.snur + g * L.N + j]
                ng = n * G + g
                load = S[L.nload + ng] - (w if cur == n else 0)
                v = (load + w - X[L.nmax + ng]) * 100 - X[L.nskill + n] * 10 + _rnd_int(rs, 10)
                if v < bv:
                    bv = v
                    bn = n
            set_nurse(L, X, S, r, g, bn)


# --------------------------------------------------------------------------------------------
# Annealing.


@njit(cache=True, nogil=True)
def _rec(L: Any, S: Any, p: int) -> None:
    """Record patient p's decisions in the undo buffer."""
    u = L.undo
    k = S[u]
    b = u + 1 + 4 * k
    S[b] = p
    S[b + 1] = S[L.adm + p]
    S[b + 2] = S[L.room + p]
    S[b + 3] = S[L.th + p]
    S[u] = k + 1


@njit(cache=True, nogil=True)
def _undo_patients(L: Any, X: Any, S: Any) -> None:
    u = L.undo
    k = S[u]
    for i in range(k):
        p = S[u + 1 + 4 * i]
        if S[L.adm + p] >= 0:
            unadmit(L, X, S, p)
    for i in range(k - 1, -1, -1):
        b = u + 1 + 4 * i
        if S[b + 1] >= 0:
            admit(L, X, S, S[b], S[b + 1], S[b + 2], S[b + 3])
    S[u] = 0


@njit(cache=True, nogil=True)
def _set_nurse_rec(L: Any, X: Any, S: Any, r: int, g: int, n: int) -> None:
    u = L.undo
    k = S[u]
    b = u + 1 + 3 * k
    S[b] = r
    S[b + 1] = g
    S[b + 2] = S[L.nurse + r * L.G + g]
    S[u] = k + 1
    set_nurse(L, X, S, r, g, n)


@njit(cache=True, nogil=True)
def _undo_nurses(L: Any, X: Any, S: Any) -> None:
    u = L.undo
    k = S[u]
    for i in range(k - 1, -1, -1):
        b = u + 1 + 3 * i
        set_nurse(L, X, S, S[b], S[b + 1], S[b + 2])
    S[u] = 0


@njit(cache=True, nogil=True)
def _rand_day(L: Any, X: Any, p: int, rs: Any, cur: int) -> int:
    lo, hi = _window(L, X, p)
    if hi <= lo:
        return lo
    if cur >= 0 and _rnd_int(rs, 2) == 0:
        step = 1 + _rnd_int(rs, 3)
        d = cur + step if _rnd_int(rs, 2) == 0 else cur - step
        return min(hi, max(lo, d))
    return lo + _rnd_int(rs, hi - lo + 1)


@njit(cache=True, nogil=True)
def _rand_room(L: Any, X: Any, p: int, rs: Any) -> int:
    fr = X[L.froom + p]
    if fr >= 0:
        return fr
    c = X[L.compc + p]
    if c == 0:
        return -1
    return X[L.comp + p * L.R + _rnd_int(rs, c)]


@njit(cache=True, nogil=True)
def _theatre_for(L: Any, X: Any, S: Any, p: int, d: int, keep: int, hw: Any, rs: Any) -> int:
    ft = X[L.fth + p]
    if ft >= 0:
        return ft
    if keep >= 0 and X[L.avail + keep * L.D + d] > 0 and _rnd_int(rs, 4) == 0:
        return keep
    return best_theatre(L, X, S, p, d, hw, rs)


@njit(cache=True, nogil=True)
def _pick_admitted(L: Any, S: Any, rs: Any) -> int:
    n = S[L.nadm]
    if n == 0:
        return -1
    return S[L.order + _rnd_int(rs, n)]


@njit(cache=True, nogil=True)
def _pick_unadmitted(L: Any, S: Any, rs: Any) -> int:
    n = S[L.nadm]
    if n >= L.P:
        return -1
    return S[L.order + n + _rnd_int(rs, L.P - n)]


@njit(cache=True, nogil=True)
def _pick_occupied_shift(L: Any, S: Any, rs: Any) -> tuple[int, int]:
    for _ in range(8):
        r = _rnd_int(rs, L.R)
        d = _rnd_int(rs, L.D)
        if S[L.cnt + r * L.D + d] > 0:
            return r, 3 * d + _rnd_int(rs, 3)
    return -1, -1


@njit(cache=True, nogil=True)
def _do_move(L: Any, X: Any, S: Any, mv: int, hw: Any, rs: Any) -> int:
    """Apply one random move; returns 0 (not applicable), 1 (patient), 2 (nurse), 3 (theatre)."""
    u = L.undo
    S[u] = 0
    if mv == M_ROOM:
        p = _pick_admitted(L, S, rs)
        if p < 0 or X[L.froom + p] >= 0:
            return 0
        r2 = _rand_room(L, X, p, rs)
        if r2 < 0 or r2 == S[L.room + p]:
            return 0
        d = S[L.adm + p]
        t = S[L.th + p]
        _rec(L, S, p)
        unadmit(L, X, S, p)
        if not admit(L, X, S, p, d, r2, t):
            _undo_patients(L, X, S)
            return 0
        return 1
    if mv == M_DAY or mv == M_DAYROOM:  # noqa: SIM109 (numba)
        p = _pick_admitted(L, S, rs)
        if p < 0 or X[L.fday + p] >= 0:
            return 0
        d = S[L.adm + p]
        d2 = _rand_day(L, X, p, rs, d)
        if d2 == d:
            return 0
        r2 = S[L.room + p]
        if mv == M_DAYROOM:
            r2 = _rand_room(L, X, p, rs)
            if r2 < 0:
                return 0
        t = S[L.th + p]
        _rec(L, S, p)
        unadmit(L, X, S, p)
        t2 = _theatre_for(L, X, S, p, d2, t, hw, rs)
        if not admit(L, X, S, p, d2, r2, t2):
            _undo_patients(L, X, S)
            return 0
        return 1
    if mv == M_THEATRE:
        p = _pick_admitted(L, S, rs)
        if p < 0 or X[L.fth + p] >= 0 or L.T < 2:
            return 0
        t2 = _rnd_int(rs, L.T)
        if t2 == S[L.th + p] or X[L.avail + t2 * L.D + S[L.adm + p]] == 0:
            return 0
        S[u + 1] = p
        S[u + 2] = S[L.th + p]
        move_theatre(L, X, S, p, t2)
        return 3
    if mv == M_SWAPROOM:
        p = _pick_admitted(L, S, rs)
        q = _pick_admitted(L, S, rs)
        if p < 0 or p == q or X[L.froom + p] >= 0 or X[L.froom + q] >= 0:
            return 0
        rp = S[L.room + p]
        rq = S[L.room + q]
        if rp == rq or X[L.incompat + p * L.R + rq] or X[L.incompat + q * L.R + rp]:
            return 0
        dp = S[L.adm + p]
        dq = S[L.adm + q]
        tp = S[L.th + p]
        tq = S[L.th + q]
        _rec(L, S, p)
        _rec(L, S, q)
        unadmit(L, X, S, p)
        unadmit(L, X, S, q)
        if not admit(L, X, S, p, dp, rq, tp) or not admit(L, X, S, q, dq, rp, tq):
            _undo_patients(L, X, S)
            return 0
        return 1
    if mv == M_SWAPDAY:
        p = _pick_admitted(L, S, rs)
        q = _pick_admitted(L, S, rs)
        if p < 0 or p == q or X[L.fday + p] >= 0 or X[L.fday + q] >= 0:
            return 0
        dp = S[L.adm + p]
        dq = S[L.adm + q]
        if dp == dq:
            return 0
        lo, hi = _window(L, X, p)
        if dq < lo or dq > hi:
            return 0
        lo, hi = _window(L, X, q)
        if dp < lo or dp > hi:
            return 0
        rp = S[L.room + p]
        rq = S[L.room + q]
        tp = S[L.th + p]
        tq = S[L.th + q]
        _rec(L, S, p)
        _rec(L, S, q)
        unadmit(L, X, S, p)
        unadmit(L, X, S, q)
        rp2 = rp
        rq2 = rq
        if (
            _rnd_int(rs, 2) == 0
            and X[L.froom + p] < 0
            and X[L.froom + q] < 0
            and not X[L.incompat + p * L.R + rq]
            and not X[L.incompat + q * L.R + rp]
        ):
            rp2 = rq
            rq2 = rp
        tp2 = tq if X[L.fth + p] < 0 else tp
        tq2 = tp if X[L.fth + q] < 0 else tq
        if not admit(L, X, S, p, dq, rp2, tp2) or not admit(L, X, S, q, dp, rq2, tq2):
            _undo_patients(L, X, S)
            return 0
        return 1
    if mv == M_INSERT:
        p = _pick_unadmitted(L, S, rs)
        if p < 0 or X[L.fday + p] == -2:
            return 0
        lo, hi = _window(L, X, p)
        if hi < lo:
            return 0
        d = _rand_day(L, X, p, rs, -1)
        r = _rand_room(L, X, p, rs)
        if r < 0:
            return 0
        t = _theatre_for(L, X, S, p, d, -1, hw, rs)
        _rec(L, S, p)
        if not admit(L, X, S, p, d, r, t):
            S[u] = 0
            return 0
        return 1
    if mv == M_REMOVE:
        p = _pick_admitted(L, S, rs)
        if p < 0 or X[L.mand + p] or X[L.fday + p] >= 0:
            return 0
        _rec(L, S, p)
        unadmit(L, X, S, p)
        return 1
    if mv == M_REPLACE:
        p = _pick_admitted(L, S, rs)
        q = _pick_unadmitted(L, S, rs)
        if p < 0 or q < 0 or X[L.mand + p] or X[L.fday + p] >= 0 or X[L.fday + q] == -2:
            return 0
        lo, hi = _window(L, X, q)
        if hi < lo:
            return 0
        d = S[L.adm + p]
        if d < lo or d > hi or _rnd_int(rs, 2) == 0:
            d = _rand_day(L, X, q, rs, min(hi, max(lo, d)))
        r = S[L.room + p]
        if X[L.froom + q] >= 0 or X[L.incompat + q * L.R + r]:
            r = _rand_room(L, X, q, rs)
            if r < 0:
                return 0
        _rec(L, S, p)
        _rec(L, S, q)
        unadmit(L, X, S, p)
        t = _theatre_for(L, X, S, q, d, -1, hw, rs)
        if not admit(L, X, S, q, d, r, t):
            _undo_patients(L, X, S)
            return 0
        return 1
    if mv == M_REINSERT:
        # take a patient out (or an unscheduled one) and put it at its cheapest slot
        p = _pick_admitted(L, S, rs) if _rnd_int(rs, 3) > 0 else _pick_unadmitted(L, S, rs)
        if p < 0 or X[L.fday + p] >= 0 or X[L.fday + p] == -2:
            return 0
        _rec(L, S, p)
        if S[L.adm + p] >= 0:
            unadmit(L, X, S, p)
        best_insert(L, X, S, p, hw, rs, False)
        return 1
    if mv == M_NURSE:
        r, g = _pick_occupied_shift(L, S, rs)
        if r < 0 or X[L.fnurse + r * L.G + g] >= 0:
            return 0
        m = X[L.snc + g]
        if m < 2:
            return 0
        n2 = X[L.snur + g * L.N + _rnd_int(rs, m)]
        if n2 == S[L.nurse + r * L.G + g]:
            return 0
        _set_nurse_rec(L, X, S, r, g, n2)
        return 2
    if mv == M_NURSE_SWAP:
        r, g = _pick_occupied_shift(L, S, rs)
        if r < 0 or X[L.fnurse + r * L.G + g] >= 0:
            return 0
        r2 = _rnd_int(rs, L.R)
        if r2 == r or X[L.fnurse + r2 * L.G + g] >= 0:
            return 0
        n1 = S[L.nurse + r * L.G + g]
        n2 = S[L.nurse + r2 * L.G + g]
        if n1 == n2:
            return 0
        _set_nurse_rec(L, X, S, r, g, n2)
        _set_nurse_rec(L, X, S, r2, g, n1)
        return 2
    if mv == M_NURSE_BLOCK:
        r, g = _pick_occupied_shift(L, S, rs)
        if r < 0:
            return 0
        m = X[L.snc + g]
        if m < 1:
            return 0
        d0 = g // 3
        n = -1
        if _rnd_int(rs, 2) == 0:
            # extend a neighbouring day's nurse of this room (continuity of care)
            dd = d0 - 1 if _rnd_int(rs, 2) == 0 else d0 + 1
            if 0 <= dd < L.D:
                n = S[L.nurse + r * L.G + 3 * dd + _rnd_int(rs, 3)]
                if n >= 0 and X[L.nmax + n * L.G + g] < 0:
                    n = -1
        if n < 0:
            n = X[L.snur + g * L.N + _rnd_int(rs, m)]
        length = 2 + _rnd_int(rs, 6)
        lo = d0
        while (
            lo - 1 >= 0
            and d0 - (lo - 1) < length
            and X[L.nsod + n * L.D + lo - 1] >= 0
            and S[L.cnt + r * L.D + lo - 1] > 0
        ):
            lo -= 1
        hi = d0
        while (
            hi + 1 < L.D
            and hi + 1 - lo < length
            and X[L.nsod + n * L.D + hi + 1] >= 0
            and S[L.cnt + r * L.D + hi + 1] > 0
        ):
            hi += 1
        changed = 0
        for d in range(lo, hi + 1):
            gg = X[L.nsod + n * L.D + d]
            if gg < 0 or X[L.fnurse + r * L.G + gg] >= 0 or S[L.nurse + r * L.G + gg] == n:
                continue
            _set_nurse_rec(L, X, S, r, gg, n)
            changed += 1
        if changed == 0:
            return 0
        return 2
    return 0


@njit(cache=True, nogil=True)
def _undo_move(L: Any, X: Any, S: Any, kind: int) -> None:
    if kind == 1:
        _undo_patients(L, X, S)
    elif kind == 2:
        _undo_nurses(L, X, S)
    elif kind == 3:
        u = L.undo
        move_theatre(L, X, S, S[u + 1], S[u + 2])


@njit(cache=True, nogil=True)
def anneal(
    L: Any,
    X: Any,
    S: Any,
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

    `best` is a vector of n_dec decisions plus its weighted soft cost in the last slot (BIG when
    none); it is updated whenever a feasible state beats it. `mcum` is the cumulative probability
    of each move type; `stats[mv, 0..1]` count tried/accepted moves.
    """
    nd = L.n_dec
    s, h = objective(L, X, S, hw)
    cur = s + h
    if h == 0 and s < best[nd]:
        best[:nd] = S[:nd]
        best[nd] = s
    temp = t_start
    alpha = math.exp(math.log(t_end / t_start) / max(n_iter, 1))
    nm = mcum.shape[0]
    for _ in range(n_iter):
        temp *= alpha
        x = _rnd_float(rs)
        mv = 0
        while mv < nm - 1 and x >= mcum[mv]:
            mv += 1
        kind = _do_move(L, X, S, mv, hw, rs)
        if kind == 0:
            continue
        stats[mv, 0] += 1
        s, h = objective(L, X, S, hw)
        new = s + h
        delta = new - cur
        if delta <= 0 or _rnd_float(rs) < math.exp(-delta / temp):
            cur = new
            stats[mv, 1] += 1
            if h == 0 and s < best[nd]:
                best[:nd] = S[:nd]
                best[nd] = s
        else:
            _undo_move(L, X, S, kind)
