"""The API against a real Temporal dev server, the real OrderWorkflow, and
fake domain activities steered per order.

The API tests get a namespace of their own on the session's dev server: the
workflow's task queues ("orders", "inventory", ...) are fixed names, and other
test modules run real workers on them. A private namespace means no worker of
theirs picks up our tasks and none of ours picks up theirs.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from contracts import task_queues
from ordersaga.runtime.settings import Settings
from tests.fakes import FakeDomainActivities, fake_domain_workers
from tests.http_server import serving_in_a_thread
from tests.integration.api.support import (
    TEST_ISSUER,
    JwksHandler,
    OrderRequest,
    api_settings,
    asgi_client,
    client_on_new_namespace,
    order_body,
    terminate_open_orders,
    verifier_for_tests,
)


@pytest.fixture(scope="module")
async def temporal_client(dev_server_env: WorkflowEnvironment) -> Client:
    """A client on a namespace registered for this module alone."""
    return await client_on_new_namespace(dev_server_env.client)


@pytest.fixture(scope="module")
async def fakes(temporal_client: Client) -> AsyncIterator[FakeDomainActivities]:
    """The real workflow and the fake activities, polling for this module."""
    domain = FakeDomainActivities()
    async with fake_domain_workers(
        temporal_client,
        domain,
        orders_queue=task_queues.ORDERS,
        close_orders=functools.partial(terminate_open_orders, temporal_client),
    ):
        yield domain


@pytest.fixture
def settings(temporal_client: Client) -> Settings:
    return api_settings(
        temporal_address=temporal_client.service_client.config.target_host,
        temporal_namespace=temporal_client.namespace,
    )


@pytest.fixture
async def api(
    settings: Settings, temporal_client: Client, fakes: FakeDomainActivities
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, client=temporal_client, verifier=verifier_for_tests())
    async with asgi_client(app) as http:
        yield http


@pytest.fixture
def new_order() -> Callable[..., OrderRequest]:
    def make(*, customer_id: str | None = None, **overrides: Any) -> OrderRequest:
        if customer_id is None:
            return OrderRequest(order_body(**overrides))
        return OrderRequest(order_body(**overrides), customer_id=customer_id)

    return make


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    """The test issuer's JWKS, served over real HTTP on a free port."""
    JwksHandler.jwks = TEST_ISSUER.jwks()
    with serving_in_a_thread(JwksHandler) as url:
        yield f"{url}/.well-known/jwks.json"
