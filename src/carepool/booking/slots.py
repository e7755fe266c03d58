"""Finding bookable times for a service that needs several resources at once (pure).

Input is plain data: for each requirement, how many distinct resources it needs and, per
candidate resource lane, the free intervals (calendar availability minus claims). Output is the
earliest times at which every requirement can be met for the whole block
[start - preparation, start + duration + turnover).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from carepool.catalog.calendar import Interval, merge


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

    def earliest_fit(self, start: datetime, length: timedelta) -> datetime | None:
        """The earliest t >= start with [t, t + length) free; None if there is none."""
        k = max(0, bisect.bisect_right(self._starts, start) - 1)
        for iv in self.free[k:]:
            t = max(start, iv.start)
            if iv.end - t >= length:
                return t
        return None


@dataclass(frozen=True)
class Requirement:
    count: int
    units: Sequence[Unit]
    # When at least one of the units is free: a block outside it cannot be met (a quick test
    # before looking at every unit).
    any_free: Unit = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        union = merge(iv for unit in self.units for iv in unit.free)
        object.__setattr__(self, "any_free", Unit("*", 0, union))


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
    if limit <= 0:
        return []
    found = iter_slots(
        requirements,
        window_start=window_start,
        window_end=window_end,
        duration=duration,
        before=before,
        after=after,
        step=step,
    )
    return list(itertools.islice(found, limit))


def iter_slots(
    requirements: Sequence[Requirement],
    *,
    window_start: datetime,
    window_end: datetime,
    duration: timedelta,
    before: timedelta,
    after: timedelta,
    step: timedelta,
) -> Iterator[Slot]:
    """Every service start time in the window at which all requirements fit, earliest first.

    Lazy: a caller that needs the first few stops the work there.
    """
    for t in candidate_starts(
        requirements,
        window_start=window_start,
        window_end=window_end,
        duration=duration,
        before=before,
        after=after,
        step=step,
    ):
        slot = slot_at(requirements, t, duration=duration, before=before, after=after)
        if slot is not None:
            yield slot


def candidate_starts(
    requirements: Sequence[Requirement],
    *,
    window_start: datetime,
    window_end: datetime,
    duration: timedelta,
    before: timedelta,
    after: timedelta,
    step: timedelta,
    skip_to: datetime | None = None,
) -> Iterator[datetime]:
    """Start times worth checking, in order: on the step grid of the scarcest requirement's free
    intervals (no slot can start elsewhere). Lazy, so the first slots are found without listing
    the whole window. `skip_to` drops the times before it (the grid stays where it was)."""
    if not requirements:
        return iter(())
    anchor = min(requirements, key=lambda r: len(r.units))
    tick = timedelta(microseconds=1)

    def starts(iv: Interval) -> Iterator[datetime]:
        t = iv.start + before
        if t < window_start:
            t += ((window_start - t + step - tick) // step) * step
        t = _on_grid(t)
        if skip_to is not None and t < skip_to:
            t += ((skip_to - t + step - tick) // step) * step
        while t + duration + after <= iv.end and t + duration <= window_end:
            yield t
            t += step

    merged = heapq.merge(*(starts(iv) for unit in anchor.units for iv in unit.free))
    return (t for t, _ in itertools.groupby(merged))


def earliest_possible(
    requirements: Sequence[Requirement], t: datetime, *, before: timedelta, block: timedelta
) -> datetime | None:
    """The earliest start at or after `t` at which every requirement has some unit free for the
    whole block (necessary for a slot, not enough); None if there is none."""
    while True:
        latest = t
        for req in requirements:
            fit = req.any_free.earliest_fit(t - before, block)
            if fit is None:
                return None
            latest = max(latest, fit + before)
        if latest == t:
            return t
        t = latest


def slot_at(
    requirements: Sequence[Requirement],
    t: datetime,
    *,
    duration: timedelta,
    before: timedelta,
    after: timedelta,
) -> Slot | None:
    """The slot starting at `t` if every requirement has enough free resources for the block."""
    block_start, block_end = t - before, t + duration + after
    if not all(req.any_free.covers(block_start, block_end) for req in requirements):
        return None
    chosen: list[tuple[str, ...]] = []
    capacity = None
    for req in requirements:
        free, fits = _pick(req, block_start, block_end)
        if fits == 0:
            return None
        chosen.append(tuple(free[: req.count]))
        capacity = fits if capacity is None else min(capacity, fits)
    return Slot(t, t + duration, capacity or 0, tuple(chosen))
