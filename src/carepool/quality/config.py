"""Run settings: threshold overrides, disabled checks and check parameters, from YAML or the DB.

A YAML file (`carepool quality run --config FILE`) reads:

    thresholds: {observation.code_mapped: 10}   # percent of rows allowed to fail
    disabled: [observation.sex_plausible]
    params: {max_lag_hours: 48, stale_days: 3}
    alert_drop: 5                                # score points that raise an alert

It lies on top of the overrides stored in `quality_threshold` (set with `quality threshold`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from carepool.core.errors import FieldError, InvalidInput

PARAM_NAMES = (
    "max_lag_hours",
    "stale_days",
    "late_grace",
    "consensus_factor",
    "range_tolerance",
    "max_age_years",
    "after_death_hours",
)


@dataclass
class RunConfig:
    thresholds: dict[str, float] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)
    params: dict[str, float] = field(default_factory=dict)
    alert_drop: float = 5.0

    def merged_over(self, base: RunConfig) -> RunConfig:
        """This config on top of `base` (this one wins)."""
        return RunConfig(
            thresholds={**base.thresholds, **self.thresholds},
            disabled=base.disabled | self.disabled,
            params={**base.params, **self.params},
            alert_drop=self.alert_drop,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "thresholds": dict(sorted(self.thresholds.items())),
            "disabled": sorted(self.disabled),
            "params": dict(sorted(self.params.items())),
            "alert_drop": self.alert_drop,
        }


def parse_config(doc: Any, known_checks: set[str]) -> RunConfig:
    """A config from a parsed YAML document; unknown checks or parameters are errors."""
    if doc is None:
        return RunConfig()
    if not isinstance(doc, dict):
        raise InvalidInput("a quality config is a mapping (thresholds, disabled, params)")
    errors: list[FieldError] = []
    allowed = {f.name for f in fields(RunConfig)}
    for key in doc:
        if key not in allowed:
            errors.append(FieldError(str(key), f"unknown setting; use one of {sorted(allowed)}"))
    thresholds: dict[str, float] = {}
    for check_id, value in (doc.get("thresholds") or {}).items():
        if check_id not in known_checks:
            errors.append(FieldError(f"thresholds.{check_id}", "no such check"))
        elif not isinstance(value, int | float) or not 0 <= value <= 100:
            errors.append(FieldError(f"thresholds.{check_id}", "a percent from 0 to 100"))
        else:
            thresholds[check_id] = float(value)
    disabled = set()
    for check_id in doc.get("disabled") or []:
        if check_id not in known_checks:
            errors.append(FieldError(f"disabled.{check_id}", "no such check"))
        disabled.add(str(check_id))
    params: dict[str, float] = {}
    for name, value in (doc.get("params") or {}).items():
        if name not in PARAM_NAMES:
            errors.append(FieldError(f"params.{name}", f"unknown; use one of {list(PARAM_NAMES)}"))
        elif not isinstance(value, int | float) or value <= 0:
            errors.append(FieldError(f"params.{name}", "a positive number"))
        else:
            params[name] = float(value)
    drop = doc.get("alert_drop", 5.0)
    if not isinstance(drop, int | float) or drop <= 0:
        errors.append(FieldError("alert_drop", "a positive number of score points"))
        drop = 5.0
    if errors:
        raise InvalidInput(f"the quality config has {len(errors)} error(s)", errors)
    return RunConfig(thresholds, disabled, params, float(drop))


def load_config(path: Path, known_checks: set[str]) -> RunConfig:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read quality config {path}: {exc}") from exc
    return parse_config(doc, known_checks)
