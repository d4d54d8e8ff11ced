"""The worker's readiness against a real Temporal whose namespace lacks the
saga's search attributes: every order's workflow task would fail there, so the
process must not call itself ready."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from temporalio.testing import WorkflowEnvironment

from tests.conftest import register_search_attributes
from tests.integration.api.support import client_on_bare_namespace, eventually
from workers.health import WorkerHealth


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
