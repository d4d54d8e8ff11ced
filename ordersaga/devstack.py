"""`ordersaga dev`: the whole system on one machine with nothing but Python.

Starts, as child processes and in dependency order, the Temporal dev server
(SQLite file), every domain's service (SQLite files), one worker serving every task
queue and the API; each must pass a readiness check before the next stage
starts. Output is prefixed per process. Ctrl-C / SIGTERM stops them in reverse
order so in-flight work drains: the API first, then the worker (which gets its
grace period), then the services the worker was calling, Temporal last.

All state lives under the data dir and is kept across restarts: orders that
were in flight when the stack stopped carry on when it starts again, because
Temporal's history and the services' rows are all in those files.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

import httpx
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.client import Client

from contracts import task_queues
from contracts.domains import DOMAINS, Registry
from contracts.search_attributes import SEARCH_ATTRIBUTE_TYPES
from ordersaga.binaries import BinaryNotFoundError, temporal_cli
from ordersaga.ports import free_ports
from ordersaga.runtime.auth import DEV_AUDIENCE, DEV_ISSUER, DevIssuer
from ordersaga.runtime.settings import Settings, env_var_name

BANNER_TITLE = "ordersaga dev stack is up"
# Who the banner's ready-made tokens are for.
DEV_CUSTOMER = "cus_ada"
DEV_OPERATOR = "op_dev"
SUPERVISOR = "dev"
TAIL_LINES = 25
PROBE_INTERVAL_SECONDS = 0.25
PROBE_TIMEOUT_SECONDS = 3.0
# Beyond the longest graceful shutdown a child is allowed, before it is killed.
STOP_MARGIN_SECONDS = 5.0
# The dev server and its Web UI listen on loopback only, whatever host
# ORDERSAGA_TEMPORAL_ADDRESS names; only its port is taken from there.
TEMPORAL_IP = "127.0.0.1"

# Runs in a fresh single-threaded interpreter between fork and the real program:
# asks Linux to SIGTERM the child when the supervisor dies, even by SIGKILL, so a
# crashed supervisor leaves no Temporal server holding its port. (Doing this in
# preexec_fn would be unsafe: the supervisor has threads once temporalio runs.)
_DIE_WITH_PARENT_SHIM = """\
import ctypes, os, signal, sys
PR_SET_PDEATHSIG = 1
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


class DevStackError(Exception):
    """Start-up cannot go ahead; the message says why and what to do."""


class ChildFailed(Exception):
    def __init__(self, child: Child, problem: str) -> None:
        super().__init__(f"{child.name} {problem}")
        self.child = child


# None when ready, else what is still missing (reported if start-up times out).
Probe = Callable[[], Awaitable[str | None]]


# --- output ------------------------------------------------------------------


_COLOURS = ("36", "33", "35", "32", "34", "96", "93")


class Console:
    """Writes whole lines, each prefixed with the process it came from."""

    def __init__(self, names: Sequence[str], stream: TextIO = sys.stdout) -> None:
        self._stream = stream
        self._width = max(len(name) for name in (*names, SUPERVISOR))
        colour = stream.isatty() and not os.environ.get("NO_COLOR")
        self._colours = {
            name: _COLOURS[i % len(_COLOURS)] if colour else "" for i, name in enumerate(names)
        }
        self._colours[SUPERVISOR] = "1" if colour else ""

    def line(self, name: str, text: str) -> None:
        prefix = f"[{name}]".ljust(self._width + 2)
        code = self._colours.get(name, "")
        if code:
            prefix = f"\033[{code}m{prefix}\033[0m"
        self._stream.write(f"{prefix} {text}\n")
        self._stream.flush()

    def say(self, text: str) -> None:
        for part in text.splitlines() or [""]:
            self.line(SUPERVISOR, part)

    def raw(self, text: str) -> None:
        self._stream.write(text if text.endswith("\n") else text + "\n")
        self._stream.flush()


# --- children ----------------------------------------------------------------


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    probe: Probe
    ready_timeout: float
    stop_timeout: float
    # Hide what it prints once asked to stop (still kept for a failure report).
    quiet_when_stopping: bool = False


class Child:
    def __init__(self, spec: ChildSpec, console: Console) -> None:
        self.spec = spec
        self.name = spec.name
        self._console = console
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._process: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self.exited: asyncio.Task[int] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    async def start(self, env: dict[str, str]) -> None:
        argv = self.spec.argv
        if sys.platform == "linux":
            argv = [sys.executable, "-c", _DIE_WITH_PARENT_SHIM, str(os.getpid()), *argv]
        self._process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            # Its own session: a Ctrl-C in the terminal reaches only the
            # supervisor, which then stops the children in order.
            start_new_session=True,
            limit=1024 * 1024,
        )
        self._pump = asyncio.create_task(self._copy_output(), name=f"{self.name}-output")
        self.exited = asyncio.create_task(self._process.wait(), name=f"{self.name}-exit")

    async def _copy_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        while True:
            try:
                raw = await stdout.readline()
            except ValueError:  # a line beyond the stream limit; its bytes are dropped
                self._console.line(self.name, "<overlong log line skipped>")
                continue
            if not raw:
                return
            text = raw.decode(errors="replace").rstrip()
            self.tail.append(text)
            if not (self._stopping and self.spec.quiet_when_stopping):
                self._console.line(self.name, text)

    async def wait_ready(self) -> None:
        assert self.exited is not None
        started = time.monotonic()
        deadline = started + self.spec.ready_timeout
        while True:
            if self.exited.done():
                await self.drain_output()
                raise ChildFailed(self, f"exited with code {self.exited.result()} during start-up")
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                    problem = await self.spec.probe()
            except TimeoutError:
                problem = f"readiness check took longer than {PROBE_TIMEOUT_SECONDS:.0f}s"
            except Exception as error:  # a probe failing is "not ready yet", never a crash
                problem = f"readiness check failed: {error!r}"
            if problem is None:
                self._console.say(f"{self.name} is ready ({time.monotonic() - started:.1f}s)")
                return
            if time.monotonic() > deadline:
                raise ChildFailed(
                    self,
                    f"was not ready after {self.spec.ready_timeout:.0f}s (last check: {problem})",
                )
            # Wake early if it dies rather than sleeping through it.
            await asyncio.wait([self.exited], timeout=PROBE_INTERVAL_SECONDS)

    def signal(self, signum: int) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signum)

    async def stop(self) -> None:
        if self._process is None or self.exited is None:
            return
        was_running = not self.exited.done()
        if was_running:
            self._stopping = True
            self.signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(self.spec.stop_timeout):
                    await asyncio.shield(self.exited)
            except TimeoutError:
                self._console.say(
                    f"{self.name} did not stop within {self.spec.stop_timeout:.0f}s; killing it"
                )
                self.signal(signal.SIGKILL)
                await self.exited
        await self.drain_output()
        code = self.exited.result()
        # SIGTERM's own exit status is an orderly stop too.
        if was_running and code not in (0, -signal.SIGTERM):
            self._console.say(f"{self.name} stopped with exit code {code}")
            if self.spec.quiet_when_stopping:
                self._console.say(self.report_tail())

    async def drain_output(self) -> None:
        """Let the last lines through; a grandchild holding the pipe must not block us."""
        if self._pump is not None and not self._pump.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await asyncio.shield(self._pump)
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    def report_tail(self) -> str:
        if not self.tail:
            return f"{self.name} printed nothing"
        lines = "\n".join(f"  | {line}" for line in self.tail)
        return f"last lines of {self.name}:\n{lines}"


# --- readiness probes --------------------------------------------------------


def _connect_host(host: str) -> str:
    """Where to reach a server that listens on `host` from this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def http_url(host: str, port: int) -> str:
    host = _connect_host(host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def http_ready_probe(http: httpx.AsyncClient, url: str) -> Probe:
    async def probe() -> str | None:
        try:
            response = await http.get(f"{url}/readyz")
        except httpx.HTTPError as error:
            return f"GET {url}/readyz failed: {error.__class__.__name__}"
        if response.status_code != 200:
            return f"GET {url}/readyz answered {response.status_code}"
        return None

    return probe


async def idle_task_queues(
    client: Client, queues: Mapping[str, TaskQueueType.ValueType]
) -> list[str]:
    """The queues no worker polls yet, each asked for the kind of task it carries."""
    idle = []
    for queue, kind in queues.items():
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=kind,
            )
        )
        if not described.pollers:
            idle.append(queue)
    return idle


class TemporalProbes:
    """Readiness of the Temporal dev server, and of the worker as Temporal sees it."""

    def __init__(self, address: str, namespace: str, ui_url: str, http: httpx.AsyncClient) -> None:
        self._address = address
        self._namespace = namespace
        self._ui_url = ui_url
        self._http = http
        self._client: Client | None = None

    async def server(self) -> str | None:
        try:
            if self._client is None:
                self._client = await Client.connect(self._address, namespace=self._namespace)
            client = self._client
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=self._namespace)
            )
            registered = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=self._namespace)
            )
        except Exception as error:  # refused, not serving yet, namespace not created yet
            return f"Temporal at {self._address} not answering ({error})"
        missing = sorted(set(SEARCH_ATTRIBUTE_TYPES) - set(registered.custom_attributes))
        if missing:
            return f"search attributes not registered yet: {', '.join(missing)}"
        try:
            ui = await self._http.get(self._ui_url)
        except httpx.HTTPError as error:
            return f"Web UI at {self._ui_url} not answering ({error.__class__.__name__})"
        if ui.status_code != 200:
            return f"Web UI at {self._ui_url} answered {ui.status_code}"
        return None

    def worker(self, queues: Sequence[str]) -> Probe:
        async def probe() -> str | None:
            # Started after the server was ready, so the client exists.
            assert self._client is not None
            idle = await idle_task_queues(
                self._client,
                {
                    queue: TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
                    if queue == task_queues.ORDERS
                    else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
                    for queue in queues
                },
            )
            if idle:
                return f"no worker polling task queue(s) {', '.join(idle)} yet"
            return None

        return probe


# --- pre-flight --------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    what: str
    host: str
    port: int
    variable: str


def listeners(settings: Settings, domains: Registry = DOMAINS) -> list[Listener]:
    return [
        Listener("Temporal", TEMPORAL_IP, settings.temporal_port, env_var_name("temporal_address")),
        Listener(
            "Temporal Web UI",
            TEMPORAL_IP,
            settings.temporal_ui_port,
            env_var_name("temporal_ui_port"),
        ),
        *(
            Listener(
                f"the {domain.name} service",
                settings.service_host,
                settings.service_port(domain.name, domains),
                env_var_name(f"{domain.name}_port"),
            )
            for domain in domains
        ),
        Listener("the API", settings.api_host, settings.api_port, env_var_name("api_port")),
        Listener(
            "the codec server",
            settings.codec_server_host,
            settings.codec_server_port,
            env_var_name("codec_server_port"),
        ),
    ]


def port_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port, or None when it can.

    SO_REUSEADDR as the servers themselves set it: a socket lingering in
    TIME_WAIT from the last run is no conflict, a listening one is.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        return f"cannot resolve host {host!r}: {error}"
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return "already in use"
                if error.errno == errno.EADDRNOTAVAIL:
                    continue  # e.g. no IPv6 on this machine; another address may do
                return error.strerror or str(error)
    return None


def check_ports(settings: Settings) -> None:
    wanted = listeners(settings)
    seen: dict[int, Listener] = {}
    for listener in wanted:
        if listener.port in seen:
            other = seen[listener.port]
            raise DevStackError(
                f"{other.what} and {listener.what} are both set to port {listener.port}; "
                f"change {other.variable} or {listener.variable}"
            )
        seen[listener.port] = listener
    for listener in wanted:
        problem = port_problem(listener.host, listener.port)
        if problem:
            raise DevStackError(
                f"cannot use port {listener.port} on {listener.host} for {listener.what}: "
                f"{problem}. Is another `ordersaga dev` (or Temporal server) still running? "
                f"Stop it, or choose another port with {listener.variable}."
            )


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One `ordersaga dev` per data dir: two Temporal servers on one SQLite file corrupt it."""
    lock_path = data_dir / "dev.lock"
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise DevStackError(
                f"data dir {data_dir} is in use by another `ordersaga dev` (pid {holder}); "
                f"stop it first, or set {env_var_name('data_dir')} to another folder"
            ) from None
        _write_pid(lock)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _write_pid(lock: IO[str]) -> None:
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()


# --- the stack ---------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ordersaga.cli", *args]


def temporal_address(settings: Settings) -> str:
    """Where the children reach the dev server."""
    return f"{TEMPORAL_IP}:{settings.temporal_port}"


# The history service hands every new workflow task and activity task to
# matching through its transfer queue, whose reader loads new tasks at most 20
# times a second per shard by default. The dev server has one shard, so each
# hop of an order waited for the next permitted load: 42-45 ms per hop even on
# an idle server, about 450 ms for a four-step workflow. At 100 loads a second
# the wait is at most 10 ms; loads only happen when there are new tasks, and
# the CPU per order did not measurably change (docs/performance.md).
# deploy/temporal/dynamicconfig/ordersaga.yaml sets the same for compose.
TRANSFER_POLL_RATE_KEY = "history.transferProcessorMaxPollRPS"
TRANSFER_POLL_RATE = 100


def codec_endpoint(settings: Settings) -> str:
    return http_url(settings.codec_server_host, settings.codec_server_port)


def temporal_argv(binary: Path, settings: Settings, data_dir: Path) -> list[str]:
    argv = [
        str(binary),
        "server",
        "start-dev",
        "--ip",
        TEMPORAL_IP,
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--db-filename",
        str(data_dir / "temporal.sqlite"),
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        # One partition per task queue: on a single server, several partitions
        # only add forwarding hops between a task and its poller
        # (docs/performance.md measures this and the pragmas above).
        "--dynamic-config-value",
        "matching.numTaskqueueReadPartitions=1",
        "--dynamic-config-value",
        "matching.numTaskqueueWritePartitions=1",
        "--dynamic-config-value",
        f"{TRANSFER_POLL_RATE_KEY}={TRANSFER_POLL_RATE}",
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
        # The UI would otherwise fetch a news feed from the internet.
        "--ui-disable-news-fetch",
        # Payloads are encrypted (ordersaga.runtime.codec); the UI asks the codec server.
        "--ui-codec-endpoint",
        codec_endpoint(settings),
    ]
    for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
        argv += ["--search-attribute", f"{name}={kind}"]
    return argv


# Where each child listens: passed down explicitly, because the supervisor's
# settings may come from arguments (embedded_stack) rather than the environment.
_LISTEN_SETTINGS = (
    "api_host",
    "api_port",
    "service_host",
    *(f"{domain.name}_port" for domain in DOMAINS),
    "worker_listen_host",
    "worker_health_port",
    "worker_metrics_port",
    "codec_server_host",
    "codec_server_port",
    "temporal_ui_port",
)


def child_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    # The worker must call this stack's own services, never ones a URL in the
    # caller's shell points at (it would send the dev stack's orders elsewhere).
    own_services = {env_var_name(f"{domain.name}_url") for domain in DOMAINS}
    env = {name: value for name, value in os.environ.items() if name not in own_services}
    env.update({env_var_name(name): str(getattr(settings, name)) for name in _LISTEN_SETTINGS})
    env.update(
        {
            env_var_name("dev_mode"): "true",
            env_var_name("data_dir"): str(data_dir),
            env_var_name("temporal_address"): temporal_address(settings),
            # Children write into a pipe, where "auto" would choose JSON; the
            # console shows readable lines unless JSON is asked for explicitly.
            env_var_name("log_format"): (
                "text" if settings.log_format == "auto" else settings.log_format
            ),
            "PYTHONUNBUFFERED": "1",
            # Only the benchmark's second stack turns it on (ordersaga.bench.runner);
            # said explicitly either way: the children follow these settings.
            env_var_name("codec_disabled_for_benchmark"): (
                "true" if settings.codec_disabled_for_benchmark else "false"
            ),
        }
    )
    # Services' databases given in the settings (the benchmark's PostgreSQL
    # stack passes them as arguments); otherwise the environment's, or SQLite.
    for domain in DOMAINS:
        database_url = settings.configured_database_url(domain.name)
        if database_url is not None:
            env[env_var_name(f"{domain.name}_database_url")] = database_url
    # One build id across restarts (unless one is set): a dev who commits and
    # restarts expects the new code to take the work, not to wait for a rollout.
    env[env_var_name("worker_build_id")] = settings.worker_build_id or "dev"
    return env


def on_free_ports(settings: Settings) -> Settings:
    """The same settings with every listening port moved to a free one (all different)."""
    names = [
        "temporal_ui_port",
        "api_port",
        "codec_server_port",
        *(f"{domain.name}_port" for domain in DOMAINS),
    ]
    if settings.worker_health_port:
        names.append("worker_health_port")
    if settings.worker_metrics_port:
        names.append("worker_metrics_port")
    temporal, *ports = free_ports(len(names) + 1)
    update: dict[str, object] = dict(zip(names, ports, strict=True))
    update["temporal_address"] = f"{TEMPORAL_IP}:{temporal}"
    return settings.model_copy(update=update)


class DevStack:
    def __init__(
        self,
        settings: Settings,
        data_dir: Path,
        http: httpx.AsyncClient,
        console_stream: TextIO = sys.stdout,
        domains: Registry = DOMAINS,
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.env = child_env(settings, data_dir)
        self.ui_url = http_url(TEMPORAL_IP, settings.temporal_ui_port)
        self.api_url = http_url(settings.api_host, settings.api_port)
        self.codec_url = codec_endpoint(settings)
        self.service_urls = {
            domain.name: http_url(
                settings.service_host, settings.service_port(domain.name, domains)
            )
            for domain in domains
        }
        self.temporal = TemporalProbes(
            temporal_address(settings),
            settings.temporal_namespace,
            self.ui_url,
            http,
        )
        ready = settings.dev_startup_timeout_seconds
        stop = (
            max(settings.worker_grace_period_seconds, settings.http_shutdown_timeout_seconds)
            + STOP_MARGIN_SECONDS
        )

        def spec(name: str, argv: list[str], probe: Probe, **options: bool) -> ChildSpec:
            return ChildSpec(name, argv, probe, ready_timeout=ready, stop_timeout=stop, **options)

        # One worker serves every queue here, whatever ORDERSAGA_WORKER_QUEUES says.
        all_queues = list(domains.task_queues)
        self.stages: list[list[ChildSpec]] = [
            [
                spec(
                    "temporal",
                    temporal_argv(temporal_cli(), settings, data_dir),
                    self.temporal.server,
                    # Its pollers and clients warn about the closing connections
                    # at every stop; that is expected, not news.
                    quiet_when_stopping=True,
                )
            ],
            [
                *(
                    spec(
                        domain.name,
                        _cli("service", domain.name),
                        http_ready_probe(http, self.service_urls[domain.name]),
                    )
                    for domain in domains
                ),
                spec("codec", _cli("codec-server"), http_ready_probe(http, self.codec_url)),
            ],
            [
                spec(
                    "worker",
                    _cli("worker", "--queues", ",".join(all_queues)),
                    # Its own /readyz: polling every queue, as the server lists it,
                    # and the deployments' current version settled.
                    http_ready_probe(
                        http, http_url(settings.worker_listen_host, settings.worker_health_port)
                    )
                    if settings.worker_health_port
                    else self.temporal.worker(all_queues),
                )
            ],
            [spec("api", _cli("api"), http_ready_probe(http, self.api_url))],
        ]
        self.console = Console(
            [spec.name for stage in self.stages for spec in stage], console_stream
        )
        self.started: list[list[Child]] = []

    @property
    def children(self) -> list[Child]:
        return [child for stage in self.started for child in stage]

    async def start(self) -> None:
        for stage in self.stages:
            children = [Child(spec, self.console) for spec in stage]
            self.started.append(children)
            for child in children:
                await child.start(self.env)
                self.console.say(f"started {child.name} (pid {child.pid})")
            await asyncio.gather(*(child.wait_ready() for child in children))

    async def first_exit(self) -> Child:
        exits = {child.exited: child for child in self.children if child.exited is not None}
        done, _ = await asyncio.wait(exits, return_when=asyncio.FIRST_COMPLETED)
        return exits[next(iter(done))]

    async def stop(self) -> None:
        for stage in reversed(self.started):
            running = [child for child in stage if child.returncode is None]
            if running:
                self.console.say(f"stopping {', '.join(child.name for child in running)}")
            await asyncio.gather(*(child.stop() for child in stage))

    def kill(self) -> None:
        for child in self.children:
            child.signal(signal.SIGKILL)

    def banner(self) -> str:
        s = self.settings
        rows = [
            ("API", f"{self.api_url}  (docs {self.api_url}/docs)"),
            ("Temporal Web UI", self.ui_url),
            ("codec server", f"{self.codec_url}  (operators sign in at {self.codec_url}/login)"),
            ("Temporal", f"{temporal_address(s)}  (namespace {s.temporal_namespace})"),
            *((f"{name} service", url) for name, url in self.service_urls.items()),
            ("admin token", s.admin_token.get_secret_value()),
            ("data dir", str(self.data_dir)),
        ]
        width = max(len(label) for label, _ in rows)
        body = "\n".join(f"  {label.ljust(width)}  {value}" for label, value in rows)
        rule = "=" * 72
        return (
            f"{rule}\n{BANNER_TITLE} (Ctrl-C to stop)\n{body}\n\n{self._tokens()}\n\n"
            f"{self._decrypted_payloads()}\n{rule}"
        )

    def _decrypted_payloads(self) -> str:
        """How an operator reads the encrypted payloads in the Web UI and the CLI.

        The dev server's UI has no login, hence no token to pass to the codec
        server, and `temporal server start-dev` has no flag to make it send
        credentials: the browser session and the one-time toggle stand in.
        """
        return (
            "  decrypted payloads in the Web UI (operators only):\n"
            f"    1. open {self.codec_url}/login and paste the operator token above\n"
            f"    2. once per browser, in {self.ui_url}: the codec icon (top right) >\n"
            '       "Use my browser setting and ignore Cluster-level setting", endpoint\n'
            f'       {self.codec_url}, tick "Include cross-origin credentials", Apply\n'
            "  from the CLI: temporal workflow show --workflow-id ord_... \\\n"
            f"    --address {temporal_address(self.settings)} --codec-endpoint {self.codec_url} "
            '--codec-auth "Bearer $OPERATOR_TOKEN"'
        )

    def _tokens(self) -> str:
        """Ready bearer tokens from dev mode's own issuer (valid 12 hours)."""
        if self.settings.auth_jwks_url:
            return "  tokens: from your OIDC provider (ORDERSAGA_AUTH_JWKS_URL is set)"
        issuer = DevIssuer.in_data_dir(
            self.data_dir,
            issuer=self.settings.auth_issuer or DEV_ISSUER,
            audience=self.settings.auth_audience or DEV_AUDIENCE,
        )
        customer = issuer.mint(DEV_CUSTOMER, [self.settings.auth_customer_scope])
        operator = issuer.mint(DEV_OPERATOR, [self.settings.auth_operator_scope])
        return (
            f"  customer token ({DEV_CUSTOMER}):\n    {customer}\n"
            f"  operator token ({DEV_OPERATOR}):\n    {operator}\n"
            "  more: .venv/bin/ordersaga token --customer cus_grace | --operator [--ttl SECONDS]"
        )


async def _supervise(settings: Settings, data_dir: Path) -> int:
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECONDS) as http:
        stack = DevStack(settings, data_dir, http)
        console = stack.console

        def on_signal(signum: int) -> None:
            if stop_requested.is_set():
                console.say(f"{signal.Signals(signum).name} again: killing everything now")
                stack.kill()
                return
            console.say(f"{signal.Signals(signum).name} received: stopping (again to kill)")
            stop_requested.set()

        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        for signum in handled:
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            return await _run(stack, stop_requested)
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)


async def _run(stack: DevStack, stop_requested: asyncio.Event) -> int:
    console = stack.console
    console.say(f"data dir {stack.data_dir} (kept across restarts; `make reset-data` clears it)")
    stop_wait = asyncio.create_task(stop_requested.wait(), name="stop-requested")
    startup = asyncio.create_task(stack.start(), name="startup")
    try:
        await asyncio.wait([startup, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError, ChildFailed):
                await startup
            await stack.stop()
            console.say("stopped before start-up finished")
            return 0
        try:
            startup.result()
        except ChildFailed as failure:
            console.say(f"start-up failed: {failure}")
            console.say(failure.child.report_tail())
            await stack.stop()
            return 1
        except OSError as error:  # a program that could not be executed at all
            console.say(f"start-up failed: {error}")
            await stack.stop()
            return 1

        console.raw(stack.banner())
        died = asyncio.create_task(stack.first_exit(), name="first-exit")
        await asyncio.wait([died, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        if died.done() and not stop_requested.is_set():
            child = died.result()
            await child.drain_output()
            console.say(f"{child.name} exited unexpectedly with code {child.returncode}")
            console.say(child.report_tail())
            console.say("stopping everything else")
            await stack.stop()
            return 1
        died.cancel()
        await stack.stop()
        console.say("stopped")
        return 0
    finally:
        stop_wait.cancel()
        for child in stack.children:
            if child.exited is not None and not child.exited.done():
                child.exited.cancel()


@contextlib.asynccontextmanager
async def embedded_stack(
    settings: Settings, data_dir: Path, console_stream: TextIO = sys.stderr
) -> AsyncIterator[DevStack]:
    """The dev stack as a library, up and ready inside the block, stopped after.

    For commands that need a whole system of their own (`ordersaga histories
    record`, `ordersaga bench`): pass `on_free_ports(settings)` and a fresh data
    dir so it never collides with a `make dev` on the same machine. A child that
    fails to start raises ChildFailed.
    """
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    with data_dir_lock(data_dir):
        check_ports(settings)
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECONDS) as http:
            stack = DevStack(settings, data_dir, http, console_stream)
            try:
                await stack.start()
                yield stack
            finally:
                await stack.stop()


def run_dev_stack(settings: Settings) -> int:
    """Run the stack in the foreground until Ctrl-C / SIGTERM or a child dies."""
    data_dir = settings.data_dir.resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with data_dir_lock(data_dir):
            check_ports(settings)
            return asyncio.run(_supervise(settings, data_dir))
    except (DevStackError, BinaryNotFoundError) as error:
        print(f"ordersaga dev: {error}", file=sys.stderr)
        return 1
