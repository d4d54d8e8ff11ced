"""Run OrderWorkflow on the time-skipping test server with fake activities.

The fakes are registered under the real activity names on the real task queues,
so the workflow under test is exactly the one that ships.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts import task_queues
from contracts.activities import (
    CancelShipmentInput,
    ChargePaymentInput,
    CommitReservationInput,
    CreateShipmentInput,
    RefundPaymentInput,
    ReleaseInventoryInput,
    ReserveInventoryInput,
    StepOutcome,
)
from contracts.orders import (
    STATUS_QUERY,
    Address,
    OrderLine,
    OrderResult,
    OrderStatus,
    OrderView,
    PaymentDetails,
    PlaceOrder,
)
from workflows.order import OrderWorkflow

COMPENSATIONS = ("release_inventory", "refund_payment", "cancel_shipment")
CREATED_IDS = {
    "reserve_inventory": "res_fake",
    "charge_payment": "ch_fake",
    "create_shipment": "shp_fake",
}


def refusal(code: str) -> ApplicationError:
    return ApplicationError(f"fake refusal {code}", type=code, non_retryable=True)


def transient() -> ApplicationError:
    return ApplicationError("fake 503", type="SERVICE_UNAVAILABLE", non_retryable=False)


@dataclass
class FakeDomainActivities:
    """Fake activities for all three domains, scripted per test.

    fail_next: errors raised by the next calls of an activity, in order;
    fail_always: an error every call raises; hold: an Event a call waits on
    (the call is "in flight" until the test sets it); entered: set when a call
    starts. Every call is recorded with its input.
    """

    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail_next: dict[str, list[BaseException]] = field(default_factory=lambda: defaultdict(list))
    fail_always: dict[str, BaseException] = field(default_factory=dict)
    hold: dict[str, asyncio.Event] = field(default_factory=dict)
    entered: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))

    def names_called(self) -> list[str]:
        return [name for name, _ in self.calls]

    def compensations_run(self) -> list[str]:
        return [name for name in self.names_called() if name in COMPENSATIONS]

    def inputs_of(self, name: str) -> list[Any]:
        return [request for called, request in self.calls if called == name]

    async def _call(self, name: str, request: Any, resource_id: str | None) -> StepOutcome:
        self.calls.append((name, request))
        self.entered[name].set()
        if name in self.hold:
            await self.hold[name].wait()
        if name in self.fail_always:
            raise self.fail_always[name]
        if self.fail_next[name]:
            raise self.fail_next[name].pop(0)
        return StepOutcome(resource_id=resource_id, attempt=activity.info().attempt)

    @activity.defn(name="reserve_inventory")
    async def reserve_inventory(self, request: ReserveInventoryInput) -> StepOutcome:
        return await self._call("reserve_inventory", request, CREATED_IDS["reserve_inventory"])

    @activity.defn(name="release_inventory")
    async def release_inventory(self, request: ReleaseInventoryInput) -> StepOutcome:
        return await self._call("release_inventory", request, request.reservation_id)

    @activity.defn(name="commit_reservation")
    async def commit_reservation(self, request: CommitReservationInput) -> StepOutcome:
        return await self._call("commit_reservation", request, request.reservation_id)

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


def sample_order(**overrides: Any) -> PlaceOrder:
    fields: dict[str, Any] = {
        "order_id": f"ord_test_{uuid.uuid4().hex[:12]}",
        "customer_id": "cus_42",
        "items": [
            OrderLine(sku="sku_mug", quantity=2, unit_price_cents=1250),
            OrderLine(sku="sku_poster", quantity=1, unit_price_cents=999),
        ],
        "currency": "EUR",
        "payment": PaymentDetails(token="tok_visa"),
        "shipping_address": Address(
            name="Ada Lovelace",
            line1="12 St James's Square",
            city="London",
            postal_code="SW1Y 4JH",
            country="GB",
        ),
    }
    fields.update(overrides)
    return PlaceOrder(**fields)


@dataclass
class SagaHarness:
    env: WorkflowEnvironment
    fakes: FakeDomainActivities
    orders_queue: str
    started: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    @property
    def client(self) -> Client:
        return self.env.client

    async def start(self, order: PlaceOrder) -> WorkflowHandle[OrderWorkflow, OrderResult]:
        handle = await self.client.start_workflow(
            OrderWorkflow.run, order, id=order.order_id, task_queue=self.orders_queue
        )
        self.started.append(handle)
        return handle

    async def terminate_unfinished(self) -> None:
        for handle in self.started:
            description = await handle.describe()
            if description.status is WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test finished with the order still open")

    async def view(self, handle: WorkflowHandle[Any, Any]) -> OrderView:
        result: OrderView = await handle.query(STATUS_QUERY, result_type=OrderView)
        return result

    async def wait_for_status(
        self, handle: WorkflowHandle[Any, Any], status: OrderStatus, within: float = 20
    ) -> OrderView:
        async with asyncio.timeout(within):
            while True:
                view = await self.view(handle)
                if view.status is status:
                    return view
                await asyncio.sleep(0.05)

    async def wait_entered(self, activity_name: str, within: float = 20) -> None:
        async with asyncio.timeout(within):
            await self.fakes.entered[activity_name].wait()


@pytest.fixture
async def saga(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[SagaHarness]:
    fakes = FakeDomainActivities()
    orders_queue = f"orders-test-{uuid.uuid4()}"
    client = time_skipping_env.client
    workers = [
        Worker(client, task_queue=orders_queue, workflows=[OrderWorkflow]),
        Worker(
            client,
            task_queue=task_queues.INVENTORY,
            activities=[fakes.reserve_inventory, fakes.release_inventory, fakes.commit_reservation],
        ),
        Worker(
            client,
            task_queue=task_queues.PAYMENTS,
            activities=[fakes.charge_payment, fakes.refund_payment],
        ),
        Worker(
            client,
            task_queue=task_queues.SHIPPING,
            activities=[fakes.create_shipment, fakes.cancel_shipment],
        ),
    ]
    harness = SagaHarness(time_skipping_env, fakes, orders_queue)
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        try:
            yield harness
        finally:
            # Release anything still held so no activity outlives its test.
            for gate in fakes.hold.values():
                gate.set()
            # An order left open would leave tasks on the shared activity
            # queues for the next test's workers to pick up.
            await harness.terminate_unfinished()
