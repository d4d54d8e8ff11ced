"""Worker Versioning on a real dev server: a rollout from build A to build B
and a rollback, with orders in flight, driven by the operator commands that
docs/deploying-workers.md gives (the real `temporal` CLI).

OrderWorkflow is PINNED: an order finishes on the build that started it, and
new orders go to whichever build is current (or ramping) when they start.
This module runs its own dev server: the current versions it sets must not
reach the unversioned workers of other tests on the same task queue names.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, VersioningBehavior
from temporalio.worker import Worker

from contracts import task_queues
from contracts.domains import DOMAINS
from ordersaga.binaries import temporal_cli
from ordersaga.runtime.settings import Settings
from tests.integration.stack import ADMIN_TOKEN, ShopWithoutWorkers, serving_shop
from tests.orders import order_body
from tests.processes import run_process
from tests.tokens import as_customer, new_customer_id
from tests.versioning_support import deployment_names, own_dev_server, route_to_unversioned
from workers.versioning import (
    Bootstrap,
    current_build_id,
    deployment_name,
    deployment_version,
    make_current_if_unset,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DEPLOYMENT = "shop"
QUEUES = list(DOMAINS.task_queues)
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "NEEDS_ATTENTION")


@dataclass
class Shop(ShopWithoutWorkers):
    def build(self, build_id: str) -> Settings:
        return self.settings.model_copy(update={"worker_build_id": build_id})

    async def temporal(self, *args: str) -> str:
        """Run the real Temporal CLI against this server, as an operator would."""
        ran = await run_process(
            str(temporal_cli()), *args, "--address", self.settings.temporal_address, within=60
        )
        assert ran.code == 0, f"temporal {' '.join(args)}:\n{ran.stderr}"
        return ran.stdout


@pytest.fixture(scope="module")
async def shop(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Shop]:
    """Services and API (in this process) without any worker; tests bring their builds."""
    data_dir: Path = tmp_path_factory.mktemp("versioning")
    async with (
        own_dev_server() as env,
        serving_shop(Shop, env.client, data_dir, worker_deployment_name=DEPLOYMENT) as shop,
    ):
        yield shop


@contextlib.asynccontextmanager
async def running_build(shop: Shop, build_id: str) -> AsyncIterator[list[Worker]]:
    """Workers of one build for every queue, as `ordersaga worker` builds them."""
    from workers.main import build_workers

    settled = asyncio.Event()
    async with (
        build_workers(
            shop.client, shop.build(build_id), QUEUES, versions_settled=settled
        ) as workers,
        contextlib.AsyncExitStack() as stack,
    ):
        for worker in workers:
            await stack.enter_async_context(worker)
        async with asyncio.timeout(60):
            await settled.wait()
        yield workers


async def wait_polled_by(shop: Shop, build_id: str) -> None:
    """Until every deployment lists this build with its task queue (it has polled)."""
    async with asyncio.timeout(60):
        for queue in QUEUES:
            name = deployment_name(shop.settings, queue)
            while True:
                described = await shop.temporal("worker", "deployment", "describe", "--name", name)
                if build_id in described:
                    break
                await asyncio.sleep(0.2)


async def make_current(shop: Shop, build_id: str) -> None:
    """What an operator does to roll a build out (or back): current on every queue."""
    for queue in QUEUES:
        await shop.temporal(
            "worker", "deployment", "set-current-version",
            "--deployment-name", deployment_name(shop.settings, queue),
            "--build-id", build_id, "--yes",
        )  # fmt: skip


async def place_order(shop: Shop, *, token: str = "tok_visa", country: str = "DE") -> str:
    sku = f"sku_v_{uuid.uuid4().hex[:10]}"
    stocked = await shop.inventory.put(
        f"/products/{sku}", json={"available": 5, "price_cents": 1200}, headers=ADMIN
    )
    assert stocked.status_code == 200, stocked.text
    body = order_body(sku=sku, country=country, payment_token=token)
    placed = await shop.api.post("/orders", json=body, headers=as_customer(new_customer_id()))
    assert placed.status_code == 202, placed.text
    return str(placed.json()["order_id"])


async def order_status(shop: Shop, order_id: str) -> str:
    response = await shop.api.get(f"/orders/{order_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def wait_status(shop: Shop, order_id: str, *statuses: str, within: float = 90) -> str:
    async with asyncio.timeout(within):
        while True:
            status = await order_status(shop, order_id)
            if status in statuses:
                return status
            await asyncio.sleep(0.1)


async def set_payments_latency(shop: Shop, latency_ms: int) -> None:
    response = await shop.payments.put(
        "/admin/faults", json={"error_rate": 0, "latency_ms": latency_ms}, headers=ADMIN
    )
    assert response.status_code == 200, response.text


async def pinned_build(shop: Shop, order_id: str) -> str:
    """The build the server has the order pinned to (from describe)."""
    described = await shop.client.get_workflow_handle(order_id).describe()
    info = described.raw_description.workflow_execution_info.versioning_info
    assert info.behavior == VersioningBehavior.VERSIONING_BEHAVIOR_PINNED, info
    return info.deployment_version.build_id


async def workflow_task_builds(shop: Shop, order_id: str) -> set[str]:
    """The build of every worker that completed a workflow task of the order."""
    builds: set[str] = set()
    async for event in shop.client.get_workflow_handle(order_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            builds.add(event.workflow_task_completed_event_attributes.deployment_version.build_id)
    return builds


async def test_rollout_to_b_keeps_in_flight_orders_on_a_and_rollback_returns_new_ones_to_a(
    shop: Shop,
) -> None:
    orders = deployment_name(shop.settings, task_queues.ORDERS)
    async with running_build(shop, "build-a"):
        # First deploy: nothing was current, so build A made itself current.
        for queue in QUEUES:
            current, _ = await current_build_id(shop.client, deployment_name(shop.settings, queue))
            assert current == "build-a", queue

        # Orders held mid-flight: charging takes 10s, longer than the rollout below.
        await set_payments_latency(shop, 10_000)
        in_flight = [await place_order(shop) for _ in range(3)]
        for order_id in in_flight:
            await wait_status(shop, order_id, "CHARGING")

        async with running_build(shop, "build-b"):
            # B joined its deployments but did not take over: A stays current.
            await wait_polled_by(shop, "build-b")
            for queue in QUEUES:
                current, _ = await current_build_id(
                    shop.client, deployment_name(shop.settings, queue)
                )
                assert current == "build-a", queue
            await set_payments_latency(shop, 0)

            # Rollout, as the docs give it: ramp the orders deployment, then make
            # every deployment's B current.
            await shop.temporal(
                "worker", "deployment", "set-ramping-version", "--deployment-name", orders,
                "--build-id", "build-b", "--percentage", "100", "--yes",
            )  # fmt: skip
            ramped = await place_order(shop)
            await make_current(shop, "build-b")
            after_rollout = await place_order(shop)

            # In-flight orders were still charging when B became current.
            assert [await order_status(shop, o) for o in in_flight] == ["CHARGING"] * 3
            for order_id in in_flight:
                assert await wait_status(shop, order_id, *TERMINAL) == "COMPLETED"
                assert await pinned_build(shop, order_id) == "build-a"
                assert await workflow_task_builds(shop, order_id) == {"build-a"}
            for order_id in (ramped, after_rollout):
                assert await wait_status(shop, order_id, *TERMINAL) == "COMPLETED"
                assert await pinned_build(shop, order_id) == "build-b"
                assert await workflow_task_builds(shop, order_id) == {"build-b"}

            described = await shop.temporal("worker", "deployment", "describe", "--name", orders)
            assert "build-b" in described

            # Rollback: A's workers are still up; make A current again.
            await make_current(shop, "build-a")
            after_rollback = await place_order(shop)
            assert await wait_status(shop, after_rollback, *TERMINAL) == "COMPLETED"
            assert await pinned_build(shop, after_rollback) == "build-a"
            assert await workflow_task_builds(shop, after_rollback) == {"build-a"}


async def test_a_restarted_worker_never_takes_current_from_another_build(shop: Shop) -> None:
    """worker_set_current_if_unset only bootstraps: build C starting while A is
    current (a rollout's first step) leaves A current."""
    async with running_build(shop, "build-a"):
        await wait_polled_by(shop, "build-a")
        await shop.temporal(
            "worker", "deployment", "set-current-version",
            "--deployment-name", deployment_name(shop.settings, task_queues.ORDERS),
            "--build-id", "build-a", "--yes",
        )  # fmt: skip
        async with running_build(shop, "build-c"):
            await wait_polled_by(shop, "build-c")
            current, _ = await current_build_id(
                shop.client, deployment_name(shop.settings, task_queues.ORDERS)
            )
    assert current == "build-a"


async def test_an_order_parked_on_a_moves_to_b_so_a_can_retire(shop: Shop) -> None:
    """The cost of PINNED: an order waiting for an operator keeps its build.
    The operator moves it with `temporal workflow update-options`; A's workers
    can then stop, and the order finishes on B."""
    orders = deployment_name(shop.settings, task_queues.ORDERS)
    async with running_build(shop, "build-b"):
        async with running_build(shop, "build-a"):
            await make_current(shop, "build-a")
            # Shipping refuses the address, then the issuer refuses the refund.
            parked = await place_order(shop, token="tok_refundFail", country="AQ")
            assert await wait_status(shop, parked, *TERMINAL) == "NEEDS_ATTENTION"
            assert await pinned_build(shop, parked) == "build-a"

            await wait_polled_by(shop, "build-b")
            await make_current(shop, "build-b")
            await shop.temporal(
                "workflow", "update-options", "--workflow-id", parked,
                "--versioning-override-behavior", "pinned",
                "--versioning-override-deployment-name", orders,
                "--versioning-override-build-id", "build-b",
            )  # fmt: skip
        # Build A's workers are gone; the operator resolves the order.
        resolved = await shop.api.post(
            f"/orders/{parked}/compensation/resolve", json={"note": "refunded by hand"}
        )
        assert resolved.status_code == 202, resolved.text
        assert await wait_status(shop, parked, "FAILED", "COMPLETED", "CANCELLED") == "FAILED"

    assert await workflow_task_builds(shop, parked) == {"build-a", "build-b"}


async def test_replicas_racing_to_bootstrap_make_exactly_one_build_current(shop: Shop) -> None:
    """Two builds start at once on a deployment that has no current version,
    each asking to be made current before the server has seen it poll."""
    fresh = shop.settings.model_copy(
        update={"worker_deployment_name": f"race{uuid.uuid4().hex[:8]}"}
    )
    versions = {
        build: deployment_version(fresh.model_copy(update={"worker_build_id": build}), "payments")
        for build in ("build-x", "build-y")
    }
    asks = [
        asyncio.create_task(make_current_if_unset(shop.client, version, give_up_after=60))
        for version in versions.values()
    ]
    without_bootstrap = {"worker_set_current_if_unset": False}
    from workers.main import build_workers

    async with contextlib.AsyncExitStack() as stack:
        for build in versions:
            settings = fresh.model_copy(update={"worker_build_id": build, **without_bootstrap})
            workers = await stack.enter_async_context(
                build_workers(shop.client, settings, ["payments"])
            )
            await stack.enter_async_context(workers[0])
        results = await asyncio.gather(*asks)
        current, _ = await current_build_id(shop.client, versions["build-x"].deployment_name)

    outcomes = sorted(result.outcome.name for result in results)
    assert outcomes == ["MADE_CURRENT", "OTHER_CURRENT"], results
    winner = next(r for r in results if r.outcome is Bootstrap.MADE_CURRENT)
    loser = next(r for r in results if r.outcome is Bootstrap.OTHER_CURRENT)
    assert current == winner.current_build_id == loser.current_build_id


async def test_with_versioning_off_unversioned_workers_run_orders(shop: Shop) -> None:
    """ORDERSAGA_WORKER_VERSIONING=false: the server refuses a declared behaviour
    from unversioned workers, so they run OrderWorkflow's behaviour-free twin."""
    from workers.main import build_workers

    # Hand every queue back to unversioned workers, as before any deployment.
    await route_to_unversioned(shop.client, await deployment_names(shop.client))
    unversioned = shop.settings.model_copy(update={"worker_versioning": False})
    async with (
        build_workers(shop.client, unversioned, QUEUES) as workers,
        contextlib.AsyncExitStack() as stack,
    ):
        for worker in workers:
            await stack.enter_async_context(worker)
        order_id = await place_order(shop)
        status = await wait_status(shop, order_id, *TERMINAL)
        described = await shop.client.get_workflow_handle(order_id).describe()

    assert status == "COMPLETED"
    info = described.raw_description.workflow_execution_info.versioning_info
    assert info.behavior == VersioningBehavior.VERSIONING_BEHAVIOR_UNSPECIFIED
    assert await workflow_task_builds(shop, order_id) == {""}
