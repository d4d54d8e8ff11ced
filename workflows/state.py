"""What an order shows of itself: status, steps, failure, prices, operators' decisions.

The status query returns it (view), the Web UI lists and filters it (publish:
search attributes), and every step the saga waits for is one log line and one
metric observation (step_finished). Nothing here decides the saga's path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts import errors
    from contracts.activities import StepOutcome
    from contracts.orders import (
        OperatorRecord,
        OrderResult,
        OrderStatus,
        OrderView,
        PlaceOrder,
        PricedLine,
        StepName,
        StepView,
        format_money,
    )
    from workflows.metrics import SagaMetrics, StepOutcomeLabel, seconds_between
    from workflows.operators import operator_remark
    from workflows.runner import as_activity_error
    from workflows.search_attributes import (
        CUSTOMER_ID_KEY,
        FAILED_STEP_KEY,
        ORDER_STATUS_KEY,
        ORDER_TOTAL_CENTS_KEY,
    )
    from workflows.steps import RESERVE

# Retired through the lifecycle in docs/changing-workflows.md: every order
# records the FailedStep search attribute; orders from before it no longer run.
FAILED_STEP_PATCH = "failed-step-search-attribute"
# Live: an order reserved before inventory priced reservations replays its
# charge as recorded; a new order whose reservation comes back unpriced is not
# charged. The gate holds histories down both paths (tests/replay).
CATALOG_PRICES_PATCH = "catalog-prices"


class OrderState:
    def __init__(self, order: PlaceOrder) -> None:
        self.order: PlaceOrder = order
        self.status: OrderStatus = OrderStatus.RECEIVED
        self.steps = {step: StepView(name=step.value) for step in StepName}
        self.failure_reason: str | None = None
        self.failure_code: str | None = None
        # Fixed by the reservation: what is charged, listed and shown.
        self.priced_lines: list[PricedLine] = []
        self.total_cents: int | None = None
        self.currency: str = order.currency
        self.operator_actions: list[OperatorRecord] = []
        self.created_at = workflow.now().isoformat()
        self.updated_at = self.created_at
        self.metrics = SagaMetrics.for_current_workflow()
        # Search attributes are upserted once per workflow task that changed
        # them (publish), not at every change within one task.
        self._status_unpublished = True
        self._customer_published = False
        self._total_unpublished = False

    # --- the status ------------------------------------------------------------

    def set_status(self, status: OrderStatus) -> None:
        self.touch()
        if status is self.status:
            return  # an upsert is a command in the history: only on a change
        self.status = status
        self._status_unpublished = True
        workflow.set_current_details(f"**{status.value}**")

    def publish(self) -> None:
        """Upsert the OrderStatus search attribute, if it changed since the last upsert.

        An upsert is a command, one history event and a visibility write each.
        The workflow calls this only where its task can end (before waiting on
        a queue or an operator, on a cancel, at the end): statuses it passes
        through within one task were never observable. The first upsert also
        sets the order's customer, so an order started by any client (not only
        the API, which sets it at start) is listed and filterable. The total is
        known only once reserved: the first upsert after the reservation
        carries it, so it costs no command of its own.
        """
        if not self._status_unpublished:
            return
        self._status_unpublished = False
        attributes: list[SearchAttributeUpdate[Any]] = [
            ORDER_STATUS_KEY.value_set(self.status.value)
        ]
        if not self._customer_published:
            self._customer_published = True
            attributes.append(CUSTOMER_ID_KEY.value_set(self.order.customer_id))
        if self._total_unpublished and self.total_cents is not None:
            self._total_unpublished = False
            attributes.append(ORDER_TOTAL_CENTS_KEY.value_set(self.total_cents))
        workflow.upsert_search_attributes(attributes)

    def touch(self) -> None:
        self.updated_at = workflow.now().isoformat()

    def fail(self, reason: str | None, code: str | None) -> None:
        self.failure_reason = reason
        self.failure_code = code

    def mark_failed_step(self, step: StepName) -> None:
        """Let operators filter `OrderStatus = "FAILED" AND FailedStep = "charge_payment"`."""
        workflow.deprecate_patch(FAILED_STEP_PATCH)
        workflow.upsert_search_attributes([FAILED_STEP_KEY.value_set(step.value)])

    # --- prices ------------------------------------------------------------------

    def hold_prices(self, reservation: StepOutcome) -> None:
        """Keep the prices the reservation fixed: they are what is charged."""
        if reservation.total_cents is None or reservation.currency is None:
            if workflow.patched(CATALOG_PRICES_PATCH):
                # An inventory build older than catalog prices answered. Charging
                # is impossible without a price; the reservation is undone
                # (looked up by order) and the order fails.
                raise as_activity_error(
                    ApplicationError(
                        "the reservation came back without catalog prices",
                        type=errors.SERVICE_UNAVAILABLE,
                    ),
                    RESERVE.do,
                )
            return  # an order from before catalog prices, replaying (steps.CHARGE)
        self.priced_lines = reservation.priced_lines
        self.total_cents = reservation.total_cents
        self.currency = reservation.currency
        self._total_unpublished = True

    def reserved_total_text(self) -> str:
        if self.total_cents is None:
            return "the reserved total"
        return format_money(self.total_cents, self.currency)

    # --- what is shown and logged ------------------------------------------------

    def view(self) -> OrderView:
        order = self.order
        return OrderView(
            order_id=order.order_id,
            status=self.status,
            customer_id=order.customer_id,
            items=order.items,
            total_cents=self.total_cents,
            currency=self.currency,
            steps=list(self.steps.values()),
            failure_reason=self.failure_reason,
            created_at=self.created_at,
            updated_at=self.updated_at,
            priced_lines=self.priced_lines,
            failure_code=self.failure_code,
            operator_actions=self.operator_actions,
        )

    def finish(self, status: OrderStatus) -> OrderResult:
        self.set_status(status)
        self.publish()
        seconds = seconds_between(workflow.info().start_time, workflow.now())
        self.metrics.order_finished(status.value, seconds)
        workflow.logger.info(
            "order %s%s",
            status.value,
            f": {self.failure_reason}" if self.failure_reason else "",
            extra={
                "order_id": self.order.order_id,
                "status": status.value,
                "duration_ms": round(seconds * 1000),
            },
        )
        # The final view goes into the result: a closed order is then read from
        # what Temporal keeps, with no worker needed (api/temporal_orders.py).
        return OrderResult(self.order.order_id, status, self.failure_reason, view=self.view())

    def step_finished(
        self,
        step: str,
        outcome: StepOutcomeLabel,
        started: datetime,
        *,
        error: str | None = None,
    ) -> None:
        """One line and one observation per activity the saga waited for."""
        seconds = seconds_between(started, workflow.now())
        self.metrics.step_finished(step, outcome, seconds)
        fields = {
            "order_id": self.order.order_id,
            "step": step,
            "outcome": outcome,
            "duration_ms": round(seconds * 1000),
        }
        if error is None:
            workflow.logger.info("step %s %s", step, outcome, extra=fields)
        else:
            # Logged here, where the saga handles it, and nowhere else.
            workflow.logger.warning(
                "step %s %s: %s", step, outcome, error, extra={**fields, "error": error}
            )

    def record_operator_decision(self, entry: OperatorRecord, record: StepView) -> None:
        """Who decided what, when and why: in the view, on the step, and in the log."""
        self.operator_actions.append(entry)
        record.error = (record.error or "") + operator_remark(entry)
        self.touch()
        # The operator's id only: the note is free text and may hold anything.
        workflow.logger.info(
            "operator %s chose to %s %s",
            entry.operator or "(unnamed)",
            entry.decision,
            entry.step,
            extra={
                "order_id": self.order.order_id,
                "step": entry.step,
                "operator": entry.operator,
                "decision": entry.decision,
            },
        )
