"""The open-order cap counts a customer's open orders only when it must."""

from __future__ import annotations

import pytest

from api.errors import TooManyOpenOrders
from api.limits import OpenOrderCap


class Counter:
    """Stands in for the visibility count; says how often it was asked."""

    def __init__(self, open_orders: int) -> None:
        self.open_orders = open_orders
        self.asked = 0

    async def __call__(self, customer_id: str) -> int:
        self.asked += 1
        return self.open_orders


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_fresh_count_is_reused_with_the_orders_placed_since() -> None:
    clock, count = Clock(), Counter(open_orders=0)
    cap = OpenOrderCap(3, fresh_for=10.0, clock=clock)

    for _ in range(3):
        await cap.check("cus_a", count)
        cap.placed("cus_a")

    assert count.asked == 1


async def test_the_cap_is_refused_only_on_a_fresh_count() -> None:
    clock, count = Clock(), Counter(open_orders=0)
    cap = OpenOrderCap(2, fresh_for=10.0, clock=clock)
    await cap.check("cus_a", count)
    cap.placed("cus_a")
    cap.placed("cus_a")  # the estimate is at the cap; both orders finished meanwhile

    await cap.check("cus_a", count)  # counted again: 0 open, accepted

    assert count.asked == 2
    count.open_orders = 2
    cap.placed("cus_a")
    cap.placed("cus_a")
    with pytest.raises(TooManyOpenOrders) as refused:
        await cap.check("cus_a", count)
    assert count.asked == 3
    assert refused.value.headers == {"Retry-After": "30"}


async def test_a_stale_count_is_taken_again() -> None:
    clock, count = Clock(), Counter(open_orders=1)
    cap = OpenOrderCap(5, fresh_for=10.0, clock=clock)
    await cap.check("cus_a", count)

    clock.now += 10.0
    await cap.check("cus_a", count)

    assert count.asked == 2


async def test_customers_are_counted_apart_and_the_oldest_forgotten() -> None:
    clock, count = Clock(), Counter(open_orders=0)
    cap = OpenOrderCap(5, fresh_for=10.0, max_customers=2, clock=clock)
    for customer in ("cus_a", "cus_b", "cus_c"):
        await cap.check(customer, count)
    await cap.check("cus_c", count)
    await cap.check("cus_b", count)
    assert count.asked == 3

    await cap.check("cus_a", count)  # forgotten: counted again

    assert count.asked == 4
