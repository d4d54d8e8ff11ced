"""The worker process: one Temporal worker per task queue it serves.

Each domain queue gets its own pooled HTTP client to its service, shared by all
activity tasks in the process (keep-alive connections, bounded pool). On SIGTERM
or SIGINT every worker stops polling, in-flight tasks get the grace period to
finish, and the process returns so the caller can exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from activities.http import ServiceClient
from activities.inventory import InventoryActivities
from activities.payments import PaymentActivities
from activities.shipping import ShippingActivities
from contracts import task_queues
from ordersaga.settings import Settings
from ordersaga.temporal_config import DATA_CONVERTER, temporal_interceptors
from workflows.order import OrderWorkflow

log = logging.getLogger(__name__)

_SERVICE_OF_QUEUE = {
    task_queues.INVENTORY: "inventory",
    task_queues.PAYMENTS: "payments",
    task_queues.SHIPPING: "shipping",
}


def service_http_client(settings: Settings, service: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=settings.service_url(service),
        timeout=httpx.Timeout(
            connect=settings.http_connect_timeout_seconds,
            read=settings.http_read_timeout_seconds,
            write=settings.http_read_timeout_seconds,
            pool=settings.http_connect_timeout_seconds,
        ),
        limits=httpx.Limits(
            max_connections=settings.http_max_connections,
            max_keepalive_connections=settings.http_max_connections,
        ),
    )


def activities_for(queue: str, client: ServiceClient) -> list[Any]:
    if queue == task_queues.INVENTORY:
        inventory = InventoryActivities(client)
        return [
            inventory.reserve_inventory,
            inventory.release_inventory,
            inventory.commit_reservation,
        ]
    if queue == task_queues.PAYMENTS:
        payments = PaymentActivities(client)
        return [payments.charge_payment, payments.refund_payment]
    if queue == task_queues.SHIPPING:
        shipping = ShippingActivities(client)
        return [shipping.create_shipment, shipping.cancel_shipment]
    raise ValueError(f"no activities on task queue {queue!r}")


@contextlib.asynccontextmanager
async def build_workers(
    client: Client, settings: Settings, queues: Sequence[str]
) -> AsyncIterator[list[Worker]]:
    """Workers for the given queues, with their HTTP clients open while in use."""
    grace = timedelta(seconds=settings.worker_grace_period_seconds)
    async with contextlib.AsyncExitStack() as stack:
        workers: list[Worker] = []
        for queue in queues:
            if queue == task_queues.ORDERS:
                workers.append(
                    Worker(
                        client,
                        task_queue=queue,
                        workflows=[OrderWorkflow],
                        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
                        graceful_shutdown_timeout=grace,
                    )
                )
                continue
            service = _SERVICE_OF_QUEUE[queue]
            http = await stack.enter_async_context(service_http_client(settings, service))
            workers.append(
                Worker(
                    client,
                    task_queue=queue,
                    activities=activities_for(queue, ServiceClient(http, service)),
                    max_concurrent_activities=settings.worker_max_concurrent_activities,
                    graceful_shutdown_timeout=grace,
                )
            )
        yield workers


async def connect_when_reachable(settings: Settings, stop: asyncio.Event) -> Client | None:
    """Connect to Temporal, waiting for it with capped backoff.

    A worker started before its server (compose, Kubernetes, `make dev`) should
    wait rather than crash-loop. Returns None when asked to stop meanwhile.
    """
    delay = 0.5
    while not stop.is_set():
        try:
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=DATA_CONVERTER,
                interceptors=temporal_interceptors(),
            )
        except RuntimeError as err:  # the SDK's "Failed client connect: ..."
            log.warning(
                "Temporal at %s not reachable (%s); retrying in %.1fs",
                settings.temporal_address,
                str(err).splitlines()[0][:160],
                delay,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        delay = min(delay * 2, 10.0)
    return None


async def run_worker(settings: Settings, queues: Sequence[str]) -> None:
    """Serve the queues until SIGTERM/SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    client = await connect_when_reachable(settings, stop)
    if client is None:
        log.info("stopped before Temporal became reachable")
        return
    async with build_workers(client, settings, queues) as workers:
        running = [asyncio.create_task(worker.run()) for worker in workers]
        log.info("worker polling task queues %s", ", ".join(queues))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *running], return_when=asyncio.FIRST_COMPLETED)
        if stopped not in done:
            # A worker died on its own (e.g. a fatal error): surface it.
            stopped.cancel()
            for task in done:
                task.result()
        log.info(
            "stopping: no new tasks; in-flight tasks have %.0fs to finish",
            settings.worker_grace_period_seconds,
        )
        await asyncio.gather(*(worker.shutdown() for worker in workers))
        await asyncio.gather(*running, return_exceptions=True)
    log.info("worker stopped")
