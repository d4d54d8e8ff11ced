"""The dev stack's components as children the chaos suite can kill one at a time.

`DevStack` knows how to start each component (argv, readiness probe, env) but
its supervisor stops everything when a child dies; here the same `ChildSpec`s
run under `Child`s held by name, so a worker, Temporal or a service can be
SIGKILLed, SIGTERMed and started again while the others carry on. Every time a
component is down is recorded, so an answer can be judged against what was up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

from ordersaga.devstack import (
    PROBE_TIMEOUT_SECONDS,
    Child,
    DevStack,
    check_ports,
    data_dir_lock,
    http_ready_probe,
    http_url,
    temporal_address,
)
from ordersaga.ports import free_port
from ordersaga.runtime.settings import Settings, env_var_name

TEMPORAL = "temporal"
WORKER = "worker"
API = "api"
# Decrypting payloads for the Web UI plays no part in what the suite checks.
LEFT_OUT = frozenset({"codec"})
# "no worker at all": what a cancel needs, and what a 503 WORKERS_UNAVAILABLE means.
WORKERS = "workers"


@dataclass
class Outages:
    """When each component was down: (from, until) on the monotonic clock."""

    windows: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)

    def down(self, name: str, at: float | None = None) -> None:
        spans = self.windows.setdefault(name, [])
        if not spans or spans[-1][1] is not None:
            spans.append((time.monotonic() if at is None else at, None))

    def up(self, name: str) -> None:
        spans = self.windows.get(name)
        if spans and spans[-1][1] is None:
            spans[-1] = (spans[-1][0], time.monotonic())

    def was_down(self, name: str, at: float, grace: float = 0.0) -> bool:
        """Whether `name` was down at `at`, or had come back less than `grace` s before."""
        for start, end in self.windows.get(name, []):
            if start <= at and (end is None or at <= end + grace):
                return True
        return False

    def back_since(self, name: str, at: float) -> float | None:
        """Seconds since `name` last came back, at `at` (None: never down before)."""
        ends = [end for _, end in self.windows.get(name, []) if end is not None and end <= at]
        return at - max(ends) if ends else None


class ChaosStack:
    def __init__(
        self,
        settings: Settings,
        data_dir: Path,
        http: httpx.AsyncClient,
        log: TextIO,
        extra_env: Mapping[str, str],
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self._http = http
        dev = DevStack(settings, data_dir, http, log)
        self.console = dev.console
        self.env = {**dev.env, **extra_env}
        self.api_url = dev.api_url
        self.service_urls = dict(dev.service_urls)
        self.temporal_address = temporal_address(settings)
        self._specs = {
            spec.name: spec for stage in dev.stages for spec in stage if spec.name not in LEFT_OUT
        }
        self._stages = [
            [spec.name for spec in stage if spec.name in self._specs] for stage in dev.stages
        ]
        self._envs: dict[str, dict[str, str]] = {name: self.env for name in self._specs}
        self.children: dict[str, Child] = {}
        self.outages = Outages()
        self.workers = [WORKER]

    # --- life cycle -------------------------------------------------------------

    async def start(self) -> None:
        for stage in self._stages:
            await asyncio.gather(*(self.start_child(name) for name in stage))

    async def start_child(self, name: str) -> None:
        child = Child(self._specs[name], self.console)
        self.children[name] = child
        await child.start(self._envs[name])
        self.console.say(f"started {name} (pid {child.pid})")
        await child.wait_ready()
        self.outages.up(name)
        if name in self.workers:
            self.outages.up(WORKERS)

    def running(self, name: str) -> bool:
        child = self.children.get(name)
        return child is not None and child.returncode is None

    async def kill(self, name: str, signum: int = signal.SIGKILL) -> float:
        """Signal `name` and wait for it to exit; returns how long that took."""
        child = self.children[name]
        assert child.exited is not None
        started = time.monotonic()
        if signum == signal.SIGKILL:
            # Down from the moment of the kill; a SIGTERMed one drains first.
            self._mark_down(name, started)
        self.console.say(f"chaos: {signal.Signals(signum).name} to {name} (pid {child.pid})")
        child.signal(signum)
        await asyncio.shield(child.exited)
        await child.drain_output()
        self._mark_down(name, time.monotonic())
        took = time.monotonic() - started
        self.console.say(f"chaos: {name} exited with code {child.returncode} after {took:.1f}s")
        return took

    def _mark_down(self, name: str, at: float) -> None:
        self.outages.down(name, at)
        if name in self.workers and not any(
            self.running(worker) for worker in self.workers if worker != name
        ):
            self.outages.down(WORKERS, at)

    async def add_worker(self, name: str) -> None:
        """Another worker process on every queue, with its own probe ports."""
        health_port, metrics_port = free_port(), free_port()
        base = self._specs[WORKER]
        self._specs[name] = dataclasses.replace(
            base,
            name=name,
            probe=http_ready_probe(
                self._http, http_url(self.settings.worker_listen_host, health_port)
            ),
        )
        self._envs[name] = {
            **self.env,
            env_var_name("worker_health_port"): str(health_port),
            env_var_name("worker_metrics_port"): str(metrics_port),
        }
        self.workers.append(name)
        await self.start_child(name)

    async def remove_worker(self, name: str) -> None:
        child = self.children.pop(name)
        await child.stop()
        self.workers.remove(name)

    async def stop(self) -> None:
        stages = [list(stage) for stage in self._stages]
        for stage in stages:
            if WORKER in stage:
                stage.extend(worker for worker in self.workers if worker != WORKER)
        for stage in reversed(stages):
            children = [self.children[name] for name in stage if name in self.children]
            await asyncio.gather(*(child.stop() for child in children))

    def kill_all(self) -> None:
        for child in self.children.values():
            child.signal(signal.SIGKILL)

    # --- what other processes need to reach it ------------------------------------

    def audit_env(self) -> dict[str, str]:
        """ORDERSAGA_* for a command run against this stack (e.g. `ordersaga audit`)."""
        env = dict(self.env)
        env.update({env_var_name(f"{name}_url"): url for name, url in self.service_urls.items()})
        env[env_var_name("admin_token")] = self.settings.admin_token.get_secret_value()
        env[env_var_name("temporal_namespace")] = self.settings.temporal_namespace
        return env


@contextlib.asynccontextmanager
async def chaos_stack(
    settings: Settings, data_dir: Path, log: TextIO, extra_env: Mapping[str, str]
) -> AsyncIterator[ChaosStack]:
    """Up and ready inside the block, every child stopped after (killed if it hangs)."""
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    with data_dir_lock(data_dir):
        check_ports(settings)
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECONDS) as http:
            stack = ChaosStack(settings, data_dir, http, log, extra_env)
            try:
                await stack.start()
                yield stack
            finally:
                try:
                    await stack.stop()
                finally:
                    stack.kill_all()
