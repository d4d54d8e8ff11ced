"""The load generator's own collector never pauses inside a measured window
(ordersaga.bench.procs.own_collector_paused)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from ordersaga.bench.procs import own_collector_paused


class Node:
    def __init__(self) -> None:
        self.other: Any = None


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was_enabled = gc.isenabled()
    yield
    if was_enabled:
        gc.enable()


def cycle() -> weakref.ref[Node]:
    """A cycle nothing refers to; only a collection frees it."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


def test_a_window_runs_without_the_collector_and_starts_with_nothing_to_collect() -> None:
    gc.disable()
    left_before = cycle()  # the previous window's cycles
    gc.enable()

    with own_collector_paused():
        assert left_before() is None
        assert not gc.isenabled()
        made_inside = cycle()
        # Kept, so they count: far past gen0's threshold, where it would have run.
        kept = [Node() for _ in range(50_000)]
        assert made_inside() is not None
        del kept

    assert gc.isenabled()


def test_the_collector_comes_back_when_the_window_fails() -> None:
    with pytest.raises(RuntimeError), own_collector_paused():
        raise RuntimeError("a window that failed")

    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()

    with own_collector_paused():
        pass

    assert not gc.isenabled()
