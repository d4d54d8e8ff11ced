"""The saga as a table: each forward step, what it calls, and what undoes it.

OrderWorkflow runs STEPS in order, then COMMIT; when it gives up it undoes, in
reverse, every step that may have taken effect, with that step's `undo`. The
workers register what the table names on the queues it names, and the
workflow tests' fakes stand in for the same names (tests/fakes.py).

A request is built from the order's state when the call is made: the charge
needs the total the reservation fixed, an undo the id of what it undoes (None:
look it up by order, for a step that may have taken effect unseen).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.inventory import InventoryActivities
    from activities.payments import PaymentActivities
    from activities.shipping import ShippingActivities
    from contracts import errors, task_queues
    from contracts.activities import (
        CancelShipmentInput,
        ChargePaymentInput,
        CommitReservationInput,
        CreateShipmentInput,
        RefundPaymentInput,
        ReleaseInventoryInput,
        ReserveInventoryInput,
        StepOutcome,
    )
    from contracts.orders import OrderStatus, StepName

if TYPE_CHECKING:
    from workflows.state import OrderState

FORWARD_STEP_MAX_ATTEMPTS = 5
# The local attempt and 4 queued ones, 1, 2 and 4 s apart (runner.py): an
# outage of a few seconds is ridden out, a longer one fails the order instead
# of holding the customer's stock and money indefinitely.
FORWARD_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=FORWARD_STEP_MAX_ATTEMPTS,
    non_retryable_error_types=sorted(errors.NON_RETRYABLE),
)
# Undoing (and the final commit) must happen eventually; only an outright
# refusal stops the retries, and that goes to an operator.
UNTIL_DONE_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=0,
    non_retryable_error_types=sorted(errors.NON_RETRYABLE | {errors.NOT_FOUND}),
)

ActivityMethod = Callable[[Any, Any], Awaitable[StepOutcome]]
# (the order's state, the call's idempotency key, the id of what an undo undoes)
RequestBuilder = Callable[["OrderState", str, "str | None"], Any]


@dataclass(frozen=True)
class Call:
    """One activity call of the saga: which activity, on which queue, how retried."""

    activity: ActivityMethod
    task_queue: str
    retry_policy: RetryPolicy
    request: RequestBuilder
    summary: Callable[[OrderState], str]

    @property
    def name(self) -> str:
        return self.activity.__name__


@dataclass(frozen=True)
class SagaStep:
    name: StepName
    status: OrderStatus  # the order's status while the step runs
    do: Call
    undo: Call
    fixes_prices: bool = False  # its outcome holds the prices that are charged


def _charged_amount(state: OrderState) -> int:
    if state.total_cents is None:
        # Only an order reserved before catalog prices gets here, replaying a
        # charge its history already holds (OrderState.hold_prices): the amount
        # is never sent. Anywhere else this is a bug, and the task must fail.
        assert workflow.unsafe.is_replaying(), "no reserved total to charge"
        return 0
    return state.total_cents


RESERVE = SagaStep(
    name=StepName.RESERVE_INVENTORY,
    status=OrderStatus.RESERVING,
    do=Call(
        InventoryActivities.reserve_inventory,
        task_queues.INVENTORY,
        FORWARD_RETRY_POLICY,
        request=lambda state, key, _: ReserveInventoryInput(
            state.order.order_id,
            state.order.items,
            key,
            currency=state.order.currency,
            expected_total_cents=state.order.expected_total_cents,
        ),
        summary=lambda state: (
            f"reserve {state.order.unit_count} units of {len(state.order.items)} SKU(s)"
        ),
    ),
    undo=Call(
        InventoryActivities.release_inventory,
        task_queues.INVENTORY,
        UNTIL_DONE_RETRY_POLICY,
        request=lambda state, key, reservation_id: ReleaseInventoryInput(
            state.order.order_id, reservation_id, key
        ),
        summary=lambda state: f"undo: release {state.order.unit_count} reserved units",
    ),
    fixes_prices=True,
)

CHARGE = SagaStep(
    name=StepName.CHARGE_PAYMENT,
    status=OrderStatus.CHARGING,
    do=Call(
        PaymentActivities.charge_payment,
        task_queues.PAYMENTS,
        FORWARD_RETRY_POLICY,
        request=lambda state, key, _: ChargePaymentInput(
            state.order.order_id,
            state.order.customer_id,
            _charged_amount(state),
            state.currency,
            state.order.payment.token,
            key,
        ),
        summary=lambda state: f"charge {state.reserved_total_text()}",
    ),
    undo=Call(
        PaymentActivities.refund_payment,
        task_queues.PAYMENTS,
        UNTIL_DONE_RETRY_POLICY,
        request=lambda state, key, charge_id: RefundPaymentInput(
            state.order.order_id, charge_id, key
        ),
        summary=lambda state: f"undo: refund {state.reserved_total_text()}",
    ),
)

SHIP = SagaStep(
    name=StepName.CREATE_SHIPMENT,
    status=OrderStatus.SHIPPING,
    do=Call(
        ShippingActivities.create_shipment,
        task_queues.SHIPPING,
        FORWARD_RETRY_POLICY,
        request=lambda state, key, _: CreateShipmentInput(
            state.order.order_id, state.order.items, state.order.shipping_address, key
        ),
        summary=lambda state: f"ship {state.order.unit_count} units",
    ),
    undo=Call(
        ShippingActivities.cancel_shipment,
        task_queues.SHIPPING,
        UNTIL_DONE_RETRY_POLICY,
        request=lambda state, key, shipment_id: CancelShipmentInput(
            state.order.order_id, shipment_id, key
        ),
        summary=lambda state: "undo: cancel the shipment",
    ),
)

STEPS = (RESERVE, CHARGE, SHIP)


def _reserved(reservation_id: str | None) -> str:
    assert reservation_id is not None, "the commit needs the reservation it commits"
    return reservation_id


STEP_BY_NAME = {step.name: step for step in STEPS}

# The point of no return, once every step is done: the stock leaves the
# warehouse. It must happen, so it is retried until done like an undo.
COMMIT = Call(
    InventoryActivities.commit_reservation,
    task_queues.INVENTORY,
    UNTIL_DONE_RETRY_POLICY,
    request=lambda state, key, reservation_id: CommitReservationInput(
        state.order.order_id, _reserved(reservation_id), key
    ),
    summary=lambda state: (
        f"commit {state.order.unit_count} reserved units: stock leaves the warehouse"
    ),
)

# Asked only by the lost-task guard (workflows/lost_task.py), always on the queue.
FIND_COMMITTED_RESERVATION = InventoryActivities.find_committed_reservation


def calls_by_queue() -> dict[str, set[str]]:
    """The activity names the saga calls, per task queue: what workers must run."""
    calls = [call for step in STEPS for call in (step.do, step.undo)] + [COMMIT]
    by_queue: dict[str, set[str]] = {}
    for call in calls:
        by_queue.setdefault(call.task_queue, set()).add(call.name)
    by_queue[task_queues.INVENTORY].add(FIND_COMMITTED_RESERVATION.__name__)
    return by_queue
