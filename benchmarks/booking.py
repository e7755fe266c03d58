"""Booking pool throughput and slot-search latency on PostgreSQL, next to their ceilings.

    apt-get install -y wrk postgresql-client      # the load generator (C) and pgbench
    .venv/bin/python benchmarks/booking.py [--seconds 10] [--workers 2] [--clients 1,8,32]
    .venv/bin/python benchmarks/booking.py --profile      # where one request's time goes
    .venv/bin/python benchmarks/booking.py --sweep-workers 1,2,3,4 --no-write

Builds the demo consortium (a month of calendars) in a scratch PostgreSQL database, serves the
API with uvicorn, and drives it with `wrk` (a C load generator, so the client does not take the
Python CPU it measures; Lua scripts give every booking its own body). It measures slot search
p50/p99 (one connection, 7-day windows), confirmed bookings per second at 1, 8 and 32
connections, a bare FastAPI endpoint on the same uvicorn set-up with the same generator and
connections (the framework's ceiling), and `pgbench -N` at the same client count (the
database's ceiling). For each run it also reads the CPU used by the API processes, PostgreSQL
and wrk from /proc, per request. `--profile` runs one booking and one slot search at a time
in-process, with a sampling profiler and a statement counter, and splits the CPU by layer.
The figures go to docs/benchmarks.md between `<!-- booking-run:begin -->` and
`<!-- booking-run:end -->` (inside the booking section, whose prose is written by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_token, scratch_pg, server, write_section
from carepool.booking import _pool as booking_pool
from carepool.booking import service as booking_service
from carepool.catalog import actions as catalog_actions
from carepool.core import auth, migrate
from carepool.core.auth import Principal
from carepool.core.db import make_engine, make_session_factory
from carepool.demo.generator import generate
from carepool.records import actions as records_actions
from carepool.records.schemas import PatientIn

console = Console(stderr=True)
BOOKABLE = ("imaging", "lab", "consultation", "procedure")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# --- wrk scripts: one body per request for bookings, rotating paths for searches -----------

_LUA_COMMON = r"""
local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function response(status, headers, body)
  if status == 200 or status == 201 then ok = ok + 1
  elseif status == 409 then refused = refused + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local o, r, x = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); r = r + t:get("refused"); x = x + t:get("other")
  end
  io.write(string.format(
    "RESULT {\"ok\": %d, \"refused\": %d, \"other\": %d, \"requests\": %d, " ..
    "\"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, \"errors\": %d}\n",
    o, r, x, summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout + summary.errors.status))
end
-- Lines of a file, this thread's share (line i goes to thread i mod n).
function share(path, n)
  local out, i = {}, 0
  for line in io.lines(path) do
    if i % n == tid then table.insert(out, line) end
    i = i + 1
  end
  return out
end
"""


def _wrk_script(init: str, request: str) -> str:
    """A wrk script: the common part, then `init(args)` (the counters zeroed first) and
    `request()` with the given bodies (Lua, two-space indented, one statement a line)."""
    return (
        _LUA_COMMON
        + "\nfunction init(args)\n  ok, refused, other = 0, 0, 0\n"
        + init
        + "end\nfunction request()\n"
        + request
        + "end\n"
    )


_AUTH_HEADERS = '{["Authorization"] = "Bearer " .. args[2]}'
_JSON_HEADERS = '{["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[2]}'

LUA_BOOK = _wrk_script(
    f"""  bodies = share(args[1], tonumber(args[3]))
  headers = {_JSON_HEADERS}
  idx = 0
""",
    """  idx = idx + 1
  local body = bodies[idx]
  if body == nil then return wrk.format("GET", "/health") end  -- counted as "other"
  return wrk.format("POST", "/api/v1/appointments", headers, body)
""",
)

LUA_SEARCH = _wrk_script(
    f"""  paths = share(args[1], tonumber(args[3]))
  headers = {_AUTH_HEADERS}
  idx = 0
""",
    """  idx = idx % #paths + 1
  return wrk.format("GET", paths[idx], headers)
""",
)

LUA_BARE = _wrk_script(
    f"""  headers = {_JSON_HEADERS}
  body = '{{"x": 1}}'
""",
    """  return wrk.format("POST", "/bare", headers, body)
""",
)


# --- CPU accounting from /proc ---------------------------------------------------------------


def _proc_cpu(pid: int) -> float:
    """CPU seconds of a process and of its children that ended (PostgreSQL backends of closed
    connections are charged to the postmaster this way); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return sum(int(v) for v in fields[11:15]) / CLK_TCK


def _pids() -> list[tuple[int, int, str]]:
    """(pid, ppid, command name) of every process."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.append((int(entry.name), ppid, name))
    return out


def _tree(root: int) -> list[int]:
    procs = _pids()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, ppid, _ in procs:
        children[ppid].append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children[pid])
    return found


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def _pg_backends(database: str | None) -> dict[int, float]:
    """CPU seconds per PostgreSQL backend serving `database` (not other people's work on the
    same server, nor the shared background processes, which count as "other")."""
    found: dict[int, float] = {}
    if not database:
        return found
    for pid, _, name in _pids():
        if name != "postgres":
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if f" {database} ".encode() in cmdline + b" ":
            found[pid] = _proc_cpu(pid)
    return found


def _pg_cpu(database: str | None) -> float:
    return sum(_pg_backends(database).values())


@dataclass
class CpuMeter:
    """CPU seconds used by the API processes, PostgreSQL and the rest of the machine.

    Backends come and go (the connection pool closes its overflow), so they are sampled every
    0.2 s and a backend that ends keeps its last reading.
    """

    api_root: int | None
    database: str | None = None
    start: dict[str, float] = field(default_factory=dict)
    _backends: dict[int, float] = field(default_factory=dict)
    _first: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        now = _pg_backends(self.database)
        for pid, cpu in now.items():
            self._first.setdefault(pid, 0.0 if self._thread else cpu)
            self._backends[pid] = cpu

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def _read(self) -> dict[str, float]:
        api = sum(_proc_cpu(p) for p in _tree(self.api_root)) if self.api_root else 0.0
        busy, total = _machine()
        return {"api": api, "busy": busy, "total": total}

    def __enter__(self) -> CpuMeter:
        self._sample()  # backends alive now count from their current reading
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        self.start = self._read()
        return self

    def stop(self) -> dict[str, float]:
        end = self._read()
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._sample()
        spent = {k: end[k] - self.start[k] for k in end}
        spent["pg"] = sum(cpu - self._first[pid] for pid, cpu in self._backends.items())
        return spent

    def __exit__(self, *exc: object) -> None:
        return None


@dataclass
class Run:
    """One wrk run: counts, rates, latency and CPU seconds per request by owner."""

    ok: int
    refused: int
    other: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu: dict[str, float]  # api, pg, wrk, other, idle: CPU seconds over the run

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.seconds

    @property
    def req_per_s(self) -> float:
        return self.requests / self.seconds

    def ms_per_request(self, owner: str) -> float:
        return 1000 * self.cpu[owner] / max(1, self.requests)


def wrk(
    base: str,
    script: str,
    args: list[str],
    *,
    clients: int,
    seconds: float,
    api_root: int | None,
    database: str | None = None,
) -> Run:
    """Run wrk with a Lua script; `args` go to the script after `--`."""
    threads = min(clients, 2)
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "load.lua"
        lua.write_text(script)
        out = Path(tmp) / "out.txt"
        cmd = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(clients),
            "-d",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(lua),
            base,
            "--",
            *args,
            str(threads),
        ]
        with CpuMeter(api_root, database) as meter, out.open("w") as sink:
            proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
            spent = meter.stop()
        text = out.read_text()
    if status != 0 or "RESULT" not in text:
        raise RuntimeError(f"wrk failed: {text}")
    r = json.loads(text.split("RESULT", 1)[1].strip().splitlines()[0])
    wrk_cpu = usage.ru_utime + usage.ru_stime
    cores = os.cpu_count() or 1
    wall = r["duration_us"] / 1e6
    cpu = {
        "api": spent["api"],
        "pg": spent["pg"],
        "wrk": wrk_cpu,
        "other": max(0.0, spent["busy"] - spent["api"] - spent["pg"] - wrk_cpu),
        "idle": max(0.0, spent["total"] - spent["busy"]) if spent["total"] else cores * wall,
    }
    return Run(
        ok=r["ok"],
        refused=r["refused"],
        other=r["other"],
        requests=r["requests"],
        seconds=wall,
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        errors=r["errors"],
        cpu=cpu,
    )


# --- the consortium, the slots to book and the searches to run -------------------------------


def build(url: str, seed: int, start: date) -> tuple[str, list[str]]:
    """Demo catalogue + an admin token; returns (token, bookable service ids)."""
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    doc = generate(seed, start)
    with factory() as s, s.begin():
        catalog_actions.do_import_catalog(s, actor=Principal.system_actor("bench"), raw=doc)
        token = bench_token(s, "bench", "bench", auth.Role.CONSORTIUM_ADMIN, None)
    engine.dispose()
    services = [
        sv["id"] for sv in doc["services"] if sv["category"] in BOOKABLE and sv["offered_by"]
    ]
    return token, services


BENCH_MEMBER_OF_PATIENTS = "ch"  # the demo's county hospital registers the benchmark's patients


def register_patients(url: str, mrns: list[str]) -> dict[str, str]:
    """Register `mrns` at the county hospital in one batch (a feed's way: `RecordStore`);
    MRN -> FHIR id. Every booking names a registered patient (decision 0013)."""
    engine = make_engine(url)
    ctx = records_actions.StoreContext(institution_id=BENCH_MEMBER_OF_PATIENTS, feed="bench")
    out = {}
    with make_session_factory(engine)() as s, s.begin():
        store = records_actions.RecordStore(s, ctx)
        for mrn in mrns:
            record = PatientIn(system=BENCH_MEMBER_OF_PATIENTS, local_id=mrn, name=mrn)
            out[mrn] = store.store(record).id
        store.flush()
    engine.dispose()
    return out


def slot_supply(
    url: str, services: list[str], start: datetime, end: datetime, per_service: int
) -> list[dict[str, Any]]:
    """Bookable bodies no two of which compete for a resource, shuffled.

    A slot offered to several bookings at once (capacity) gives that many bodies; two slots at
    one member whose blocks overlap and whose candidate resources intersect are never both
    kept. So every body can be confirmed in any order, and a refusal in the run is a real one.
    """
    engine = make_engine(url)
    groups = []
    with make_session_factory(engine)() as s:
        pool = booking_pool.get(s)
        for sid in services:
            service = pool.service(sid)
            t = booking_service.timing(service, pool.policy(sid))
            for ms in booking_service.search_slots(
                s, service_id=sid, start=start, end=end, now=start, limit=per_service
            ):
                per_req = pool.candidates(service, ms.institution_id)
                resources = {r.id for group in per_req for r in group}
                block = (ms.slot.start - t.before, ms.slot.end + t.after)
                groups.append((sid, ms.institution_id, ms.slot, block, resources))
    engine.dispose()
    random.Random(7).shuffle(groups)
    kept: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)  # per resource
    out: list[dict[str, Any]] = []
    for sid, member, slot, (b0, b1), resources in groups:
        clash = False
        for rid in resources:
            spans = kept[rid]
            k = bisect.bisect_left(spans, (b1,))
            if (k > 0 and spans[k - 1][1] > b0) or (k < len(spans) and spans[k][0] < b1):
                clash = True
                break
        if clash:
            continue
        for rid in resources:
            bisect.insort(kept[rid], (b0, b1))
        for _ in range(slot.capacity):
            out.append(
                {"service_id": sid, "institution_id": member, "start": slot.start.isoformat()}
            )
    random.Random(11).shuffle(out)
    return out


def search_paths(services: list[str], start: datetime, n: int) -> list[str]:
    """`n` slot searches: a random service, a 7-day window starting in the next three weeks."""
    rng = random.Random(3)
    paths = []
    for i in range(n):
        begin = start + timedelta(minutes=5 * rng.randrange(0, 12 * 24 * 21))
        query = {
            "service": services[i % len(services)],
            "start": begin.isoformat(),
            "end": (begin + timedelta(days=7)).isoformat(),
            "limit": 20,
        }
        paths.append("/api/v1/slots?" + urlencode(query))
    return paths


def pgbench_tps(name: str, clients: int, seconds: int) -> float:
    """`pgbench -N` (simple update) TPS at `clients` on an initialised database."""
    conn = ["-h", "127.0.0.1", "-U", "postgres"]
    out = subprocess.run(
        [
            "pgbench",
            *conn,
            "-N",
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-T",
            str(seconds),
            name,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    m = re.search(r"tps = ([\d.]+)", out)
    return float(m.group(1)) if m else float("nan")


# Both servers (API and bare endpoint) run uvicorn on uvloop and httptools, as `carepool serve`
# does (uvicorn's `--loop auto --http auto` picks them when installed; they are dependencies).
# With asyncio, `uvicorn --workers N` hands its workers the listening socket with `proto` 0 and
# asyncio then leaves Nagle's algorithm on for accepted connections: a response written in two
# parts waited ~40 ms for the client's delayed ACK (an earlier version of this script patched
# asyncio through a `sitecustomize`). uvloop sets TCP_NODELAY on every accepted TCP connection
# itself, with any number of workers (one keep-alive connection, 2 workers: 1.8 ms per bare
# request against 45 ms with asyncio), so no patch is needed.
@contextmanager
def serving(app: str, env: dict[str, str], workers: int, app_dir: str | None = None) -> Any:
    """`_common.server` on uvloop and httptools, plus the root process id."""
    import importlib.util

    missing = [m for m in ("uvloop", "httptools") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"{', '.join(missing)} missing: .venv/bin/pip install -e .")
    before = {p for p, _, _ in _pids()}
    with server(app, env, workers=workers, app_dir=app_dir) as base:
        roots = [
            p
            for p, ppid, name in _pids()
            if p not in before and ppid == os.getpid() and name.startswith("python")
        ]
        yield base, (roots[0] if roots else None)


def _stack() -> str:
    """uvicorn's HTTP parser and event loop (checked by `serving`)."""
    return "httptools, uvloop (TCP_NODELAY set by uvloop)"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# --- in-process profile: statements, CPU and where it goes ----------------------------------

_STDLIB = str(Path(os.__file__).parent)
_BUCKETS = (
    ("sqlalchemy", "ORM + driver"),
    ("psycopg", "ORM + driver"),
    ("httpx", "client"),
    ("fastapi", "framework"),
    ("starlette", "framework"),
    ("pydantic", "framework"),
    ("anyio", "framework"),
    ("carepool", "booking code"),
)


def _bucket(frame: Any) -> str:
    """Who a sample belongs to: auth if the caller is being authenticated, else the innermost
    non-stdlib frame's package (stdlib time is charged to whoever called it)."""
    f = frame
    while f is not None:
        if f.f_code.co_name == "current_principal":
            return "auth"
        f = f.f_back
    f = frame
    while f is not None:
        path = f.f_code.co_filename
        if "site-packages" in path or "/src/carepool/" in path:
            for needle, bucket in _BUCKETS:
                if f"/{needle}/" in path:
                    return bucket
        elif not path.startswith(_STDLIB):
            return "other"
        f = f.f_back
    return "framework"  # the event loop itself


def profile(url: str, token: str, services: list[str], n: int) -> dict[str, dict[str, Any]]:
    """Per operation: statements, round trips, CPU ms (API side), DB wait ms, PG CPU ms, split."""
    import anyio.to_thread
    import httpx
    from sqlalchemy import event

    from carepool.api.app import create_app

    # Sync endpoints and dependencies normally run in a worker thread; run them inline so the
    # sampler (which sees the main thread) sees them. CPU is the same work, minus thread hops.
    async def inline(func: Any, *args: Any, **_kw: Any) -> Any:
        return func(*args)

    anyio.to_thread.run_sync = inline  # type: ignore[assignment]
    app = create_app(url)
    engine = app.state.engine
    database = url.rsplit("/", 1)[1]
    pre_ping = int(bool(getattr(engine.pool, "_pre_ping", False)))
    counts: Counter[str] = Counter()
    event.listen(engine, "before_cursor_execute", lambda *a: counts.update(["statements"]))
    event.listen(engine, "commit", lambda *a: counts.update(["commits"]))
    event.listen(engine.pool, "checkout", lambda *a: counts.update(["checkouts"]))
    start = datetime.now(UTC) + timedelta(hours=1)
    supply = slot_supply(url, services, start, start + timedelta(days=28), per_service=200)
    registered = register_patients(url, [f"prof-{i}" for i in range(len(supply))])
    patients = [registered[f"prof-{i}"] for i in range(len(supply))]
    paths = search_paths(services, start, n)
    headers = {"Authorization": f"Bearer {token}"}
    samples: Counter[str] = Counter()

    def on_prof(_sig: int, frame: Any) -> None:
        samples[_bucket(frame)] += 1

    async def run(kind: str) -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

            async def one(i: int) -> int:
                if kind == "booking":
                    body = {**supply[i], "patient_ref": patients[i]}
                    r = await client.post("/api/v1/appointments", json=body, headers=headers)
                else:
                    r = await client.get(paths[i % len(paths)], headers=headers)
                return r.status_code

            offset = 0 if kind == "search" else 20
            for i in range(n if kind == "search" else 20):  # warm caches (searches: same ones)
                await one(i)
            counts.clear()
            samples.clear()
            codes: Counter[int] = Counter()
            pg0 = _pg_cpu(database)
            signal.signal(signal.SIGPROF, on_prof)
            signal.setitimer(signal.ITIMER_PROF, 0.0005, 0.0005)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for i in range(offset, offset + n):
                codes[await one(i)] += 1
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            signal.setitimer(signal.ITIMER_PROF, 0, 0)
            pg = _pg_cpu(database) - pg0
        total = sum(samples.values()) or 1
        client_share = samples["client"] / total
        server_cpu = cpu * (1 - client_share)
        return {
            "requests": n,
            "codes": dict(codes),
            "statements": counts["statements"] / n,
            # A checkout costs a round trip only with pre-ping (core.db pings idle ones only).
            "round_trips": (
                counts["statements"] + counts["checkouts"] * pre_ping + counts["commits"]
            )
            / n,
            "cpu_ms": 1000 * server_cpu / n,
            "db_wait_ms": 1000 * (wall - cpu) / n,
            "pg_cpu_ms": 1000 * pg / n,
            "split": {
                k: v / (total - samples["client"])
                for k, v in sorted(samples.items(), key=lambda kv: -kv[1])
                if k != "client"
            },
        }

    return {"booking": asyncio.run(run("booking")), "search": asyncio.run(run("search"))}


def _profile_md(result: dict[str, dict[str, Any]]) -> list[str]:
    md = [
        "| in-process, one request at a time | statements | round trips | API CPU ms "
        "| DB wait ms | PostgreSQL CPU ms | API CPU split |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for kind, label in (("booking", "booking"), ("search", "slot search")):
        r = result[kind]
        split = ", ".join(f"{k} {v:.0%}" for k, v in r["split"].items() if v >= 0.01)
        md.append(
            f"| {label} | {r['statements']:.1f} | {r['round_trips']:.1f} | {r['cpu_ms']:.2f} "
            f"| {r['db_wait_ms']:.2f} | {r['pg_cpu_ms']:.2f} | {split} |"
        )
    return md


# --- the run ----------------------------------------------------------------------------------


@contextmanager
def demo_database(seed: int) -> Iterator[tuple[str, str, list[str]]]:
    today = datetime.now(UTC).date()
    monday = today - timedelta(days=today.weekday())
    with scratch_pg("carepool_bench") as (_name, url):
        token, services = build(url, seed, monday)
        yield url, token, services


def _write_lines(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers (API and bare)")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--searches", type=int, default=500, help="distinct slot searches")
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--profile", action="store_true", help="in-process profile only")
    ap.add_argument("--profile-requests", type=int, default=300)
    ap.add_argument("--sweep-workers", default="", help="e.g. 1,2,3,4: bookings and bare only")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]
    command = "python benchmarks/booking.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if not args.profile and shutil.which("wrk") is None:
        console.print("wrk is missing: apt-get install -y wrk")
        return 2
    load_before = uptime()
    console.print(load_before)

    def brief(lines: list[str]) -> list[str]:
        """A short section: the command and `uptime` before and now, then `lines`."""
        head = f"Command: `{command}`; `uptime` before: `{load_before}`, after: `{uptime()}`."
        return [head, "", *lines]

    def publish(section: str, md: list[str]) -> None:
        """Print a section and, unless `--no-write`, put it into docs/benchmarks.md."""
        print("\n".join(md))
        if not args.no_write:
            write_section(section, "\n".join(md))

    if args.profile:
        with demo_database(args.seed) as (url, token, services):
            result = profile(url, token, services, args.profile_requests)
        console.print_json(data=result)
        publish("booking-profile", brief(_profile_md(result)))
        return 0

    window_start = datetime.now(UTC) + timedelta(hours=1)
    window_end = window_start + timedelta(days=28)
    tmp = Path(tempfile.mkdtemp(prefix="carepool-bench-"))
    with demo_database(args.seed) as (url, token, services):
        supply = slot_supply(url, services, window_start, window_end, per_service=1500)
        console.print(f"{len(supply)} bookable bodies; {len(services)} services")
        env = {"CAREPOOL_DATABASE_URL": url}
        database = url.rsplit("/", 1)[1]
        chunks = max(
            1, len(levels) + (len(args.sweep_workers.split(",")) if args.sweep_workers else 0)
        )
        per_level = len(supply) // chunks
        next_chunk = iter(range(chunks))

        def bodies() -> str:
            k = next(next_chunk)
            part = supply[k * per_level : (k + 1) * per_level]
            ids = register_patients(url, [f"bench-{k}-{i}" for i in range(len(part))])
            lines = [
                json.dumps({**b, "patient_ref": ids[f"bench-{k}-{i}"]}) for i, b in enumerate(part)
            ]
            return _write_lines(tmp / f"bodies-{k}.jsonl", lines)

        paths_file = _write_lines(
            tmp / "paths.txt", search_paths(services, window_start, args.searches)
        )
        bare_dir = str(Path(__file__).parent)

        if args.sweep_workers:
            top = max(levels)
            rows = []
            for workers in [int(w) for w in args.sweep_workers.split(",")]:
                with serving("carepool.api.asgi:app", env, workers) as (base, root):
                    wrk(base, LUA_SEARCH, [paths_file, token], clients=2, seconds=3, api_root=root)
                    book = wrk(
                        base,
                        LUA_BOOK,
                        [bodies(), token],
                        clients=top,
                        seconds=args.seconds,
                        api_root=root,
                        database=database,
                    )
                with serving("bare_app:app", {}, workers, app_dir=bare_dir) as (base, root):
                    bare = wrk(
                        base,
                        LUA_BARE,
                        ["-", token],
                        clients=top,
                        seconds=args.seconds,
                        api_root=root,
                        database=database,
                    )
                rows.append((workers, book, bare))
                console.print(
                    f"{workers} workers: {book.ok_per_s:.0f} bookings/s "
                    f"({book.refused} refused), bare {bare.req_per_s:.0f} req/s"
                )
            table = [
                f"| uvicorn workers | confirmed bookings/s at {top} | bare req/s at {top} |",
                "|---:|---:|---:|",
                *(f"| {w} | {b.ok_per_s:.0f} | {x.req_per_s:.0f} |" for w, b, x in rows),
            ]
            publish("booking-workers", brief(table))
            return 0

        with serving("carepool.api.asgi:app", env, args.workers) as (base, root):
            # Warm every worker's caches on the searches, then measure with one connection.
            wrk(
                base,
                LUA_SEARCH,
                [paths_file, token],
                clients=4,
                seconds=5,
                api_root=root,
                database=database,
            )
            search = wrk(
                base,
                LUA_SEARCH,
                [paths_file, token],
                clients=1,
                seconds=args.seconds,
                api_root=root,
                database=database,
            )
            console.print(
                f"slot search: p50 {search.p50_ms:.1f} ms, p99 {search.p99_ms:.1f} ms, "
                f"{search.req_per_s:.0f}/s"
            )
            booking: dict[int, Run] = {}
            for clients in levels:
                booking[clients] = wrk(
                    base,
                    LUA_BOOK,
                    [bodies(), token],
                    clients=clients,
                    seconds=args.seconds,
                    api_root=root,
                    database=database,
                )
                b = booking[clients]
                console.print(
                    f"{clients:>3} clients: {b.ok_per_s:.0f} bookings/s, {b.refused} refused, "
                    f"{b.other} other, p50 {b.p50_ms:.1f} ms, p99 {b.p99_ms:.1f} ms"
                )
        bare: dict[int, Run] = {}
        with serving("bare_app:app", {}, args.workers, app_dir=bare_dir) as (base, root):
            wrk(base, LUA_BARE, ["-", token], clients=4, seconds=2, api_root=root)
            for clients in levels:
                bare[clients] = wrk(
                    base,
                    LUA_BARE,
                    ["-", token],
                    clients=clients,
                    seconds=args.seconds,
                    api_root=root,
                )
                console.print(f"bare, {clients} clients: {bare[clients].req_per_s:.0f} req/s")
    pg: dict[int, float] = {}
    with scratch_pg("carepool_pgbench") as (name, _url):
        subprocess.run(
            ["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-i", "-s", "10", "-q", name],
            check=True,
            capture_output=True,
        )
        for clients in levels:
            pg[clients] = pgbench_tps(name, clients, int(args.seconds))
            console.print(f"pgbench -N, {clients} clients: {pg[clients]:.0f} TPS")
    shutil.rmtree(tmp, ignore_errors=True)
    load_after = uptime()

    cores = os.cpu_count()
    md = [
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, {cores} cores; "
        f"API and bare endpoint each on uvicorn with {args.workers} workers ({_stack()}); "
        f"load from `wrk` on the same machine; PostgreSQL on the same machine. "
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.  ",
        f"`uptime` before: `{load_before}`; after: `{load_after}`.",
        "",
        f"Slot search (`GET /api/v1/slots`, 7-day window, limit 20, one connection, "
        f"{args.searches} distinct searches over {len(services)} services, caches warm): "
        f"**p50 {search.p50_ms:.1f} ms, p99 {search.p99_ms:.1f} ms** "
        f"({search.req_per_s:.0f} searches/s; API CPU {search.ms_per_request('api'):.1f} ms "
        f"and PostgreSQL CPU {search.ms_per_request('pg'):.2f} ms per search).",
        "",
        "| clients | confirmed bookings/s | refused | p50 / p99 ms | pgbench -N TPS "
        "| bookings / pgbench | bare endpoint req/s | bookings / bare |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for clients in levels:
        b = booking[clients]
        md.append(
            f"| {clients} | {b.ok_per_s:.0f} | {b.refused + b.other} "
            f"| {b.p50_ms:.1f} / {b.p99_ms:.1f} | {pg[clients]:.0f} "
            f"| {b.ok_per_s / pg[clients]:.1%} | {bare[clients].req_per_s:.0f} "
            f"| {b.ok_per_s / bare[clients].req_per_s:.0%} |"
        )
    md += [
        "",
        "CPU per request during each run (ms; from /proc: the API's uvicorn processes, the "
        "PostgreSQL backends of the benchmark's database, wrk; other = the rest of the machine's "
        "busy time, including PostgreSQL's shared background processes and anyone else's work):",
        "",
        "| run | API | PostgreSQL | wrk | other | idle |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    runs = [("slot search, 1", search)]
    runs += [(f"booking, {c}", booking[c]) for c in levels]
    runs += [(f"bare, {c}", bare[c]) for c in levels]
    for label, r in runs:
        md.append(
            f"| {label} | {r.ms_per_request('api'):.2f} | {r.ms_per_request('pg'):.2f} "
            f"| {r.ms_per_request('wrk'):.2f} | {r.ms_per_request('other'):.2f} "
            f"| {r.ms_per_request('idle'):.2f} |"
        )
    publish("booking-run", md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
