"""The patch lifecycle (docs/changing-workflows.md), shown on the saga's own patches.

Live: `undo-all-before-parking`, `catalog-prices` and `cancel-holds-next-step`,
whose gate holds histories down both paths of each; the undo-all and the
cancel-holds changes without their guards break the orders from before them.
Retired: `failed-step-search-attribute`,
`local-first-attempt` and `local-commit`, deprecated once no order from before
them could run; new orders record them as deprecated markers, and the
recordings that needed their old paths left the gate with them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.workflow import NondeterminismError

from contracts.search_attributes import FAILED_STEP
from tests.integration.stack import Stack, module_stack
from tests.orders import order_body
from tests.replay.deliberately_broken_workflow import (
    DeliberatelyUncountedRefusedUndoOrderWorkflow,
    DeliberatelyUnguardedCancelCheckOrderWorkflow,
    DeliberatelyUnguardedCancelRefusalOrderWorkflow,
    DeliberatelyUnpatchedOrderWorkflow,
)
from tests.replay.replayer import (
    HISTORIES_DIR,
    NEWEST_RECORDING,
    OLDEST_RECORDING,
    history_files,
    history_id,
    load_history,
    patch_markers,
    replayer,
)
from tests.tokens import as_customer, new_customer_id
from workflows.compensation import UNDO_ALL_BEFORE_PARKING_PATCH
from workflows.order import CANCEL_HOLDS_NEXT_STEP_PATCH, LOCAL_COMMIT_PATCH, LOCAL_FIRST_PATCH
from workflows.search_attributes import FAILED_STEP_KEY
from workflows.state import CATALOG_PRICES_PATCH, FAILED_STEP_PATCH

RETIRED_PATCHES = {FAILED_STEP_PATCH, LOCAL_FIRST_PATCH, LOCAL_COMMIT_PATCH}
REFUSED_UNDO = "needs_attention_resolved.json"
# A customer's cancel still being checked when the charge landed: recorded on
# the build before cancel-holds-next-step (the shipment went ahead, then was
# undone) and on the first build with it (the shipment waited).
CANCEL_CHECKED = "cancel_decided_before_shipping.json"
BEFORE_CANCEL_HOLDS = HISTORIES_DIR / "v0.2.1-before-cancel-holds" / CANCEL_CHECKED
WITH_CANCEL_HOLDS = HISTORIES_DIR / "v0.3.0-cancel-holds-next-step" / CANCEL_CHECKED
# The patch's other branch: the charge declined while the cancel was checked,
# so the cancel was refused as too late and the order ended FAILED.
CANCEL_REFUSED_AFTER_A_FAILURE = (
    HISTORIES_DIR
    / "v0.3.1-cancel-refused-after-a-failure"
    / "cancel_checked_while_the_charge_failed.json"
)
# The same refusal where no step failed going forward: cancelled through
# Temporal while the customer's cancel was checked, the order parked on a
# refused refund, and the refused undo counted as the failure.
CANCEL_REFUSED_WHILE_PARKED = (
    HISTORIES_DIR
    / "v0.3.2-cancel-refused-while-parked"
    / "cancel_checked_while_an_undo_was_refused.json"
)


def reservation_was_priced(path: Path) -> bool:
    """Whether inventory priced the reservation: catalog-prices' new path.

    Payloads are encrypted, so the recording's manifest says which version of
    inventory answered; every recording from v0.2.0 on has catalog prices.
    """
    return path.parent.name >= "v0.2.0"


def test_each_live_patch_has_histories_down_both_paths() -> None:
    """Which histories still need which branch: what keeps each patch live."""
    old_undo = OLDEST_RECORDING / REFUSED_UNDO
    new_undo = NEWEST_RECORDING / REFUSED_UNDO
    assert UNDO_ALL_BEFORE_PARKING_PATCH not in {m["id"] for m in patch_markers(old_undo)}
    assert UNDO_ALL_BEFORE_PARKING_PATCH in {m["id"] for m in patch_markers(new_undo)}

    recorded = [path for path in history_files() if path.parent.name.startswith("v")]
    unpriced = [path for path in recorded if not reservation_was_priced(path)]
    priced = [path for path in recorded if reservation_was_priced(path)]
    assert unpriced and priced, "catalog-prices needs histories from before and after it"
    # A priced reservation never reaches the guard, so no history has its marker.
    assert not any(
        m["id"] == CATALOG_PRICES_PATCH for path in recorded for m in patch_markers(path)
    )

    assert CANCEL_HOLDS_NEXT_STEP_PATCH not in {m["id"] for m in patch_markers(BEFORE_CANCEL_HOLDS)}
    new_branches = (WITH_CANCEL_HOLDS, CANCEL_REFUSED_AFTER_A_FAILURE, CANCEL_REFUSED_WHILE_PARKED)
    for new_branch in new_branches:
        assert {"id": CANCEL_HOLDS_NEXT_STEP_PATCH, "deprecated": False} in patch_markers(
            new_branch
        )
    # Asked only where a cancel is being checked: on no other path.
    assert sorted(
        history_id(path)
        for path in recorded
        if CANCEL_HOLDS_NEXT_STEP_PATCH in {m["id"] for m in patch_markers(path)}
    ) == sorted(map(history_id, new_branches))


def test_retired_patches_are_in_no_history_without_their_marker() -> None:
    """Retiring made their new paths unconditional: a history that took an old
    path (no marker where the patch was asked) would fail the gate, so none is left."""
    for path in history_files():
        markers = {m["id"] for m in patch_markers(path)}
        assert {LOCAL_FIRST_PATCH, LOCAL_COMMIT_PATCH} <= markers, history_id(path)


async def test_the_undo_all_change_without_its_patch_breaks_orders_from_before() -> None:
    with pytest.raises(NondeterminismError):
        await replayer(DeliberatelyUnpatchedOrderWorkflow).replay_workflow(
            load_history(OLDEST_RECORDING / REFUSED_UNDO)
        )


@pytest.mark.parametrize(
    ("path", "why"),
    [
        # The order from before shipped while its cancel was checked; the
        # unguarded change waits there and has no shipment to match.
        (BEFORE_CANCEL_HOLDS, "LocalActivity"),
        # The order from after recorded the marker: the `patched` call may
        # only go once the patch is deprecated (docs/changing-workflows.md).
        (WITH_CANCEL_HOLDS, CANCEL_HOLDS_NEXT_STEP_PATCH),
    ],
    ids=["before", "after"],
)
async def test_the_cancel_holds_change_without_its_patch_breaks_orders_of_both_builds(
    path: Path, why: str
) -> None:
    with pytest.raises(NondeterminismError, match=why):
        await replayer(DeliberatelyUnguardedCancelCheckOrderWorkflow).replay_workflow(
            load_history(path)
        )


async def test_each_half_of_the_cancel_holds_change_is_held_by_its_own_history() -> None:
    """The change has two `patched` calls: the next step waits for a cancel
    being checked, and a cancel whose check ends after a step failed is
    refused. The refused cancel's history recorded its marker in the cancel's
    handler, with no step waiting: only that call matches it."""
    history = load_history(CANCEL_REFUSED_AFTER_A_FAILURE)
    with pytest.raises(NondeterminismError, match=CANCEL_HOLDS_NEXT_STEP_PATCH):
        await replayer(DeliberatelyUnguardedCancelRefusalOrderWorkflow).replay_workflow(history)
    # The waiting half is never asked there: unguarded, it replays that
    # history, which so holds the refusal's guard alone.
    result = await replayer(DeliberatelyUnguardedCancelCheckOrderWorkflow).replay_workflow(history)
    assert result.replay_failure is None


async def test_a_refused_undo_counting_as_a_failure_is_held_by_its_history() -> None:
    """Whether a step failed decides whether the cancel's handler asks the
    patch, and so what a history recorded. The parked order's history asked it
    because its refused refund counted: a workflow that reads failures off the
    step states alone (the refund's step shows compensating) breaks it."""
    history = load_history(CANCEL_REFUSED_WHILE_PARKED)
    with pytest.raises(NondeterminismError, match=CANCEL_HOLDS_NEXT_STEP_PATCH):
        await replayer(DeliberatelyUncountedRefusedUndoOrderWorkflow).replay_workflow(history)


@pytest.mark.parametrize(
    "path",
    [
        OLDEST_RECORDING / REFUSED_UNDO,
        NEWEST_RECORDING / REFUSED_UNDO,
        BEFORE_CANCEL_HOLDS,
        WITH_CANCEL_HOLDS,
        CANCEL_REFUSED_AFTER_A_FAILURE,
        CANCEL_REFUSED_WHILE_PARKED,
    ],
    ids=history_id,
)
async def test_orders_from_before_and_after_the_change_replay(path: Path) -> None:
    result = await replayer().replay_workflow(load_history(path))

    assert result.replay_failure is None


def test_the_gate_holds_no_retired_recording() -> None:
    kept = sorted(path.name for path in HISTORIES_DIR.iterdir() if path.is_dir())
    assert OLDEST_RECORDING.name in kept and NEWEST_RECORDING.name in kept
    assert not {"v0.1.0-a70646f", "v0.1.0-failed-step", "v0.1.0-local-first"} & set(kept)


# --- a new order on a real dev server ---------------------------------------


stack = module_stack("patch")


async def place_declined_order(stack: Stack) -> str:
    response = await stack.api.post(
        "/orders",
        headers=as_customer(new_customer_id()),
        json=order_body(sku="sku_mug", payment_token="tok_chargeDeclined", country="DE"),
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
    client = stack.temporal  # the stack's codec: every payload is encrypted
    order_id = await place_declined_order(stack)
    handle = client.get_workflow_handle(order_id)
    await handle.result()

    history = await handle.fetch_history()
    markers = [
        payload
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
        for payload in event.marker_recorded_event_attributes.details["patch-data"].payloads
    ]
    assert client.data_converter.payload_codec is not None
    decoded = await client.data_converter.payload_codec.decode(markers)
    markers = [json.loads(payload.data) for payload in decoded]
    # The retired patches, recorded as deprecated: histories that do or do not
    # carry them replay alike, so their last lines can go in a later release.
    assert [(m["id"], m["deprecated"]) for m in markers] == [
        (LOCAL_FIRST_PATCH, True),
        (LOCAL_COMMIT_PATCH, True),
        (FAILED_STEP_PATCH, True),
    ]
    description = await handle.describe()
    assert description.typed_search_attributes.get(FAILED_STEP_KEY) == "charge_payment"
    query = (
        f'WorkflowId = "{order_id}" AND OrderStatus = "FAILED" AND {FAILED_STEP} = "charge_payment"'
    )
    assert await count_until(client, query, 1) == 1
