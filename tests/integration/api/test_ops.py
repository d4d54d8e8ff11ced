"""Probes, metrics, docs, and the API's answer while Temporal is unreachable."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import (
    Client,
    DescribeWorkflowInput,
    Interceptor,
    OutboundInterceptor,
    QueryWorkflowInput,
    StartWorkflowInput,
    WorkflowExecutionDescription,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api import temporal_orders
from api.app import create_app
from ordersaga.runtime.settings import Settings
from tests.conftest import register_search_attributes
from tests.fakes import FakeDomainActivities
from tests.integration.api.support import (
    UNKNOWN_ORDER,
    NewOrder,
    NoWorkerAnswers,
    api_settings,
    asgi_client,
    bearer,
    client_on_bare_namespace,
    client_on_new_namespace,
    customer_token,
    eventually,
    free_port,
    intercepted,
    new_customer_id,
    place,
    place_accepted,
    place_held_at,
    terminate_open_orders,
    verifier_for_tests,
    wait_for_status,
)


@pytest.fixture
async def unreachable_api() -> AsyncIterator[httpx.AsyncClient]:
    """An API whose (lazy) client points at a port nobody listens on."""
    address = f"127.0.0.1:{free_port()}"
    client = await Client.connect(address, lazy=True)
    async with asgi_client(
        create_app(
            api_settings(temporal_address=address), client=client, verifier=verifier_for_tests()
        )
    ) as api:
        yield api


# --- Temporal unreachable --------------------------------------------------------


async def test_place_order_while_temporal_is_unreachable_is_503(
    unreachable_api: httpx.AsyncClient, new_order: NewOrder
) -> None:
    response = await place(unreachable_api, new_order())

    assert response.status_code == 503
    assert response.json()["detail"]["code"] == "TEMPORAL_UNAVAILABLE"
    assert "Retry-After" in response.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/orders/{UNKNOWN_ORDER}"),
        ("GET", "/orders?status=COMPLETED"),
        ("POST", f"/orders/{UNKNOWN_ORDER}/cancel"),
        ("POST", f"/orders/{UNKNOWN_ORDER}/compensation/retry"),
        ("POST", f"/orders/{UNKNOWN_ORDER}/compensation/resolve"),
    ],
)
async def test_every_order_endpoint_is_503_while_temporal_is_unreachable(
    unreachable_api: httpx.AsyncClient, method: str, path: str
) -> None:
    # A customer cancels; operators (the client's default) read and decide.
    who = bearer(customer_token(new_customer_id())) if path.endswith("/cancel") else {}
    response = await unreachable_api.request(method, path, headers=who)

    assert response.status_code == 503
    assert response.json()["detail"]["code"] == "TEMPORAL_UNAVAILABLE"


async def test_probes_while_temporal_is_unreachable(unreachable_api: httpx.AsyncClient) -> None:
    assert (await unreachable_api.get("/healthz")).status_code == 200

    ready = await unreachable_api.get("/readyz")

    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert "unreachable" in ready.json()["reason"]


async def test_api_starts_without_temporal_and_connects_lazily(new_order: NewOrder) -> None:
    # No injected client: the lifespan builds one from settings, lazily, so
    # start-up succeeds even though nothing listens at the address.
    app = create_app(
        api_settings(temporal_address=f"127.0.0.1:{free_port()}"), verifier=verifier_for_tests()
    )

    async with app.router.lifespan_context(app), asgi_client(app) as api:
        assert (await api.get("/healthz")).status_code == 200
        assert (await api.get("/readyz")).status_code == 503
        started = time.monotonic()
        refused = await place(api, new_order())
        # Fail fast: the client learns of the outage at once, with Retry-After,
        # and no SDK retry can start the order after this answer.
        assert time.monotonic() - started < 2.0
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"]


async def test_requests_before_start_up_finished_are_503(new_order: NewOrder) -> None:
    app = create_app(
        api_settings(temporal_address=f"127.0.0.1:{free_port()}"), verifier=verifier_for_tests()
    )

    async with asgi_client(app) as api:  # the lifespan never ran: no client yet
        response = await place(api, new_order())

    assert response.status_code == 503
    assert response.json()["detail"]["code"] == "TEMPORAL_UNAVAILABLE"


async def test_with_no_worker_an_order_reads_as_last_published_and_a_cancel_is_503(
    dev_server_env: WorkflowEnvironment, new_order: NewOrder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A namespace nobody polls: the server accepts the start, but queries and
    # updates need a worker and would otherwise wait indefinitely.
    monkeypatch.setattr(temporal_orders, "WORKER_ANSWER_DEADLINE", timedelta(seconds=0.5))
    monkeypatch.setattr(temporal_orders, "READ_QUERY_DEADLINE", timedelta(seconds=0.5))
    client = await client_on_new_namespace(dev_server_env.client)
    app = create_app(
        api_settings(temporal_namespace=client.namespace),
        client=client,
        verifier=verifier_for_tests(),
    )
    order = new_order()
    try:
        async with asgi_client(app) as api:
            order_id = await place_accepted(api, order)

            started = time.monotonic()
            status = await api.get(f"/orders/{order_id}", headers=order.auth)
            read_seconds = time.monotonic() - started
            cancel = await api.post(f"/orders/{order_id}/cancel", headers=order.auth)

        # Read from what Temporal keeps, marked possibly stale, within the
        # query's deadline: never a 503 that blames Temporal.
        assert status.status_code == 200, status.text
        body = status.json()
        assert body["stale"] is True
        assert (body["status"], body["customer_id"]) == ("RECEIVED", order.customer_id)
        assert body["items"] == [{**item, "unit_price_cents": None} for item in order.body["items"]]
        assert body["steps"] == []
        assert read_seconds < 2.0
        # A cancel needs the workflow itself: 503, naming the real cause.
        assert cancel.status_code == 503, cancel.text
        assert cancel.json()["detail"]["code"] == "WORKERS_UNAVAILABLE"
        assert "no worker answered" in cancel.json()["detail"]["message"]
    finally:
        await terminate_open_orders(client)


class FailCalls(Interceptor):
    """Makes every start, describe and query of a client fail with `error`, as Temporal can."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        error = self.error

        class Failing(OutboundInterceptor):
            async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
                raise error

            async def describe_workflow(
                self, input: DescribeWorkflowInput
            ) -> WorkflowExecutionDescription:
                raise error

            async def query_workflow(self, input: QueryWorkflowInput) -> Any:
                raise error

        return Failing(next)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        pytest.param(
            RPCError("overloaded", RPCStatusCode.UNAVAILABLE, b""),
            503,
            "TEMPORAL_UNAVAILABLE",
            id="rpc-error",
        ),
        # Only the SDK's connect failure is Temporal being unreachable.
        pytest.param(RuntimeError("a bug"), 500, "INTERNAL_ERROR", id="other-runtime-error"),
    ],
)
async def test_temporal_call_failures_map_to_their_status(
    settings: Settings,
    temporal_client: Client,
    new_order: NewOrder,
    error: Exception,
    status: int,
    code: str,
) -> None:
    failing = Client(
        temporal_client.service_client,
        namespace=temporal_client.namespace,
        interceptors=[FailCalls(error)],
    )
    order = new_order()

    async with asgi_client(
        create_app(settings, client=failing, verifier=verifier_for_tests())
    ) as api:
        responses = [await place(api, order), await api.get(f"/orders/{UNKNOWN_ORDER}")]

    for response in responses:
        assert response.status_code == status, response.text
        assert response.json()["detail"]["code"] == code
        assert str(error) not in response.text
        assert ("Retry-After" in response.headers) is (status == 503)


# --- Temporal up -----------------------------------------------------------------


async def test_healthz_and_readyz_are_200(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok", "reason": None}

    ready = await api.get("/readyz")

    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"


async def test_metrics_count_requests_by_route_template_not_by_id(
    api: httpx.AsyncClient, new_order: NewOrder
) -> None:
    order_id = await place_accepted(api, new_order())
    assert (await api.get(f"/orders/{order_id}")).status_code == 200
    assert (await api.get(f"/orders/{UNKNOWN_ORDER}")).status_code == 404

    response = await api.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'ordersaga_api_requests_total{method="GET",route="/orders/{order_id}",status="200"} 1.0'
        in text
    )
    assert 'route="/orders/{order_id}",status="404"' in text
    assert 'ordersaga_api_requests_total{method="POST",route="/orders",status="202"} 1.0' in text
    assert "ordersaga_api_request_duration_seconds_bucket" in text
    assert order_id not in text and UNKNOWN_ORDER not in text


async def test_unknown_paths_are_404_in_the_api_error_shape(api: httpx.AsyncClient) -> None:
    response = await api.get(f"/nowhere/{UNKNOWN_ORDER}")

    assert response.status_code == 404
    assert response.json() == {"detail": {"code": "NOT_FOUND", "message": "Not Found"}}
    metrics = (await api.get("/metrics")).text
    assert 'route="<unmatched>",status="404"' in metrics
    assert UNKNOWN_ORDER not in metrics


async def test_head_is_answered_as_the_get_without_its_body(
    api: httpx.AsyncClient, new_order: NewOrder
) -> None:
    """Load balancers and uptime checks send HEAD; FastAPI routes a GET for GET only."""
    health, health_head = await api.get("/healthz"), await api.head("/healthz")
    assert health_head.status_code == 200 and health_head.content == b""
    assert health_head.headers["content-length"] == health.headers["content-length"]

    order_id = await place_accepted(api, new_order())
    order = await api.head(f"/orders/{order_id}")
    assert order.status_code == 200 and order.content == b""
    assert int(order.headers["content-length"]) > 0
    # Authenticated as the GET is: no token, no order.
    stranger = await api.head(f"/orders/{order_id}", headers={"Authorization": ""})
    assert stranger.status_code == 401 and stranger.content == b""
    assert stranger.headers["www-authenticate"].startswith("Bearer")

    metrics = (await api.get("/metrics")).text
    assert 'method="HEAD",route="/orders/{order_id}",status="200"' in metrics


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/orders", "GET, HEAD, POST"),
        ("PUT", "/orders/ord_x", "GET, HEAD"),
        ("GET", "/orders/ord_x/cancel", "POST"),
    ],
)
async def test_a_method_the_path_does_not_take_is_405_naming_every_method_it_does(
    api: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await api.request(method, path)

    assert response.status_code == 405
    assert response.json()["detail"]["code"] == "METHOD_NOT_ALLOWED"
    assert response.headers["allow"] == allowed


async def test_openapi_documents_the_order_endpoints(api: httpx.AsyncClient) -> None:
    assert (await api.get("/docs")).status_code == 200

    schema = (await api.get("/openapi.json")).json()

    post = schema["paths"]["/orders"]["post"]
    assert {"202", "400", "422", "503"} <= set(post["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    assert {"OrderCreate", "OrderPublic", "OrderAccepted"} <= set(schema["components"]["schemas"])
    assert "409" in schema["paths"]["/orders/{order_id}/cancel"]["post"]["responses"]


async def test_a_finished_order_is_read_whole_without_asking_any_worker(
    api: httpx.AsyncClient,
    settings: Settings,
    temporal_client: Client,
    new_order: NewOrder,
) -> None:
    order = new_order()
    order_id = await place_accepted(api, order)
    finished = await wait_for_status(api, order_id, "COMPLETED")
    no_workers = NoWorkerAnswers()
    unanswered = intercepted(temporal_client, no_workers)
    app = create_app(settings, client=unanswered, verifier=verifier_for_tests())

    async with asgi_client(app) as reader:
        started = time.monotonic()
        response = await reader.get(f"/orders/{order_id}")
        seconds = time.monotonic() - started

    assert response.status_code == 200, response.text
    assert response.json() == {**finished, "stale": False}
    assert no_workers.queries == 0
    assert seconds < 1.0


class QueriesRefused(Interceptor):
    """The server refuses every query, as it does while the order's workflow
    task is failing (its worker was killed mid-task)."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        class Refusing(OutboundInterceptor):
            async def query_workflow(self, input: QueryWorkflowInput) -> Any:
                raise RPCError(
                    "Unable to query workflow due to Workflow Task in failed state",
                    RPCStatusCode.FAILED_PRECONDITION,
                    b"",
                )

        return Refusing(next)


async def test_an_open_order_whose_query_is_refused_reads_as_last_published(
    api: httpx.AsyncClient,
    settings: Settings,
    temporal_client: Client,
    fakes: FakeDomainActivities,
    new_order: NewOrder,
) -> None:
    """Found by the chaos suite: a refused query (FAILED_PRECONDITION) was a 503."""
    order = new_order()
    order_id, gate = await place_held_at(api, fakes, order, "charge_payment")
    refused = intercepted(temporal_client, QueriesRefused())
    try:
        async with asgi_client(
            create_app(settings, client=refused, verifier=verifier_for_tests())
        ) as reader:
            response = await reader.get(f"/orders/{order_id}")
    finally:
        gate.set()

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stale"] is True
    assert body["total_cents"] == 3499  # published once reserved
    await wait_for_status(api, order_id, "COMPLETED")


async def test_not_ready_while_the_namespace_lacks_the_search_attributes(
    dev_server_env: WorkflowEnvironment, settings: Settings
) -> None:
    """A Temporal that answers but was set up by hand without the saga's search
    attributes refuses every order's start: the API must not call itself ready."""
    bare = await client_on_bare_namespace(dev_server_env.client)
    app = create_app(
        settings.model_copy(update={"temporal_namespace": bare.namespace}),
        client=bare,
        verifier=verifier_for_tests(),
    )

    async def not_ready() -> httpx.Response | None:
        # The new namespace reaches the frontend's cache asynchronously.
        answer = await api.get("/readyz")
        return answer if "search attributes" in answer.text else None

    async with asgi_client(app) as api:
        ready = await eventually(not_ready)
        assert ready.status_code == 503
        for name in ("CustomerId", "FailedStep", "OrderStatus", "OrderTotalCents"):
            assert name in ready.json()["reason"]

        await register_search_attributes(bare)

        async def ready_now() -> httpx.Response | None:
            answer = await api.get("/readyz")
            return answer if answer.status_code == 200 else None

        assert (await eventually(ready_now)).json()["status"] == "ok"
