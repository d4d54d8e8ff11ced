"""`baseline-same-work`: the saga's four service calls and nothing else.

A bare workflow whose steps are local first attempts of the saga's own
activity methods (`activities/`), with the saga's local-attempt options, so
they make the same HTTP calls to the same services with the same client and
the workers' credential (`ordersaga.bench.baseline_worker --same-work`). No
status, steps, search attributes, summaries, metrics or compensation: what
the saga costs beyond this is its own bookkeeping. A failed step fails the
workflow, which the bench counts as lost.

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
    from workflows.runner import LOCAL_ATTEMPT_TIMEOUT, ONE_LOCAL_ATTEMPT

WORKFLOW_TYPE = "BenchSameWorkWorkflow"
STEPS = 4


async def _local_attempt(
    method: Callable[[Any, Any], Awaitable[StepOutcome]], request: Any
) -> StepOutcome:
    """One attempt in the worker, with the options of the saga's local attempts."""
    return await workflow.execute_local_activity_method(
        method,
        request,
        start_to_close_timeout=LOCAL_ATTEMPT_TIMEOUT,
        retry_policy=ONE_LOCAL_ATTEMPT,
    )


@workflow.defn(name=WORKFLOW_TYPE)
class SameWorkWorkflow:
    @workflow.run
    async def run(self, order: PlaceOrder) -> BaselineResult:
        order_id = order.order_id
        reserved = await _local_attempt(
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
        await _local_attempt(
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
        await _local_attempt(
            ShippingActivities.create_shipment,
            CreateShipmentInput(
                order_id,
                order.items,
                order.shipping_address,
                idempotency_key(order_id, StepName.CREATE_SHIPMENT.value),
            ),
        )
        await _local_attempt(
            InventoryActivities.commit_reservation,
            CommitReservationInput(
                order_id,
                reserved.resource_id,
                idempotency_key(order_id, StepName.COMMIT_RESERVATION.value),
            ),
        )
        return BaselineResult(steps_done=STEPS)
