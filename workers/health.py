"""The worker's probe port: `/healthz` (process alive) and `/readyz` (serving).

Ready means what an orchestrator needs to know before it moves on with a
rollout: the process is connected to Temporal, whose namespace has the saga's
search attributes (without them every order's workflow task fails), every
worker in it is running,
the first-deploy bootstrap of the deployments' current version is settled, the
Temporal server has listed this process (by its identity, and build id when
versioned) among the recent pollers of every task queue it serves, and the
server still answers. Those two are server round trips, so their answer is
cached for a few seconds. Nor is it ready while a payload failed to decrypt
lately: a keyring without a key the other processes write with fails every
task it gets. After SIGTERM the process reports 503 at once: it is
draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Generator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from contracts import task_queues
from ordersaga.runtime.codec import EncryptionCodec
from ordersaga.runtime.temporal_config import missing_search_attributes, search_attributes_problem

log = logging.getLogger(__name__)

READINESS_CACHE_SECONDS = 3.0
# A poller re-polls at least once a long poll (about a minute); an entry older
# than this means this process stopped polling that queue.
POLLER_FRESH_SECONDS = 90.0
_DESCRIBE_TIMEOUT = timedelta(seconds=5)
# How long a payload this process could not decrypt keeps it unready: a task it
# failed comes back to some worker within seconds (a workflow task's retry, an
# activity's), so a keyring that still cannot read fails again well within it.
DECRYPTION_FAILURE_SECONDS = 60.0
# The server's default number of partitions per task queue (matching.numTaskqueue*Partitions).
TASK_QUEUE_PARTITIONS = 4


def queue_type(queue: str) -> TaskQueueType.ValueType:
    """The kind of task this process polls for on `queue`."""
    if queue == task_queues.ORDERS:
        return TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
    return TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY


@dataclass
class WorkerHealth:
    """What the process knows about itself, updated by run_worker as it goes."""

    queues: Sequence[str]
    # The build id the server must list for this process's pollers; None when unversioned.
    build_id: str | None
    client: Client | None = None
    codec: EncryptionCodec | None = None
    workers: list[Worker] = field(default_factory=list)
    versions_settled: asyncio.Event = field(default_factory=asyncio.Event)
    draining: bool = False
    _cached: tuple[float, str | None] | None = None
    _seen_polling: set[str] = field(default_factory=set)
    _search_attributes_found: bool = False

    async def readiness_problem(self) -> str | None:
        """Why this process is not ready, or None when it is."""
        if self.draining:
            return "draining: stopping after SIGTERM/SIGINT"
        if self.client is None:
            return "not connected to Temporal yet"
        if not self.workers or not all(worker.is_running for worker in self.workers):
            return "workers not running"
        if not self.versions_settled.is_set():
            return "waiting for the deployments' current version to be settled"
        now = time.monotonic()
        failure = self.codec.last_failure if self.codec is not None else None
        if failure is not None and now - failure[0] < DECRYPTION_FAILURE_SECONDS:
            return f"cannot decrypt what Temporal holds for its tasks: {failure[1]}"
        if self._cached is not None and now - self._cached[0] < READINESS_CACHE_SECONDS:
            return self._cached[1]
        problem = await self._server_problem(self.client)
        self._cached = (time.monotonic(), problem)
        return problem

    async def _server_problem(self, client: Client) -> str | None:
        try:
            if not self._search_attributes_found:
                missing = await missing_search_attributes(client, rpc_timeout=_DESCRIBE_TIMEOUT)
                if missing:
                    return search_attributes_problem(missing, client.namespace)
                # Nobody removes them from a running system: not asked again.
                self._search_attributes_found = True
            for queue in self.queues:
                if queue not in self._seen_polling and await self._lists_our_poller(client, queue):
                    self._seen_polling.add(queue)
            # Once seen polling, a queue stays confirmed while its worker runs
            # (checked above); what is left to check is that Temporal answers.
            await client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=_DESCRIBE_TIMEOUT
            )
        except RPCError as error:
            return f"Temporal not answering: {error.message[:200]}"
        idle = [queue for queue in self.queues if queue not in self._seen_polling]
        if idle:
            return f"Temporal lists no poller of this process on {', '.join(idle)} yet"
        return None

    async def _lists_our_poller(self, client: Client, queue: str) -> bool:
        """Whether the server lists this process (and build) polling `queue` lately.

        The server keeps pollers per partition: a busy queue's polls may never
        reach the root partition, so the others are asked too.
        """
        partitions = [queue, *(f"/_sys/{queue}/{i}" for i in range(1, TASK_QUEUE_PARTITIONS))]
        for partition in partitions:
            described = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=partition, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                    task_queue_type=queue_type(queue),
                ),
                timeout=_DESCRIBE_TIMEOUT,
            )
            now = time.time()
            if any(
                poller.identity == client.identity
                and (self.build_id is None or poller.deployment_options.build_id == self.build_id)
                and now - poller.last_access_time.ToSeconds() < POLLER_FRESH_SECONDS
                for poller in described.pollers
            ):
                return True
        return False


def probe_app(health: WorkerHealth) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        problem = await health.readiness_problem()
        if problem is not None:
            return JSONResponse({"status": "not ready", "reason": problem}, status_code=503)
        return JSONResponse({"status": "ready", "queues": list(health.queues)})

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz)])


class ProbePortError(Exception):
    """The probe port cannot be opened (in use, bad host)."""


class _ProbeServer(uvicorn.Server):
    # The worker owns SIGTERM/SIGINT; uvicorn must not replace its handlers.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound here rather than by uvicorn, which would sys.exit on a taken port."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, socket.gaierror) as error:
        raise ProbePortError(f"cannot listen on {host}:{port}: {error}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(64)
    except OSError as error:
        sock.close()
        raise ProbePortError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serving_probes(health: WorkerHealth, host: str, port: int) -> AsyncIterator[None]:
    """Serve /healthz and /readyz on host:port while the block runs (port 0: not at all)."""
    if not port:
        yield
        return
    sock = listening_socket(host, port)
    server = _ProbeServer(
        uvicorn.Config(
            probe_app(health),
            log_level="warning",
            access_log=False,
            lifespan="off",
            # The process is stopping when this server stops; nothing to drain.
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        log.info("probes on http://%s:%s/healthz and /readyz", host, port)
        yield
    finally:
        server.should_exit = True
        await task
        sock.close()
