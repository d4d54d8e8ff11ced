"""Test support for Worker Versioning on a Temporal server shared by many tests.

Once a task queue belongs to a deployment with a current version, the server
routes its tasks to that version's workers only; unversioned workers that a
later test starts on the same queue would never get a task. A test that ran
versioned workers on the shared server hands the queues back with this.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

from temporalio.api.workflowservice.v1 import (
    ListWorkerDeploymentsRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from ordersaga.binaries import temporal_cli
from workflows.search_attributes import ORDER_SEARCH_ATTRIBUTES


async def route_to_unversioned(client: Client, deployments: Iterable[str]) -> None:
    """Make unversioned workers current again in each deployment (one never polled: skipped)."""
    for deployment in deployments:
        try:
            await client.workflow_service.set_worker_deployment_current_version(
                # An empty build id means "unversioned workers".
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace,
                    deployment_name=deployment,
                    build_id="",
                    identity="tests: route_to_unversioned",
                )
            )
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise


async def deployment_names(client: Client) -> list[str]:
    """Every Worker Deployment in the client's namespace."""
    names: list[str] = []
    token = b""
    while True:
        page = await client.workflow_service.list_worker_deployments(
            ListWorkerDeploymentsRequest(namespace=client.namespace, next_page_token=token)
        )
        names += [summary.name for summary in page.worker_deployments]
        token = page.next_page_token
        if not token:
            return names


@contextlib.asynccontextmanager
async def own_dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """A real dev server with the search attributes registered: the session's
    shared one, or one of a test's own, for tests whose deployments' routing
    (current versions, rollbacks) must not leak into other tests' queues."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli()),
        search_attributes=ORDER_SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()
