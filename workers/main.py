"""The worker process: one Temporal worker per task queue it serves.

Each service gets one pooled HTTP client per process (keep-alive connections,
bounded pool), shared by every activity that calls it. The orders queue's
worker runs the workflow and, as local activities, every step's first attempt
(workflows/order.py), so it calls every domain's service; each domain queue's
worker runs the attempts handed over to that domain. Each queue
is its own Worker Deployment (workers/versioning.py). The process serves probes
(/healthz, /readyz; workers/health.py) and the SDK's Prometheus endpoint. On
SIGTERM or SIGINT /readyz turns 503, every worker stops polling, in-flight
tasks get the grace period to finish, and the process returns so the caller
can exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import httpx
from pydantic import SecretStr
from temporalio import activity
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from activities.http import ServiceClient
from contracts import task_queues
from contracts.domains import DOMAINS, Domain, DomainConfigError, Registry
from ordersaga.runtime.codec import EncryptionCodec, payload_keyring
from ordersaga.runtime.domains import resolve
from ordersaga.runtime.eventloop import exit_without_finalizing as exit_without_finalizing
from ordersaga.runtime.heap import freeze_startup_objects
from ordersaga.runtime.settings import MissingSecretError, Settings
from ordersaga.runtime.temporal_config import data_converter, workflow_runner
from workers.health import ProbePortError, WorkerHealth, serving_probes
from workers.runtime import worker_runtime
from workers.tracing import records_spans, worker_interceptors
from workers.unversioned import UnversionedOrderWorkflow
from workers.versioning import (
    BOOTSTRAP_TIMEOUT_SECONDS,
    bootstrap_current_versions,
    build_id,
    deployment_config,
    deployment_name,
    deployment_version,
)
from workflows.order import OrderWorkflow

log = logging.getLogger(__name__)


def service_http_client(
    settings: Settings, service: str, domains: Registry = DOMAINS
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=settings.service_url(service, domains),
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


def activities_for(domain: Domain, client: ServiceClient) -> list[Callable[..., Any]]:
    """Every activity method of the domain's activities class, bound to an
    instance that calls its service through `client`."""
    instance = resolve(domain, "activities")(client)
    methods = [getattr(instance, name) for name in dir(instance) if not name.startswith("_")]
    # temporalio has no public test for "is an activity"; its Worker checks this way.
    found = [m for m in methods if activity._Definition.from_callable(m) is not None]
    if not found:
        raise DomainConfigError(
            f"domain {domain.name!r}: {domain.activities} has no @activity.defn methods"
        )
    return found


async def queue_activities(
    queue: str,
    client_of: Callable[[Domain], Awaitable[ServiceClient]],
    domains: Registry = DOMAINS,
) -> list[Callable[..., Any]]:
    """What a worker on `queue` registers: its domain's activities, or on the
    orders queue every domain's, each step's first attempt running locally."""
    served = list(domains) if queue == task_queues.ORDERS else [domains.serving(queue)]
    return [found for domain in served for found in activities_for(domain, await client_of(domain))]


@contextlib.asynccontextmanager
async def build_workers(
    client: Client,
    settings: Settings,
    queues: Sequence[str],
    *,
    versions_settled: asyncio.Event | None = None,
    domains: Registry = DOMAINS,
) -> AsyncIterator[list[Worker]]:
    """Workers for the given queues, with their HTTP clients open while in use.

    With worker versioning on, each worker joins version (f"{deployment}-{queue}",
    build id), and while the block runs a background task makes those versions
    current in deployments that have none yet (worker_set_current_if_unset);
    `versions_settled` is set once that is decided.
    """
    grace = timedelta(seconds=settings.worker_grace_period_seconds)
    try:
        # The workers' credential to the services; outside dev mode it must be set.
        worker_token = SecretStr(settings.worker_token_value())
    except MissingSecretError as error:
        raise WorkerStartupError(str(error)) from None
    async with contextlib.AsyncExitStack() as stack:
        workers: list[Worker] = []
        clients: dict[str, ServiceClient] = {}

        async def client_of(domain: Domain) -> ServiceClient:
            if domain.name not in clients:
                http = await stack.enter_async_context(
                    service_http_client(settings, domain.name, domains)
                )
                clients[domain.name] = ServiceClient(
                    http, domain.name, token=worker_token, client_spans=records_spans()
                )
            return clients[domain.name]

        for queue in queues:
            activities = await queue_activities(queue, client_of, domains)
            if queue == task_queues.ORDERS:
                workers.append(
                    Worker(
                        client,
                        task_queue=queue,
                        workflows=[
                            OrderWorkflow
                            if settings.worker_versioning
                            else UnversionedOrderWorkflow
                        ],
                        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
                        activities=activities,
                        # Only local attempts: nothing is ever scheduled on this queue.
                        no_remote_activities=True,
                        max_concurrent_local_activities=settings.worker_max_concurrent_activities,
                        # The same sandbox as the replay gate (tests/replay) uses.
                        workflow_runner=workflow_runner(),
                        graceful_shutdown_timeout=grace,
                        deployment_config=deployment_config(settings, queue),
                    )
                )
                continue
            workers.append(
                Worker(
                    client,
                    task_queue=queue,
                    activities=activities,
                    max_concurrent_activities=settings.worker_max_concurrent_activities,
                    graceful_shutdown_timeout=grace,
                    deployment_config=deployment_config(settings, queue),
                )
            )
        settled = versions_settled or asyncio.Event()
        if settings.worker_versioning and settings.worker_set_current_if_unset:
            bootstrap = asyncio.create_task(
                bootstrap_current_versions(
                    client,
                    [deployment_version(settings, queue) for queue in queues],
                    give_up_after=BOOTSTRAP_TIMEOUT_SECONDS,
                )
            )
            bootstrap.add_done_callback(lambda _: settled.set())
            stack.push_async_callback(_cancel, bootstrap)
        else:
            settled.set()
        yield workers


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def connect_when_reachable(
    settings: Settings, stop: asyncio.Event, runtime: Runtime | None = None
) -> Client | None:
    """Connect to Temporal, waiting for it with capped backoff.

    A worker started before its server (compose, Kubernetes, `make dev`) should
    wait rather than crash-loop. Returns None when asked to stop meanwhile.
    """
    keyring = payload_keyring(settings)
    if keyring is None:
        log.warning("payload codec OFF (benchmark, dev mode): payloads are not encrypted")
    converter = data_converter(keyring)
    delay = 0.5
    while not stop.is_set():
        try:
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=converter,
                interceptors=worker_interceptors(),
                runtime=runtime,
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


class WorkerStartupError(Exception):
    """The worker cannot start as configured (a port taken, a bad host, no such namespace)."""


def _process_runtime(settings: Settings) -> Runtime:
    try:
        return worker_runtime(settings)
    except Exception as error:  # the SDK core reports a taken metrics port this way
        raise WorkerStartupError(
            f"cannot serve metrics on {settings.worker_listen_host}:"
            f"{settings.worker_metrics_port}: {error}"
        ) from None


def _describe_start(settings: Settings, queues: Sequence[str]) -> None:
    if settings.worker_versioning:
        for queue in queues:
            log.info(
                "task queue %s: deployment %s, build %s",
                queue,
                deployment_name(settings, queue),
                build_id(settings),
            )
    else:
        log.info("worker versioning off: task queues %s unversioned", ", ".join(queues))
    if settings.worker_metrics_port:
        log.info(
            "metrics on http://%s:%s/metrics",
            settings.worker_listen_host,
            settings.worker_metrics_port,
        )


async def run_worker(settings: Settings, queues: Sequence[str]) -> None:
    """Serve the queues until SIGTERM/SIGINT, then shut down gracefully.

    Raises WorkerStartupError when a port it must listen on cannot be used, or
    Temporal has no such namespace.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    health = WorkerHealth(
        queues=queues, build_id=build_id(settings) if settings.worker_versioning else None
    )

    def on_signal() -> None:
        # Probes say "not ready" from the first moment of the drain.
        health.draining = True
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        probes = serving_probes(health, settings.worker_listen_host, settings.worker_health_port)
        async with probes:
            runtime = _process_runtime(settings)
            _describe_start(settings, queues)
            client = await connect_when_reachable(settings, stop, runtime)
            if client is None:
                log.info("stopped before Temporal became reachable")
                return
            await _require_namespace(client, settings)
            health.client = client
            codec = client.data_converter.payload_codec
            health.codec = codec if isinstance(codec, EncryptionCodec) else None
            await _serve(client, settings, queues, stop, health)
    except ProbePortError as error:
        raise WorkerStartupError(f"probe port: {error}") from None
    log.info("worker stopped")


_NAMESPACE_CHECK_TIMEOUT = timedelta(seconds=10)


async def _require_namespace(client: Client, settings: Settings) -> None:
    """A namespace the server lacks is a configuration error, not an outage:
    say so in one line rather than let the SDK's worker validation fail with a
    traceback once every worker is built."""
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=settings.temporal_namespace),
            timeout=_NAMESPACE_CHECK_TIMEOUT,
        )
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise
        raise WorkerStartupError(
            f"Temporal at {settings.temporal_address} has no namespace "
            f"{settings.temporal_namespace!r}: create it (temporal operator namespace create) "
            "or set ORDERSAGA_TEMPORAL_NAMESPACE"
        ) from None


async def _serve(
    client: Client,
    settings: Settings,
    queues: Sequence[str],
    stop: asyncio.Event,
    health: WorkerHealth,
) -> None:
    async with build_workers(
        client, settings, queues, versions_settled=health.versions_settled
    ) as workers:
        # Ready to poll: nothing made so far is garbage the collector need walk again.
        freeze_startup_objects()
        running = [asyncio.create_task(worker.run()) for worker in workers]
        health.workers = workers
        log.info("worker polling task queues %s", ", ".join(queues))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *running], return_when=asyncio.FIRST_COMPLETED)
        health.draining = True
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
