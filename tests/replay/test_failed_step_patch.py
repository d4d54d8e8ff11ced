"""The FailedStep change, made with `workflow.patched` (docs/changing-workflows.md).

Orders that were in flight when it shipped replay down the old path; new
orders take the new one: a patch marker in their history and the FailedStep
search attribute set, so operators can filter on it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.workflow import NondeterminismError

from contracts.search_attributes import FAILED_STEP
from tests.integration.stack import Stack, running_stack
from tests.replay.deliberately_broken_workflow import DeliberatelyUnpatchedOrderWorkflow
from tests.replay.replayer import (
    POST_PATCH_RECORDING,
    PRE_PATCH_RECORDING,
    history_id,
    load_history,
    patch_ids,
    replayer,
    upserted_search_attributes,
)
from workflows.order import FAILED_STEP_PATCH, LOCAL_COMMIT_PATCH, LOCAL_FIRST_PATCH
from workflows.search_attributes import FAILED_STEP_KEY

# The recorded paths on which a forward step fails: the only ones the change touches.
STEP_FAILED = ("out_of_stock", "payment_declined", "undeliverable", "needs_attention_resolved")
NO_STEP_FAILED = ("happy_path", "transient_retries", "cancelled_before_shipping")


def recorded(recording: Path, scenarios: tuple[str, ...]) -> list[Path]:
    paths = [recording / f"{scenario}.json" for scenario in scenarios]
    missing = [path.name for path in paths if not path.exists()]
    assert not missing, f"{recording.name} lacks {missing}"
    return paths


@pytest.mark.parametrize(
    "path", recorded(PRE_PATCH_RECORDING, STEP_FAILED + NO_STEP_FAILED), ids=history_id
)
def test_the_pre_patch_recording_predates_the_change(path: Path) -> None:
    assert patch_ids(path) == []
    assert FAILED_STEP not in upserted_search_attributes(path)


@pytest.mark.parametrize("path", recorded(PRE_PATCH_RECORDING, STEP_FAILED), ids=history_id)
async def test_orders_from_before_the_change_still_replay(path: Path) -> None:
    result = await replayer().replay_workflow(load_history(path))

    assert result.replay_failure is None


@pytest.mark.parametrize("path", recorded(PRE_PATCH_RECORDING, STEP_FAILED), ids=history_id)
async def test_the_change_without_its_patch_breaks_them(path: Path) -> None:
    with pytest.raises(NondeterminismError) as caught:
        await replayer(DeliberatelyUnpatchedOrderWorkflow).replay_workflow(load_history(path))

    # The new upsert command met the event the old code recorded next.
    assert "Nondeterminism error: UpsertWorkflowSearchAttributesMachine does not handle" in str(
        caught.value
    )


@pytest.mark.parametrize("path", recorded(POST_PATCH_RECORDING, STEP_FAILED), ids=history_id)
def test_the_post_patch_recording_took_the_new_path(path: Path) -> None:
    assert patch_ids(path) == [FAILED_STEP_PATCH]
    assert FAILED_STEP in upserted_search_attributes(path)


@pytest.mark.parametrize("path", recorded(POST_PATCH_RECORDING, NO_STEP_FAILED), ids=history_id)
def test_orders_where_no_step_failed_are_untouched(path: Path) -> None:
    assert patch_ids(path) == []
    assert FAILED_STEP not in upserted_search_attributes(path)


# --- a new order on a real dev server ---------------------------------------


@pytest.fixture(scope="module")
async def stack(
    dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with running_stack(dev_server_env.client, tmp_path_factory.mktemp("patch")) as running:
        yield running


async def place_declined_order(stack: Stack) -> str:
    response = await stack.api.post(
        "/orders",
        headers={"Idempotency-Key": uuid.uuid4().hex},
        json={
            "items": [{"sku": "sku_mug", "quantity": 1}],
            "currency": "EUR",
            "payment": {"token": "tok_chargeDeclined"},
            "shipping_address": {
                "name": "Grace Hopper",
                "line1": "1 Harbour Road",
                "city": "Hamburg",
                "postal_code": "20457",
                "country": "DE",
            },
        },
    )
    assert response.status_code == 202, response.text
    return str(response.json()["order_id"])


async def count_until(client: Client, query: str, expected: int) -> int:
    """Visibility is eventually consistent: poll until it agrees or time runs out."""
    count = -1
    async with asyncio.timeout(30):
        while count != expected:
            count = (await client.count_workflows(query)).count
            await asyncio.sleep(0.1)
    return count


async def test_a_new_order_takes_the_new_path(
    stack: Stack, dev_server_env: WorkflowEnvironment
) -> None:
    client = dev_server_env.client
    order_id = await place_declined_order(stack)
    handle = client.get_workflow_handle(order_id)
    await handle.result()

    history = await handle.fetch_history()
    patches = [
        json.loads(payload.data)["id"]
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
        for payload in event.marker_recorded_event_attributes.details["patch-data"].payloads
    ]
    # Every new order takes the local-first paths too, patched at its start.
    assert patches == [LOCAL_FIRST_PATCH, LOCAL_COMMIT_PATCH, FAILED_STEP_PATCH]
    description = await handle.describe()
    assert description.typed_search_attributes.get(FAILED_STEP_KEY) == "charge_payment"
    query = (
        f'WorkflowId = "{order_id}" AND OrderStatus = "FAILED" AND {FAILED_STEP} = "charge_payment"'
    )
    assert await count_until(client, query, 1) == 1
