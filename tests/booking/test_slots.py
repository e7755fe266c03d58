"""The pure slot finder: grid, several resources at once, counts, preparation and turnover."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from carepool.booking.slots import Requirement, Unit, find_slots
from carepool.catalog.calendar import Interval


def _t(h: int, m: int = 0, s: int = 0) -> datetime:
    return datetime(2026, 12, 1, h, m, s, tzinfo=UTC)


def _unit(rid: str, *spans: tuple[datetime, datetime]) -> Unit:
    return Unit(rid, 0, [Interval(a, b) for a, b in spans])


def _find(reqs: list[Requirement], start: datetime, **kw: object) -> list[datetime]:
    args = {
        "window_end": _t(23),
        "duration": timedelta(minutes=15),
        "before": timedelta(0),
        "after": timedelta(0),
        "step": timedelta(minutes=15),
        "limit": 4,
    }
    args.update(kw)
    return [s.start for s in find_slots(reqs, window_start=start, **args)]  # type: ignore[arg-type]


def test_slots_start_on_a_five_minute_grid() -> None:
    ct = _unit("ct", (_t(9, 7, 24), _t(12)))
    assert _find([Requirement(1, [ct])], _t(9, 7, 24))[:2] == [_t(9, 10), _t(9, 25)]


def test_every_requirement_must_be_free_together() -> None:
    ct = _unit("ct", (_t(8), _t(12)))
    tech = _unit("tech", (_t(10), _t(11)))
    got = _find([Requirement(1, [ct]), Requirement(1, [tech])], _t(8))
    assert got == [_t(10), _t(10, 15), _t(10, 30), _t(10, 45)]


def test_count_needs_distinct_resources_and_capacity_is_reported() -> None:
    nurses = [_unit(f"n{i}", (_t(8), _t(9))) for i in range(5)]
    slots = find_slots(
        [Requirement(2, nurses)],
        window_start=_t(8),
        window_end=_t(9),
        duration=timedelta(minutes=30),
        before=timedelta(0),
        after=timedelta(0),
        step=timedelta(minutes=30),
        limit=5,
    )
    assert [s.capacity for s in slots] == [2, 2]
    assert slots[0].resources == (("n0", "n1"),)
    assert _find([Requirement(6, nurses)], _t(8)) == []


def test_preparation_and_turnover_must_fit_in_free_time() -> None:
    ct = _unit("ct", (_t(8), _t(9)))
    got = _find(
        [Requirement(1, [ct])], _t(8), before=timedelta(minutes=10), after=timedelta(minutes=5)
    )
    # first start 08:10 (preparation from 08:00); last must end turnover by 09:00
    assert got[0] == _t(8, 10) and got[-1] + timedelta(minutes=20) <= _t(9)


def test_skipping_ahead_keeps_the_grid_and_misses_no_slot() -> None:
    """`candidate_starts(skip_to=x)` is the same grid from x on (steps need not divide 5 min),
    and `earliest_possible` never jumps past a start at which a slot exists."""
    from carepool.booking.slots import candidate_starts, earliest_possible, slot_at

    ct = _unit("ct", (_t(8, 3), _t(12)), (_t(13), _t(17)))
    tech = _unit("tech", (_t(10, 40), _t(11, 30)), (_t(15), _t(16)))
    reqs = [Requirement(1, [ct]), Requirement(1, [tech])]
    shape = {
        "duration": timedelta(minutes=12),
        "before": timedelta(minutes=3),
        "after": timedelta(minutes=2),
    }
    kw = {**shape, "window_start": _t(8), "window_end": _t(18), "step": timedelta(minutes=12)}
    every = list(candidate_starts(reqs, **kw))  # type: ignore[arg-type]
    for x in (_t(9), _t(10, 41), _t(14, 59)):
        assert list(candidate_starts(reqs, skip_to=x, **kw)) == [t for t in every if t >= x]  # type: ignore[arg-type]
    block = timedelta(minutes=17)
    slots = [t for t in every if slot_at(reqs, t, **shape)]  # type: ignore[arg-type]
    assert slots and slots[0] >= _t(10, 40)
    for t in every:
        possible = earliest_possible(reqs, t, before=shape["before"], block=block)
        later = [s for s in slots if s >= t]
        assert later == [] or (possible is not None and possible <= later[0])
