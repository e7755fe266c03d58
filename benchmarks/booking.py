"""Booking pool throughput and slot-search latency on PostgreSQL, next to their ceilings.

    .venv/bin/python benchmarks/booking.py [--seconds 10] [--workers 2] [--clients 1,8,32]

Builds the demo consortium (a month of calendars) in a scratch PostgreSQL database, serves the
API with uvicorn, and measures: slot search p50/p99 (one client), confirmed bookings per second
at 1, 8 and 32 concurrent clients, the same machine's `pgbench -N` TPS at the same concurrency
(the database's ceiling) and a bare FastAPI endpoint (the framework's ceiling). Prints a table
and writes it to docs/benchmarks.md between `<!-- booking:begin -->` and `<!-- booking:end -->`.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import re
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import percentile, scratch_pg, server, write_section
from carepool.booking import service as booking_service
from carepool.catalog import actions as catalog_actions
from carepool.core import auth, migrate
from carepool.core.auth import Principal
from carepool.core.db import make_engine, make_session_factory
from carepool.demo.generator import generate

console = Console(stderr=True)
BOOKABLE = ("imaging", "lab", "consultation", "procedure")


def build(url: str, seed: int, start: date) -> tuple[str, list[str]]:
    """Demo catalogue + an admin token; returns (token, bookable service ids)."""
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    doc = generate(seed, start)
    with factory() as s, s.begin():
        catalog_actions.do_import_catalog(s, actor=Principal.system_actor("bench"), raw=doc)
        auth.create_user(
            s,
            username="bench",
            display_name="bench",
            role=auth.Role.CONSORTIUM_ADMIN,
            institution_id=None,
        )
        token = auth.issue_token(s, username="bench", ttl=timedelta(hours=6))
    engine.dispose()
    services = [
        sv["id"] for sv in doc["services"] if sv["category"] in BOOKABLE and sv["offered_by"]
    ]
    return token, services


def slot_supply(
    url: str, services: list[str], start: datetime, end: datetime, per_service: int
) -> list[dict[str, Any]]:
    """Free slots (one booking each) across services and members, shuffled."""
    engine = make_engine(url)
    out: list[dict[str, Any]] = []
    with make_session_factory(engine)() as s:
        for sid in services:
            for ms in booking_service.search_slots(
                s, service_id=sid, start=start, end=end, now=start, limit=per_service
            ):
                for _ in range(ms.slot.capacity):
                    out.append(
                        {
                            "service_id": sid,
                            "institution_id": ms.institution_id,
                            "start": ms.slot.start.isoformat(),
                        }
                    )
    engine.dispose()
    random.Random(7).shuffle(out)
    return out


async def _load(
    base: str,
    path: str,
    bodies: list[dict[str, Any]] | None,
    headers: dict[str, str],
    clients: int,
    seconds: float,
) -> tuple[int, int, float]:
    """(ok, other, elapsed): `clients` concurrent loops posting bodies (or GET when None)."""
    ok = other = 0
    stop = time.perf_counter() + seconds
    index = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal ok, other, index
        while time.perf_counter() < stop:
            if bodies is None:
                r = await client.get(base + path, headers=headers)
            else:
                if index >= len(bodies):
                    return
                body = bodies[index]
                index += 1
                r = await client.post(base + path, json=body, headers=headers)
            if r.status_code in (200, 201):
                ok += 1
            else:
                other += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        return ok, other, time.perf_counter() - t0


def pgbench_tps(url_admin: str, clients: int, seconds: int) -> float:
    """`pgbench -N` (simple update) TPS at `clients` on a scratch database."""
    with scratch_pg("carepool_pgbench") as (name, _url):
        conn = ["-h", "127.0.0.1", "-U", "postgres"]
        subprocess.run(
            ["pgbench", *conn, "-i", "-s", "10", "-q", name], check=True, capture_output=True
        )
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--searches", type=int, default=300)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]
    command = "python benchmarks/booking.py " + " ".join(sys.argv[1:] if argv is None else argv)

    today = datetime.now(UTC).date()
    monday = today - timedelta(days=today.weekday())
    window_start = datetime.now(UTC) + timedelta(hours=1)
    window_end = window_start + timedelta(days=28)
    with scratch_pg("carepool_bench") as (_name, url), Progress(console=console) as progress:
        task = progress.add_task("demo consortium", total=None)
        token, services = build(url, args.seed, monday)
        headers = {"Authorization": f"Bearer {token}"}
        progress.update(task, description="slot supply")
        supply = slot_supply(url, services, window_start, window_end, per_service=600)
        progress.update(task, description=f"{len(supply)} free slots; serving")
        with server(
            "carepool.api.asgi:app", {"CAREPOOL_DATABASE_URL": url}, workers=args.workers
        ) as base:
            # Slot search latency, one client.
            rng = random.Random(3)
            lat: list[float] = []
            with httpx.Client(timeout=60) as c:
                for i in range(args.searches):
                    sid = services[i % len(services)]
                    start = window_start + timedelta(hours=rng.randrange(0, 24 * 21))
                    t0 = time.perf_counter()
                    r = c.get(
                        base + "/api/v1/slots",
                        params={
                            "service": sid,
                            "start": start.isoformat(),
                            "end": (start + timedelta(days=7)).isoformat(),
                            "limit": 20,
                        },
                        headers=headers,
                    )
                    lat.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, r.text
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
            console.print(
                f"slot search: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(lat)} searches"
            )
            booking: dict[int, tuple[float, int]] = {}
            offset = 0
            for clients in levels:
                progress.update(task, description=f"booking, {clients} clients")
                bodies = [
                    {**b, "patient_ref": f"bench-{offset + i}"}
                    for i, b in enumerate(supply[offset:])
                ]
                ok, other, elapsed = asyncio.run(
                    _load(base, "/api/v1/appointments", bodies, headers, clients, args.seconds)
                )
                offset += ok + other
                booking[clients] = (ok / elapsed, other)
                console.print(
                    f"{clients:>3} clients: {ok / elapsed:8.1f} bookings/s ({other} refused)"
                )
        bare: dict[int, float] = {}
        with server(
            "bare_app:app", {}, workers=args.workers, app_dir=str(Path(__file__).parent)
        ) as base:
            for clients in levels:
                progress.update(task, description=f"bare endpoint, {clients} clients")
                ok, _o, elapsed = asyncio.run(
                    _load(base, "/bare", [{"x": 1}] * 10_000_000, {}, clients, args.seconds)
                )
                bare[clients] = ok / elapsed
        pg: dict[int, float] = {}
        for clients in levels:
            progress.update(task, description=f"pgbench -N, {clients} clients")
            pg[clients] = pgbench_tps("", clients, int(args.seconds))

    table = Table(title="Booking pool on PostgreSQL")
    for col in (
        "clients",
        "bookings/s",
        "refused",
        "pgbench -N TPS",
        "bookings / pgbench",
        "bare endpoint req/s",
    ):
        table.add_column(col, justify="right")
    md = [
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {platform.python_version()}, "
        f"{__import__('os').cpu_count()} cores; API with {args.workers} uvicorn workers; "
        f"load generator in the same machine. Run {datetime.now(UTC):%Y-%m-%d}.",
        "",
        f"Slot search (`GET /api/v1/slots`, 7-day window, limit 20, one client, {len(lat)} "
        f"searches over {len(services)} services): **p50 {p50:.1f} ms, p99 {p99:.1f} ms**.",
        "",
        "| clients | confirmed bookings/s | refused | pgbench -N TPS | bookings / pgbench "
        "| bare endpoint req/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for clients in levels:
        rate, refused = booking[clients]
        share = rate / pg[clients] if pg[clients] else float("nan")
        table.add_row(
            str(clients),
            f"{rate:.0f}",
            str(refused),
            f"{pg[clients]:.0f}",
            f"{share:.1%}",
            f"{bare[clients]:.0f}",
        )
        md.append(
            f"| {clients} | {rate:.0f} | {refused} | {pg[clients]:.0f} | {share:.1%} "
            f"| {bare[clients]:.0f} |"
        )
    Console().print(table)
    if not args.no_write:
        write_section("booking", "## Booking pool\n\n" + "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
