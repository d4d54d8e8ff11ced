"""The fault matrix. Each experiment starts load (a bounded number of orders from
several customers), injects its fault while orders are in flight, clears it, and
returns a `Trial` for checks.py; experiment-specific invariants come back as
extra checks."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ordersaga.chaos.checks import Check, Trial
from ordersaga.chaos.shop import PARKED, TERMINAL, CancelAnswer, Ledger, Placed, Shop, order_body
from ordersaga.chaos.stack import TEMPORAL, WORKER, ChaosStack
from workflows.runner import LOCAL_ATTEMPT_TIMEOUT
from workflows.steps import FORWARD_RETRY_POLICY

PRICE_CENTS = 250
# The activities' HTTP read timeout in the chaos stack: below the default so the
# hang experiment outlasts the retry budget sooner, above the 3.5 s latency of the
# flaky one so its calls are slower than a local attempt yet can still succeed.
HTTP_READ_TIMEOUT_SECONDS = 4.0
# Latency on payments while orders are cancelled at random moments.
CANCEL_WINDOW_MS = 3500
# Cancels are sent up to this long after the order was accepted: some while the
# charge is on the queue, some after the order completed.
CANCEL_LATEST_SECONDS = 10.0
# When the fault is injected, as a share of the time the load takes to submit.
FAULT_AT = 0.4


def retry_budget_seconds(read_timeout: float) -> float:
    """How long a forward step keeps trying a service that never answers: the local
    first attempt, then every queued attempt timing out, with the backoff between."""
    policy = FORWARD_RETRY_POLICY
    assert policy.maximum_attempts > 0 and policy.maximum_interval is not None
    initial = policy.initial_interval.total_seconds()
    ceiling = policy.maximum_interval.total_seconds()
    backoff = sum(
        min(initial * policy.backoff_coefficient**i, ceiling)
        for i in range(policy.maximum_attempts - 1)
    )
    local = min(LOCAL_ATTEMPT_TIMEOUT.total_seconds(), read_timeout)
    return local + policy.maximum_attempts * read_timeout + backoff


@dataclass(frozen=True)
class Sizes:
    orders: int
    customers: int
    # Seconds over which an experiment's orders are submitted.
    spread: float
    worker_down: float
    kills: int
    kill_every: float
    temporal_down: float
    service_down: float
    # Past the retry budget, by this much.
    hang_margin: float
    flaky_seconds: float
    duplicates: int
    oversell_stock: int
    cancel_orders: int


FULL = Sizes(
    orders=60,
    customers=6,
    spread=8.0,
    worker_down=3.0,
    kills=4,
    kill_every=4.0,
    temporal_down=8.0,
    service_down=15.0,
    hang_margin=6.0,
    flaky_seconds=20.0,
    duplicates=100,
    oversell_stock=20,
    cancel_orders=40,
)
QUICK = Sizes(
    orders=16,
    customers=4,
    spread=4.0,
    worker_down=2.0,
    kills=2,
    kill_every=3.0,
    temporal_down=4.0,
    service_down=10.0,
    hang_margin=3.0,
    flaky_seconds=10.0,
    duplicates=50,
    oversell_stock=8,
    cancel_orders=16,
)


@dataclass
class Lab:
    """What every experiment works with."""

    stack: ChaosStack
    shop: Shop
    ledger: Ledger
    sizes: Sizes
    rng: random.Random
    tag: str
    read_timeout: float = HTTP_READ_TIMEOUT_SECONDS

    async def stocked_sku(self, experiment: str, units: int) -> str:
        sku = f"sku_chaos_{self.tag}_{experiment.replace('-', '_')}"
        await self.ledger.set_product(sku, units, PRICE_CENTS)
        return sku

    def customers(self, experiment: str, count: int) -> list[str]:
        short = "".join(word[0] for word in experiment.split("-"))
        return [f"cus_chaos_{self.tag}_{short}_{i}" for i in range(count)]

    def orders(self, experiment: str, sku: str, count: int, customers: int) -> list[Placed]:
        who = self.customers(experiment, customers)
        placed = []
        for i in range(count):
            quantity = self.rng.choice((1, 1, 2))
            placed.append(
                Placed(
                    customer=who[i % len(who)],
                    key=f"chaos-{self.tag}-{experiment}-{i}",
                    body=order_body(sku, quantity),
                    sku=sku,
                    quantity=quantity,
                )
            )
        return placed

    def start_load(self, placed: Sequence[Placed], spread: float) -> asyncio.Task[list[Placed]]:
        async def one(i: int, order: Placed) -> Placed:
            await asyncio.sleep(spread * i / max(1, len(placed)))
            return await self.shop.place(order)

        async def all_of() -> list[Placed]:
            return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(placed))))

        return asyncio.create_task(all_of(), name="chaos-load")

    @property
    def standard_stock(self) -> int:
        """What a standard load's SKU is stocked with: more than its orders take."""
        return 2 * self.sizes.orders + 10

    async def standard_load(self, experiment: str, spread: float | None = None) -> StandardLoad:
        s = self.sizes
        sku = await self.stocked_sku(experiment, self.standard_stock)
        spread = s.spread if spread is None else spread
        load = self.start_load(self.orders(experiment, sku, s.orders, s.customers), spread)
        return StandardLoad(self, load, sku, spread)

    async def wait_final(self, placed: Sequence[Placed], seconds: float) -> dict[str, str]:
        """Each accepted order's status once final (or the last seen, at the deadline)."""
        deadline = time.monotonic() + seconds
        statuses: dict[str, str] = {}
        pending = {p.order_id for p in placed if p.order_id is not None}
        while pending and time.monotonic() < deadline:
            for order_id in list(pending):
                view = await self.shop.read(order_id)
                if view is None or view.get("stale"):
                    continue
                statuses[order_id] = str(view["status"])
                if view["status"] in TERMINAL or view["status"] == PARKED:
                    pending.discard(order_id)
            if pending:
                await asyncio.sleep(0.5)
        return statuses


Run = Callable[[Lab], Awaitable[Trial]]


@dataclass(frozen=True)
class Experiment:
    key: str
    title: str
    run: Run
    quick: bool


async def kill_for(lab: Lab, name: str, down: float) -> float:
    """SIGKILL `name`, leave it down `down` seconds and start it again; returns how
    long the restart took to be ready."""
    await lab.stack.kill(name)
    await asyncio.sleep(down)
    started = time.monotonic()
    await lab.stack.start_child(name)
    return time.monotonic() - started


async def faults_for(
    lab: Lab, service: str, error_rate: float, latency_ms: int, seconds: float
) -> None:
    """Inject `service`'s faults for `seconds`, then clear them."""
    await lab.ledger.set_faults(service, error_rate, latency_ms)
    await asyncio.sleep(seconds)
    await lab.ledger.clear_faults(service)


@dataclass(frozen=True)
class StandardLoad:
    """A standard load under way: its orders, its SKU (stocked with
    `lab.standard_stock`), and how long it takes to submit (`spread`)."""

    lab: Lab
    placing: asyncio.Task[list[Placed]]
    sku: str
    spread: float

    async def until_fault(self) -> None:
        """Wait until FAULT_AT of the load is submitted."""
        await asyncio.sleep(self.spread * FAULT_AT)

    async def trial(self, fault: str, after: Callable[[], Awaitable[None]] | None = None) -> Trial:
        """The fault is cleared now: wait for the load and make its `Trial`."""
        cleared = time.monotonic()
        placed = await self.placing
        stock = {self.sku: self.lab.standard_stock}
        return Trial(placed, cleared, stock, fault=fault, after=after)


# --- 1-3, 11: the worker ---------------------------------------------------------


async def worker_killed_once(lab: Lab) -> Trial:
    load = await lab.standard_load("worker-kill")
    await load.until_fault()
    await kill_for(lab, WORKER, lab.sizes.worker_down)
    return await load.trial(fault=f"SIGKILL worker, {lab.sizes.worker_down:.0f}s down")


async def worker_killed_repeatedly(lab: Lab) -> Trial:
    s = lab.sizes
    load = await lab.standard_load("worker-kill-repeated", spread=s.kills * s.kill_every)
    for _ in range(s.kills):
        await asyncio.sleep(s.kill_every * lab.rng.uniform(0.5, 1.0))
        await kill_for(lab, WORKER, 1.0)
    return await load.trial(fault=f"SIGKILL worker {s.kills}x, every ~{s.kill_every:.0f}s")


SECOND_WORKER = "worker-2"


async def one_of_two_workers_killed(lab: Lab) -> Trial:
    await lab.stack.add_worker(SECOND_WORKER)
    load = await lab.standard_load("two-workers")
    await load.until_fault()
    await lab.stack.kill(WORKER)

    async def restore() -> None:
        await lab.stack.start_child(WORKER)
        await lab.stack.remove_worker(SECOND_WORKER)

    # The fault is not cleared: the survivor is expected to carry every order.
    return await load.trial(fault="2 workers, SIGKILL one, the other carries on", after=restore)


async def worker_terminated(lab: Lab) -> Trial:
    load = await lab.standard_load("worker-sigterm")
    await load.until_fault()
    took = await lab.stack.kill(WORKER, signal.SIGTERM)
    await lab.stack.start_child(WORKER)
    return await load.trial(fault=f"SIGTERM worker (drained in {took:.1f}s), restarted")


# --- 4: Temporal -------------------------------------------------------------------


async def temporal_killed(lab: Lab) -> Trial:
    load = await lab.standard_load("temporal-kill")
    await load.until_fault()
    ready = await kill_for(lab, TEMPORAL, lab.sizes.temporal_down)
    return await load.trial(
        fault=f"SIGKILL Temporal, {lab.sizes.temporal_down:.0f}s down, "
        f"ready {ready:.1f}s after restart",
    )


# --- 5-7: a service ------------------------------------------------------------------


async def service_killed(lab: Lab) -> Trial:
    load = await lab.standard_load("service-kill")
    await load.until_fault()
    await kill_for(lab, "payments", lab.sizes.service_down)
    return await load.trial(fault=f"SIGKILL payments, {lab.sizes.service_down:.0f}s down")


async def service_hangs(lab: Lab) -> Trial:
    budget = retry_budget_seconds(lab.read_timeout)
    hang = budget + lab.sizes.hang_margin
    latency_ms = int((lab.read_timeout + 2) * 1000)
    load = await lab.standard_load("service-hang")
    await faults_for(lab, "payments", 0.0, latency_ms, hang)
    return await load.trial(
        fault=f"payments answers after {latency_ms / 1000:.0f}s (read timeout "
        f"{lab.read_timeout:.0f}s) for {hang:.0f}s, past the {budget:.0f}s retry budget",
    )


async def service_flaky_and_slow(lab: Lab) -> Trial:
    load = await lab.standard_load("flaky-slow")
    await faults_for(lab, "payments", 0.5, 3500, lab.sizes.flaky_seconds)
    return await load.trial(
        fault=f"payments 50% errors + 3.5s latency (local attempt "
        f"{LOCAL_ATTEMPT_TIMEOUT.total_seconds():.0f}s) for {lab.sizes.flaky_seconds:.0f}s",
    )


# --- 8-10: the clients -------------------------------------------------------------


async def duplicate_submissions(lab: Lab) -> Trial:
    n = lab.sizes.duplicates
    sku = await lab.stocked_sku("duplicates", 10)
    customer = lab.customers("duplicates", 1)[0]
    key = f"chaos-{lab.tag}-duplicates"
    body = order_body(sku, 1)
    copies = [Placed(customer, key, body, sku, 1) for _ in range(n)]
    placed = list(await asyncio.gather(*(lab.shop.place(p) for p in copies)))
    cleared = time.monotonic()
    answers = Counter(status for p in placed for status in p.statuses)
    not_accepted = [p.refusal or "" for p in placed if p.order_id is None]
    same = Check(
        f"{n} concurrent identical POSTs: all 202, one order",
        not not_accepted and len({p.order_id for p in placed}) == 1,
        ", ".join(f"{count}x {status}" for status, count in sorted(answers.items(), key=str)),
        not_accepted,
    )
    other = order_body(sku, 2)
    refused = Placed(customer, key, other, sku, 2)
    await lab.shop.place(refused, give_up_seconds=30)
    reuse = Check(
        "same key, another body: 422",
        refused.statuses[-1:] == [422],
        f"answered {refused.statuses[-1] if refused.statuses else None}",
        [] if refused.statuses[-1:] == [422] else [refused.refusal or ""],
    )
    # Visibility is eventually consistent: wait for it to list the order.
    listed: list[str] = []
    for _ in range(40):
        listed = [str(o["order_id"]) for o in await lab.shop.orders_of(customer)]
        if listed:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)
    listed = [str(o["order_id"]) for o in await lab.shop.orders_of(customer)]
    one = Check(
        "one workflow listed for the customer",
        len(listed) == 1,
        f"{len(listed)} listed",
        [] if len(listed) == 1 else [f"listed {listed}"],
    )
    return Trial(placed, cleared, {sku: 10}, extra=[same, reuse, one], fault=f"{n} duplicates")


async def oversell_race(lab: Lab) -> Trial:
    stock = lab.sizes.oversell_stock
    sku = await lab.stocked_sku("oversell", stock)
    who = lab.customers("oversell", lab.sizes.customers)
    placed = [
        Placed(who[i % len(who)], f"chaos-{lab.tag}-oversell-{i}", order_body(sku, 1), sku, 1)
        for i in range(3 * stock)
    ]
    lowest = {"available": stock, "reserved": 0}
    sampling = True

    async def sample() -> int:
        samples = 0
        while sampling:
            now = await lab.ledger.stock(sku)
            samples += 1
            for field_name in lowest:
                lowest[field_name] = min(lowest[field_name], now[field_name])
            await asyncio.sleep(0.1)
        return samples

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(lab.shop.place(p) for p in placed))
    cleared = time.monotonic()
    statuses = await lab.wait_final(placed, 60.0)
    sampling = False
    samples = await sampler
    completed = sum(1 for status in statuses.values() if status == "COMPLETED")
    return Trial(
        placed,
        cleared,
        {sku: stock},
        extra=[
            Check(
                f"at most {stock} of {3 * stock} complete",
                completed <= stock,
                f"{completed} completed",
                [] if completed <= stock else [f"{completed} completed, stock was {stock}"],
            ),
            Check(
                "stock never negative",
                min(lowest.values()) >= 0,
                f"{samples} samples, lowest {lowest}",
                [] if min(lowest.values()) >= 0 else [f"lowest {lowest}"],
            ),
        ],
        fault=f"stock {stock}, {3 * stock} concurrent single-unit orders",
    )


async def random_cancels(lab: Lab) -> Trial:
    s = lab.sizes
    units = 2 * s.cancel_orders + 10
    sku = await lab.stocked_sku("cancels", units)
    # A healthy order is one workflow task of local attempts, and a cancel waits
    # for that task: it is answered once the order is done, 409 (a documented
    # trade-off, docs/performance.md). A charge slower than the local attempt
    # timeout goes to the payments queue, ending the task: cancels sent while it
    # runs are accepted, those sent after it are refused. Both are checked.
    await lab.ledger.set_faults("payments", 0.0, CANCEL_WINDOW_MS)
    placed = lab.orders("cancels", sku, s.cancel_orders, s.customers)
    cancels: list[CancelAnswer] = []

    async def order_then_maybe_cancel(i: int, order: Placed) -> Placed:
        await asyncio.sleep(s.spread * i / len(placed))
        await lab.shop.place(order)
        if order.order_id is None or lab.rng.random() > 0.6:
            return order
        await asyncio.sleep(lab.rng.uniform(0.0, CANCEL_LATEST_SECONDS))
        times = 2 if lab.rng.random() < 0.15 else 1
        for _ in range(times):
            cancels.append(await lab.shop.cancel(order.customer, order.order_id))
        return order

    done = await asyncio.gather(*(order_then_maybe_cancel(i, p) for i, p in enumerate(placed)))
    await lab.ledger.clear_faults("payments")
    cleared = time.monotonic()
    return Trial(
        list(done),
        cleared,
        {sku: units},
        cancels=cancels,
        fault=f"payments +{CANCEL_WINDOW_MS / 1000:.1f}s latency; ~60% of orders cancelled "
        f"0-{CANCEL_LATEST_SECONDS:.0f}s after acceptance",
    )


MATRIX: tuple[Experiment, ...] = (
    Experiment("worker-kill", "the worker SIGKILLed once mid-load", worker_killed_once, True),
    Experiment(
        "worker-kill-repeated",
        "the worker SIGKILLed every few seconds",
        worker_killed_repeatedly,
        False,
    ),
    Experiment("two-workers", "two workers, one SIGKILLed", one_of_two_workers_killed, False),
    Experiment("temporal-kill", "Temporal SIGKILLed and restarted", temporal_killed, True),
    Experiment("service-kill", "payments killed, then restarted", service_killed, False),
    Experiment(
        "service-hang", "payments hangs past the retry budget, then recovers", service_hangs, True
    ),
    Experiment(
        "flaky-slow",
        "payments: errors and latency above the local-attempt timeout",
        service_flaky_and_slow,
        False,
    ),
    Experiment("duplicates", "duplicate submissions of one order", duplicate_submissions, True),
    Experiment("oversell", "an oversell race", oversell_race, True),
    Experiment("cancels", "random cancels at random moments", random_cancels, True),
    Experiment("worker-sigterm", "a graceful SIGTERM of the worker", worker_terminated, False),
)
