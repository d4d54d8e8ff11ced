"""The whole system in one test process: the real services behind uvicorn on
free loopback ports, a real worker with the real activities, and the API.

Everything talks over real HTTP and a real Temporal dev server; only the
process boundaries are collapsed, so a test can read the domain state after.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from opentelemetry.trace import TracerProvider
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ordersaga.runtime.settings import Settings
from ordersaga.runtime.temporal_config import data_converter, temporal_interceptors
from tests.http_server import serving_with_uvicorn
from tests.keys import TEST_KEYRING
from tests.ports import free_ports
from tests.tokens import as_customer, bearer, new_customer_id, operator_token, verifier_for_tests
from tests.versioning_support import route_to_unversioned

ADMIN_TOKEN = "integration-admin-token-of-32-chars"
WORKER_TOKEN = "integration-worker-token-32-chars"


@dataclass
class Stack:
    settings: Settings
    # A Temporal client with the stack's payload codec (its results are encrypted).
    temporal: Client
    api: httpx.AsyncClient
    inventory: httpx.AsyncClient
    payments: httpx.AsyncClient
    shipping: httpx.AsyncClient

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    @contextlib.asynccontextmanager
    async def slowed(self, service: httpx.AsyncClient, latency_ms: int) -> AsyncIterator[None]:
        """`service` answers `latency_ms` late while the block runs (its admin
        faults API), and on time again after, however the block ends."""
        faults = await service.put(
            "/admin/faults", json={"error_rate": 0, "latency_ms": latency_ms}, headers=self.admin
        )
        assert faults.status_code == 200, faults.text
        try:
            yield
        finally:
            await service.delete("/admin/faults", headers=self.admin)

    async def stock(self, sku: str, available: int, *, price_cents: int = 1500) -> None:
        """Create or restock a product of the catalog, at a price."""
        response = await self.inventory.put(
            f"/products/{sku}",
            json={"available": available, "price_cents": price_cents},
            headers=self.admin,
        )
        response.raise_for_status()

    async def new_sku(self, prefix: str, available: int, *, price_cents: int = 1500) -> str:
        """A product of the caller's own (`prefix` and a random suffix), stocked."""
        sku = f"{prefix}_{uuid.uuid4().hex[:10]}"
        await self.stock(sku, available, price_cents=price_cents)
        return sku

    async def place(self, body: dict[str, Any], *, customer: str | None = None) -> str:
        """The id of the order, placed by `customer` (a new one by default) and accepted."""
        headers = as_customer(customer or new_customer_id())
        response = await self.api.post("/orders", json=body, headers=headers)
        assert response.status_code == 202, response.text
        return str(response.json()["order_id"])

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.api.get(f"/orders/{order_id}")
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()
        return order

    async def wait_for_status(
        self, order_id: str, *statuses: str, within: float = 60
    ) -> dict[str, Any]:
        """The order once its status is one of `statuses`."""
        async with asyncio.timeout(within):
            while True:
                order = await self.order(order_id)
                if order["status"] in statuses:
                    return order
                await asyncio.sleep(0.1)


async def items(client: httpx.AsyncClient, path: str, order_id: str) -> list[dict[str, Any]]:
    """A service's rows of one order (GET path?order_id=...)."""
    response = await client.get(path, params={"order_id": order_id})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


async def stack_clients(
    exits: contextlib.AsyncExitStack, settings: Settings, *roles: str, http_timeout: float
) -> list[httpx.AsyncClient]:
    """HTTP clients of the stack's servers, one a role (api, inventory, payments,
    shipping), closed with `exits`. They read as an operator (API) or the admin
    (services) by default; a customer's request names its own Authorization
    (tests/tokens.py)."""
    ports = {
        "api": settings.api_port,
        "inventory": settings.inventory_port,
        "payments": settings.payments_port,
        "shipping": settings.shipping_port,
    }
    return [
        await exits.enter_async_context(
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{ports[role]}",
                timeout=http_timeout,
                headers=bearer(operator_token() if role == "api" else ADMIN_TOKEN),
            )
        )
        for role in roles
    ]


def traced_client(client: Client, tracer_provider: TracerProvider | None) -> Client:
    """The same connection, with the tracing interceptor every real process has."""
    return Client(
        client.service_client,
        namespace=client.namespace,
        data_converter=data_converter(TEST_KEYRING),
        interceptors=temporal_interceptors(tracer_provider),
    )


def stack_settings(client: Client, data_dir: Path, **overrides: Any) -> Settings:
    """Settings of a test stack: free ports, SQLite files in data_dir, the test token."""
    api, inventory, payments, shipping = free_ports(4)
    return Settings(
        data_dir=data_dir,
        temporal_address=client.service_client.config.target_host,
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        worker_token=WORKER_TOKEN,  # type: ignore[arg-type]
        api_page_token_key="page-token-key-of-the-test-stacks",  # type: ignore[arg-type]
        api_order_rate_limit="10000/minute",
        api_port=api,
        inventory_port=inventory,
        payments_port=payments,
        shipping_port=shipping,
        **overrides,
    )


@contextlib.asynccontextmanager
async def serving_apps(
    settings: Settings,
    client: Client,
    *,
    tracer_providers: Mapping[str, TracerProvider] | None = None,
) -> AsyncIterator[None]:
    """The three services and the API, served in this process on the settings' ports."""
    from api.app import create_app as create_api
    from services.inventory.app import create_app as create_inventory
    from services.payments.app import create_app as create_payments
    from services.shipping.app import create_app as create_shipping

    providers = tracer_providers or {}

    def domain(name: str) -> dict[str, Any]:
        """What every domain service's create_app takes, for `name`."""
        return {
            "database_url": settings.database_url(name),
            "admin_token": SecretStr(ADMIN_TOKEN),
            "worker_token": SecretStr(WORKER_TOKEN),
            "tracer_provider": providers.get(name),
        }

    apps: list[tuple[Any, int]] = [
        (create_inventory(**domain("inventory")), settings.inventory_port),
        (
            create_payments(
                **domain("payments"),
                customer_limit_cents=settings.payments_customer_limit_cents,
            ),
            settings.payments_port,
        ),
        (
            create_shipping(
                **domain("shipping"),
                refused_countries=settings.shipping_refused_countries,
            ),
            settings.shipping_port,
        ),
        (
            create_api(
                settings,
                client=client,
                tracer_provider=providers.get("api"),
                verifier=verifier_for_tests(),
            ),
            settings.api_port,
        ),
    ]
    async with contextlib.AsyncExitStack() as stack:
        for app, port in apps:
            await stack.enter_async_context(serving_with_uvicorn(app, port))
        yield


@contextlib.asynccontextmanager
async def running_stack(
    client: Client,
    data_dir: Path,
    *,
    tracer_providers: Mapping[str, TracerProvider] | None = None,
    **settings_overrides: Any,
) -> AsyncIterator[Stack]:
    """With `tracer_providers` (role -> provider: api, inventory, payments,
    shipping), every role traces as in its own process: the API and the
    services to their provider, the worker (Temporal client, activities, httpx)
    to the global one. Without, the given client is used as it is.
    `settings_overrides` change the stack's settings (say, the workers' HTTP
    timeouts)."""
    from workers.main import build_workers
    from workers.versioning import deployment_name

    settings = stack_settings(
        client, data_dir, **{"http_read_timeout_seconds": 10, **settings_overrides}
    )
    providers = dict(tracer_providers or {})
    # Every client and worker encrypts, as in production (tests/keys.py).
    api_client = traced_client(client, providers.get("api"))
    client = traced_client(client, None)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(
            serving_apps(settings, api_client, tracer_providers=providers)
        )
        queues = ["orders", "inventory", "payments", "shipping"]
        # Versioned workers (the default) on the shared test server: once they
        # stop, hand the queues back to unversioned routing for later tests.
        stack.push_async_callback(
            route_to_unversioned, client, [deployment_name(settings, q) for q in queues]
        )
        workers = await stack.enter_async_context(build_workers(client, settings, queues))
        for worker in workers:
            await stack.enter_async_context(worker)

        clients = await stack_clients(
            stack, settings, "api", "inventory", "payments", "shipping", http_timeout=30
        )
        yield Stack(settings, client, *clients)


@dataclass
class ShopWithoutWorkers:
    """The services and the API served in this process, with no worker (a
    test brings its own): the settings, an encrypting Temporal client, and
    HTTP clients of the API, inventory and payments, as in Stack."""

    settings: Settings
    client: Client
    api: httpx.AsyncClient
    inventory: httpx.AsyncClient
    payments: httpx.AsyncClient


ShopT = TypeVar("ShopT", bound=ShopWithoutWorkers)


@contextlib.asynccontextmanager
async def serving_shop(
    kind: type[ShopT], client: Client, data_dir: Path, **settings_overrides: Any
) -> AsyncIterator[ShopT]:
    """A shop (a `kind` of ShopWithoutWorkers) on the client's server, its data in data_dir;
    the workers' HTTP calls may take 30 s (tests slow the services down)."""
    settings = stack_settings(
        client, data_dir, **{"http_read_timeout_seconds": 30, **settings_overrides}
    )
    # Encrypting, as every production client and worker does (tests/keys.py).
    client = traced_client(client, None)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(serving_apps(settings, client))
        api, inventory, payments = await stack_clients(
            stack, settings, "api", "inventory", "payments", http_timeout=60
        )
        yield kind(settings, client, api, inventory, payments)


def module_stack(folder: str, **settings_overrides: Any) -> Any:
    """A module-scoped `stack` fixture: a running stack on the session's dev
    server, its data in a temporary `folder`. In a test module:
    `stack = module_stack("name")`."""

    @pytest.fixture(scope="module")
    async def stack(
        dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
    ) -> AsyncIterator[Stack]:
        data_dir = tmp_path_factory.mktemp(folder)
        async with running_stack(dev_server_env.client, data_dir, **settings_overrides) as running:
            yield running

    return stack
