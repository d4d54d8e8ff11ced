"""The benchmark run: set-up, warm-up, interleaved repetitions, the ledger check."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import itertools
import os
import secrets
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

import httpx
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    GetWorkflowExecutionHistoryRequest,
)
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.service import RPCError

from contracts.orders import OrderStatus
from ordersaga.bench.baseline import (
    ACTIVITY_QUEUE,
    COMPENSATION_PATH_ACTIVITIES,
    HAPPY_PATH_ACTIVITIES,
    WORKFLOW_QUEUE,
)
from ordersaga.bench.ledger import ledger_problems
from ordersaga.bench.load import (
    RunResult,
    Scenario,
    closed_loop,
    open_loop,
    percentiles_ms,
    read_figures,
)
from ordersaga.bench.procs import (
    HostTicks,
    Usage,
    UsageMeter,
    calibration_cpu_ms,
    own_collector_paused,
)
from ordersaga.bench.scenarios import (
    UNIT_PRICE_CENTS,
    BaselineScenario,
    SagaScenario,
    SameWorkScenario,
    send_retrying,
)
from ordersaga.bench.service_alone import ServiceAloneError, charges_alone
from ordersaga.bench.slow_step import ORDERS_PER_STEP as SLOW_STEP_ORDERS_PER_STEP
from ordersaga.bench.slow_step import SLOWED_STEPS, SlowStepRun
from ordersaga.binaries import temporal_cli
from ordersaga.devstack import (
    TEMPORAL_IP,
    Child,
    ChildSpec,
    Console,
    embedded_stack,
    idle_task_queues,
    on_free_ports,
    temporal_address,
)
from ordersaga.ports import free_port
from ordersaga.runtime.auth import DevIssuer
from ordersaga.runtime.codec import ENCODING as ENCRYPTED_ENCODING
from ordersaga.runtime.codec import keyring_from_settings
from ordersaga.runtime.keyring import Keyring
from ordersaga.runtime.settings import SERVICES, MissingSecretError, Settings, env_var_name
from ordersaga.runtime.temporal_config import data_converter

BASELINE_HAPPY = "baseline-happy"
BASELINE_COMPENSATION = "baseline-compensation"
SAGA_HAPPY = "saga-happy"
SAGA_COMPENSATION = "saga-compensation"
# saga-happy's orders on a second embedded stack whose processes run without the
# payload codec (ORDERSAGA_CODEC_DISABLED_FOR_BENCHMARK): the codec's cost.
SAGA_HAPPY_NO_CODEC = "saga-happy-no-codec"
# saga-happy's orders on a further embedded stack whose services keep their
# data in PostgreSQL, as in production (fresh databases, dropped after).
SAGA_HAPPY_POSTGRES = "saga-happy-postgres"
BASELINE_OUT_OF_THE_BOX = "baseline-happy-out-of-the-box"
BASELINE_LOCAL = "baseline-happy-local-activities"
# The saga's four service calls as a bare workflow's local activities (same_work.py).
BASELINE_SAME_WORK = "baseline-same-work"
# Reads and cancels while a step is slowed (slow_step.py); no throughput figures.
SAGA_SLOW_STEP = "saga-slow-step"
DEFAULT_SCENARIOS = (
    BASELINE_HAPPY,
    BASELINE_COMPENSATION,
    SAGA_HAPPY,
    SAGA_HAPPY_NO_CODEC,
    SAGA_COMPENSATION,
    BASELINE_OUT_OF_THE_BOX,
    BASELINE_LOCAL,
    BASELINE_SAME_WORK,
    SAGA_HAPPY_POSTGRES,
    SAGA_SLOW_STEP,
)
ALL_SCENARIOS = DEFAULT_SCENARIOS
# Which saga scenarios run on which stack; the ledger check follows.
CODEC_STACK_SCENARIOS = (SAGA_HAPPY, SAGA_COMPENSATION)
NO_CODEC_STACK_SCENARIOS = (SAGA_HAPPY_NO_CODEC,)
POSTGRES_STACK_SCENARIOS = (SAGA_HAPPY_POSTGRES,)
# Measured closed and open loop through the API; their open loops also read.
SAGA_SCENARIOS = (*CODEC_STACK_SCENARIOS, *NO_CODEC_STACK_SCENARIOS, *POSTGRES_STACK_SCENARIOS)
# Whose orders the first stack's services hold, checked against its ledger.
FIRST_STACK_LEDGER = (*CODEC_STACK_SCENARIOS, BASELINE_SAME_WORK, SAGA_SLOW_STEP)
# Only the benchmark's own stacks can be started without the codec or on
# PostgreSQL, given to the baseline worker, or have faults injected.
EMBEDDED_ONLY_SCENARIOS = (
    *NO_CODEC_STACK_SCENARIOS,
    *POSTGRES_STACK_SCENARIOS,
    BASELINE_SAME_WORK,
    SAGA_SLOW_STEP,
)
STACK_COMPONENTS = ("temporal", *SERVICES, "worker", "api")
# The further stacks' processes, as measured: "worker-no-codec" and so on.
NO_CODEC_SUFFIX = "-no-codec"
POSTGRES_SUFFIX = "-postgres"
LOAD_GENERATOR = "bench"
# Each closed-loop window's figures carry the machine's speed just before it
# (procs.calibration_cpu_ms): the report says whether it held through the run.
CALIBRATION_KEY = "calibration_cpu_ms"
# ... and the share of the machine's CPU time the hypervisor took during it.
STEAL_KEY = "steal_share"
# payments' charge sent by the bench alone, back to back and with gaps (service_alone.py).
SERVICE_ALONE_KEY = "service_alone"
# Where saga-happy-postgres creates its databases (trust auth, as in CI's .ci/run).
POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
# In the open loop of a saga scenario, each order's customer reads it once, at
# a random moment this long after its 202: an order at half the maximum rate
# takes about 70-130 ms from start to finish, so reads are sent while it is in
# flight or just after (the report counts the answers that found it in flight).
READ_WITHIN_SECONDS = 0.1
# The ledger check asks the services this many questions at once.
VERIFY_CONCURRENCY = 16
POSTGRES_CONNECT_SECONDS = 5.0
CHILD_READY_SECONDS = 60.0
CHILD_STOP_SECONDS = 10.0


@dataclass
class BenchOptions:
    concurrency: int = 16
    # Orders/s for the open loop; None = half the closed loop's measured maximum.
    rate: float | None = None
    orders: int = 150
    warmup_orders: int = 30
    repetitions: int = 3
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    output_dir: Path = Path("bench-results")
    data_dir: Path | None = None
    # A running stack to target instead of starting one (all or nothing).
    api_url: str | None = None
    temporal_address: str | None = None
    service_urls: dict[str, str] = field(default_factory=dict)
    progress: bool = True
    postgres_url: str = POSTGRES_URL


@dataclass
class Target:
    """Where the system under test is, and which processes make it up."""

    api_url: str
    temporal_address: str
    service_urls: Mapping[str, str]
    components: dict[str, int]
    # Whose tokens the API accepts: the stack's dev issuer.
    issuer: DevIssuer
    # The stack's payload keys: the saga's results are encrypted. None: the
    # no-codec stack, whose payloads are not.
    keyring: Keyring | None
    # The workers' credential to its services (the same-work baseline's too);
    # None for a running stack, whose credential the bench does not have.
    worker_token: SecretStr | None


@dataclass
class Ledger:
    """Which saga orders went to which stack's services, and the stock set there."""

    key: str  # of its stock figures in the report's verification
    services: Mapping[str, httpx.AsyncClient]
    scenarios: tuple[str, ...]
    initial_stock: int


class _Tagged(io.TextIOBase):
    """The no-codec stack's lines in the shared log, each tagged, so its
    "[temporal]" never passes for the other stack's."""

    def __init__(self, stream: TextIO, tag: str) -> None:
        self._stream = stream
        self._tag = tag

    def write(self, text: str) -> int:
        lines = text.splitlines(keepends=True)
        self._stream.write("".join(f"{self._tag} {line}" for line in lines))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False


# --- child processes ----------------------------------------------------------


async def _start_child(
    name: str, argv: list[str], probe: Callable[[], Any], console: Console, env: dict[str, str]
) -> Child:
    child = Child(
        ChildSpec(
            name,
            argv,
            probe,
            ready_timeout=CHILD_READY_SECONDS,
            stop_timeout=CHILD_STOP_SECONDS,
            quiet_when_stopping=True,
        ),
        console,
    )
    await child.start(env)
    await child.wait_ready()
    return child


def _server_probe(address: str, namespace: str) -> Callable[[], Any]:
    async def probe() -> str | None:
        try:
            client = await Client.connect(address, namespace=namespace)
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace)
            )
        except Exception as error:  # not up yet
            return f"Temporal at {address}: {error}"
        return None

    return probe


def _pollers_probe(client: Client) -> Callable[[], Any]:
    async def probe() -> str | None:
        idle = await idle_task_queues(
            client,
            {
                WORKFLOW_QUEUE: TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                ACTIVITY_QUEUE: TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            },
        )
        return f"no poller on {', '.join(idle)} yet" if idle else None

    return probe


def out_of_the_box_argv(port: int, data_dir: Path, namespace: str) -> list[str]:
    """The dev server as it comes: a database file, no pragmas, no dynamic config.
    Headless, as its Web UI plays no part in throughput."""
    return [
        str(temporal_cli()),
        "server",
        "start-dev",
        "--ip",
        TEMPORAL_IP,
        "--port",
        str(port),
        "--headless",
        "--db-filename",
        str(data_dir / "temporal-out-of-the-box.sqlite"),
        "--namespace",
        namespace,
        "--log-level",
        "warn",
    ]


def _baseline_worker_argv(address: str, namespace: str, *, same_work: bool) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ordersaga.bench.baseline_worker",
        address,
        "--namespace",
        namespace,
        *(["--same-work"] if same_work else []),
    ]


def _baseline_worker_env(target: Target) -> dict[str, str]:
    """The same-work baseline calls the stack's services as the stack's worker
    does: at their URLs, with the workers' credential."""
    env = dict(os.environ)
    env.update({env_var_name(f"{name}_url"): url for name, url in target.service_urls.items()})
    if target.worker_token is not None:
        env[env_var_name("worker_token")] = target.worker_token.get_secret_value()
    return env


# --- the run ------------------------------------------------------------------


@dataclass
class Progress:
    """tqdm when asked for, else nothing; the bar counts orders that finished."""

    total: int
    enabled: bool
    stream: TextIO = sys.stderr
    _bar: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, unit="order", file=self.stream, dynamic_ncols=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description(text)

    def tick(self) -> None:
        if self._bar is not None:
            self._bar.update(1)


def _rotate(items: Sequence[str], by: int) -> list[str]:
    """Each repetition starts with another scenario, so none always runs first or last."""
    by %= max(1, len(items))
    return [*items[by:], *items[:by]]


def _window_figures(
    result: RunResult, usage: Mapping[str, Usage], components: Sequence[str]
) -> dict[str, Any]:
    completed = max(1, result.completed)
    return {
        "mode": result.mode,
        "load": result.load,
        "orders": len(result.samples),
        "completed": result.completed,
        "errors": sum(1 for s in result.samples if s.error is not None),
        "elapsed_seconds": result.elapsed_seconds,
        "orders_per_second": result.orders_per_second,
        "submit_latency_ms": percentiles_ms(
            [s.submit_seconds for s in result.samples if s.error is None]
        ),
        "terminal_latency_ms": percentiles_ms(
            [s.terminal_seconds for s in result.samples if s.terminal_seconds is not None]
        ),
        "cpu_seconds_per_order": {
            name: usage[name].cpu_seconds / completed for name in components if name in usage
        },
        "peak_rss_mb": {
            name: usage[name].peak_rss_bytes / 2**20 for name in components if name in usage
        },
        # The customers' reads of their orders (open loop of the saga scenarios).
        "reads": read_figures([read for s in result.samples for read in s.reads]),
    }


def median_figures(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The median of every number across repetitions, keeping the structure."""
    first = runs[0]
    merged: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, Mapping):
            merged[key] = median_figures([run[key] for run in runs])
        elif value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            values = [run[key] for run in runs if run.get(key) is not None]
            merged[key] = statistics.median(values) if values else None
        else:
            merged[key] = value
    return merged


class Bench:
    def __init__(self, options: BenchOptions, settings: Settings) -> None:
        self.options = options
        self.settings = settings
        self.run_tag = secrets.token_hex(3)
        self.sku = f"sku_bench_{self.run_tag}"
        self._sequence = itertools.count()
        self.results: list[RunResult] = []
        self.scenarios: dict[str, Scenario] = {}
        self.components_of: dict[str, tuple[str, ...]] = {}
        # What runs: the options' scenarios less those skipped, with the reasons.
        self.active: tuple[str, ...] = options.scenarios
        self.skipped: dict[str, str] = {}
        self.data_dir = (
            options.data_dir.resolve()
            if options.data_dir is not None
            else Path(tempfile.mkdtemp(prefix="ordersaga-bench-"))
        )

    def next_sequence(self) -> int:
        return next(self._sequence)

    # --- set-up ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def target(
        self, log: TextIO, *, suffix: str = "", database_urls: Mapping[str, str] | None = None
    ) -> AsyncIterator[Target]:
        """The system under test. With a suffix, a further embedded stack of its
        own: NO_CODEC_SUFFIX, every process of it running without the payload
        codec; POSTGRES_SUFFIX, its services on `database_urls`."""
        options = self.options
        if options.api_url is not None:
            settings = self.settings
            try:
                keyring = keyring_from_settings(settings)
            except MissingSecretError as error:
                raise BenchError(
                    f"{error}: with --api-url the bench reads the running stack's "
                    "encrypted results with its keys; for a `make dev` stack, run the "
                    f"bench with {env_var_name('dev_mode')}=true from that stack's "
                    f"folder (or give {env_var_name('data_dir')})"
                ) from None
            yield Target(
                api_url=options.api_url.rstrip("/"),
                temporal_address=options.temporal_address or settings.temporal_address,
                service_urls={
                    name: options.service_urls.get(name) or settings.service_url(name)
                    for name in SERVICES
                },
                components={},
                # A running dev stack: its issuer keeps its key in ORDERSAGA_DATA_DIR.
                issuer=DevIssuer.from_settings(settings),
                keyring=keyring,
                worker_token=None,
            )
            return
        settings = on_free_ports(self.settings)
        data_dir = self.data_dir / f"embedded{suffix}"
        if suffix == NO_CODEC_SUFFIX:
            # Dev mode, which the embedded stack always is, is where it is allowed.
            settings = settings.model_copy(update={"codec_disabled_for_benchmark": True})
        if database_urls is not None:
            settings = settings.model_copy(
                update={
                    f"{service}_database_url": SecretStr(url)
                    for service, url in database_urls.items()
                }
            )
        if suffix:
            log = cast(TextIO, _Tagged(log, suffix.removeprefix("-")))
        async with embedded_stack(settings, data_dir, log) as stack:
            own = settings.model_copy(update={"dev_mode": True, "data_dir": data_dir})
            yield Target(
                api_url=stack.api_url,
                temporal_address=temporal_address(settings),
                service_urls=stack.service_urls,
                components={c.name + suffix: c.pid for c in stack.children if c.pid is not None},
                issuer=DevIssuer.in_data_dir(data_dir),
                keyring=None
                if settings.codec_disabled_for_benchmark
                else keyring_from_settings(own),
                # The stack's worker made it at start-up, in its data folder.
                worker_token=SecretStr(own.worker_token_value()),
            )

    def planned_orders(self, name: str) -> int:
        o = self.options
        if name not in self.active:
            return 0
        if name == SAGA_SLOW_STEP:
            return len(SLOWED_STEPS) * self.slow_step_orders
        return o.warmup_orders + 2 * o.repetitions * o.orders

    @property
    def slow_step_orders(self) -> int:
        """Per slowed step; a short run (--orders) makes it shorter too."""
        return min(SLOW_STEP_ORDERS_PER_STEP, self.options.orders)

    async def run(self, log: TextIO) -> dict[str, Any]:
        options = self.options
        namespace = self.settings.temporal_namespace
        started_at = dt.datetime.now(dt.UTC)
        embedded_only = [name for name in self.active if name in EMBEDDED_ONLY_SCENARIOS]
        if options.api_url is not None and embedded_only:
            raise BenchError(
                f"{', '.join(embedded_only)} need(s) the benchmark's own embedded stacks, "
                "not --api-url"
            )
        console = Console(["baseline-worker", "temporal-oob", "baseline-worker-oob"], log)
        children: list[Child] = []
        async with contextlib.AsyncExitStack() as stack:
            target = await stack.enter_async_context(self.target(log))
            components = dict(target.components)
            further: dict[str, Target] = {}
            if self._wanted(NO_CODEC_STACK_SCENARIOS):
                # A whole second stack rather than a second worker and API on the
                # first: a like-for-like comparison needs every process of the
                # saga (the API too) without the codec, and their own Temporal
                # server, whose history of codec-less payloads is what it writes.
                further[NO_CODEC_SUFFIX] = await stack.enter_async_context(
                    self.target(log, suffix=NO_CODEC_SUFFIX)
                )
            if self._wanted(POSTGRES_STACK_SCENARIOS):
                urls = await stack.enter_async_context(self._postgres_databases())
                if urls is not None:
                    further[POSTGRES_SUFFIX] = await stack.enter_async_context(
                        self.target(log, suffix=POSTGRES_SUFFIX, database_urls=urls)
                    )
            for other in further.values():
                components.update(other.components)
            components[LOAD_GENERATOR] = os.getpid()

            async def stop_children() -> None:
                for child in reversed(children):
                    await child.stop()

            stack.push_async_callback(stop_children)
            # The baseline is bare Temporal: its worker (baseline_worker.py) and this
            # client use the SDK's default converter, no codec. The saga's own
            # processes encrypt (ordersaga.runtime.temporal_config.data_converter), so the
            # saga's figures include the codec's cost and the baseline's do not.
            client = await Client.connect(
                target.temporal_address, namespace=namespace, data_converter=DataConverter.default
            )
            children.append(
                await _start_child(
                    "baseline-worker",
                    _baseline_worker_argv(
                        target.temporal_address,
                        namespace,
                        same_work=BASELINE_SAME_WORK in self.active,
                    ),
                    _pollers_probe(client),
                    console,
                    _baseline_worker_env(target),
                )
            )
            components["baseline-worker"] = children[-1].pid or 0
            oob_client: Client | None = None
            if BASELINE_OUT_OF_THE_BOX in self.active:
                oob_address = f"{TEMPORAL_IP}:{free_port()}"
                oob_dir = self.data_dir / "out-of-the-box"
                oob_dir.mkdir(parents=True, exist_ok=True)
                children.append(
                    await _start_child(
                        "temporal-oob",
                        out_of_the_box_argv(
                            int(oob_address.rpartition(":")[2]), oob_dir, namespace
                        ),
                        _server_probe(oob_address, namespace),
                        console,
                        dict(os.environ),
                    )
                )
                components["temporal-oob"] = children[-1].pid or 0
                oob_client = await Client.connect(oob_address, namespace=namespace)
                children.append(
                    await _start_child(
                        "baseline-worker-oob",
                        _baseline_worker_argv(oob_address, namespace, same_work=False),
                        _pollers_probe(oob_client),
                        console,
                        dict(os.environ),
                    )
                )
                components["baseline-worker-oob"] = children[-1].pid or 0

            sides = {
                "": await self._saga_side(stack, target, namespace, "stock", FIRST_STACK_LEDGER)
            }
            for suffix, ledger_scenarios in (
                (NO_CODEC_SUFFIX, NO_CODEC_STACK_SCENARIOS),
                (POSTGRES_SUFFIX, POSTGRES_STACK_SCENARIOS),
            ):
                if suffix in further:
                    # "stock_no_codec_stack", "stock_postgres_stack"
                    key = f"stock_{suffix.removeprefix('-').replace('-', '_')}_stack"
                    sides[suffix] = await self._saga_side(
                        stack, further[suffix], namespace, key, ledger_scenarios
                    )
            self._define_scenarios(client, oob_client, sides)
            for side in sides.values():
                if self._wanted(side.ledger.scenarios):
                    await self._set_stock(
                        side.ledger.services["inventory"], side.ledger.initial_stock
                    )

            meter = UsageMeter(components, without_children=frozenset({LOAD_GENERATOR}))
            total = sum(self.planned_orders(name) for name in self.active)
            with Progress(total, options.progress) as progress:
                figures = await self._measure(meter, progress)
                slow_step = None
                if SAGA_SLOW_STEP in self.active:
                    progress.describe(SAGA_SLOW_STEP)
                    slow_step = await self._slow_step(sides[""], progress)
                progress.describe("checking the ledger")
                verification = await self._verify([side.ledger for side in sides.values()])
                service_alone = None
                if target.worker_token is not None and "payments" in target.components:
                    progress.describe("payments alone")
                    service_alone = await self._payments_alone(target)
        return {
            "started_at": started_at.isoformat(timespec="seconds"),
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "target": "embedded" if options.api_url is None else target.api_url,
            "components_measured": sorted(components) if target.components else [LOAD_GENERATOR],
            "scenarios": figures,
            "slow_step": slow_step,
            SERVICE_ALONE_KEY: service_alone,
            "skipped": self.skipped,
            "verification": verification,
        }

    def _wanted(self, scenarios: Sequence[str]) -> bool:
        return any(name in self.active for name in scenarios)

    @contextlib.asynccontextmanager
    async def _postgres_databases(self) -> AsyncIterator[dict[str, str] | None]:
        """A fresh database per service on the PostgreSQL server, dropped after;
        None, and the PostgreSQL scenarios skipped with the reason, when the
        server cannot be used."""
        base = make_url(self.options.postgres_url)
        names = {service: f"ordersaga_bench_{self.run_tag}_{service}" for service in SERVICES}
        # CREATE and DROP DATABASE cannot run inside a transaction.
        engine = create_async_engine(
            base, isolation_level="AUTOCOMMIT", connect_args={"timeout": POSTGRES_CONNECT_SECONDS}
        )
        created: list[str] = []
        try:
            async with engine.connect() as connection:
                for name in names.values():
                    await connection.execute(text(f'CREATE DATABASE "{name}"'))
                    created.append(name)
        except (OSError, TimeoutError, SQLAlchemyError) as error:
            self._skip(
                POSTGRES_STACK_SCENARIOS,
                f"PostgreSQL at {base.render_as_string()} cannot hold its databases: "
                f"{str(error).splitlines()[0]}",
            )
        try:
            yield (
                {
                    service: base.set(database=name).render_as_string(hide_password=False)
                    for service, name in names.items()
                }
                if len(created) == len(names)
                else None
            )
        finally:
            if created:
                async with engine.connect() as connection:
                    for name in created:
                        # FORCE: a service's pooled connection may outlive its process.
                        await connection.execute(
                            text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                        )
            await engine.dispose()

    def _skip(self, scenarios: Sequence[str], reason: str) -> None:
        for name in scenarios:
            if name in self.active:
                self.skipped[name] = reason
                print(f"ordersaga bench: {name} skipped: {reason}", file=sys.stderr)
        self.active = tuple(name for name in self.active if name not in scenarios)

    async def _saga_side(
        self,
        stack: contextlib.AsyncExitStack,
        target: Target,
        namespace: str,
        key: str,
        scenarios: tuple[str, ...],
    ) -> SagaSide:
        api = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=target.api_url,
                timeout=30.0,
                limits=httpx.Limits(max_connections=512, max_keepalive_connections=512),
            )
        )
        # The ledger check reads the services as an operator (the admin credential).
        admin = {"Authorization": f"Bearer {self.settings.admin_token.get_secret_value()}"}
        services = {
            name: await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=30.0, headers=admin)
            )
            for name, url in target.service_urls.items()
        }
        # Reads results as the stack's own processes write them: encrypted, or not.
        client = await Client.connect(
            target.temporal_address,
            namespace=namespace,
            data_converter=data_converter(target.keyring),
        )
        initial_stock = sum(self.planned_orders(name) for name in scenarios)
        return SagaSide(api, client, target.issuer, Ledger(key, services, scenarios, initial_stock))

    def _saga(self, name: str, side: SagaSide, *, undeliverable: bool = False) -> SagaScenario:
        return SagaScenario(
            name,
            side.api,
            side.client,
            self.sku,
            self.run_tag,
            undeliverable=undeliverable,
            issuer=side.issuer,
        )

    def _define_scenarios(
        self, client: Client, oob: Client | None, sides: Mapping[str, SagaSide]
    ) -> None:
        tag = self.run_tag
        baseline = ("temporal", "baseline-worker", LOAD_GENERATOR)
        first = sides[""]

        def stack(suffix: str) -> tuple[str, ...]:
            return (*(c + suffix for c in STACK_COMPONENTS), LOAD_GENERATOR)

        defined: dict[str, tuple[Scenario, tuple[str, ...]]] = {
            BASELINE_HAPPY: (
                BaselineScenario(BASELINE_HAPPY, client, HAPPY_PATH_ACTIVITIES, tag),
                baseline,
            ),
            BASELINE_COMPENSATION: (
                BaselineScenario(BASELINE_COMPENSATION, client, COMPENSATION_PATH_ACTIVITIES, tag),
                baseline,
            ),
            BASELINE_LOCAL: (
                BaselineScenario(
                    BASELINE_LOCAL, client, HAPPY_PATH_ACTIVITIES, tag, local_activities=True
                ),
                baseline,
            ),
            # The baseline's worker calling the first stack's services.
            BASELINE_SAME_WORK: (
                SameWorkScenario(BASELINE_SAME_WORK, client, self.sku, tag),
                ("temporal", *SERVICES, "baseline-worker", LOAD_GENERATOR),
            ),
            SAGA_HAPPY: (self._saga(SAGA_HAPPY, first), stack("")),
            SAGA_COMPENSATION: (
                self._saga(SAGA_COMPENSATION, first, undeliverable=True),
                stack(""),
            ),
            SAGA_SLOW_STEP: (self._saga(SAGA_SLOW_STEP, first), stack("")),
        }
        for suffix, name in (
            (NO_CODEC_SUFFIX, SAGA_HAPPY_NO_CODEC),
            (POSTGRES_SUFFIX, SAGA_HAPPY_POSTGRES),
        ):
            if suffix in sides:
                defined[name] = (self._saga(name, sides[suffix]), stack(suffix))
        if oob is not None:
            defined[BASELINE_OUT_OF_THE_BOX] = (
                BaselineScenario(BASELINE_OUT_OF_THE_BOX, oob, HAPPY_PATH_ACTIVITIES, tag),
                ("temporal-oob", "baseline-worker-oob", LOAD_GENERATOR),
            )
        for name in self.active:
            self.scenarios[name], self.components_of[name] = defined[name]

    async def _set_stock(self, inventory: httpx.AsyncClient, available: int) -> None:
        token = self.settings.admin_token.get_secret_value()
        response = await inventory.put(
            f"/products/{self.sku}",
            json={"available": available, "price_cents": UNIT_PRICE_CENTS},
            headers={"Authorization": f"Bearer {token}"},
        )
        if response.status_code != 200:
            raise BenchError(
                f"could not stock {self.sku} (PUT /products answered {response.status_code}: "
                f"{response.text[:200]}); is the admin token right?"
            )

    # --- measuring ------------------------------------------------------------

    async def _measure(self, meter: UsageMeter, progress: Progress) -> dict[str, Any]:
        options = self.options
        names = [name for name in self.active if name != SAGA_SLOW_STEP]
        for name in names:
            progress.describe(f"warm-up {name}")
            self.results.append(await self._closed(name, options.warmup_orders, progress))
        closed: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for rep in range(options.repetitions):
            for name in _rotate(names, rep):
                progress.describe(f"closed {rep + 1}/{options.repetitions} {name}")
                speed = calibration_cpu_ms()
                ticks = HostTicks.now()
                with own_collector_paused():
                    async with meter.window() as usage:
                        result = await self._closed(name, options.orders, progress)
                steal = HostTicks.now().steal_share_since(ticks)
                self.results.append(result)
                figures = _window_figures(result, usage, self.components_of[name])
                closed[name].append({**figures, CALIBRATION_KEY: speed, STEAL_KEY: steal})
        rates = {
            name: options.rate or max(1.0, median_figures(closed[name])["orders_per_second"] / 2)
            for name in names
        }
        opened: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for rep in range(options.repetitions):
            for name in _rotate(names, rep):
                progress.describe(f"open {rep + 1}/{options.repetitions} {name}")
                with own_collector_paused():
                    async with meter.window() as usage:
                        result = await open_loop(
                            self.scenarios[name],
                            orders=options.orders,
                            rate=rates[name],
                            next_sequence=self.next_sequence,
                            on_done=progress.tick,
                            read_within=READ_WITHIN_SECONDS if name in SAGA_SCENARIOS else None,
                        )
                self.results.append(result)
                opened[name].append(_window_figures(result, usage, self.components_of[name]))
        return {
            name: {
                "expected_status": self.scenarios[name].expected_status,
                "components": list(self.components_of[name]),
                "closed": {"median": median_figures(closed[name]), "runs": closed[name]},
                "open": {"median": median_figures(opened[name]), "runs": opened[name]},
            }
            for name in names
        }

    async def _slow_step(self, side: SagaSide, progress: Progress) -> dict[str, Any]:
        scenario = self.scenarios[SAGA_SLOW_STEP]
        assert isinstance(scenario, SagaScenario)
        with own_collector_paused():
            result, figures = await SlowStepRun(
                scenario,
                side.ledger.services,
                orders_per_step=self.slow_step_orders,
                next_sequence=self.next_sequence,
                on_done=progress.tick,
            ).run()
        self.results.append(result)
        return figures

    async def _payments_alone(self, target: Target) -> dict[str, Any]:
        """service_alone.py's figures; a failure is reported, not raised: the
        orders are measured and checked by now, and this figure only explains them."""
        assert target.worker_token is not None
        try:
            figures = await charges_alone(
                target.service_urls["payments"],
                target.worker_token,
                target.components["payments"],
                self.run_tag,
            )
        except (ServiceAloneError, httpx.HTTPError) as error:
            reason = str(error) or type(error).__name__
            print(f"ordersaga bench: payments alone not measured: {reason}", file=sys.stderr)
            return {"figures": [], "error": reason}
        return {"figures": figures, "error": None}

    async def _closed(self, name: str, orders: int, progress: Progress) -> RunResult:
        return await closed_loop(
            self.scenarios[name],
            orders=orders,
            concurrency=self.options.concurrency,
            next_sequence=self.next_sequence,
            on_done=progress.tick,
        )

    # --- nothing lost ---------------------------------------------------------

    async def _verify(self, ledgers: Sequence[Ledger]) -> dict[str, Any]:
        problems: list[str] = []
        submitted = terminal_ok = 0
        # Each order the services hold, by scenario, with the status it must end in.
        ledger_orders: dict[str, tuple[str, str]] = {}
        on_ledgers = {name for ledger in ledgers for name in ledger.scenarios}
        for result in self.results:
            for sample in result.samples:
                if sample.order_id is None:
                    problems.append(f"{result.scenario}: an order was not accepted: {sample.error}")
                    continue
                submitted += 1
                expected = sample.expected_status or self.scenarios[result.scenario].expected_status
                if sample.status == expected:
                    terminal_ok += 1
                else:
                    seen = sample.status or sample.error
                    problems.append(
                        f"{result.scenario}: {sample.order_id} ended {seen}, expected {expected}"
                    )
                if result.scenario in on_ledgers:
                    ledger_orders[sample.order_id] = (result.scenario, expected)
        stocks: dict[str, Any] = {}
        for ledger in ledgers:
            orders = {o: ended for o, (s, ended) in ledger_orders.items() if s in ledger.scenarios}
            stock = await self._check_ledger(
                ledger.services, orders, ledger.initial_stock, problems
            )
            if stock is not None:
                stocks[ledger.key] = stock
        encodings = await self._check_encodings(problems)
        return {
            "nothing_lost": not problems,
            "orders_submitted": submitted,
            "orders_terminal_as_expected": terminal_ok,
            "orders_checked_against_services": len(ledger_orders),
            **stocks,
            "payload_encoding": encodings,
            "problems": problems[:50],
            "problem_count": len(problems),
        }

    async def _check_encodings(self, problems: list[str]) -> dict[str, str]:
        """How each saga scenario's last order's input sits in Temporal: encrypted
        on the codec stack, plain on the other. A comparison of two stacks that
        both encrypt (or neither) would measure nothing; it fails the run."""
        found: dict[str, str] = {}
        for name in SAGA_SCENARIOS:
            scenario = self.scenarios.get(name)
            if not isinstance(scenario, SagaScenario) or not scenario.submitted:
                continue
            order_id = scenario.submitted[-1]
            try:
                history = await scenario.client.workflow_service.get_workflow_execution_history(
                    GetWorkflowExecutionHistoryRequest(
                        namespace=scenario.client.namespace,
                        execution=WorkflowExecution(workflow_id=order_id),
                        maximum_page_size=1,
                    )
                )
                started = history.history.events[0].workflow_execution_started_event_attributes
                metadata = started.input.payloads[0].metadata
            except (RPCError, IndexError) as error:
                problems.append(f"{name}: the input of {order_id} could not be read: {error!r}")
                continue
            encoding = metadata.get("encoding", b"").decode(errors="replace")
            found[name] = encoding
            encrypted = encoding == ENCRYPTED_ENCODING.decode()
            if encrypted != (name not in NO_CODEC_STACK_SCENARIOS):
                problems.append(
                    f"{name}: {order_id}'s input is stored as {encoding!r}, expected "
                    + ("plain" if encrypted else ENCRYPTED_ENCODING.decode())
                )
        return found

    async def _check_ledger(
        self,
        services: Mapping[str, httpx.AsyncClient],
        orders: Mapping[str, str],
        initial_stock: int,
        problems: list[str],
    ) -> dict[str, Any] | None:
        """`orders`: each order's id and the status it must have ended in."""
        if not orders:
            return None
        gate = asyncio.Semaphore(VERIFY_CONCURRENCY)

        async def items(service: str, collection: str, order_id: str) -> list[dict[str, Any]]:
            http = services[service]
            async with gate:
                response = await send_retrying(
                    http.build_request("GET", f"/{collection}", params={"order_id": order_id}),
                    http,
                )
            response.raise_for_status()
            found: list[dict[str, Any]] = response.json()["items"]
            return found

        async def check(order_id: str, ended: str) -> None:
            try:
                charges, shipments, reservations = await asyncio.gather(
                    items("payments", "charges", order_id),
                    items("shipping", "shipments", order_id),
                    items("inventory", "reservations", order_id),
                )
            except (httpx.HTTPError, ValueError, KeyError) as error:
                problems.append(f"{order_id}: could not be checked: {error!r}")
                return
            problems.extend(
                ledger_problems(
                    order_id,
                    ended,
                    UNIT_PRICE_CENTS,
                    charges=charges,
                    shipments=shipments,
                    reservations=reservations,
                )
            )

        await asyncio.gather(*(check(order_id, ended) for order_id, ended in orders.items()))
        shipped = sum(1 for ended in orders.values() if ended == OrderStatus.COMPLETED.value)
        try:
            response = await services["inventory"].get(f"/stock/{self.sku}")
            response.raise_for_status()
            stock = response.json()
        except (httpx.HTTPError, ValueError) as error:
            problems.append(f"stock of {self.sku} could not be read: {error!r}")
            return None
        expected = {"available": initial_stock - shipped, "reserved": 0}
        actual = {"available": stock["available"], "reserved": stock["reserved"]}
        if actual != expected:
            problems.append(f"stock of {self.sku}: {actual}, expected {expected}")
        return {
            "sku": self.sku,
            "initial": initial_stock,
            "expected": expected,
            "actual": actual,
        }


@dataclass
class SagaSide:
    """One embedded stack as the saga scenarios and the ledger check reach it."""

    api: httpx.AsyncClient
    client: Client
    issuer: DevIssuer
    ledger: Ledger


class BenchError(Exception):
    """The benchmark cannot run; the message says why."""
