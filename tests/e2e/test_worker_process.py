"""`ordersaga worker` as a process: its probes, its start and stop, and SIGTERM
while an activity is in flight.

These tests run on a dev server of their own: the worker processes are
versioned (the default), and the routing they set up must not reach the
unversioned workers other tests run on the same task queue names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from contracts import task_queues
from contracts.orders import WORKFLOW_TYPE
from ordersaga.runtime.keyring import format_keyring
from ordersaga.runtime.temporal_config import data_converter
from tests.e2e.worker_process import WorkerProcess, worker_env, worker_process
from tests.integration.api.support import eventually
from tests.integration.stack import ADMIN_TOKEN, ShopWithoutWorkers, serving_shop
from tests.keys import TEST_KEY_ID, TEST_KEYRING
from tests.orders import order_body
from tests.ports import free_port
from tests.tokens import as_customer, new_customer_id
from tests.versioning_support import own_dev_server
from tests.workflows.conftest import sample_order

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Time for a stopping process to finish after its grace period: the SDK's own
# shutdown, the Python interpreter's exit, a busy test machine.
EXIT_MARGIN_SECONDS = 8.0


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    async with own_dev_server() as env:
        yield env


def address_of(client: Client) -> str:
    return client.service_client.config.target_host


# --- start-up and probes -------------------------------------------------------


async def test_worker_without_temporal_is_alive_not_ready_and_stops_with_exit_0() -> None:
    env = worker_env(f"127.0.0.1:{free_port()}")  # nothing listens there
    async with worker_process(env) as worker:
        await worker.wait_for_output("not reachable")
        alive = await worker.probe("/healthz")
        ready = await worker.probe("/readyz")
        worker.send_signal(signal.SIGTERM)
        code = await worker.wait_exit(within=30)

    assert alive.status_code == 200, alive.text
    assert ready.status_code == 503, ready.text
    assert ready.json()["reason"] == "not connected to Temporal yet"
    assert code == 0, worker.output
    assert "stopped before Temporal became reachable" in worker.output


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("worker_health_port", "probe port: cannot listen on 127.0.0.1:{port}"),
        ("worker_metrics_port", "cannot serve metrics on 127.0.0.1:{port}"),
    ],
    ids=["probes", "metrics"],
)
async def test_worker_refuses_a_port_in_use_with_a_message(
    temporal: WorkflowEnvironment, setting: str, message: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = worker_env(address_of(temporal.client), **{setting: str(port)})
        async with worker_process(env) as worker:
            code = await worker.wait_exit(within=60)

    assert code == 2, worker.output
    assert f"ordersaga worker: {message.format(port=port)}" in worker.output
    assert "Traceback" not in worker.output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_worker_is_ready_when_polling_then_stops_with_exit_0_on_a_signal(
    temporal: WorkflowEnvironment, signum: signal.Signals
) -> None:
    env = worker_env(address_of(temporal.client), worker_grace_period_seconds="2")
    async with worker_process(env, "--queues", "orders,payments") as worker:
        await worker.wait_ready()
        ready = await worker.probe("/readyz")
        alive = await worker.probe("/healthz")
        worker.send_signal(signum)
        code = await worker.wait_exit(within=30)

    text = worker.output
    assert ready.json() == {"status": "ready", "queues": ["orders", "payments"]}
    assert alive.status_code == 200
    assert code == 0, text
    assert "task queue orders: deployment ordersaga-orders, build " in text
    assert "task queue payments: deployment ordersaga-payments, build " in text
    assert "worker polling task queues orders, payments" in text
    # Start-up's objects left the collector's reach before it polled.
    froze = text.index("start-up objects out of the collector's reach")
    assert froze < text.index("worker polling task queues"), text
    assert "in-flight tasks have 2s to finish" in text
    assert "worker stopped" in text
    assert "Traceback" not in text


async def test_a_worker_that_cannot_decrypt_its_tasks_is_not_ready_and_names_the_key(
    temporal: WorkflowEnvironment,
) -> None:
    """A keyring out of step with the other processes' (a rotation done in one
    restart): the worker fails every task it gets, so it must not call itself
    ready, or a rollout would go on past it."""
    foreign_keys = format_keyring({"k9": os.urandom(32)})
    env = worker_env(address_of(temporal.client), codec_keys=foreign_keys)
    writer = Client(
        temporal.client.service_client,
        namespace=temporal.client.namespace,
        data_converter=data_converter(TEST_KEYRING),
    )
    order = sample_order()
    async with worker_process(env, "--queues", "orders") as worker:
        await worker.wait_ready()
        handle = await writer.start_workflow(
            WORKFLOW_TYPE, order, id=order.order_id, task_queue=task_queues.ORDERS
        )
        try:

            async def unready() -> httpx.Response | None:
                response = await worker.probe("/readyz")
                return response if response.status_code == 503 else None

            refused = await eventually(unready)
        finally:
            await handle.terminate("test: no worker here can read it")
        worker.send_signal(signal.SIGTERM)
        await worker.wait_exit(within=30)

    reason = refused.json()["reason"]
    assert "cannot decrypt" in reason
    assert repr(TEST_KEY_ID) in reason, reason


# --- SIGTERM while charge_payment is in flight -----------------------------------


@dataclass
class Shop(ShopWithoutWorkers):
    """Services, API, and workers for every queue but payments, in this process."""

    def payments_worker_env(self, grace_seconds: float) -> dict[str, str]:
        return worker_env(
            address_of(self.client),
            payments_url=f"http://127.0.0.1:{self.settings.payments_port}",
            worker_grace_period_seconds=str(grace_seconds),
            # Longer than the injected latency: a slow charge, not a timed-out one.
            http_read_timeout_seconds="30",
        )


@contextlib.asynccontextmanager
async def shop_without_payments_worker(client: Client, data_dir: Path) -> AsyncIterator[Shop]:
    from workers.main import build_workers

    async with (
        serving_shop(Shop, client, data_dir) as shop,
        build_workers(shop.client, shop.settings, ["orders", "inventory", "shipping"]) as workers,
        contextlib.AsyncExitStack() as running,
    ):
        for worker in workers:
            await running.enter_async_context(worker)
        yield shop


@pytest.fixture(scope="module")
async def shop(
    temporal: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Shop]:
    async with shop_without_payments_worker(
        temporal.client, tmp_path_factory.mktemp("shop")
    ) as running:
        yield running


async def place_order(shop: Shop) -> str:
    sku = f"sku_e2e_{uuid.uuid4().hex[:10]}"
    stocked = await shop.inventory.put(
        f"/products/{sku}", json={"available": 5, "price_cents": 2500}, headers=ADMIN
    )
    assert stocked.status_code == 200, stocked.text
    placed = await shop.api.post(
        "/orders", json=order_body(sku=sku), headers=as_customer(new_customer_id())
    )
    assert placed.status_code == 202, placed.text
    return str(placed.json()["order_id"])


@contextlib.asynccontextmanager
async def payments_slowed(shop: Shop, latency_ms: int) -> AsyncIterator[None]:
    """Every payments request takes `latency_ms` longer, until the block ends."""
    response = await shop.payments.put(
        "/admin/faults", json={"error_rate": 0, "latency_ms": latency_ms}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    try:
        yield
    finally:
        response = await shop.payments.delete("/admin/faults", headers=ADMIN)
        assert response.status_code == 204, response.text


async def wait_charge_running_on(shop: Shop, order_id: str, worker: WorkerProcess) -> None:
    """Until Temporal shows charge_payment started by this worker process."""
    handle = shop.client.get_workflow_handle(order_id)
    async with asyncio.timeout(60):
        while True:
            described = await handle.describe()
            for pending in described.raw_description.pending_activities:
                if (
                    pending.activity_type.name == "charge_payment"
                    and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                    and pending.last_worker_identity == worker.identity
                ):
                    return
            await asyncio.sleep(0.05)


async def charge_completed_by(shop: Shop, order_id: str) -> tuple[str, int]:
    """(worker identity, attempt) of the charge_payment attempt that completed."""
    handle = shop.client.get_workflow_handle(order_id)
    charge_events: set[int] = set()
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == (
                "charge_payment"
            ):
                charge_events.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.scheduled_event_id in charge_events:
                return started.identity, started.attempt
    raise AssertionError(f"no started charge_payment in the history of {order_id}")


async def order_status(shop: Shop, order_id: str) -> str:
    response = await shop.api.get(f"/orders/{order_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def order_when_finished(shop: Shop, order_id: str) -> dict[str, Any]:
    async with asyncio.timeout(90):
        while True:
            response = await shop.api.get(f"/orders/{order_id}")
            assert response.status_code == 200, response.text
            order: dict[str, Any] = response.json()
            if order["status"] in ("COMPLETED", "FAILED", "CANCELLED", "NEEDS_ATTENTION"):
                return order
            await asyncio.sleep(0.1)


async def charges_of(shop: Shop, order_id: str) -> list[dict[str, Any]]:
    response = await shop.payments.get("/charges", params={"order_id": order_id})
    assert response.status_code == 200, response.text
    charges: list[dict[str, Any]] = response.json()["items"]
    return charges


@dataclass
class Ended:
    """How an order whose charge was in flight at a SIGTERM ended."""

    order: dict[str, Any]
    # The worker identity and attempt of the charge_payment attempt that completed.
    charged_by: tuple[str, int]
    charges: list[dict[str, Any]]


async def ended(shop: Shop, order_id: str) -> Ended:
    order = await order_when_finished(shop, order_id)
    return Ended(order, await charge_completed_by(shop, order_id), await charges_of(shop, order_id))


async def test_sigterm_mid_charge_lets_it_finish_within_the_grace_period(shop: Shop) -> None:
    grace = 15.0
    async with worker_process(shop.payments_worker_env(grace), "--queues", "payments") as worker:
        await worker.wait_ready()
        async with payments_slowed(shop, latency_ms=5000):
            order_id = await place_order(shop)
            await wait_charge_running_on(shop, order_id, worker)
            worker.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            draining = await worker.probe("/readyz")
            status_when_signalled = await order_status(shop, order_id)
            code = await worker.wait_exit(within=grace + EXIT_MARGIN_SECONDS)
            took = time.monotonic() - signalled
        end = await ended(shop, order_id)

    assert status_when_signalled == "CHARGING"
    assert draining.status_code == 503, draining.text
    assert draining.json()["reason"].startswith("draining")
    assert code == 0, worker.output
    assert took < grace + EXIT_MARGIN_SECONDS
    assert "Traceback" not in worker.output
    # Finished in place: the first attempt, by the worker that was told to stop.
    assert end.charged_by == (worker.identity, 1)
    assert len(end.charges) == 1, end.charges
    assert end.order["status"] == "COMPLETED", end.order


async def test_sigterm_mid_charge_past_the_grace_period_retries_it_elsewhere_once(
    shop: Shop,
) -> None:
    grace = 1.0
    env = shop.payments_worker_env(grace)
    async with contextlib.AsyncExitStack() as stack:
        stopping = await stack.enter_async_context(worker_process(env, "--queues", "payments"))
        await stopping.wait_ready()
        # Far longer than the grace period, and than the second worker's start:
        # the stopping worker must give the charge up.
        async with payments_slowed(shop, latency_ms=10_000):
            order_id = await place_order(shop)
            await wait_charge_running_on(shop, order_id, stopping)
            # Only now the second worker: the charge is the first one's.
            taking_over = await stack.enter_async_context(
                worker_process(shop.payments_worker_env(grace), "--queues", "payments")
            )
            await taking_over.wait_ready()
            stopping.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            status_when_signalled = await order_status(shop, order_id)
            code = await stopping.wait_exit(within=grace + EXIT_MARGIN_SECONDS)
            took = time.monotonic() - signalled
        end = await ended(shop, order_id)
        taking_over.send_signal(signal.SIGTERM)
        second_code = await taking_over.wait_exit(within=grace + EXIT_MARGIN_SECONDS)

    assert status_when_signalled == "CHARGING"
    assert code == 0, stopping.output
    assert took < grace + EXIT_MARGIN_SECONDS
    assert "Traceback" not in stopping.output
    # Retried elsewhere: a later attempt, completed by the other worker...
    identity, attempt = end.charged_by
    assert identity == taking_over.identity
    assert attempt >= 2
    # ...and the idempotency key made both attempts one charge.
    assert len(end.charges) == 1, end.charges
    assert end.order["status"] == "COMPLETED", end.order
    assert second_code == 0, taking_over.output
