"""Run OrderWorkflow on the time-skipping test server with fake activities.

The fakes (tests/fakes.py) are registered under the real activity names on the
real task queues, so the workflow under test is exactly the one that ships.
Each test gets fresh fakes, scripted by activity name.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Interceptor

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
from tests.fakes import FakeDomainActivities, fake_domain_workers
from workflows.order import OrderWorkflow


def sample_order(**overrides: Any) -> PlaceOrder:
    fields: dict[str, Any] = {
        "order_id": f"ord_test_{uuid.uuid4().hex[:12]}",
        "customer_id": "cus_42",
        "items": [
            OrderLine(sku="sku_mug", quantity=2),
            OrderLine(sku="sku_poster", quantity=1),
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

    async def wait_for_status_of_step(
        self, handle: WorkflowHandle[Any, Any], step: str, state: str, within: float = 20
    ) -> None:
        """Wait until the order's view shows `step` in `state` (a StepState value)."""
        async with asyncio.timeout(within):
            while True:
                view = await self.view(handle)
                if any(s.name == step and s.state.value == state for s in view.steps):
                    return
                await asyncio.sleep(0.05)

    async def wait_entered(self, activity_name: str, within: float = 20) -> None:
        await self.fakes.wait_entered(activity_name, within=within)


@contextlib.asynccontextmanager
async def saga_workers(
    env: WorkflowEnvironment, *, interceptors: Sequence[Interceptor] = ()
) -> AsyncIterator[SagaHarness]:
    """Fresh fakes, and the workers that run the real workflow with them on a new queue."""
    harness = SagaHarness(env, FakeDomainActivities(), f"orders-test-{uuid.uuid4()}")
    async with fake_domain_workers(
        harness.client,
        harness.fakes,
        orders_queue=harness.orders_queue,
        close_orders=harness.terminate_unfinished,
        interceptors=interceptors,
    ):
        yield harness


@pytest.fixture
async def saga(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[SagaHarness]:
    async with saga_workers(time_skipping_env) as harness:
        yield harness
