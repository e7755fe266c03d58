"""Worker processes for parsing (`ingest._parallel`): order kept, errors raised, workers stopped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from carepool.ingest import _parallel

pytestmark = pytest.mark.skipif(not _parallel.available(), reason="needs fork (Linux)")


def _numbers(index: int) -> Iterator[tuple[int, int, int]]:
    for i in range(index * 7):  # streams of different lengths, some empty
        yield index, i, os.getpid()


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_items_come_back_in_input_order_whatever_the_workers(workers: int) -> None:
    out = list(_parallel.ordered(_numbers, 6, workers=workers, chunk=4, ahead=2))
    assert [(a, b) for a, b, _pid in out] == [(a, b) for a in range(6) for b in range(a * 7)]
    pids = {pid for *_x, pid in out}
    if workers > 1:
        assert os.getpid() not in pids and len(pids) == workers  # forked once per run
    else:
        assert pids == {os.getpid()}


def test_a_single_stream_is_produced_by_a_worker_while_the_reader_reads() -> None:
    out = list(_parallel.ordered(lambda i: _numbers(i + 3), 1, workers=2))
    assert [(a, b) for a, b, _pid in out] == [(3, b) for b in range(21)]
    assert os.getpid() not in {pid for *_x, pid in out}


class _Broken(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Frozen:
    name: str
    tags: list[str] = field(default_factory=list)


@dataclass
class _Derived:
    a: int
    b: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.b = self.a * 2


def _dataclasses(index: int) -> Iterator[tuple[_Frozen, _Derived]]:
    for i in range(3):
        yield _Frozen(f"{index}-{i}", [str(i)]), _Derived(i)


def test_dataclasses_arrive_equal() -> None:
    expected = [x for i in range(4) for x in _dataclasses(i)]
    assert list(_parallel.ordered(_dataclasses, 4, workers=2, chunk=2)) == expected


def _breaks_on_three(index: int) -> Iterator[int]:
    yield index
    if index == 3:
        raise _Broken(f"input {index} is broken")


def test_an_error_in_a_worker_is_raised_in_the_reader_after_the_items_before_it() -> None:
    seen: list[int] = []
    with pytest.raises(_Broken, match="input 3 is broken"):
        for item in _parallel.ordered(_breaks_on_three, 6, workers=2, chunk=1):
            seen.append(item)
    assert seen == [0, 1, 2, 3]


def _endless(index: int) -> Iterator[int]:
    while True:
        yield index


def test_closing_the_reader_early_stops_the_workers() -> None:
    stream = _parallel.ordered(_endless, 3, workers=2, chunk=8, ahead=1)
    assert [next(stream) for _ in range(20)] == [0] * 20
    stream.close()  # must return, not wait for endless workers
