"""The baseline's worker, a process of its own like the saga's worker, so both
are measured the same way (`python -m ordersaga.bench.baseline_worker ADDRESS`).

With `--same-work` it also runs `baseline-same-work` (`same_work.py`): the
saga's activity methods as local activities, calling the services named by
its environment (ORDERSAGA_<SERVICE>_URL) with the workers' credential
(ORDERSAGA_WORKER_TOKEN) through the clients the saga's worker builds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr
from temporalio.client import Client
from temporalio.worker import Worker

from activities.http import ServiceClient
from activities.inventory import InventoryActivities
from activities.payments import PaymentActivities
from activities.shipping import ShippingActivities
from ordersaga.bench.baseline import (
    ACTIVITY_QUEUE,
    WORKFLOW_QUEUE,
    BaselineWorkflow,
    LocalActivityBaselineWorkflow,
    noop,
)
from ordersaga.bench.same_work import SameWorkWorkflow
from ordersaga.runtime import eventloop
from ordersaga.runtime.heap import freeze_startup_objects
from ordersaga.runtime.logging import configure_logging
from ordersaga.runtime.settings import Settings
from ordersaga.runtime.telemetry import configure_tracing, records_spans
from workers.main import service_http_client

ROLE = "bench-baseline-worker"


async def same_work_activities(
    stack: contextlib.AsyncExitStack, settings: Settings
) -> list[Callable[..., Any]]:
    """The four forward steps' activity methods, each service's client built as
    the saga's worker builds it (workers.main.build_workers)."""
    token = SecretStr(settings.worker_token_value())

    async def client_of(service: str) -> ServiceClient:
        http = await stack.enter_async_context(service_http_client(settings, service))
        return ServiceClient(http, service, token=token, client_spans=records_spans())

    inventory = InventoryActivities(await client_of("inventory"))
    payments = PaymentActivities(await client_of("payments"))
    shipping = ShippingActivities(await client_of("shipping"))
    return [
        inventory.reserve_inventory,
        payments.charge_payment,
        shipping.create_shipment,
        inventory.commit_reservation,
    ]


async def serve(
    address: str, namespace: str, max_concurrent: int, same_work: Settings | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    client = await Client.connect(address, namespace=namespace)
    async with contextlib.AsyncExitStack() as stack:
        workflows: list[type] = [BaselineWorkflow, LocalActivityBaselineWorkflow]
        activities: list[Callable[..., Any]] = [noop]
        if same_work is not None:
            workflows.append(SameWorkWorkflow)
            activities += await same_work_activities(stack, same_work)
        workflow_worker = Worker(
            client,
            task_queue=WORKFLOW_QUEUE,
            workflows=workflows,
            activities=activities,
            max_concurrent_workflow_tasks=max_concurrent,
            max_concurrent_activities=max_concurrent,
            max_concurrent_local_activities=max_concurrent,
        )
        activity_worker = Worker(
            client,
            task_queue=ACTIVITY_QUEUE,
            activities=[noop],
            max_concurrent_activities=max_concurrent,
        )
        async with workflow_worker, activity_worker:
            # As the saga's worker does (workers.main): like for like.
            freeze_startup_objects()
            print(f"baseline worker polling {WORKFLOW_QUEUE}, {ACTIVITY_QUEUE}", flush=True)
            await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="ordersaga.bench.baseline_worker")
    parser.add_argument("address")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--max-concurrent", type=int, default=100)
    parser.add_argument(
        "--same-work",
        action="store_true",
        help="also run baseline-same-work against the services in the environment",
    )
    args = parser.parse_args()
    settings = Settings() if args.same_work else None
    if settings is not None:
        # As the saga's worker sets itself up (ordersaga.cli worker): its log
        # level, and a tracer provider, so the calls carry the same trace
        # context and baggage headers to the services.
        configure_logging(settings.log_level, "text")
        configure_tracing(ROLE)
    # The same loop as the saga's worker (ordersaga.cli worker): the comparison
    # is of the workflows, not of the event loops.
    eventloop.run(serve(args.address, args.namespace, args.max_concurrent, settings))


if __name__ == "__main__":
    main()
