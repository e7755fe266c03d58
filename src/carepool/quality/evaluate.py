"""Run checks over bound tables and turn their rows into results (counts, percent, sample).

Two queries per check, both pushed down to the backend: counts per member, and the first few
failing record ids per member (in id order, so a sample is stable between runs). A check that
raises is reported as an error result; it never stops the suite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import ibis

from carepool.quality.checks import AnalyteRange, Check, Params, Tables
from carepool.quality.models import ALL_MEMBERS

SAMPLE_SIZE = 10


@dataclass
class CheckResult:
    """One check for one member (`*`: the consortium)."""

    check: Check
    member: str
    threshold: float
    failing: int = 0
    denominator: int = 0
    sample: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def percent(self) -> float:
        return 100.0 * self.failing / self.denominator if self.denominator else 0.0

    @property
    def passed(self) -> bool:
        """Passed: no error and at most `threshold` percent of rows fail (no rows: passed)."""
        return not self.error and self.percent <= self.threshold + 1e-9

    def as_dict(self) -> dict[str, Any]:
        return {
            "check_id": self.check.id,
            "member": self.member,
            "category": self.check.category.value,
            "subcategory": self.check.subcategory,
            "target": self.check.target,
            "severity": self.check.severity.value,
            "threshold": self.threshold,
            "failing": self.failing,
            "denominator": self.denominator,
            "percent": round(self.percent, 4),
            "passed": self.passed,
            "sample": self.sample,
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }


def run_check(
    check: Check,
    tables: Tables,
    params: Params,
    *,
    threshold: float | None = None,
    member: str | None = None,
    sample_size: int = SAMPLE_SIZE,
) -> list[CheckResult]:
    """Results of one check: one per member with rows, then the consortium total (`*`)."""
    limit = check.threshold if threshold is None else threshold
    started = time.perf_counter()
    try:
        rows = check.build(tables, params)
        if member is not None:
            rows = rows.filter(rows.member == member)
        counts = rows.group_by("member").aggregate(
            denominator=rows.count(), failing=ibis.ifelse(rows.failed, 1, 0).sum()
        )
        by_member: dict[str, CheckResult] = {}
        for rec in counts.to_pyarrow().to_pylist():
            m = rec["member"] if rec["member"] is not None else ""
            by_member[m] = CheckResult(
                check,
                m,
                limit,
                failing=int(rec["failing"] or 0),
                denominator=int(rec["denominator"]),
            )
        if any(r.failing for r in by_member.values()) and sample_size > 0:
            bad = rows.filter(rows.failed)
            ranked = bad.mutate(
                n=ibis.row_number().over(group_by=bad.member, order_by=bad.record_id)
            )
            picked = ranked.filter(ranked.n < sample_size).select("member", "record_id")
            for rec in picked.order_by(["member", "record_id"]).to_pyarrow().to_pylist():
                m = rec["member"] if rec["member"] is not None else ""
                if m in by_member:
                    by_member[m].sample.append(str(rec["record_id"]))
    except Exception as exc:  # a broken check is a result, not the end of the run
        seconds = time.perf_counter() - started
        return [
            CheckResult(
                check,
                member or ALL_MEMBERS,
                limit,
                error=f"{type(exc).__name__}: {exc}"[:2000],
                seconds=seconds,
            )
        ]
    seconds = time.perf_counter() - started
    results = sorted(by_member.values(), key=lambda r: r.member)
    total = CheckResult(
        check,
        ALL_MEMBERS,
        limit,
        failing=sum(r.failing for r in results),
        denominator=sum(r.denominator for r in results),
        sample=[s for r in results for s in r.sample][:sample_size],
        seconds=seconds,
    )
    for r in results:
        r.seconds = seconds
    return [*results, total]


def run_suite(
    checks: Iterable[Check],
    tables: Tables,
    params: Params,
    *,
    thresholds: dict[str, float] | None = None,
    member: str | None = None,
    progress: Callable[[Check, list[CheckResult]], None] | None = None,
) -> list[CheckResult]:
    """Every check in turn; `progress` is told after each one."""
    out: list[CheckResult] = []
    for check in checks:
        results = run_check(
            check, tables, params, threshold=(thresholds or {}).get(check.id), member=member
        )
        out.extend(results)
        if progress is not None:
            progress(check, results)
    return out


def seed_analytes() -> tuple[AnalyteRange, ...]:
    """Canonical units and plausible ranges per LOINC code (equivalent codes included)."""
    from carepool.terminology.seed import load_seed

    seed = load_seed()
    out: dict[str, AnalyteRange] = {}
    for analyte in seed.analytes.values():
        low, high = analyte.plausible if analyte.plausible else (None, None)
        out[analyte.loinc] = AnalyteRange(analyte.loinc, analyte.unit, low, high)
    return tuple(out[k] for k in sorted(out))


def valid_units(tables: Tables) -> frozenset[str]:
    """The units the observations are filed in that are valid UCUM (validated in Python)."""
    from carepool.terminology.units import is_ucum

    o = tables.observation
    units = o.filter(o.unit.notnull()).select("unit").distinct().to_pyarrow().column("unit")
    return frozenset(u for u in units.to_pylist() if u and is_ucum(u))
