"""Availability from calendars: pure functions over plain data, no database.

Rules are local wall-clock windows in the consortium's time zone; exceptions are UTC instants.
The result is a sorted list of disjoint UTC intervals. A resource with no rules is open around
the clock (beds, wards); a resource out of service has no availability at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("interval bounds must be timezone-aware")


@dataclass(frozen=True)
class Rule:
    cycle_days: int
    anchor: date
    days: Sequence[int]
    start: time
    end: time
    label: str = "open"
    valid_from: date | None = None
    valid_to: date | None = None

    def applies_on(self, day: date) -> bool:
        if self.valid_from and day < self.valid_from:
            return False
        if self.valid_to and day > self.valid_to:
            return False
        return (day - self.anchor).days % self.cycle_days in self.days


@dataclass(frozen=True)
class Exception_:
    start: datetime
    end: datetime
    adds: bool  # True for extra time, False for maintenance / closure / leave


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sort and merge overlapping or touching intervals."""
    ordered = sorted(intervals, key=lambda i: i.start)
    out: list[Interval] = []
    for item in ordered:
        if out and item.start <= out[-1].end:
            if item.end > out[-1].end:
                out[-1] = Interval(out[-1].start, item.end)
        else:
            out.append(item)
    return out


def subtract(base: Sequence[Interval], cuts: Sequence[Interval]) -> list[Interval]:
    """`base` minus every interval in `cuts` (both merged first)."""
    result: list[Interval] = []
    cuts = merge(cuts)
    for piece in merge(base):
        current = [piece]
        for cut in cuts:
            nxt: list[Interval] = []
            for part in current:
                if cut.end <= part.start or cut.start >= part.end:
                    nxt.append(part)
                    continue
                if cut.start > part.start:
                    nxt.append(Interval(part.start, cut.start))
                if cut.end < part.end:
                    nxt.append(Interval(cut.end, part.end))
            current = nxt
        result.extend(current)
    return result


def clip(intervals: Sequence[Interval], start: datetime, end: datetime) -> list[Interval]:
    out = []
    for i in intervals:
        s, e = max(i.start, start), min(i.end, end)
        if s < e:
            out.append(Interval(s, e))
    return out


def rule_windows(rule: Rule, start: datetime, end: datetime, tz: ZoneInfo) -> list[Interval]:
    """Every window of `rule` that touches [start, end), in UTC (night shifts cross midnight)."""
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date()
    out = []
    day = first
    while day <= last:
        if rule.applies_on(day):
            local_start = datetime.combine(day, rule.start, tzinfo=tz)
            end_day = day if rule.end > rule.start else day + timedelta(days=1)
            local_end = datetime.combine(end_day, rule.end, tzinfo=tz)
            out.append(Interval(local_start.astimezone(UTC), local_end.astimezone(UTC)))
        day += timedelta(days=1)
    return out


def availability(
    *,
    rules: Sequence[Rule],
    exceptions: Sequence[Exception_],
    start: datetime,
    end: datetime,
    tz: str,
    in_service: bool = True,
) -> list[Interval]:
    """The times in [start, end) at which the resource can be used, as disjoint UTC intervals."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("availability window must be timezone-aware")
    if end <= start or not in_service:
        return []
    zone = ZoneInfo(tz)
    if rules:
        base = [w for r in rules for w in rule_windows(r, start, end, zone)]
    else:
        base = [Interval(start, end)]
    base += [Interval(x.start, x.end) for x in exceptions if x.adds]
    cuts = [Interval(x.start, x.end) for x in exceptions if not x.adds]
    return clip(subtract(merge(base), cuts), start.astimezone(UTC), end.astimezone(UTC))
