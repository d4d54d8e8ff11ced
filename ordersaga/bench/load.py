"""Load drivers: closed loop (N clients, each waits for its order to finish) and open
loop (orders started at a fixed rate whatever happens to earlier ones).

A scenario starts an order and waits for it to reach a terminal status. The
wait is the workflow result through a Temporal client: one long poll per order,
answered when the workflow closes, so measuring costs the system far less than
polling an order's status would.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from contracts.orders import TERMINAL_STATUSES
from ordersaga.bench.scenarios import Answer

# An order not terminal within this long counts as lost.
TERMINAL_TIMEOUT_SECONDS = 120.0


class Scenario(Protocol):
    name: str
    expected_status: str

    async def submit(self, sequence: int) -> str:
        """Start one order and return its id once the system accepted it."""

    async def wait_terminal(self, order_id: str) -> str:
        """The order's terminal status."""


class Readable(Scenario, Protocol):
    async def read(self, order_id: str) -> Answer:
        """`GET /orders/{id}` as the order's customer."""


@dataclass
class Read:
    """One `GET /orders/{id}` (or another customer request) and what it answered."""

    seconds: float
    answer: Answer | None
    error: str | None = None

    @property
    def in_flight(self) -> bool:
        """It saw the order not yet finished."""
        return (
            self.answer is not None
            and self.answer.order_status is not None
            and self.answer.order_status not in TERMINAL_STATUSES
        )

    @property
    def ok(self) -> bool:
        return self.answer is not None and self.answer.status_code == 200


@dataclass
class OrderSample:
    order_id: str | None
    submit_seconds: float
    terminal_seconds: float | None
    status: str | None
    error: str | None = None
    # Where an order's outcome depends on what the bench did to it (a cancel),
    # the status it must reach; None: the scenario's.
    expected_status: str | None = None
    reads: list[Read] = field(default_factory=list)


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


def read_figures(reads: Sequence[Read]) -> dict[str, Any]:
    """Latencies of the answered reads (200), and how many saw the order in flight."""
    answered = [read for read in reads if read.ok]
    seconds = [read.seconds for read in answered]
    return {
        "count": len(reads),
        "errors": len(reads) - len(answered),
        "latency_ms": {**percentiles_ms(seconds), "max": max(seconds) * 1000 if seconds else None},
        "in_flight": sum(1 for read in answered if read.in_flight),
        "stale": sum(1 for read in answered if read.answer is not None and read.answer.stale),
    }


async def timed(request: Awaitable[Answer]) -> Read:
    """A customer's request to the API (not yet started), timed and recorded."""
    began = time.perf_counter()
    try:
        answer = await request
    except Exception as error:  # recorded and reported, like an order's
        return Read(time.perf_counter() - began, None, f"{type(error).__name__}: {error}"[:300])
    return Read(time.perf_counter() - began, answer)


async def read_at_random(scenario: Readable, order_id: str, within: float) -> Read:
    await asyncio.sleep(random.uniform(0.0, within))
    return await timed(scenario.read(order_id))


async def _one_order(
    scenario: Scenario,
    sequence: int,
    started: float,
    on_done: Callable[[], None],
    read_within: float | None = None,
) -> OrderSample:
    """`started` is when the order was due: an open loop that falls behind shows it
    in the latencies instead of hiding it (no coordinated omission). With
    `read_within`, the order's customer reads it once at a random moment that
    long after its acceptance, while the order runs on."""
    order_id: str | None = None
    read: asyncio.Task[Read] | None = None
    try:
        order_id = await scenario.submit(sequence)
        submitted = time.perf_counter()
        if read_within is not None:
            read = asyncio.create_task(
                read_at_random(cast(Readable, scenario), order_id, read_within)
            )
        async with asyncio.timeout(TERMINAL_TIMEOUT_SECONDS):
            status = await scenario.wait_terminal(order_id)
        terminal = time.perf_counter()
        reads = [await read] if read is not None else []
        return OrderSample(
            order_id, submitted - started, terminal - started, status, None, reads=reads
        )
    except Exception as error:  # recorded and reported: a bench run never crashes on one order
        reason = f"{type(error).__name__}: {error}"[:300]
        return OrderSample(order_id, time.perf_counter() - started, None, None, reason)
    finally:
        if read is not None and not read.done():
            read.cancel()  # the order is already recorded as lost
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
    read_within: float | None = None,
) -> RunResult:
    began = time.perf_counter()
    tasks: list[asyncio.Task[OrderSample]] = []
    for index in range(orders):
        due = began + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(
            asyncio.create_task(_one_order(scenario, next_sequence(), due, on_done, read_within))
        )
    samples = list(await asyncio.gather(*tasks))
    elapsed = time.perf_counter() - began
    return RunResult(scenario.name, "open", rate, elapsed, samples)


Runner = Callable[[Scenario], Awaitable[RunResult]]
