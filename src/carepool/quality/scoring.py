"""Scores from results: pure arithmetic, the same for a run, a scorecard and a benchmark.

A check's score for a member is the share of its rows that pass (100 − percent failing); a
category's score is the mean over the checks that had rows to look at; `overall` is the mean of
the category scores, so a category with many checks does not drown the others. Pass counts
(DQD's "percent of checks passed") go along for the record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from carepool.quality.evaluate import CheckResult

OVERALL = "overall"


@dataclass(frozen=True)
class Score:
    member: str
    category: str
    score: float
    checks_passed: int
    checks_total: int

    def as_dict(self) -> dict[str, object]:
        return {
            "member": self.member,
            "category": self.category,
            "score": round(self.score, 2),
            "checks_passed": self.checks_passed,
            "checks_total": self.checks_total,
        }


def scores(results: Iterable[CheckResult]) -> list[Score]:
    """Per member, one score per category that applies and one `overall`."""
    per: dict[str, dict[str, list[CheckResult]]] = {}
    for r in results:
        if r.error or r.denominator == 0:
            continue
        per.setdefault(r.member, {}).setdefault(r.check.category.value, []).append(r)
    out: list[Score] = []
    for member in sorted(per):
        cats = per[member]
        member_scores = []
        for category in sorted(cats):
            rs = cats[category]
            value = sum(100.0 - r.percent for r in rs) / len(rs)
            member_scores.append(Score(member, category, value, sum(r.passed for r in rs), len(rs)))
        out.extend(member_scores)
        overall = sum(s.score for s in member_scores) / len(member_scores)
        out.append(
            Score(
                member,
                OVERALL,
                overall,
                sum(s.checks_passed for s in member_scores),
                sum(s.checks_total for s in member_scores),
            )
        )
    return out


def ranking(items: Iterable[Score]) -> list[Score]:
    """Members' overall scores, best first (ties by member id)."""
    members = (s for s in items if s.category == OVERALL and s.member != "*")
    return sorted(members, key=lambda s: (-s.score, s.member))
