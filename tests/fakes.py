"""A fake of the domain activities, and the workers that run it with the real workflow.

The fakes are stand-ins registered under the real activity names on the real
task queues, so the OrderWorkflow under test is exactly the one that ships;
only the inventory, payments and shipping services behind it are pretend.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Interceptor, Worker

from contracts import errors
from contracts.activities import (
    CancelShipmentInput,
    ChargePaymentInput,
    CommitReservationInput,
    CreateShipmentInput,
    FindCommittedReservationInput,
    RefundPaymentInput,
    ReleaseInventoryInput,
    ReserveInventoryInput,
    StepOutcome,
)
from contracts.orders import PricedLine, order_total_cents
from ordersaga.runtime.temporal_config import workflow_runner
from workers.unversioned import UnversionedOrderWorkflow
from workflows.steps import STEPS, calls_by_queue

# From the saga's step table, so the fakes stand in for exactly what it calls.
UNDOES = {step.undo.name: step.do.name for step in STEPS}
COMPENSATIONS = tuple(UNDOES)
CREATED_IDS = {
    "reserve_inventory": "res_fake",
    "charge_payment": "ch_fake",
    "create_shipment": "shp_fake",
}
# The fake inventory's catalog: unit prices in cents, all in one currency.
FAKE_CATALOG_PRICES = {"sku_mug": 1250, "sku_poster": 999}
FAKE_CATALOG_CURRENCY = "EUR"
# Generous: a dev server on a loaded CI machine. Only bounds how long a broken
# test takes to fail.
ENTER_DEADLINE_SECONDS = 30.0

ActivityInput = (
    ReserveInventoryInput
    | ReleaseInventoryInput
    | CommitReservationInput
    | ChargePaymentInput
    | RefundPaymentInput
    | CreateShipmentInput
    | CancelShipmentInput
    | FindCommittedReservationInput
)
# What a script applies to: every call of an activity (its name), or only the
# calls of an activity for one order (activity name, order id).
Target = str | tuple[str, str]


def target(name: str, order_id: str | None) -> Target:
    return name if order_id is None else (name, order_id)


def refusal(code: str) -> ApplicationError:
    """A domain's final no: non-retryable, with its code as the error type."""
    return ApplicationError(f"fake refusal {code}", type=code, non_retryable=True)


def transient() -> ApplicationError:
    """A passing fault, the kind Temporal retries."""
    return ApplicationError("fake 503", type="SERVICE_UNAVAILABLE", non_retryable=False)


class AnswerLost(ApplicationError):
    """A passing fault raised after the call took effect: the service did it,
    and its answer never reached the worker (a timeout, a dropped connection)."""


def answer_lost() -> AnswerLost:
    return AnswerLost("fake: done, answer lost", type="SERVICE_UNAVAILABLE", non_retryable=False)


class FakeDomainActivities:
    """Fake inventory, payments and shipping activities, scripted by the test.

    Stand-ins registered under the real activity names: the workflow calls
    them exactly as it would call the real ones.

    Every script is keyed by a Target: an activity name steers every call of
    that activity (for a fixture that lives as long as one test), and
    (activity name, order id) steers only that order's calls (for workers
    shared by tests, which must not disturb each other's orders).

    fail_next: errors raised by the next calls, in order; fail_always: an
    error every call raises; hold: an Event a call waits on (the call is "in
    flight" until the test sets it); entered: set when a call starts; on_queue:
    calls whose local attempt (in the orders worker) fails as a passing fault
    would, so the call runs on its domain's queue. Every call is recorded with
    its activity name and input, and where it ran; those local attempts are not.

    catalog_prices: the fake inventory's unit prices. Like the real one, it
    reserves at these prices and refuses (PRICE_CHANGED) a reservation in
    another currency or whose total is not the expected one.
    """

    def __init__(self) -> None:
        self.catalog_prices = dict(FAKE_CATALOG_PRICES)
        self.calls: list[tuple[str, Any]] = []
        # (name, order id) of each call that answered: what took effect. A call
        # that failed changed nothing, as a service's rolled-back request does.
        self.effects: list[tuple[str, str]] = []
        self.ran_locally: list[bool] = []
        self.on_queue: set[Target] = set()
        self.fail_next: defaultdict[Target, list[BaseException]] = defaultdict(list)
        self.fail_always: dict[Target, BaseException] = {}
        self.hold: dict[Target, asyncio.Event] = {}
        self.entered: defaultdict[Target, asyncio.Event] = defaultdict(asyncio.Event)

    # --- steering ----------------------------------------------------------------

    def hold_calls(
        self, name: str, order_id: str | None = None, *, on_queue: bool = True
    ) -> asyncio.Event:
        """Park calls of `name` (of one order's, if given) until the returned event is set.

        By default the calls go to their domain's queue (run_on_queue): a local
        attempt held open holds the workflow task, and with it every query and
        update, until it ends or times out. on_queue=False holds the local
        attempt itself, to test exactly that.
        """
        gate = asyncio.Event()
        self.hold[target(name, order_id)] = gate
        if on_queue:
            self.run_on_queue(name, order_id)
        return gate

    def stop_holding(self, name: str, order_id: str | None = None) -> None:
        """Let later calls of `name` through; a call already held stays held
        until its gate (hold_calls' event) is set."""
        self.hold.pop(target(name, order_id), None)

    def run_on_queue(self, name: str, order_id: str | None = None) -> None:
        """Make the local attempt of `name` (of one order's) fail with a passing fault."""
        self.on_queue.add(target(name, order_id))

    def refuse(self, name: str, order_id: str, *codes: str) -> None:
        """Refuse the next calls of `name` for this order with these error types, in order.

        The message leaves the code out, so finding the code in a failure
        reason proves the error's type got there.
        """
        self.fail_next[(name, order_id)].extend(
            ApplicationError(f"fake {name} refused", type=code, non_retryable=True)
            for code in codes
        )

    def release_all(self) -> None:
        """Let every held call go on."""
        for gate in self.hold.values():
            gate.set()

    async def wait_entered(
        self, name: str, order_id: str | None = None, *, within: float = ENTER_DEADLINE_SECONDS
    ) -> None:
        """Wait until a call of `name` (of one order's, if given) has started."""
        async with asyncio.timeout(within):
            await self.entered[target(name, order_id)].wait()

    # --- what was called ---------------------------------------------------------

    def names_called(self) -> list[str]:
        return [name for name, _ in self.calls]

    def names_called_locally(self) -> list[str]:
        places = zip(self.calls, self.ran_locally, strict=True)
        return [name for (name, _), local in places if local]

    def compensations_run(self) -> list[str]:
        return [name for name in self.names_called() if name in COMPENSATIONS]

    def inputs_of(self, name: str) -> list[Any]:
        return [request for called, request in self.calls if called == name]

    def calls_for(self, order_id: str) -> list[str]:
        """The activities called for one order, in order."""
        return [name for name, request in self.calls if request.order_id == order_id]

    # --- the activities ----------------------------------------------------------

    async def _call(
        self, name: str, request: ActivityInput, resource_id: str | None
    ) -> StepOutcome:
        scripts = (target(name, None), target(name, request.order_id))
        local = activity.info().is_local
        if local and any(key in self.on_queue for key in scripts):
            raise transient()
        self.calls.append((name, request))
        self.ran_locally.append(local)
        for key in scripts:
            self.entered[key].set()
        for key in scripts:
            gate = self.hold.get(key)
            if gate is not None:
                await gate.wait()
        for key in scripts:
            if key in self.fail_always:
                raise self._after_effect(self.fail_always[key], name, request.order_id)
        for key in scripts:
            scripted = self.fail_next.get(key)
            if scripted:
                raise self._after_effect(scripted.pop(0), name, request.order_id)
        if name in UNDOES and resource_id is None:
            # Undo by order: like the services, find what the step made, if anything.
            if (UNDOES[name], request.order_id) not in self.effects:
                return StepOutcome(
                    resource_id=None, attempt=activity.info().attempt, nothing_to_undo=True
                )
            resource_id = CREATED_IDS[UNDOES[name]]
        self.effects.append((name, request.order_id))
        return StepOutcome(resource_id=resource_id, attempt=activity.info().attempt)

    def _after_effect(self, fault: BaseException, name: str, order_id: str) -> BaseException:
        if isinstance(fault, AnswerLost):
            self.effects.append((name, order_id))
        return fault

    def all_activities(self) -> list[Callable[..., Any]]:
        """Every fake, for the orders worker's local attempts."""
        return [
            self.reserve_inventory,
            self.release_inventory,
            self.commit_reservation,
            self.find_committed_reservation,
            self.charge_payment,
            self.refund_payment,
            self.create_shipment,
            self.cancel_shipment,
        ]

    def activities_named(self, names: set[str]) -> list[Callable[..., Any]]:
        """The fakes of these activities, for a domain queue's worker."""
        # Each fake's method is named as its activity (tests/unit/test_steps.py).
        fakes = {fake.__name__: fake for fake in self.all_activities()}
        if missing := names - fakes.keys():
            raise LookupError(f"the step table calls activities with no fake: {sorted(missing)}")
        return [fakes[name] for name in sorted(names)]

    @activity.defn(name="reserve_inventory")
    async def reserve_inventory(self, request: ReserveInventoryInput) -> StepOutcome:
        outcome = await self._call("reserve_inventory", request, CREATED_IDS["reserve_inventory"])
        return self._priced(request, outcome)

    def _priced(self, request: ReserveInventoryInput, outcome: StepOutcome) -> StepOutcome:
        """The reservation at the fake catalog's prices, or its refusal."""
        unknown = [line.sku for line in request.lines if line.sku not in self.catalog_prices]
        if unknown:
            raise refusal(errors.UNKNOWN_SKU)
        priced = [
            PricedLine(line.sku, line.quantity, self.catalog_prices[line.sku])
            for line in request.lines
        ]
        total = order_total_cents(priced)
        expected = request.expected_total_cents
        if request.currency != FAKE_CATALOG_CURRENCY or expected not in (None, total):
            raise refusal(errors.PRICE_CHANGED)
        outcome.priced_lines = priced
        outcome.total_cents = total
        outcome.currency = FAKE_CATALOG_CURRENCY
        return outcome

    @activity.defn(name="release_inventory")
    async def release_inventory(self, request: ReleaseInventoryInput) -> StepOutcome:
        return await self._call("release_inventory", request, request.reservation_id)

    @activity.defn(name="commit_reservation")
    async def commit_reservation(self, request: CommitReservationInput) -> StepOutcome:
        return await self._call("commit_reservation", request, request.reservation_id)

    @activity.defn(name="find_committed_reservation")
    async def find_committed_reservation(
        self, request: FindCommittedReservationInput
    ) -> str | None:
        # Like the service: committed once a commit reached it (never undone).
        await self._call("find_committed_reservation", request, None)
        if "commit_reservation" in self.calls_for(request.order_id):
            return CREATED_IDS["reserve_inventory"]
        return None

    @activity.defn(name="charge_payment")
    async def charge_payment(self, request: ChargePaymentInput) -> StepOutcome:
        return await self._call("charge_payment", request, CREATED_IDS["charge_payment"])

    @activity.defn(name="refund_payment")
    async def refund_payment(self, request: RefundPaymentInput) -> StepOutcome:
        return await self._call("refund_payment", request, request.charge_id)

    @activity.defn(name="create_shipment")
    async def create_shipment(self, request: CreateShipmentInput) -> StepOutcome:
        return await self._call("create_shipment", request, CREATED_IDS["create_shipment"])

    @activity.defn(name="cancel_shipment")
    async def cancel_shipment(self, request: CancelShipmentInput) -> StepOutcome:
        return await self._call("cancel_shipment", request, request.shipment_id)


@contextlib.asynccontextmanager
async def fake_domain_workers(
    client: Client,
    fakes: FakeDomainActivities,
    *,
    orders_queue: str,
    close_orders: Callable[[], Awaitable[None]],
    interceptors: Sequence[Interceptor] = (),
) -> AsyncIterator[None]:
    """Run the real OrderWorkflow on orders_queue and the fakes on the domain queues.

    Before the four workers stop, every held call is released (a parked
    activity would stall their shutdown), then close_orders ends the orders
    still open (one left open would leave tasks on the activity queues for
    the next workers polling them to pick up).
    """
    workers = [
        # Unversioned workers: the server refuses OrderWorkflow's declared PINNED
        # behaviour from them, so they run its behaviour-free twin (workers/unversioned.py).
        Worker(
            client,
            task_queue=orders_queue,
            workflows=[UnversionedOrderWorkflow],
            # The workers' own sandbox: contracts passed through, as in production,
            # where a dataclass naming another module's (StepOutcome's PricedLine)
            # resolves its type hints.
            workflow_runner=workflow_runner(),
            activities=fakes.all_activities(),
            no_remote_activities=True,
            interceptors=interceptors,
        ),
        *(
            Worker(client, task_queue=queue, activities=fakes.activities_named(names))
            for queue, names in sorted(calls_by_queue().items())
        ),
    ]
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        try:
            yield
        finally:
            fakes.release_all()
            await close_orders()
