"""`baseline-same-work`: the saga's four service calls and nothing else.

A bare workflow whose steps are local first attempts of the saga's own
activity methods (`activities/`), so they make the same HTTP calls to the
same services with the same client and the workers' credential
(`ordersaga.bench.baseline_worker --same-work`). No status, steps, search
attributes, summaries, metrics or compensation: what the saga costs beyond
this is its own bookkeeping. A call slower than the saga's local budget,
which the saga would hand to its domain's queue, runs on here (and a failed
one is retried here), so a loaded machine does not fail the baseline's
orders; a step that still fails fails the workflow, which the bench counts
as lost.

Imported inside the workflow sandbox: what it needs beyond stdlib and
temporalio is passed through, as in `workflows/order.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.inventory import InventoryActivities
    from activities.payments import PaymentActivities
    from activities.shipping import ShippingActivities
    from contracts.activities import (
        ChargePaymentInput,
        CommitReservationInput,
        CreateShipmentInput,
        ReserveInventoryInput,
        StepOutcome,
        idempotency_key,
    )
    from contracts.orders import PlaceOrder, StepName
    from ordersaga.bench.baseline import BaselineResult
    from workflows.runner import ACTIVITY_START_TO_CLOSE

WORKFLOW_TYPE = "BenchSameWorkWorkflow"
STEPS = 4


async def _in_the_worker(
    method: Callable[[Any, Any], Awaitable[StepOutcome]], request: Any
) -> StepOutcome:
    """The call in the worker, until it succeeds."""
    return await workflow.execute_local_activity_method(
        method, request, start_to_close_timeout=ACTIVITY_START_TO_CLOSE
    )


@workflow.defn(name=WORKFLOW_TYPE)
class SameWorkWorkflow:
    @workflow.run
    async def run(self, order: PlaceOrder) -> BaselineResult:
        order_id = order.order_id
        reserved = await _in_the_worker(
            InventoryActivities.reserve_inventory,
            ReserveInventoryInput(
                order_id,
                order.items,
                idempotency_key(order_id, StepName.RESERVE_INVENTORY.value),
                currency=order.currency,
            ),
        )
        # Inventory always answers a reservation with its id and priced total.
        assert reserved.resource_id is not None and reserved.total_cents is not None
        await _in_the_worker(
            PaymentActivities.charge_payment,
            ChargePaymentInput(
                order_id,
                order.customer_id,
                reserved.total_cents,
                reserved.currency or order.currency,
                order.payment.token,
                idempotency_key(order_id, StepName.CHARGE_PAYMENT.value),
            ),
        )
        await _in_the_worker(
            ShippingActivities.create_shipment,
            CreateShipmentInput(
                order_id,
                order.items,
                order.shipping_address,
                idempotency_key(order_id, StepName.CREATE_SHIPMENT.value),
            ),
        )
        await _in_the_worker(
            InventoryActivities.commit_reservation,
            CommitReservationInput(
                order_id,
                reserved.resource_id,
                idempotency_key(order_id, StepName.COMMIT_RESERVATION.value),
            ),
        )
        return BaselineResult(steps_done=STEPS)
