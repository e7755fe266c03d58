"""Availability (pure): weekly and rotating rules, night shifts, exceptions, time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest

from carepool.catalog.calendar import Exception_, Interval, Rule, availability, merge, subtract

CST = timezone(timedelta(hours=8))


def _dt(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=CST)


WEEKDAYS_8_17 = Rule(
    cycle_days=7, anchor=date(2024, 1, 1), days=[0, 1, 2, 3, 4], start=time(8), end=time(17)
)


def test_weekly_rule_skips_weekend() -> None:
    # Friday 4 Dec to Monday 7 Dec 2026.
    got = availability(
        rules=[WEEKDAYS_8_17],
        exceptions=[],
        start=_dt(2026, 12, 4),
        end=_dt(2026, 12, 8),
        tz="Asia/Shanghai",
    )
    assert [(i.start.astimezone(CST).day, i.start.astimezone(CST).hour) for i in got] == [
        (4, 8),
        (7, 8),
    ]
    assert all(i.start.tzinfo is not None and i.start.utcoffset() == timedelta(0) for i in got)


def test_night_shift_crosses_midnight_and_rotates() -> None:
    nights = Rule(cycle_days=4, anchor=date(2026, 12, 1), days=[2], start=time(22), end=time(6))
    got = availability(
        rules=[nights],
        exceptions=[],
        start=_dt(2026, 12, 1),
        end=_dt(2026, 12, 10),
        tz="Asia/Shanghai",
    )
    assert [(i.start.astimezone(CST), i.end.astimezone(CST)) for i in got] == [
        (_dt(2026, 12, 3, 22), _dt(2026, 12, 4, 6)),
        (_dt(2026, 12, 7, 22), _dt(2026, 12, 8, 6)),
    ]


def test_exceptions_cut_and_extra_adds() -> None:
    leave = Exception_(start=_dt(2026, 12, 7, 12), end=_dt(2026, 12, 7, 13), adds=False)
    saturday = Exception_(start=_dt(2026, 12, 5, 9), end=_dt(2026, 12, 5, 12), adds=True)
    got = availability(
        rules=[WEEKDAYS_8_17],
        exceptions=[leave, saturday],
        start=_dt(2026, 12, 5),
        end=_dt(2026, 12, 8),
        tz="Asia/Shanghai",
    )
    minutes = sum((i.end - i.start).total_seconds() for i in got) / 60
    assert minutes == 3 * 60 + 8 * 60  # Saturday extra 3 h, Monday 9 h minus 1 h of leave
    assert len(got) == 3


def test_no_rules_means_around_the_clock_and_out_of_service_means_nothing() -> None:
    start, end = _dt(2026, 12, 1), _dt(2026, 12, 2)
    assert availability(rules=[], exceptions=[], start=start, end=end, tz="Asia/Shanghai") == [
        Interval(start.astimezone(UTC), end.astimezone(UTC))
    ]
    assert (
        availability(
            rules=[], exceptions=[], start=start, end=end, tz="Asia/Shanghai", in_service=False
        )
        == []
    )


def test_validity_window_limits_rule() -> None:
    rule = Rule(
        cycle_days=7,
        anchor=date(2024, 1, 1),
        days=list(range(7)),
        start=time(8),
        end=time(9),
        valid_from=date(2026, 12, 3),
        valid_to=date(2026, 12, 4),
    )
    got = availability(
        rules=[rule],
        exceptions=[],
        start=_dt(2026, 12, 1),
        end=_dt(2026, 12, 8),
        tz="Asia/Shanghai",
    )
    assert len(got) == 2


def test_naive_window_is_refused() -> None:
    with pytest.raises(ValueError):
        availability(
            rules=[],
            exceptions=[],
            start=datetime(2026, 12, 1),
            end=datetime(2026, 12, 2),
            tz="UTC",
        )


def test_merge_and_subtract() -> None:
    a = Interval(_dt(2026, 1, 1, 8), _dt(2026, 1, 1, 10))
    b = Interval(_dt(2026, 1, 1, 9), _dt(2026, 1, 1, 12))
    assert merge([b, a]) == [Interval(a.start, b.end)]
    cut = Interval(_dt(2026, 1, 1, 9), _dt(2026, 1, 1, 11))
    assert subtract([Interval(a.start, b.end)], [cut]) == [
        Interval(a.start, cut.start),
        Interval(cut.end, b.end),
    ]
