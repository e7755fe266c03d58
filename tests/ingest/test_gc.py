"""A large run keeps the collector out of its way and leaves the process as it found it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from carepool.ingest import actions


@pytest.fixture
def clean_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_a_large_run_freezes_and_then_unfreezes_a_process_that_was_not_frozen(clean_gc) -> None:
    before = gc.get_threshold()
    with actions._fewer_collections(large=True):
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] >= 50_000
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_a_server_with_a_frozen_heap_stays_frozen_after_a_large_run(clean_gc) -> None:
    gc.freeze()
    with actions._fewer_collections(large=True):
        node = _Node()
        dropped = weakref.ref(node)
        del node  # garbage of the run
    assert gc.get_freeze_count() > 0  # frozen again, as the server left it
    assert dropped() is None  # the run's garbage was collected, not frozen with the heap


def test_a_small_run_leaves_the_collector_alone(clean_gc) -> None:
    before = gc.get_threshold()
    with actions._fewer_collections(large=False):
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == before
