"""The worker's readiness against a real Temporal whose namespace lacks the
saga's search attributes: every order's workflow task would fail there, so the
process must not call itself ready."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from contracts import task_queues
from tests.conftest import register_search_attributes
from tests.integration.api.support import client_on_bare_namespace, eventually
from tests.integration.stack import stack_settings
from tests.keys import TEST_CODEC_KEYS
from tests.ports import free_ports
from workers.health import WorkerHealth
from workers.main import WorkerStartupError, run_worker


async def test_a_worker_is_not_ready_while_the_namespace_lacks_the_search_attributes(
    dev_server_env: WorkflowEnvironment,
) -> None:
    client = await client_on_bare_namespace(dev_server_env.client, "worker-bare")
    # Everything else about the process is ready: connected, running, settled.
    running: Any = SimpleNamespace(is_running=True)
    health = WorkerHealth(queues=["orders"], build_id=None, client=client, workers=[running])
    health.versions_settled.set()

    async def problem() -> str | None:
        health._cached = None  # each look asks the server again
        found = await health.readiness_problem()
        return found if found and "search attributes" in found else None

    reason = await eventually(problem)
    for name in ("CustomerId", "FailedStep", "OrderStatus", "OrderTotalCents"):
        assert name in reason

    await register_search_attributes(client)

    async def next_problem() -> str | None:
        health._cached = None
        found = await health.readiness_problem()
        return found if found and "search attributes" not in found else None

    # Past the attributes, it now waits for its (absent) pollers instead.
    assert "no poller" in await eventually(next_problem)


async def test_a_worker_for_a_namespace_temporal_lacks_stops_with_one_clear_line(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    health_port, metrics_port = free_ports(2)
    settings = stack_settings(
        dev_server_env.client,
        tmp_path,
        temporal_namespace="no-such-namespace",
        codec_keys=TEST_CODEC_KEYS,
        worker_health_port=health_port,
        worker_metrics_port=metrics_port,
    )
    with pytest.raises(WorkerStartupError, match="has no namespace 'no-such-namespace'"):
        await asyncio.wait_for(run_worker(settings, [task_queues.ORDERS]), timeout=60)
