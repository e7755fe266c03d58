"""Finding bookable times for a service that needs several resources at once (pure).

Input is plain data: for each requirement, how many distinct resources it needs and, per
candidate resource lane, the free intervals (calendar availability minus claims). Output is the
earliest times at which every requirement can be met for the whole block
[start - preparation, start + duration + turnover).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from carepool.catalog.calendar import Interval


@dataclass(frozen=True)
class Unit:
    """One lane of one resource and its free time (sorted, disjoint)."""

    resource_id: str
    lane: int
    free: Sequence[Interval]
    _starts: list[datetime] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._starts.extend(i.start for i in self.free)

    def covers(self, start: datetime, end: datetime) -> bool:
        k = bisect.bisect_right(self._starts, start) - 1
        return k >= 0 and self.free[k].end >= end


@dataclass(frozen=True)
class Requirement:
    count: int
    units: Sequence[Unit]


@dataclass(frozen=True)
class Slot:
    start: datetime  # when the service itself starts
    end: datetime
    capacity: int  # how many bookings fit at this time (disjoint resource sets)
    resources: tuple[tuple[str, ...], ...]  # a first-fit choice per requirement


GRID = timedelta(minutes=5)


def _on_grid(t: datetime) -> datetime:
    """Round up to the next whole five minutes (slots never start at 09:07:24.99)."""
    epoch = datetime(2000, 1, 1, tzinfo=t.tzinfo)
    rest = (t - epoch) % GRID
    return t if not rest else t + (GRID - rest)


def _pick(req: Requirement, start: datetime, end: datetime) -> tuple[list[str], int]:
    free_resources: list[str] = []
    for unit in req.units:
        if unit.resource_id not in free_resources and unit.covers(start, end):
            free_resources.append(unit.resource_id)
    return free_resources, len(free_resources) // req.count


def find_slots(
    requirements: Sequence[Requirement],
    *,
    window_start: datetime,
    window_end: datetime,
    duration: timedelta,
    before: timedelta,
    after: timedelta,
    step: timedelta,
    limit: int,
) -> list[Slot]:
    """The earliest `limit` service start times in the window at which all requirements fit."""
    if not requirements or limit <= 0:
        return []
    anchor = min(requirements, key=lambda r: len(r.units))
    candidates: set[datetime] = set()
    for unit in anchor.units:
        for iv in unit.free:
            t = iv.start + before
            if t < window_start:
                t += ((window_start - t + step - timedelta(microseconds=1)) // step) * step
            t = _on_grid(t)
            while t + duration + after <= iv.end and t + duration <= window_end:
                candidates.add(t)
                t += step
    slots: list[Slot] = []
    for t in sorted(candidates):
        block_start, block_end = t - before, t + duration + after
        chosen: list[tuple[str, ...]] = []
        capacity = None
        for req in requirements:
            free, fits = _pick(req, block_start, block_end)
            if fits == 0:
                break
            chosen.append(tuple(free[: req.count]))
            capacity = fits if capacity is None else min(capacity, fits)
        else:
            slots.append(Slot(t, t + duration, capacity or 0, tuple(chosen)))
            if len(slots) >= limit:
                break
    return slots
