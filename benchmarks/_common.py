"""Shared pieces of the benchmarks: scratch PostgreSQL databases, servers, the results file."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.orm import Session

from carepool.core import auth

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"
PG_ADMIN = os.environ.get("CAREPOOL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

# The head of a bulk `INSERT INTO observation ... SELECT`: every column, in the order the SELECT
# gives them.
OBSERVATION_INSERT = """INSERT INTO observation (id, natural_key, institution_id, id_system,
    local_id, patient_id, encounter_id, report_id, status, category, loinc_code, display, value,
    unit, ref_low, ref_high, original_system, original_code, original_text, codings, value_type,
    original_value, original_unit, original_number, original_ref_low, original_ref_high,
    reference_text, value_code, value_code_system, interpretation, effective_at, issued_at,
    flags, note, content_hash, standardised_at, created_at, updated_at)"""


@contextmanager
def scratch_pg(prefix: str) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database for one run: (name, URL); dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(
    app: str, env: dict[str, str], workers: int = 2, app_dir: str | None = None
) -> Iterator[str]:
    """Run `uvicorn APP` with `workers` processes on a free port until the block ends."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if app_dir:
        cmd += ["--app-dir", app_dir]
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{app} did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def write_section(name: str, body: str) -> None:
    """Replace the text between `<!-- name:begin -->` and `<!-- name:end -->` in the results."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = re.sub(
            re.escape(begin) + r".*?" + re.escape(end), lambda _m: block, text, flags=re.S
        )
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def machine() -> str:
    """The CPU model (from /proc/cpuinfo where there is one), logical CPUs and Python version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def bench_token(
    s: Session, username: str, display_name: str, role: auth.Role, institution_id: str | None
) -> str:
    """Add a user to the open session and return a bearer token for it, valid for six hours."""
    auth.create_user(
        s,
        username=username,
        display_name=display_name,
        role=role,
        institution_id=institution_id,
    )
    return auth.issue_token(s, username=username, ttl=timedelta(hours=6))
