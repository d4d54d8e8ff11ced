"""The API's in-process rate-limit storage (api/limits.py): the library's
memory storage, with its sweep of expired keys at most once a second
instead of after every hit; the counts are the library's."""

from __future__ import annotations

import asyncio

import pytest
from limits import parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from api.errors import RateLimited
from api.limits import MemorySweptEachSecond, OrderRateLimit
from tests.rate_windows import clear_of_a_window_edge


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counting_sweeps(storage: MemorySweptEachSecond) -> list[None]:
    """Count the library's sweeps of this storage (its private method, called by name)."""
    sweeps: list[None] = []
    sweep = storage._MemoryStorage__expire_events  # type: ignore[attr-defined]

    async def counted() -> None:
        sweeps.append(None)
        await sweep()

    storage._MemoryStorage__expire_events = counted  # type: ignore[attr-defined]
    return sweeps


async def test_hits_within_a_second_of_a_sweep_start_no_other() -> None:
    clock = Clock()
    storage = MemorySweptEachSecond(clock=clock)
    sweeps = counting_sweeps(storage)
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = parse("1000/minute")

    for customer in range(50):
        assert await limiter.hit(item, "place_order", f"cus_{customer}")
        await asyncio.sleep(0)  # a started sweep runs as a task of its own
    assert len(sweeps) == 1, "the library's own storage sweeps after every hit"

    clock.now += MemorySweptEachSecond.SWEEP_EVERY_SECONDS
    assert await limiter.hit(item, "place_order", "cus_next")
    await asyncio.sleep(0)
    assert len(sweeps) == 2


async def test_the_count_is_the_librarys_and_a_sweep_still_frees_expired_keys() -> None:
    clock = Clock()
    storage = MemorySweptEachSecond(clock=clock)
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = parse("2/second")
    await clear_of_a_window_edge(1.0, burst_seconds=0.3)

    assert await limiter.hit(item, "place_order", "cus_a")
    assert await limiter.hit(item, "place_order", "cus_a")
    assert not await limiter.hit(item, "place_order", "cus_a")
    assert await limiter.hit(item, "place_order", "cus_b"), "one customer's count is its own"
    held = set(storage.expirations)
    assert held

    await asyncio.sleep(2.1)  # both windows of the 1 s limit have passed
    clock.now += MemorySweptEachSecond.SWEEP_EVERY_SECONDS
    assert await limiter.hit(item, "place_order", "cus_c")
    await asyncio.sleep(0.05)
    assert held.isdisjoint(storage.expirations), "expired keys stay in memory"


async def test_the_api_counts_in_process_memory_on_this_storage() -> None:
    limit = OrderRateLimit("1/minute", "memory://")
    await clear_of_a_window_edge(60)
    assert isinstance(limit._storage, MemorySweptEachSecond)
    await limit.check("cus_once")
    with pytest.raises(RateLimited):
        await limit.check("cus_once")
