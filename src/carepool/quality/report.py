"""A quality run as one self-contained HTML page (inline CSS, no scripts, no external requests).

Server-rendered with Jinja2 (autoescaped): the scorecard of the run, then every check with its
result per member and the sample of failing record ids. The API serves it and
`carepool quality report RUN --out FILE` writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jinja2 import Environment, select_autoescape

from carepool.quality import service
from carepool.quality.models import ALL_MEMBERS, QualityResult, QualityRun, QualityScore

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Data quality run {{ run.run_id }}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI","Noto Sans SC",sans-serif;
 margin:24px;color:#1d2733}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px}
.meta{color:#5b6b7b;margin-bottom:16px}
table{border-collapse:collapse;width:100%;margin-bottom:12px}
th,td{border-bottom:1px solid #e3e8ee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f9;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#16794c;font-weight:600} .fail{color:#b42318;font-weight:600} .err{color:#9a6700}
.bar{display:inline-block;height:8px;background:#2f80ed;border-radius:4px;vertical-align:middle}
code{font-size:12px;color:#3d4b5c} .sev{font-size:12px;color:#5b6b7b}
</style></head><body>
<h1>Data quality run <code>{{ run.run_id }}</code> · 数据质量报告</h1>
<div class="meta">{{ run.status }} · {{ run.member or "all members" }} · backend {{ run.backend }}
 · measured at {{ run.as_of }} · {{ run.checks_total }} checks, {{ run.checks_failed }} failed
 for the consortium</div>
{% if run.error %}<p class="err">{{ run.error }}</p>{% endif %}
<h2>Scorecard · 评分</h2>
<table><tr><th>rank</th><th>member</th>
{% for c in categories %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in scorecard %}<tr><td class="n">{{ row.rank }}</td><td>{{ row.member }}</td>
{% for c in categories %}<td class="n">{% if row.scores.get(c) is not none %}
<span class="bar" style="width:{{ (row.scores[c] * 0.6)|round(1) }}px"></span>
{{ "%.1f"|format(row.scores[c]) }}{% else %}–{% endif %}</td>{% endfor %}</tr>{% endfor %}
</table>
<h2>Checks · 检查</h2>
<table><tr><th>check</th><th>member</th><th>failing / rows</th><th>%</th><th>threshold</th>
<th>result</th><th>sample of failing records</th></tr>
{% for check in checks %}{% for r in check.rows %}<tr>
{% if loop.first %}<td rowspan="{{ check.rows|length }}"><code>{{ check.id }}</code><br>
<span class="sev">{{ check.category }} / {{ check.subcategory }} · {{ check.target }} ·
{{ check.severity }}</span></td>{% endif %}
<td>{{ r.member }}</td><td class="n">{{ r.failing }} / {{ r.denominator }}</td>
<td class="n">{{ "%.2f"|format(r.percent) }}</td><td class="n">{{ r.threshold }}</td>
<td>{% if r.error %}<span class="err">error</span> {{ r.error }}{% elif r.passed %}
<span class="pass">pass</span>{% else %}<span class="fail">fail</span>{% endif %}</td>
<td>{% for s in r.sample %}<code>{{ s }}</code> {% endfor %}</td></tr>{% endfor %}{% endfor %}
</table>
</body></html>
"""

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_template = _env.from_string(_TEMPLATE)


def render_run(
    run: QualityRun, results: Sequence[QualityResult], scores: Sequence[QualityScore]
) -> str:
    """The run as HTML: scores ranked by overall, then each check's results (totals first)."""
    categories = [*sorted({s.category for s in scores} - {service.OVERALL}), service.OVERALL]
    per_member: dict[str, dict[str, float]] = {}
    for s in scores:
        per_member.setdefault(s.institution_id, {})[s.category] = s.score
    ordered = sorted(
        per_member.items(),
        key=lambda kv: (kv[0] == ALL_MEMBERS, -kv[1].get(service.OVERALL, 0.0), kv[0]),
    )
    scorecard = []
    rank = 0
    for member, values in ordered:
        if member != ALL_MEMBERS:
            rank += 1
        scorecard.append(
            {"rank": rank if member != ALL_MEMBERS else "", "member": member, "scores": values}
        )
    checks: dict[str, dict[str, Any]] = {}
    for r in results:
        entry = checks.setdefault(
            r.check_id,
            {
                "id": r.check_id,
                "category": r.category,
                "subcategory": r.subcategory,
                "target": r.target,
                "severity": r.severity,
                "rows": [],
            },
        )
        entry["rows"].append(service.result_to_dict(r))
    for entry in checks.values():
        entry["rows"].sort(key=lambda d: (d["member"] != ALL_MEMBERS, d["member"]))
    return _template.render(
        run=service.run_to_dict(run),
        categories=categories,
        scorecard=scorecard,
        checks=list(checks.values()),
    )
