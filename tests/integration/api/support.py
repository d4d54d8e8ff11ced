"""Helpers for the API tests (fixtures live in conftest.py, the fakes in tests/fakes.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI
from google.protobuf.duration_pb2 import Duration
from pydantic import SecretStr
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, Interceptor, OutboundInterceptor, QueryWorkflowInput
from temporalio.service import RPCError, RPCStatusCode

from api.ids import derive_order_id
from contracts.search_attributes import CUSTOMER_ID, ORDER_STATUS
from ordersaga.runtime.settings import Settings
from ordersaga.runtime.temporal_config import data_converter
from tests import orders
from tests.conftest import register_search_attributes
from tests.fakes import FakeDomainActivities
from tests.keys import TEST_CODEC_KEYS, TEST_KEYRING
from tests.orders import (
    CUSTOMER_NAME as CUSTOMER_NAME,
)
from tests.orders import (
    PAYMENT_TOKEN as PAYMENT_TOKEN,
)
from tests.orders import (
    STREET as STREET,
)
from tests.ports import free_port as free_port  # re-exported for test_ops.py
from tests.tokens import (
    CUSTOMER_SCOPE as CUSTOMER_SCOPE,
)
from tests.tokens import (
    OPERATOR_SCOPE as OPERATOR_SCOPE,
)
from tests.tokens import (
    TEST_ISSUER as TEST_ISSUER,
)
from tests.tokens import (
    TEST_OPERATOR as TEST_OPERATOR,
)
from tests.tokens import (
    bearer as bearer,
)
from tests.tokens import (
    customer_token as customer_token,
)
from tests.tokens import (
    new_customer_id as new_customer_id,
)
from tests.tokens import (
    operator_token as operator_token,
)
from tests.tokens import (
    verifier_for_tests as verifier_for_tests,
)

# Generous: a dev server on a loaded CI machine. Waits end as soon as the
# condition holds; this only bounds how long a broken test takes to fail.
DEADLINE_SECONDS = 30.0
POLL_INTERVAL_SECONDS = 0.05


T = TypeVar("T")

# Shaped like an order id, so it gets past the path check and reaches Temporal.
UNKNOWN_ORDER = "ord_aaaaaaaaaaaaaaaaaaaaaaaaaa"


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = DEADLINE_SECONDS
) -> T:
    """Poll until probe returns something other than None, or fail at the deadline."""
    async with asyncio.timeout(within):
        while True:
            result = await probe()
            if result is not None:
                return result
            await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def client_on_bare_namespace(server_client: Client, prefix: str = "bare") -> Client:
    """A client on a fresh namespace of the server with no search attribute
    registered, as a Temporal set up by hand would be."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await server_client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace,
            workflow_execution_retention_period=Duration(seconds=24 * 3600),
        )
    )
    # Encrypting, as every client and worker in production does; API processes
    # the tests start get the same keys (TEST_CODEC_KEYS).
    return await Client.connect(
        server_client.service_client.config.target_host,
        namespace=namespace,
        data_converter=data_converter(TEST_KEYRING),
    )


async def client_on_new_namespace(server_client: Client) -> Client:
    """A client on a fresh namespace of the server, its search attributes usable."""
    client = await client_on_bare_namespace(server_client, "api-tests")

    async def search_attributes_usable() -> bool | None:
        # A new namespace and its search attributes reach the frontend's
        # caches asynchronously; starting a workflow before they do fails.
        try:
            await register_search_attributes(client)
            await client.count_workflows(f"{ORDER_STATUS} = 'RECEIVED' AND {CUSTOMER_ID} = 'x'")
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                return None
            raise
        return True

    await eventually(search_attributes_usable)
    return client


async def terminate_open_orders(client: Client) -> None:
    async for execution in client.list_workflows("ExecutionStatus = 'Running'"):
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(execution.id).terminate("API tests finished")


class NoWorkerAnswers(Interceptor):
    """Every query hangs, as with every worker stopped."""

    def __init__(self) -> None:
        self.queries = 0

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        outer = self

        class Hanging(OutboundInterceptor):
            async def query_workflow(self, input: QueryWorkflowInput) -> Any:
                outer.queries += 1
                await asyncio.Event().wait()

        return Hanging(next)


def intercepted(client: Client, *interceptors: Interceptor) -> Client:
    """The test's Temporal client (same connection, namespace and payload
    keys) with `interceptors` in front of its calls."""
    return Client(
        client.service_client,
        namespace=client.namespace,
        data_converter=client.data_converter,
        interceptors=interceptors,
    )


def api_settings(**overrides: Any) -> Settings:
    """Settings for an API under test: its own page-token key, limits that do
    not get in the way of tests placing many orders (test_limits.py tests them)."""
    values: dict[str, Any] = {
        "api_page_token_key": SecretStr("page-token-key-of-the-api-tests-32"),
        "api_order_rate_limit": "10000/minute",
        "api_max_open_orders_per_customer": 10_000,
        "codec_keys": SecretStr(TEST_CODEC_KEYS),
        **overrides,
    }
    return Settings(**values)


@dataclass
class OrderRequest:
    """One customer's order attempt: its body, Idempotency-Key and bearer token."""

    body: dict[str, Any]
    customer_id: str = field(default_factory=new_customer_id)
    key: str = field(default_factory=lambda: f"key-{uuid.uuid4()}")

    @property
    def order_id(self) -> str:
        """Known before the POST, so a test can steer the fakes for this order."""
        return derive_order_id(self.customer_id, self.key)

    @property
    def auth(self) -> dict[str, str]:
        return bearer(customer_token(self.customer_id))

    @property
    def headers(self) -> dict[str, str]:
        return {"Idempotency-Key": self.key, **self.auth}


NewOrder = Callable[..., OrderRequest]

# Two lines, priced by the fake catalog (tests/fakes.py) at 2 x 1250 + 999.
API_TEST_ITEMS = [{"sku": "sku_mug", "quantity": 2}, {"sku": "sku_poster", "quantity": 1}]


def order_body(**overrides: Any) -> dict[str, Any]:
    return orders.order_body(items=[dict(item) for item in API_TEST_ITEMS], **overrides)


class JwksHandler(BaseHTTPRequestHandler):
    jwks: dict[str, Any] = {}
    fetches = 0

    def do_GET(self) -> None:
        type(self).fetches += 1
        body = json.dumps(self.jwks).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def asgi_client(app: FastAPI, *, token: str | None = None) -> httpx.AsyncClient:
    """An HTTP client calling the app in-process (its lifespan does not run),
    sending `token` (default: an operator's, who may read every order) unless a
    request names its own Authorization."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://api.test",
        headers=bearer(token or operator_token()),
    )


async def place(api: httpx.AsyncClient, order: OrderRequest) -> httpx.Response:
    return await api.post("/orders", json=order.body, headers=order.headers)


async def place_accepted(api: httpx.AsyncClient, order: OrderRequest) -> str:
    response = await place(api, order)
    assert response.status_code == 202, response.text
    order_id: str = response.json()["order_id"]
    assert order_id == order.order_id
    return order_id


async def place_held_at(
    api: httpx.AsyncClient,
    fakes: FakeDomainActivities,
    order: OrderRequest,
    step: str,
    *,
    on_queue: bool = True,
) -> tuple[str, asyncio.Event]:
    """Place `order` and wait until its `step` has started and is held there:
    (its order id, the gate that lets the step go on)."""
    gate = fakes.hold_calls(step, order.order_id, on_queue=on_queue)
    order_id = await place_accepted(api, order)
    await fakes.wait_entered(step, order_id)
    return order_id, gate


async def terminated_while_shipping(
    api: httpx.AsyncClient, fakes: FakeDomainActivities, temporal_client: Client, order: Any
) -> str:
    """Place the order and terminate its workflow (as `temporal workflow
    terminate` does) while its shipment is being created: reserved and charged,
    nothing undone."""
    order_id, gate = await place_held_at(api, fakes, order, "create_shipment")
    await temporal_client.get_workflow_handle(order_id).terminate("stopped by hand")
    gate.set()
    return order_id


async def wait_for_status(
    api: httpx.AsyncClient,
    order_id: str,
    status: str,
    *,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """GET the order until it reaches status; the last body seen if not in time."""
    seen: dict[str, Any] = {}

    async def reached() -> dict[str, Any] | None:
        nonlocal seen
        response = await api.get(f"/orders/{order_id}", headers=headers)
        assert response.status_code == 200, response.text
        seen = response.json()
        return seen if seen["status"] == status else None

    try:
        return await eventually(reached)
    except TimeoutError:
        raise AssertionError(f"{order_id} never reached {status}; last seen {seen}") from None


@contextlib.contextmanager
def api_process(
    temporal_client: Client, jwks_url: str, data_dir: Path, **env: str
) -> Iterator[str]:
    """`ordersaga api` as its own process, configured as production is (an
    issuer's JWKS over HTTP, a page-token key, no dev mode); its base URL."""
    port = free_port()
    environment = {
        **os.environ,
        "ORDERSAGA_DEV_MODE": "false",
        "ORDERSAGA_DATA_DIR": str(data_dir),
        "ORDERSAGA_API_PORT": str(port),
        "ORDERSAGA_TEMPORAL_ADDRESS": temporal_client.service_client.config.target_host,
        "ORDERSAGA_TEMPORAL_NAMESPACE": temporal_client.namespace,
        "ORDERSAGA_AUTH_JWKS_URL": jwks_url,
        "ORDERSAGA_AUTH_ISSUER": TEST_ISSUER.issuer,
        "ORDERSAGA_AUTH_AUDIENCE": TEST_ISSUER.audience,
        "ORDERSAGA_API_PAGE_TOKEN_KEY": "shared-by-every-replica-of-the-api",
        "ORDERSAGA_LOG_FORMAT": "json",
        "ORDERSAGA_CODEC_KEYS": TEST_CODEC_KEYS,
        **env,
    }
    log = data_dir / "api.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "ordersaga.cli", "api"],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the API did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
