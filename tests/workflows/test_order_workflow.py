"""OrderWorkflow on the time-skipping server: what its failure points' table does not cover.

The failure points themselves (a refused or failing step, a cancel at each
point, a lost workflow task, a refused compensation and the operator's
decision) are the rows of test_failure_points.py. Here: cancels and operator
actions refused for the order's state, a cancel's check holding the commit
back, and the prices the order is charged at.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError

from contracts.orders import (
    CANCEL_UPDATE,
    RESOLVE_COMPENSATION_UPDATE,
    RETRY_COMPENSATION_UPDATE,
    CancelAccepted,
    CancelOrder,
    OperatorAction,
    OrderStatus,
    PlaceOrder,
    PricedLine,
    StepState,
)
from tests.workflows.conftest import SagaHarness, sample_order
from tests.workflows.support import CATALOG_TOTAL, activity_summaries, send_cancel, status_upserts
from workflows.search_attributes import ORDER_STATUS_KEY, ORDER_TOTAL_CENTS_KEY

# --- what the order's state refuses, and when a cancel is decided ---------------------


@dataclass
class CheckHeld:
    """An order whose customer cancelled while `step` was in flight, the step
    since landed (as `landed`), and the cancel's check of inventory still held."""

    handle: WorkflowHandle[Any, Any]
    cancel: asyncio.Task[CancelAccepted]
    lookup: asyncio.Event


async def cancel_checked_while(
    saga: SagaHarness, step: str, *, landed: str = "completed", order: PlaceOrder | None = None
) -> CheckHeld:
    lookup = saga.fakes.hold_calls("find_committed_reservation")
    gate = saga.fakes.hold_calls(step)
    handle = await saga.start(order or sample_order())
    await saga.wait_entered(step)
    cancel = send_cancel(handle)
    await saga.wait_entered("find_committed_reservation")
    gate.set()
    await saga.wait_for_status_of_step(handle, step, landed)
    return CheckHeld(handle, cancel, lookup)


async def test_no_step_starts_while_a_customer_cancel_is_being_checked(
    saga: SagaHarness,
) -> None:
    """A cancel that arrived while the charge was in flight is decided before
    the order ships: otherwise it ships, and then cancels the shipment."""
    # The charge lands while the cancel's check is held: the next step waits.
    held = await cancel_checked_while(saga, "charge_payment")
    await asyncio.sleep(0.3)
    assert "create_shipment" not in saga.fakes.names_called()
    held.lookup.set()
    accepted = await held.cancel
    result = await held.handle.result()

    assert accepted.status is OrderStatus.COMPENSATING
    assert result.status is OrderStatus.CANCELLED
    assert "create_shipment" not in saga.fakes.names_called()
    assert "commit_reservation" not in saga.fakes.names_called()
    # The step it never saw is looked up by order too (workflows/lost_task.py),
    # and there is nothing to cancel: no shipment was ever asked for.
    assert saga.fakes.compensations_run() == [
        "cancel_shipment",
        "refund_payment",
        "release_inventory",
    ]


async def test_the_commit_waits_while_a_customer_cancel_is_being_checked(
    saga: SagaHarness,
) -> None:
    # The shipment lands while the cancel's check is held: the next step would
    # be the commit.
    held = await cancel_checked_while(saga, "create_shipment")
    await asyncio.sleep(0.2)
    held.lookup.set()
    accepted = await held.cancel
    result = await held.handle.result()

    # Inventory had no commit, so the cancel was accepted; the order must not
    # have committed meanwhile, or the customer would have been told a lie.
    assert accepted.status is OrderStatus.COMPENSATING
    assert result.status is OrderStatus.CANCELLED
    assert "commit_reservation" not in saga.fakes.names_called()
    assert saga.fakes.compensations_run() == [
        "cancel_shipment",
        "refund_payment",
        "release_inventory",
    ]


async def test_a_second_cancel_while_the_first_is_checked_gets_the_same_answer(
    saga: SagaHarness,
) -> None:
    """The shipment lands while the first cancel is being checked. A second
    cancel then must not be refused as too late for an order that ends
    CANCELLED: both are decided by the same check."""
    held = await cancel_checked_while(saga, "create_shipment")

    second = send_cancel(held.handle)
    await asyncio.sleep(0.2)
    held.lookup.set()
    answers = [await held.cancel, await second]
    result = await held.handle.result()

    assert [answer.status for answer in answers] == [OrderStatus.COMPENSATING] * 2
    assert result.status is OrderStatus.CANCELLED


async def test_a_cancel_checked_while_a_step_is_refused_is_too_late(saga: SagaHarness) -> None:
    """The order fails while the cancel is being checked: it is undone as
    FAILED, so the cancel is refused rather than accepted for an order that
    will not end CANCELLED (and that would publish COMPENSATING last)."""
    order = sample_order()
    saga.fakes.refuse("charge_payment", order.order_id, "PAYMENT_DECLINED")
    held = await cancel_checked_while(saga, "charge_payment", landed="failed", order=order)
    held.lookup.set()
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await held.cancel
    result = await held.handle.result()

    assert "too late to cancel" in str(refused.value.cause)
    assert result.status is OrderStatus.FAILED
    assert result.failure_reason is not None and "charge_payment" in result.failure_reason
    assert saga.fakes.compensations_run() == ["release_inventory"]
    final_status = (await held.handle.describe()).typed_search_attributes.get(ORDER_STATUS_KEY)
    assert final_status == "FAILED"


async def test_a_cancel_checked_while_an_undo_is_refused_is_too_late(saga: SagaHarness) -> None:
    """Cancelled through Temporal while a customer's cancel is still checked,
    the order is undone and parks on a refused refund. The customer's cancel
    is then too late, as after any failure: accepted, it would publish
    COMPENSATING over NEEDS_ATTENTION. The refund's step shows compensating
    (the card was charged), yet counts as a failure here."""
    order = sample_order()
    saga.fakes.refuse("refund_payment", order.order_id, "REFUND_REFUSED")
    held = await cancel_checked_while(saga, "charge_payment", order=order)
    # The cancellation's own check of inventory goes through; the customer's stays held.
    saga.fakes.stop_holding("find_committed_reservation")
    await held.handle.cancel()
    await saga.wait_for_status(held.handle, OrderStatus.NEEDS_ATTENTION)
    held.lookup.set()
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await held.cancel

    assert "too late to cancel" in str(refused.value.cause)
    view = await saga.view(held.handle)
    assert view.status is OrderStatus.NEEDS_ATTENTION
    charge = next(step for step in view.steps if step.name == "charge_payment")
    assert charge.state is StepState.COMPENSATING
    assert charge.error is not None and "REFUND_REFUSED" in charge.error
    listed = (await held.handle.describe()).typed_search_attributes.get(ORDER_STATUS_KEY)
    assert listed == OrderStatus.NEEDS_ATTENTION.value


async def test_cancel_of_a_finished_order_is_rejected(saga: SagaHarness) -> None:
    handle = await saga.start(sample_order())
    await handle.result()

    # A closed workflow takes no updates: the server itself refuses the call.
    with pytest.raises(RPCError):
        await handle.execute_update(CANCEL_UPDATE, CancelOrder(), result_type=CancelAccepted)


async def test_operator_actions_are_rejected_unless_the_order_needs_attention(
    saga: SagaHarness,
) -> None:
    gate = saga.fakes.hold_calls("reserve_inventory")
    handle = await saga.start(sample_order())
    await saga.wait_entered("reserve_inventory")

    for update in (RETRY_COMPENSATION_UPDATE, RESOLVE_COMPENSATION_UPDATE):
        with pytest.raises(WorkflowUpdateFailedError) as rejected:
            await handle.execute_update(update, OperatorAction())
        assert "not waiting for an operator" in str(rejected.value.cause)
    gate.set()
    assert (await handle.result()).status is OrderStatus.COMPLETED


# --- the server sets the price ---------------------------------------------------


@pytest.mark.parametrize(
    ("catalog_changes", "expected_total", "charged"),
    [
        pytest.param({}, None, CATALOG_TOTAL, id="no-expectation"),
        pytest.param({}, CATALOG_TOTAL, CATALOG_TOTAL, id="expected-the-catalog-total"),
        pytest.param({"sku_mug": 1500}, None, 2 * 1500 + 999, id="price-rose-before-reserving"),
        pytest.param({"sku_poster": 1}, None, 2 * 1250 + 1, id="price-fell-before-reserving"),
    ],
)
async def test_the_charge_is_exactly_the_reserved_total(
    saga: SagaHarness, catalog_changes: dict[str, int], expected_total: int | None, charged: int
) -> None:
    saga.fakes.catalog_prices.update(catalog_changes)
    handle = await saga.start(sample_order(expected_total_cents=expected_total))

    result = await handle.result()

    assert result.status is OrderStatus.COMPLETED
    (reserve,) = saga.fakes.inputs_of("reserve_inventory")
    assert (reserve.currency, reserve.expected_total_cents) == ("EUR", expected_total)
    (charge,) = saga.fakes.inputs_of("charge_payment")
    assert (charge.amount_cents, charge.currency) == (charged, "EUR")
    view = await saga.view(handle)
    assert view.total_cents == charged
    prices = saga.fakes.catalog_prices
    assert view.priced_lines == [
        PricedLine("sku_mug", 2, prices["sku_mug"]),
        PricedLine("sku_poster", 1, prices["sku_poster"]),
    ]
    assert view.failure_code is None


async def test_nothing_is_priced_before_the_reservation(saga: SagaHarness) -> None:
    gate = saga.fakes.hold_calls("reserve_inventory")
    handle = await saga.start(sample_order())
    await saga.wait_entered("reserve_inventory")

    view = await saga.view(handle)
    gate.set()
    await handle.result()

    assert (view.total_cents, view.priced_lines) == (None, [])


async def test_the_reserved_total_rides_the_status_upsert_of_a_healthy_order(
    saga: SagaHarness,
) -> None:
    saga.fakes.catalog_prices["sku_mug"] = 1300
    handle = await saga.start(sample_order())
    await handle.result()

    description = await handle.describe()
    assert description.typed_search_attributes.get(ORDER_TOTAL_CENTS_KEY) == 2 * 1300 + 999
    # No upsert of its own: the order's one status upsert carries it.
    assert await status_upserts(handle) == ["COMPLETED"]


async def test_an_order_waiting_on_its_charge_is_listed_with_the_reserved_total(
    saga: SagaHarness,
) -> None:
    saga.fakes.catalog_prices["sku_poster"] = 1000
    gate = saga.fakes.hold_calls("charge_payment")
    handle = await saga.start(sample_order())
    await saga.wait_entered("charge_payment")

    described = await handle.describe()
    gate.set()
    await handle.result()

    assert described.typed_search_attributes.get(ORDER_TOTAL_CENTS_KEY) == 2 * 1250 + 1000
    assert await status_upserts(handle) == ["CHARGING", "COMPLETED"]
    assert await activity_summaries(handle) == ["charge 35.00 EUR"]
