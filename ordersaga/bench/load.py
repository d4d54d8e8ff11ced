"""Load drivers: closed loop (N clients, each waits for its order to finish) and open
loop (orders started at a fixed rate whatever happens to earlier ones).

A scenario starts an order and waits for it to reach a terminal status. The
wait is the workflow result through a Temporal client: one long poll per order,
answered when the workflow closes, so measuring costs the system far less than
polling an order's status would.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# An order not terminal within this long counts as lost.
TERMINAL_TIMEOUT_SECONDS = 120.0


class Scenario(Protocol):
    name: str
    expected_status: str

    async def submit(self, sequence: int) -> str:
        """Start one order and return its id once the system accepted it."""

    async def wait_terminal(self, order_id: str) -> str:
        """The order's terminal status."""


@dataclass
class OrderSample:
    order_id: str | None
    submit_seconds: float
    terminal_seconds: float | None
    status: str | None
    error: str | None = None


@dataclass
class RunResult:
    scenario: str
    mode: str  # "closed" or "open"
    load: float  # concurrency, or the offered rate in orders/s
    elapsed_seconds: float
    samples: list[OrderSample] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return sum(1 for s in self.samples if s.status is not None)

    @property
    def orders_per_second(self) -> float:
        return self.completed / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


def percentiles_ms(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    if len(values) == 1:
        only = values[0] * 1000
        return {"p50": only, "p95": only, "p99": only}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49] * 1000, "p95": cuts[94] * 1000, "p99": cuts[98] * 1000}


async def _one_order(
    scenario: Scenario, sequence: int, started: float, on_done: Callable[[], None]
) -> OrderSample:
    """`started` is when the order was due: an open loop that falls behind shows it
    in the latencies instead of hiding it (no coordinated omission)."""
    order_id: str | None = None
    try:
        order_id = await scenario.submit(sequence)
        submitted = time.perf_counter()
        async with asyncio.timeout(TERMINAL_TIMEOUT_SECONDS):
            status = await scenario.wait_terminal(order_id)
        return OrderSample(
            order_id, submitted - started, time.perf_counter() - started, status, None
        )
    except Exception as error:  # recorded and reported: a bench run never crashes on one order
        reason = f"{type(error).__name__}: {error}"[:300]
        return OrderSample(order_id, time.perf_counter() - started, None, None, reason)
    finally:
        on_done()


async def closed_loop(
    scenario: Scenario,
    *,
    orders: int,
    concurrency: int,
    next_sequence: Callable[[], int],
    on_done: Callable[[], None],
) -> RunResult:
    samples: list[OrderSample] = []
    remaining = orders

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            samples.append(await _one_order(scenario, next_sequence(), started, on_done))

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(concurrency, orders))))
    elapsed = time.perf_counter() - began
    return RunResult(scenario.name, "closed", concurrency, elapsed, samples)


async def open_loop(
    scenario: Scenario,
    *,
    orders: int,
    rate: float,
    next_sequence: Callable[[], int],
    on_done: Callable[[], None],
) -> RunResult:
    began = time.perf_counter()
    tasks: list[asyncio.Task[OrderSample]] = []
    for index in range(orders):
        due = began + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_one_order(scenario, next_sequence(), due, on_done)))
    samples = list(await asyncio.gather(*tasks))
    elapsed = time.perf_counter() - began
    return RunResult(scenario.name, "open", rate, elapsed, samples)


Runner = Callable[[Scenario], Awaitable[RunResult]]
