"""Scores: the share of passing rows per check, averaged per category, categories averaged."""

from __future__ import annotations

import pytest

from carepool.quality.checks import REGISTRY
from carepool.quality.evaluate import CheckResult
from carepool.quality.scoring import ranking, scores


def _r(check_id: str, member: str, failing: int, rows: int, error: str = "") -> CheckResult:
    check = REGISTRY[check_id]
    return CheckResult(check, member, check.threshold, failing, rows, error=error)


def test_category_and_overall_scores() -> None:
    results = [
        _r("observation.code_mapped", "A", 10, 100),  # completeness 90
        _r("observation.unit_present", "A", 0, 50),  # completeness 100
        _r("observation.duplicates", "A", 50, 100),  # plausibility 50
        _r("patient.required_fields", "A", 0, 0),  # no rows: not scored
        _r("observation.after_birth", "A", 0, 10, error="boom"),  # broken: not scored
        _r("observation.code_mapped", "B", 0, 10),
        _r("observation.code_mapped", "*", 10, 110),
    ]
    by = {(s.member, s.category): s for s in scores(results)}
    assert by[("A", "completeness")].score == pytest.approx(95.0)
    assert (by[("A", "completeness")].checks_passed, by[("A", "completeness")].checks_total) == (
        1,
        2,
    )
    assert by[("A", "plausibility")].score == pytest.approx(50.0)
    assert by[("A", "overall")].score == pytest.approx(72.5)
    assert by[("B", "overall")].score == pytest.approx(100.0)
    assert [s.member for s in ranking(by.values())] == ["B", "A"]
