"""`saga-slow-step`: what a customer gets from the API while a step is slow.

For each forward step in turn (reserve, charge, ship), its service is slowed
with the admin faults API (`PUT /admin/faults {latency_ms}`; cleared after,
whatever happens) and orders are placed a little apart. Every other order's
customer reads it (`GET /orders/{id}`) at a quarter, half and three quarters
of the slowed call; the others' customers cancel it (`POST
/orders/{id}/cancel`) halfway through. The steps before the slowed one take
milliseconds at this load, so those moments fall while the slowed call is in
flight; the reads' statuses show where the orders were.

The contract: a read answers quickly whatever a step is doing, and a cancel
sent before the shipment exists is accepted (202) and the order ends
CANCELLED. An accepted cancel must end CANCELLED (else the run has lost the
order); a refused one (409) must end COMPLETED.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from contracts.orders import OrderStatus, StepName
from ordersaga.bench.load import (
    TERMINAL_TIMEOUT_SECONDS,
    OrderSample,
    Read,
    RunResult,
    percentiles_ms,
    read_figures,
    timed,
)
from ordersaga.bench.scenarios import Answer, SagaScenario

# Which service each forward step calls.
SLOWED_STEPS = (
    (StepName.RESERVE_INVENTORY.value, "inventory"),
    (StepName.CHARGE_PAYMENT.value, "payments"),
    (StepName.CREATE_SHIPMENT.value, "shipping"),
)
# Within the saga's local attempt (3 s), so the step is slow, not failing.
LATENCY_MS = 2000
ORDERS_PER_STEP = 10
SUBMIT_INTERVAL_SECONDS = 0.25
# When, as fractions of the slowed call, a reader reads and a canceller cancels.
READ_AT = (0.25, 0.5, 0.75)
CANCEL_AT = 0.5
READ_P99_TARGET_MS = 100.0


@dataclass
class SlowOrder:
    step: str
    sample: OrderSample
    reads: list[Read]
    cancel: Read | None


def expected_after_cancel(cancel: Read | None, reached: str | None) -> str:
    """The status an order must end in after what its cancel was answered."""
    completed, cancelled = OrderStatus.COMPLETED.value, OrderStatus.CANCELLED.value
    if cancel is None or cancel.answer is None:
        # Not cancelled, or unknown whether the cancel arrived: either is right.
        if cancel is not None and reached in (completed, cancelled):
            return str(reached)
        return completed
    return cancelled if cancel.answer.status_code == 202 else completed


def reads_with_statuses(reads: Sequence[Read]) -> dict[str, Any]:
    seen = Counter(read.answer.order_status for read in reads if read.ok and read.answer)
    return {**read_figures(reads), "statuses_seen": dict(seen)}


def cancel_figures(orders: Sequence[SlowOrder]) -> dict[str, Any]:
    sent = [order for order in orders if order.cancel is not None]
    codes: Counter[str] = Counter()
    accepted_ended: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    for order in sent:
        assert order.cancel is not None
        answer = order.cancel.answer
        codes[str(answer.status_code) if answer is not None else "no answer"] += 1
        if answer is not None and answer.status_code == 202:
            accepted_ended[order.sample.status or "not terminal"] += 1
        elif answer is not None and answer.refusal is not None:
            refusals[f"{answer.status_code} {answer.refusal}"] += 1
    accepted = codes.get("202", 0)
    return {
        "sent": len(sent),
        "accepted": accepted,
        "accepted_then_cancelled": accepted_ended.get(OrderStatus.CANCELLED.value, 0),
        "accepted_then": dict(accepted_ended),
        "refused_409": codes.get("409", 0),
        "answers": dict(codes),
        # What the refused ones were told, e.g. "409 TOO_LATE: the order is closed".
        "refusals": dict(refusals),
        "latency_ms": percentiles_ms(
            [order.cancel.seconds for order in sent if order.cancel is not None]
        ),
    }


def slow_step_figures(orders: Sequence[SlowOrder], latency_ms: int) -> dict[str, Any]:
    steps = {
        step: {
            "service": service,
            "orders": sum(1 for order in orders if order.step == step),
            "reads": reads_with_statuses(
                [read for o in orders if o.step == step for read in o.reads]
            ),
            "cancels": cancel_figures([order for order in orders if order.step == step]),
        }
        for step, service in SLOWED_STEPS
    }
    return {
        "latency_ms": latency_ms,
        "steps": steps,
        "reads": reads_with_statuses([read for order in orders for read in order.reads]),
        "cancels": cancel_figures(orders),
    }


@dataclass
class SlowStepRun:
    scenario: SagaScenario
    # The services as their admin, for the faults API.
    services: Mapping[str, httpx.AsyncClient]
    orders_per_step: int
    next_sequence: Callable[[], int]
    on_done: Callable[[], None]
    latency_ms: int = LATENCY_MS

    async def run(self) -> tuple[RunResult, dict[str, Any]]:
        began = time.perf_counter()
        orders: list[SlowOrder] = []
        for step, service in SLOWED_STEPS:
            await self._set_latency(service, self.latency_ms)
            try:
                orders += await self._orders(step)
            finally:
                response = await self.services[service].delete("/admin/faults")
                response.raise_for_status()
        result = RunResult(
            self.scenario.name,
            "slow-step",
            self.latency_ms,
            time.perf_counter() - began,
            [order.sample for order in orders],
        )
        return result, slow_step_figures(orders, self.latency_ms)

    async def _set_latency(self, service: str, latency_ms: int) -> None:
        response = await self.services[service].put(
            "/admin/faults", json={"error_rate": 0.0, "latency_ms": latency_ms}
        )
        response.raise_for_status()

    async def _orders(self, step: str) -> list[SlowOrder]:
        tasks = []
        for index in range(self.orders_per_step):
            if index:
                await asyncio.sleep(SUBMIT_INTERVAL_SECONDS)
            tasks.append(asyncio.create_task(self._order(step, cancel=index % 2 == 1)))
        return list(await asyncio.gather(*tasks))

    async def _order(self, step: str, *, cancel: bool) -> SlowOrder:
        scenario = self.scenario
        due = time.perf_counter()
        order_id: str | None = None
        reads: list[Read] = []
        cancelled: Read | None = None
        try:
            order_id = placed = await scenario.submit(self.next_sequence())
            accepted = time.perf_counter()
            slowed = self.latency_ms / 1000

            async def at(fraction: float, request: Callable[[str], Awaitable[Answer]]) -> Read:
                await asyncio.sleep(max(0.0, accepted + fraction * slowed - time.perf_counter()))
                return await timed(request(placed))

            if cancel:
                cancelled = await at(CANCEL_AT, scenario.cancel)
            else:
                reads = list(await asyncio.gather(*(at(f, scenario.read) for f in READ_AT)))
            async with asyncio.timeout(TERMINAL_TIMEOUT_SECONDS):
                status = await scenario.wait_terminal(placed)
            sample = OrderSample(
                order_id,
                accepted - due,
                time.perf_counter() - due,
                status,
                expected_status=expected_after_cancel(cancelled, status),
            )
        except Exception as error:  # recorded and reported, like any bench order
            sample = OrderSample(
                order_id,
                time.perf_counter() - due,
                None,
                None,
                f"{type(error).__name__}: {error}"[:300],
                expected_status=expected_after_cancel(cancelled, None),
            )
        finally:
            self.on_done()
        return SlowOrder(step, sample, reads, cancelled)
