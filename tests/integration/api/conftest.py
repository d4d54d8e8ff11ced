"""The API against a real Temporal dev server, the real OrderWorkflow, and
fake domain activities steered per order.

The API tests get a namespace of their own on the session's dev server: the
workflow's task queues ("orders", "inventory", ...) are fixed names, and other
test modules run real workers on them. A private namespace means no worker of
theirs picks up our tasks and none of ours picks up theirs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.app import create_app
from contracts import task_queues
from ordersaga.settings import Settings
from tests.integration.api.support import (
    FakeDomainActivities,
    OrderRequest,
    client_on_new_namespace,
    order_body,
    terminate_open_orders,
)
from workflows.order import OrderWorkflow


@pytest.fixture(scope="module")
async def temporal_client(dev_server_env: WorkflowEnvironment) -> Client:
    """A client on a namespace registered for this module alone."""
    return await client_on_new_namespace(dev_server_env.client)


@pytest.fixture(scope="module")
async def fakes(temporal_client: Client) -> AsyncIterator[FakeDomainActivities]:
    """The real workflow and the fake activities, polling for this module."""
    domain = FakeDomainActivities()
    workers = [
        Worker(temporal_client, task_queue=task_queues.ORDERS, workflows=[OrderWorkflow]),
        Worker(
            temporal_client,
            task_queue=task_queues.INVENTORY,
            activities=[
                domain.reserve_inventory,
                domain.release_inventory,
                domain.commit_reservation,
            ],
        ),
        Worker(
            temporal_client,
            task_queue=task_queues.PAYMENTS,
            activities=[domain.charge_payment, domain.refund_payment],
        ),
        Worker(
            temporal_client,
            task_queue=task_queues.SHIPPING,
            activities=[domain.create_shipment, domain.cancel_shipment],
        ),
    ]
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        try:
            yield domain
        finally:
            # Nothing may stay parked or open when the workers stop: a held
            # activity would stall their shutdown.
            domain.release_all()
            await terminate_open_orders(temporal_client)


@pytest.fixture
def settings(temporal_client: Client) -> Settings:
    return Settings(
        temporal_address=temporal_client.service_client.config.target_host,
        temporal_namespace=temporal_client.namespace,
    )


@pytest.fixture
async def api(
    settings: Settings, temporal_client: Client, fakes: FakeDomainActivities
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, client=temporal_client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


@pytest.fixture
def new_order() -> Callable[..., OrderRequest]:
    def make(**overrides: Any) -> OrderRequest:
        return OrderRequest(order_body(**overrides))

    return make
