"""Orders through the real stack, then every /metrics endpoint scraped: the API,
each service, and the worker's SDK runtime (Temporal's own metrics and the
saga's business metrics). Each counter must move by exactly what these orders
caused (two complete, one undeliverable, one declined, one parked for an
operator and then resolved), and no label may carry an id. A service's
request count may exceed that only by the retries the orders recorded (a
forward step's attempts) or the SDK saw fail (an undo's).

The stack gets a Temporal dev server of its own, so no other test's workflow
can move a counter while this one measures.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter as Tally
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from contracts.orders import OrderResult, StepName
from ordersaga.binaries import temporal_cli
from ordersaga.runtime.settings import Settings
from tests import orders
from tests.integration.stack import Stack, running_stack
from tests.ports import free_port
from tests.tokens import as_customer, new_customer_id
from workers.runtime import worker_runtime
from workflows.search_attributes import ORDER_SEARCH_ATTRIBUTES, ORDER_STATUS_KEY

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    """One /metrics page: every sample by name and labels."""

    samples: dict[tuple[str, Labels], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[tuple[str, Labels], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(samples)

    def value(self, name: str, **labels: str) -> float:
        """The sum over every series of `name` carrying these labels (0 if none)."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample_name, sample_labels), value in self.samples.items()
            if sample_name == name and wanted <= sample_labels
        )

    def label_values(self) -> set[str]:
        return {value for _, labels in self.samples for _, value in labels}

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


@dataclass
class MeteredStack:
    stack: Stack
    env: WorkflowEnvironment
    worker_metrics_url: str

    def endpoints(self) -> dict[str, tuple[httpx.AsyncClient, str]]:
        return {
            "api": (self.stack.api, "/metrics"),
            "inventory": (self.stack.inventory, "/metrics"),
            "payments": (self.stack.payments, "/metrics"),
            "shipping": (self.stack.shipping, "/metrics"),
        }

    async def scrape(self) -> dict[str, Scrape]:
        pages: dict[str, Scrape] = {}
        for name, (client, path) in self.endpoints().items():
            response = await client.get(path)
            assert response.status_code == 200, (name, response.text)
            pages[name] = Scrape.parse(response.text)
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(self.worker_metrics_url)
        assert response.status_code == 200, response.text
        pages["worker"] = Scrape.parse(response.text)
        return pages


@pytest.fixture(scope="module")
async def metered(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MeteredStack]:
    metrics_port = free_port()
    # The worker's real runtime, as `ordersaga worker` builds it, on a free port.
    runtime = worker_runtime(
        Settings(worker_listen_host="127.0.0.1", worker_metrics_port=metrics_port)
    )
    env = await WorkflowEnvironment.start_local(
        runtime=runtime,
        dev_server_existing_path=str(temporal_cli()),
        search_attributes=ORDER_SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    try:
        async with running_stack(env.client, tmp_path_factory.mktemp("metered")) as stack:
            yield MeteredStack(stack, env, f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        await env.shutdown()


def order_body(sku: str, *, country: str = "DE", token: str = "tok_visa") -> dict[str, Any]:
    return orders.order_body(sku=sku, quantity=2, country=country, payment_token=token)


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    """How far `name` with these labels moved from one scrape to the next."""
    return after.value(name, **labels) - before.value(name, **labels)


def deltas(
    before: Scrape, after: Scrape, name: str, label: str, values: Iterable[str]
) -> dict[str, float]:
    return {value: delta(before, after, name, **{label: value}) for value in values}


FENCE = ("PUT", "/fences/{order_id}", "200")
# Each service's undo: its activity and the route its success is counted on.
UNDOS = {
    "inventory": ("release_inventory", ("POST", "/reservations/{reservation_id}/release", "200")),
    "payments": ("refund_payment", ("POST", "/charges/{charge_id}/refund", "200")),
    "shipping": ("cancel_shipment", ("POST", "/shipments/{shipment_id}/cancel", "200")),
}


# Each forward step: its service and the route every attempt of it calls.
FORWARD_ROUTES = {
    StepName.RESERVE_INVENTORY: ("inventory", "POST", "/reservations"),
    StepName.CHARGE_PAYMENT: ("payments", "POST", "/charges"),
    StepName.CREATE_SHIPMENT: ("shipping", "POST", "/shipments"),
    StepName.COMMIT_RESERVATION: ("inventory", "POST", "/reservations/{reservation_id}/commit"),
}


def _forward_retries(results: list[OrderResult]) -> dict[tuple[str, str, str], int]:
    """Per service and route, the attempts beyond one per step that ran, as the
    orders themselves recorded them: a local attempt that outlasted its budget
    under load goes on on the domain's queue (workflows/runner.py), and each
    attempt is one more request to the service, counted whatever it answered
    (a replay, or 504 for a request whose deadline passed while it waited).
    """
    extra: Tally[tuple[str, str, str]] = Tally()
    for result in results:
        assert result.view is not None, result.order_id
        for step in result.view.steps:
            if step.name in FORWARD_ROUTES and step.attempts > 1:
                extra[FORWARD_ROUTES[StepName(step.name)]] += step.attempts - 1
    return dict(extra)


def _check_forward_requests(
    expected: dict[tuple[str, str, str], int],
    moved: Tally[tuple[str, str, str]],
    service: str,
    retries: dict[tuple[str, str, str], int],
) -> dict[tuple[str, str, str], int]:
    """`expected`, with each forward route's count raised to what moved, once
    checked that the excess on that route is no more than the retries its
    orders recorded (none recorded: exactly `expected`)."""
    adjusted = dict(expected)
    for (owner, method, route), allowed in retries.items():
        if owner != service:
            continue
        on_route = [key for key in {*expected, *moved} if key[:2] == (method, route)]
        excess = {key: moved[key] - expected.get(key, 0) for key in on_route}
        if any(count < 0 for count in excess.values()) or sum(excess.values()) > allowed:
            continue  # the exact comparison below fails, and shows why
        adjusted.update({key: moved[key] for key in on_route if moved[key]})
    return adjusted


def _with_undo_retries(
    expected: dict[tuple[str, str, str], int],
    moved: Tally[tuple[str, str, str]],
    service: str,
    worker_before: Scrape,
    worker_after: Scrape,
) -> dict[tuple[str, str, str], int]:
    """`expected`, plus what an undo's retries sent: an attempt that timed out
    under load after the service answered runs again, and fences and undoes
    once more (a no-op there, and still counted). No more fences or undos than
    the SDK saw attempts of that undo fail, and never an undo without its fence.
    """
    undo, route = UNDOS[service]
    failed = sum(
        delta(worker_before, worker_after, name, activity_type=undo)
        for name in worker_after.names()
        if "activity_execution_failed" in name
    )
    fences = moved[FENCE] - expected.get(FENCE, 0)
    undos = moved[route] - expected.get(route, 0)
    if not 0 < fences <= failed or not 0 <= undos <= fences:
        return expected
    with_retries = {**expected, FENCE: expected.get(FENCE, 0) + fences}
    if undos:
        with_retries[route] = expected.get(route, 0) + undos
    return with_retries


async def test_counters_move_by_exactly_what_the_orders_did(metered: MeteredStack) -> None:
    stack = metered.stack
    sku = f"sku_metrics_{uuid.uuid4().hex[:8]}"
    await stack.stock(sku, 100, price_cents=1250)

    async def place(body: dict[str, Any]) -> str:
        placed = await stack.api.post("/orders", json=body, headers=as_customer(new_customer_id()))
        assert placed.status_code == 202, placed.text
        order_id: str = placed.json()["order_id"]
        return order_id

    async def finished(order_id: str) -> OrderResult:
        handle = stack.temporal.get_workflow_handle(order_id, result_type=OrderResult)
        return await handle.result()

    # One order before counting: the first calls of a fresh stack (connections,
    # first statements) are its slowest, and a step whose local attempt outlasts
    # its budget reaches its service a second time (replayed, but counted).
    assert (await finished(await place(order_body(sku)))).status == "COMPLETED"

    before = await metered.scrape()

    bodies = [
        order_body(sku),
        order_body(sku),
        order_body(sku, country="AQ"),  # shipping refuses: refund, then release
        order_body(sku, token="tok_chargeDeclined"),  # payments refuses: release
        # Shipping refuses, then the issuer refuses the refund: the order parks
        # in NEEDS_ATTENTION until an operator resolves it; then it is FAILED.
        order_body(sku, country="AQ", token="tok_refundFail"),
    ]
    # One at a time, for the same reason: five sagas at once on a loaded
    # two-core machine can push a step past its local attempt's budget.
    order_ids = []
    for body in bodies:
        order_ids.append(await place(body))
        if body is not bodies[-1]:
            await finished(order_ids[-1])
    parked = metered.env.client.get_workflow_handle(order_ids[-1])
    async with asyncio.timeout(60):
        while True:
            described = await parked.describe()
            if described.typed_search_attributes.get(ORDER_STATUS_KEY) == "NEEDS_ATTENTION":
                break
            await asyncio.sleep(0.1)
    resolved = await stack.api.post(
        f"/orders/{parked.id}/compensation/resolve", json={"note": "refunded by hand"}
    )
    assert resolved.status_code == 202, resolved.text
    results = [await finished(order_id) for order_id in order_ids]
    assert [result.status for result in results] == [
        "COMPLETED",
        "COMPLETED",
        "FAILED",
        "FAILED",
        "FAILED",
    ]
    for order_id in order_ids:
        read = await stack.api.get(f"/orders/{order_id}")
        assert read.status_code == 200, read.text
    unknown = await stack.api.get(f"/orders/ord_{uuid.uuid4().hex}")
    assert unknown.status_code == 404, unknown.text
    # No route at all: one shared label, whatever the path holds.
    stray = await stack.api.get(f"/no-such-page/{order_ids[0]}")
    assert stray.status_code == 404, stray.text

    after = await metered.scrape()

    # The saga's business metrics, from the worker's SDK endpoint.
    worker_before, worker_after = before["worker"], after["worker"]
    started = "ordersaga_orders_started_total"
    assert worker_after.value(started) - worker_before.value(started) == 5
    assert deltas(
        worker_before,
        worker_after,
        "ordersaga_orders_finished_total",
        "status",
        ["COMPLETED", "FAILED", "CANCELLED", "NEEDS_ATTENTION"],
    ) == {"COMPLETED": 2, "FAILED": 3, "CANCELLED": 0, "NEEDS_ATTENTION": 0}
    parked = "ordersaga_orders_parked_total"
    assert worker_after.value(parked) - worker_before.value(parked) == 1
    assert deltas(
        worker_before,
        worker_after,
        "ordersaga_compensations_total",
        "step",
        ["reserve_inventory", "charge_payment", "create_shipment"],
    ) == {"reserve_inventory": 3, "charge_payment": 2, "create_shipment": 0}
    assert deltas(
        worker_before,
        worker_after,
        "ordersaga_order_duration_seconds_count",
        "status",
        ["COMPLETED", "FAILED"],
    ) == {"COMPLETED": 2, "FAILED": 3}

    step_observations = {
        (step, outcome): delta(
            worker_before,
            worker_after,
            "ordersaga_step_duration_seconds_count",
            step=step,
            outcome=outcome,
        )
        for step in (
            "reserve_inventory",
            "charge_payment",
            "create_shipment",
            "commit_reservation",
            "release_inventory",
            "refund_payment",
            "cancel_shipment",
        )
        for outcome in ("completed", "refused", "failed")
    }
    assert {key: count for key, count in step_observations.items() if count} == {
        ("reserve_inventory", "completed"): 5,
        ("charge_payment", "completed"): 4,
        ("charge_payment", "refused"): 1,
        ("create_shipment", "completed"): 2,
        ("create_shipment", "refused"): 2,
        ("commit_reservation", "completed"): 2,
        ("release_inventory", "completed"): 3,
        ("refund_payment", "completed"): 1,
        ("refund_payment", "refused"): 1,
    }
    # Buckets chosen for these durations, not the SDK's defaults.
    step_buckets = {
        dict(labels)["le"]
        for name, labels in worker_after.samples
        if name == "ordersaga_step_duration_seconds_bucket"
    }
    assert {"0.01", "0.25", "30", "300", "+Inf"} <= step_buckets, step_buckets
    order_buckets = {
        dict(labels)["le"]
        for name, labels in worker_after.samples
        if name == "ordersaga_order_duration_seconds_bucket"
    }
    assert {"0.5", "3600", "86400", "+Inf"} <= order_buckets, order_buckets

    # Temporal's own worker metrics, through the same runtime. Healthy steps
    # run as local activities in the orders worker (workflows/order.py).
    for sdk_metric in (
        "temporal_local_activity_execution_latency_seconds_count",
        "temporal_workflow_task_schedule_to_start_latency_seconds_count",
    ):
        assert worker_after.value(sdk_metric) > worker_before.value(sdk_metric), sdk_metric

    # The API: by route template and status.
    api_before, api_after = before["api"], after["api"]

    def api_requests(method: str, route: str, status: str) -> float:
        return delta(
            api_before,
            api_after,
            "ordersaga_api_requests_total",
            method=method,
            route=route,
            status=status,
        )

    assert api_requests("POST", "/orders", "202") == 5
    assert api_requests("POST", "/orders/{order_id}/compensation/resolve", "202") == 1
    assert api_requests("GET", "/orders/{order_id}", "200") == 5
    assert api_requests("GET", "/orders/{order_id}", "404") == 1
    assert api_requests("GET", "<unmatched>", "404") == 1
    latency = "ordersaga_api_request_duration_seconds_count"
    assert delta(api_before, api_after, latency, method="POST", route="/orders", status="202") == 5

    # Each service: what the activities called, refusals included.
    forward_retries = _forward_retries(results)
    expected_service_requests = {
        "inventory": {
            ("POST", "/reservations", "201"): 5,
            ("POST", "/reservations/{reservation_id}/commit", "200"): 2,
            ("POST", "/reservations/{reservation_id}/release", "200"): 3,
            # Every undo fences its order first (late requests are refused).
            ("PUT", "/fences/{order_id}", "200"): 3,
        },
        "payments": {
            ("POST", "/charges", "201"): 4,
            ("POST", "/charges", "402"): 1,
            ("POST", "/charges/{charge_id}/refund", "200"): 1,
            ("POST", "/charges/{charge_id}/refund", "409"): 1,
            ("PUT", "/fences/{order_id}", "200"): 2,
        },
        "shipping": {
            ("POST", "/shipments", "201"): 2,
            ("POST", "/shipments", "422"): 2,
        },
    }
    for service, expected in expected_service_requests.items():
        service_before, service_after = before[service], after[service]
        moved: Tally[tuple[str, str, str]] = Tally()
        for (name, labels), value in service_after.samples.items():
            if name != "http_requests_total":
                continue
            label = dict(labels)
            if label["route"] == "/metrics":
                continue  # the scrape itself
            key = (label["method"], label["route"], label["status"])
            moved[key] = int(value - service_before.samples.get((name, labels), 0))
        expected = _check_forward_requests(expected, moved, service, forward_retries)
        expected = _with_undo_retries(expected, moved, service, worker_before, worker_after)
        assert {key: count for key, count in moved.items() if count} == expected, service
        for (method, route, status), count in expected.items():
            assert (
                delta(
                    service_before,
                    service_after,
                    "http_request_duration_seconds_count",
                    method=method,
                    route=route,
                    status=status,
                )
                == count
            ), (service, route)

    # No id in any label, anywhere: one series per order would grow without bound.
    resource_ids = await ids_of_everything_the_orders_touched(stack, order_ids)
    for endpoint, scrape in after.items():
        leaked = {
            value
            for value in scrape.label_values()
            for found in (*order_ids, *resource_ids)
            if found in value
        }
        assert not leaked, (endpoint, leaked)


async def ids_of_everything_the_orders_touched(stack: Stack, order_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for order_id in order_ids:
        for client, path, key in (
            (stack.inventory, "/reservations", "reservation_id"),
            (stack.payments, "/charges", "charge_id"),
            (stack.shipping, "/shipments", "shipment_id"),
        ):
            response = await client.get(path, params={"order_id": order_id})
            assert response.status_code == 200, response.text
            found.update(str(item[key]) for item in response.json()["items"])
    assert found, "the orders left no reservation, charge or shipment"
    return found
