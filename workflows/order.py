"""OrderWorkflow: reserve -> charge -> ship -> commit, and every step that took
effect undone in reverse when a later one fails or the customer cancels.

Rules this file keeps:
- A forward step in flight is never abandoned. A cancel (the `cancel` update, or
  a cancellation through Temporal itself) takes effect when the step lands, so
  the workflow always knows exactly what to undo and never races the service.
- A forward step has a bounded retry budget. A refusal by the domain means it
  did nothing; a step that ran out of retries or timed out may have taken
  effect, so it is compensated too (the compensation looks it up by order).
- The charge is the reservation's total, at the catalog's prices inventory
  fixed when it reserved; nothing the client sent sets the amount.
- Compensations run in reverse, shielded from cancellation, retried until they
  succeed. One refused outright does not hold up the others: once every undo
  has run, the order parks in NEEDS_ATTENTION with only the refused ones
  outstanding, until an operator retries or resolves each.
- Every call's first attempt runs in this workflow's own worker as a local
  activity; one that fails without a refusal is handed to its domain's task
  queue, where Temporal retries it and the Web UI shows it pending. A healthy
  order is then one workflow task and no activity task instead of five and
  four.
  What local attempts did is recorded only when their workflow task completes.
  A task can be lost after its steps took effect: its worker dies, or the
  server rejects it because it would close the order while a cancel waits.
  The next run replays without those steps and may see the cancel first. So a
  cancel seen before the commit first asks inventory whether the order is
  committed (its stock gone, the point of no return): if it is, a customer's
  cancel is refused as too late and a cancellation through Temporal is
  ignored, and the order completes, its steps run again under the same
  idempotency keys; if not, the cancel undoes every step it did not see done
  or refused. docs/performance.md measures this and explains the trade-off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, RetryState, TimeoutError

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
        FindCommittedReservationInput,
        RefundPaymentInput,
        ReleaseInventoryInput,
        ReserveInventoryInput,
        StepOutcome,
        idempotency_key,
    )
    from contracts.orders import (
        CANCEL_UPDATE,
        COMPENSATION_FOR,
        RESOLVE_COMPENSATION_UPDATE,
        RETRY_COMPENSATION_UPDATE,
        STATUS_QUERY,
        WORKFLOW_TYPE,
        CancelAccepted,
        CancelOrder,
        OperatorAction,
        OperatorActionAccepted,
        OperatorRecord,
        OrderResult,
        OrderStatus,
        OrderView,
        PlaceOrder,
        PricedLine,
        StepName,
        StepState,
        StepView,
        format_money,
    )
    from workflows.metrics import SagaMetrics, StepOutcomeLabel, seconds_between
    from workflows.operators import OperatorDecision, operator_record, operator_remark
    from workflows.saga import CompensationStack, PendingCompensation
    from workflows.search_attributes import (
        CUSTOMER_ID_KEY,
        FAILED_STEP_KEY,
        ORDER_STATUS_KEY,
        ORDER_TOTAL_CENTS_KEY,
    )

FORWARD_STEP_MAX_ATTEMPTS = 5
# Roughly 1+2+4+8 s of backoff: a short outage is ridden out, a long one fails
# the order instead of holding the customer's stock and money indefinitely.
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
# One HTTP call bounded by the client's own connect/read timeouts, plus slack.
ACTIVITY_START_TO_CLOSE = timedelta(seconds=30)
# A local attempt holds the workflow task: queries and updates wait for it. A
# healthy call takes milliseconds; one slower than this goes to the domain's
# queue, where it is visible and retried with backoff.
LOCAL_ATTEMPT_TIMEOUT = timedelta(seconds=3)
ONE_LOCAL_ATTEMPT = RetryPolicy(maximum_attempts=1)

StepCall = Callable[[str], Awaitable[StepOutcome]]
T = TypeVar("T")

# Orders started before the FailedStep search attribute existed must replay
# without its upsert (docs/changing-workflows.md explains the lifecycle).
FAILED_STEP_PATCH = "failed-step-search-attribute"
# Orders started before local-first attempts replay with ordinary activities.
LOCAL_FIRST_PATCH = "local-first-attempt"
# Local-first orders started before the commit ran locally too replay with the
# commit on the inventory queue.
LOCAL_COMMIT_PATCH = "local-commit"
# A refused undo used to park the order before the undos after it ran; since
# this patch every undo runs first. Orders from before replay the old order.
UNDO_ALL_BEFORE_PARKING_PATCH = "undo-all-before-parking"
# Orders reserved before inventory priced reservations replay their charge as
# recorded; a new order whose reservation comes back unpriced is not charged.
CATALOG_PRICES_PATCH = "catalog-prices"


class _CancelAccepted(Exception):
    """Raised between steps once the customer's cancel has been accepted."""


# PINNED: an order runs start to end on the build that started it, so its
# compensations never change mid-order (docs/deploying-workers.md).
@workflow.defn(name=WORKFLOW_TYPE, versioning_behavior=VersioningBehavior.PINNED)
class OrderWorkflow:
    @workflow.init
    def __init__(self, order: PlaceOrder) -> None:
        self._order = order
        self._status = OrderStatus.RECEIVED
        self._steps = {step: StepView(name=step.value) for step in StepName}
        self._failure_reason: str | None = None
        self._failure_code: str | None = None
        # Fixed by the reservation: what is charged, listed and shown.
        self._priced_lines: list[PricedLine] = []
        self._total_cents: int | None = None
        self._currency = order.currency
        self._total_unpublished = False
        self._operator_actions: list[OperatorRecord] = []
        self._cancel_request: CancelOrder | None = None
        self._operator_decision: tuple[OperatorDecision, OperatorAction] | None = None
        self._compensations = CompensationStack()
        self._cancelled_through_temporal = False
        self._refused: set[StepName] = set()
        # Idempotency keys of calls whose local attempt failed and that went on
        # on their domain's queue, where attempts count from 1 again.
        self._handed_over: set[str] = set()
        # Decided here, not in run(): a cancel can reach its handler before
        # run() starts (the first task of a run replaying after a lost one).
        self._local_first = workflow.patched(LOCAL_FIRST_PATCH)
        self._local_commit = self._local_first and workflow.patched(LOCAL_COMMIT_PATCH)
        # Customer cancels waiting to learn whether the order is already
        # committed (cancel()); the commit waits for them.
        self._cancels_being_checked = 0
        # Local-first orders upsert their status once per workflow task that
        # changed it (_publish_status), not at every change within one task.
        self._status_unpublished = True
        self._listed = False
        self._created_at = workflow.now().isoformat()
        self._updated_at = self._created_at
        self._metrics = SagaMetrics.for_current_workflow()

    @workflow.run
    async def run(self, order: PlaceOrder) -> OrderResult:
        if not self._local_first:
            self._publish_status()
        workflow.set_current_details(f"**{self._status.value}**")
        self._metrics.order_started()
        workflow.logger.info(
            "order received: %d units of %d SKU(s)",
            order.unit_count,
            len(order.items),
            extra={"order_id": order.order_id, "status": self._status.value},
        )
        try:
            result = await self._fulfil()
        except asyncio.CancelledError:
            reservation_id = await self._committed_unseen()
            if reservation_id is None:
                # Cancelled through Temporal itself (Web UI, CLI): the same unwinding
                # as a customer cancel, then end the execution as cancelled.
                self._failure_reason = "cancelled through Temporal"
                self._failure_code = None
                await self._unwind_shielded(cancelled=True)
                self._finish(OrderStatus.CANCELLED)
                raise
            # Too late: a task this run never saw committed the order.
            result = await self._complete_after_unseen_commit(reservation_id)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _fulfil(self) -> OrderResult:
        try:
            self._stop_if_cancel_accepted()
            reservation_id = await self._forward(
                StepName.RESERVE_INVENTORY, OrderStatus.RESERVING, self._reserve
            )
            self._stop_if_cancel_accepted()
            await self._forward(StepName.CHARGE_PAYMENT, OrderStatus.CHARGING, self._charge)
            self._stop_if_cancel_accepted()
            await self._forward(StepName.CREATE_SHIPMENT, OrderStatus.SHIPPING, self._ship)
            # A customer's cancel still being checked (cancel()) decides before the
            # commit; one accepted while the shipment was being created still wins.
            if self._cancels_being_checked:
                await workflow.wait_condition(lambda: not self._cancels_being_checked)
            self._stop_if_cancel_accepted()
        except (_CancelAccepted, ActivityError):
            # A cancel accepted while a step was in flight wins even if that
            # step then failed: the customer was told the order is cancelled.
            if self._cancel_request is not None:
                self._failure_reason = self._cancel_request.reason
                self._failure_code = None
            await self._unwind_shielded(
                cancelled=self._cancel_request is not None or self._cancelled_through_temporal
            )
            return self._finish(
                OrderStatus.CANCELLED if self._cancel_request else OrderStatus.FAILED
            )

        assert reservation_id is not None
        await self._commit(reservation_id)
        return self._finish(OrderStatus.COMPLETED)

    async def _commit(self, reservation_id: str) -> None:
        order = self._order
        commit = self._steps[StepName.COMMIT_RESERVATION]
        commit.state = StepState.RUNNING
        # Past the point of no return: the shipment exists and the customer can
        # no longer cancel, so neither does a cancellation through Temporal.
        await self._through_cancellation(
            self._until_done(
                StepName.COMMIT_RESERVATION,
                lambda key: self._activity(
                    InventoryActivities.commit_reservation,
                    CommitReservationInput(order.order_id, reservation_id, key),
                    task_queue=task_queues.INVENTORY,
                    retry_policy=UNTIL_DONE_RETRY_POLICY,
                    summary=f"commit {order.unit_count} reserved units: stock leaves the warehouse",
                    # Local too, so a healthy order closes in the task that ran
                    # its steps. Should the server reject that task (a cancel
                    # arrived meanwhile) or its worker die, the next run asks
                    # inventory before it undoes anything (_committed_unseen).
                    # Orders from before that guard keep it on the queue.
                    may_run_locally=self._local_commit,
                ),
                action=StepName.COMMIT_RESERVATION.value,
                done=StepState.COMPLETED,
                resume=OrderStatus.SHIPPING,
            )
        )

    async def _committed_unseen(self) -> str | None:
        """The order's committed reservation, when a task this run never saw committed it.

        A run that sees a cancel before its commit may be replaying after a
        lost task (its worker died, or the server rejected it for closing the
        order while the cancel waited) that carried the order further, up to
        and including its commit. Only inventory knows; it is asked before
        anything is undone. Orders whose commit runs on the queue need not
        ask: a lost task cannot have scheduled it.
        """
        if not self._local_commit:
            return None
        if self._steps[StepName.COMMIT_RESERVATION].state is not StepState.PENDING:
            return None
        self._publish_status()  # the task ends here, waiting for the queue
        found: str | None = await self._through_cancellation(
            workflow.execute_activity_method(
                InventoryActivities.find_committed_reservation,
                FindCommittedReservationInput(self._order.order_id),
                task_queue=task_queues.INVENTORY,
                start_to_close_timeout=ACTIVITY_START_TO_CLOSE,
                retry_policy=UNTIL_DONE_RETRY_POLICY,
                summary="before undoing: is the order already committed?",
            )
        )
        return found

    async def _complete_after_unseen_commit(self, reservation_id: str) -> OrderResult:
        """A cancellation through Temporal arrived after a lost task committed the order.

        The stock has left, so it no longer applies. The steps this run has not
        seen run again under their idempotency keys: each service answers with
        what the lost task's call did, and the order completes as it did then.
        """
        self._cancelled_through_temporal = False
        workflow.logger.warning(
            "cancel arrived after the order was committed; completing it",
            extra={"order_id": self._order.order_id, "status": self._status.value},
        )
        for step, status, call in (
            (StepName.RESERVE_INVENTORY, OrderStatus.RESERVING, self._reserve),
            (StepName.CHARGE_PAYMENT, OrderStatus.CHARGING, self._charge),
            (StepName.CREATE_SHIPMENT, OrderStatus.SHIPPING, self._ship),
        ):
            if self._steps[step].state is not StepState.COMPLETED:
                await self._forward(step, status, call)
        await self._commit(reservation_id)
        return self._finish(OrderStatus.COMPLETED)

    # --- forward steps -------------------------------------------------------

    async def _forward(self, step: StepName, status: OrderStatus, call: StepCall) -> str | None:
        self._set_status(status)
        record = self._steps[step]
        record.state = StepState.RUNNING
        started = workflow.now()
        key = idempotency_key(self._order.order_id, step.value)
        try:
            # A cancellation through Temporal must not abandon the call
            # mid-flight: wait for its real outcome, then unwind.
            outcome = await self._through_cancellation(call(key))
        except ActivityError as err:
            earlier = self._attempts_before_queue(key)
            record.state = StepState.FAILED
            record.error = describe_failure(err, earlier_attempts=earlier)
            record.attempts = attempts_of(err, earlier_attempts=earlier)
            self._failure_reason = f"{step.value} failed: {record.error}"
            self._failure_code = failure_code_of(err)
            self._mark_failed_step(step)
            self._step_finished(step.value, outcome_of(err), started, error=record.error)
            if is_refusal(err):
                self._refused.add(step)
            else:
                self._compensations.record_ambiguous_failure(step)
            self._touch()
            if self._cancelled_through_temporal:
                raise asyncio.CancelledError() from err
            raise
        record.state = StepState.COMPLETED
        record.attempts = outcome.attempt
        self._step_finished(step.value, "completed", started)
        self._compensations.record_success(step, outcome.resource_id)
        self._touch()
        if self._cancelled_through_temporal:
            raise asyncio.CancelledError()
        return outcome.resource_id

    async def _through_cancellation(self, awaitable: Awaitable[T]) -> T:
        """Await to the end even if the workflow is cancelled meanwhile.

        Temporal delivers a cancellation once, into whatever the workflow is
        awaiting; the shield takes it, and it is remembered instead.
        """
        task = asyncio.ensure_future(awaitable)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled():
                    raise
                self._cancelled_through_temporal = True

    async def _reserve(self, key: str) -> StepOutcome:
        order = self._order
        outcome = await self._activity(
            InventoryActivities.reserve_inventory,
            ReserveInventoryInput(
                order.order_id,
                order.items,
                key,
                currency=order.currency,
                expected_total_cents=order.expected_total_cents,
            ),
            task_queue=task_queues.INVENTORY,
            retry_policy=FORWARD_RETRY_POLICY,
            summary=f"reserve {order.unit_count} units of {len(order.items)} SKU(s)",
        )
        self._hold_prices(outcome)
        return outcome

    def _hold_prices(self, reservation: StepOutcome) -> None:
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
                    InventoryActivities.reserve_inventory,
                )
            return  # an order from before catalog prices, replaying (_charge)
        self._priced_lines = reservation.priced_lines
        self._total_cents = reservation.total_cents
        self._currency = reservation.currency
        self._total_unpublished = True

    def _charge(self, key: str) -> Awaitable[StepOutcome]:
        order = self._order
        amount = self._total_cents
        if amount is None:
            # Only an order reserved before catalog prices gets here, replaying
            # a charge its history already holds (_hold_prices): the amount is
            # never sent. Anywhere else this is a bug, and the task must fail.
            assert workflow.unsafe.is_replaying(), "no reserved total to charge"
            amount = 0
        return self._activity(
            PaymentActivities.charge_payment,
            ChargePaymentInput(
                order.order_id,
                order.customer_id,
                amount,
                self._currency,
                order.payment.token,
                key,
            ),
            task_queue=task_queues.PAYMENTS,
            retry_policy=FORWARD_RETRY_POLICY,
            summary=f"charge {self._reserved_total_text()}",
        )

    def _reserved_total_text(self) -> str:
        if self._total_cents is None:
            return "the reserved total"
        return format_money(self._total_cents, self._currency)

    def _ship(self, key: str) -> Awaitable[StepOutcome]:
        order = self._order
        return self._activity(
            ShippingActivities.create_shipment,
            CreateShipmentInput(order.order_id, order.items, order.shipping_address, key),
            task_queue=task_queues.SHIPPING,
            retry_policy=FORWARD_RETRY_POLICY,
            summary=f"ship {order.unit_count} units",
        )

    async def _activity(
        self,
        method: Callable[[Any, Any], Awaitable[StepOutcome]],
        request: Any,
        *,
        task_queue: str,
        retry_policy: RetryPolicy,
        summary: str,
        may_run_locally: bool = True,
    ) -> StepOutcome:
        """Call a domain activity: first locally, then on its domain's queue.

        A refusal in the local attempt is final, as on the queue. Any other
        failure (a 5xx, a timeout, a service out of reach) hands the call to
        the domain's workers with what is left of its retry budget; the same
        idempotency key makes the second attempt find what the first did.
        """
        local_first = self._local_first and may_run_locally
        if local_first:
            try:
                return await workflow.execute_local_activity_method(
                    method,
                    request,
                    start_to_close_timeout=LOCAL_ATTEMPT_TIMEOUT,
                    retry_policy=ONE_LOCAL_ATTEMPT,
                    summary=summary,
                )
            except ActivityError as err:
                if is_refusal(err):
                    raise
            except (ApplicationError, TimeoutError) as raw:
                if is_refusal(wrapped := as_activity_error(raw, method)):
                    raise wrapped from raw
            self._handed_over.add(request.idempotency_key)
            retry_policy = after_local_attempt(retry_policy)
        self._publish_status()  # the task ends here, waiting for the queue
        outcome: StepOutcome = await workflow.execute_activity_method(
            method,
            request,
            task_queue=task_queue,
            start_to_close_timeout=ACTIVITY_START_TO_CLOSE,
            retry_policy=retry_policy,
            summary=summary,
        )
        if local_first:
            return replace(outcome, attempt=outcome.attempt + 1)
        return outcome

    def _attempts_before_queue(self, key: str) -> int:
        """Attempts made before the domain's queue took the call over: the local one."""
        return 1 if key in self._handed_over else 0

    # --- compensation --------------------------------------------------------

    async def _unwind_shielded(self, *, cancelled: bool) -> None:
        """Undo in reverse. A cancellation arriving meanwhile must not stop it."""
        if cancelled and self._local_first:
            self._undo_what_a_lost_task_may_have_done()
        await self._through_cancellation(self._unwind())

    def _undo_what_a_lost_task_may_have_done(self) -> None:
        """A cancel can be the first thing a run sees of steps already carried out.

        Local attempts take effect before their workflow task records them. If
        that task is lost (its worker died, or the server rejected it), the
        next run replays without them, and a cancel that arrived meanwhile
        stops it before it gets there again. So a cancelled order also undoes,
        looked up by order, every step it neither saw done nor saw refused;
        where there is nothing to undo, the service says so.
        """
        for step in COMPENSATION_FOR:
            if step not in self._compensations and step not in self._refused:
                self._compensations.record_ambiguous_failure(step)

    async def _unwind(self) -> None:
        self._set_status(OrderStatus.COMPENSATING)
        undo = list(self._compensations.in_undo_order())
        if not undo:
            return  # the first step was refused: nothing took effect
        started = workflow.now()
        workflow.logger.info(
            "compensation started: undoing %s",
            ", ".join(pending.step.value for pending in undo),
            extra={"order_id": self._order.order_id, "status": self._status.value},
        )
        refused: list[PendingCompensation] = []
        for pending in undo:
            record = self._steps[pending.step]
            never_seen_running = record.state is StepState.PENDING
            record.state = StepState.COMPENSATING
            self._touch()
            self._metrics.compensation_started(pending.step.value)
            undo_call = self._compensation_call(pending)
            outcome: StepOutcome | None
            try:
                outcome = await self._attempt(
                    pending.step, undo_call, action=pending.name.value, done=StepState.COMPENSATED
                )
            except ActivityError:
                if workflow.patched(UNDO_ALL_BEFORE_PARKING_PATCH):
                    # The undos after it still run: stock is released even while
                    # a refund waits for an operator.
                    refused.append(pending)
                    continue
                outcome = await self._settle_with_operator(
                    pending.step,
                    undo_call,
                    action=pending.name.value,
                    done=StepState.COMPENSATED,
                    resume=OrderStatus.COMPENSATING,
                )
            if never_seen_running and outcome is not None and outcome.nothing_to_undo:
                record.state = StepState.PENDING  # it never happened
        for pending in refused:
            await self._settle_with_operator(
                pending.step,
                self._compensation_call(pending),
                action=pending.name.value,
                done=StepState.COMPENSATED,
                resume=OrderStatus.COMPENSATING,
            )
        workflow.logger.info(
            "compensation finished",
            extra={
                "order_id": self._order.order_id,
                "duration_ms": milliseconds_since(started),
            },
        )

    def _compensation_call(self, pending: PendingCompensation) -> StepCall:
        order = self._order
        if pending.step is StepName.RESERVE_INVENTORY:
            return lambda key: self._activity(
                InventoryActivities.release_inventory,
                ReleaseInventoryInput(order.order_id, pending.resource_id, key),
                task_queue=task_queues.INVENTORY,
                retry_policy=UNTIL_DONE_RETRY_POLICY,
                summary=f"undo: release {order.unit_count} reserved units",
            )
        if pending.step is StepName.CHARGE_PAYMENT:
            return lambda key: self._activity(
                PaymentActivities.refund_payment,
                RefundPaymentInput(order.order_id, pending.resource_id, key),
                task_queue=task_queues.PAYMENTS,
                retry_policy=UNTIL_DONE_RETRY_POLICY,
                summary=f"undo: refund {self._reserved_total_text()}",
            )
        if pending.step is StepName.CREATE_SHIPMENT:
            return lambda key: self._activity(
                ShippingActivities.cancel_shipment,
                CancelShipmentInput(order.order_id, pending.resource_id, key),
                task_queue=task_queues.SHIPPING,
                retry_policy=UNTIL_DONE_RETRY_POLICY,
                summary="undo: cancel the shipment",
            )
        raise ValueError(f"no compensation for {pending.step}")

    async def _until_done(
        self,
        step: StepName,
        call: StepCall,
        *,
        action: str,
        done: StepState,
        resume: OrderStatus,
    ) -> StepOutcome | None:
        """Run an activity that must succeed; a refusal waits for an operator.

        Returns the activity's outcome, or None when an operator resolved it.
        """
        try:
            return await self._attempt(step, call, action=action, done=done)
        except ActivityError:
            return await self._settle_with_operator(
                step, call, action=action, done=done, resume=resume
            )

    async def _attempt(
        self,
        step: StepName,
        call: StepCall,
        *,
        action: str,
        done: StepState,
        operator_retry: int = 0,
    ) -> StepOutcome:
        """One call of an activity that must succeed (its retries included).

        A refusal is written on the step, which is left FAILED, and raised.
        """
        record = self._steps[step]
        started = workflow.now()
        key = idempotency_key(self._order.order_id, action, operator_retry)
        try:
            outcome = await call(key)
        except ActivityError as err:
            reason = describe_failure(err, earlier_attempts=self._attempts_before_queue(key))
            refusal = f"{action} refused: {reason}"
            # A refusal after an operator's retry keeps what came before it.
            record.error = f"{record.error}; {refusal}" if operator_retry else refusal
            record.state = StepState.FAILED
            self._step_finished(action, outcome_of(err), started, error=refusal)
            raise
        self._step_finished(action, "completed", started)
        if done is StepState.COMPLETED:
            # A forward step's record counts its own attempts; a
            # compensation keeps those of the step it undid.
            record.attempts = outcome.attempt
        record.state = done
        self._touch()
        return outcome

    async def _settle_with_operator(
        self,
        step: StepName,
        call: StepCall,
        *,
        action: str,
        done: StepState,
        resume: OrderStatus,
    ) -> StepOutcome | None:
        """Park the order on a refused call until an operator settles it.

        A retry calls again under a new idempotency key (a new request to the
        service), and parks again if refused; a resolve marks it done by hand.
        Returns the retry's outcome, or None when an operator resolved it.
        """
        record = self._steps[step]
        operator_retries = 0
        while True:
            self._metrics.order_parked()
            workflow.logger.warning(
                "order parked in %s until an operator retries or resolves %s",
                OrderStatus.NEEDS_ATTENTION.value,
                action,
                extra={
                    "order_id": self._order.order_id,
                    "step": action,
                    "status": OrderStatus.NEEDS_ATTENTION.value,
                },
            )
            decision, taken = await self._wait_for_operator()
            self._record_operator_decision(decision, taken, action, record)
            if decision == "resolve":
                record.state = done
                self._set_status(resume)
                return None
            operator_retries += 1
            record.state = (
                StepState.COMPENSATING if done is StepState.COMPENSATED else StepState.RUNNING
            )
            self._set_status(resume)
            try:
                outcome = await self._attempt(
                    step, call, action=action, done=done, operator_retry=operator_retries
                )
            except ActivityError:
                continue
            self._set_status(resume)
            return outcome

    def _record_operator_decision(
        self, decision: OperatorDecision, taken: OperatorAction, action: str, record: StepView
    ) -> None:
        """Who decided what, when and why: in the view, on the step, and in the log."""
        entry = operator_record(decision, taken, action, workflow.now())
        self._operator_actions.append(entry)
        record.error = (record.error or "") + operator_remark(entry)
        self._touch()
        # The operator's id only: the note is free text and may hold anything.
        workflow.logger.info(
            "operator %s chose to %s %s",
            entry.operator or "(unnamed)",
            decision,
            action,
            extra={
                "order_id": self._order.order_id,
                "step": action,
                "operator": entry.operator,
                "decision": decision,
            },
        )

    async def _wait_for_operator(self) -> tuple[OperatorDecision, OperatorAction]:
        self._operator_decision = None
        self._set_status(OrderStatus.NEEDS_ATTENTION)
        self._publish_status()
        await workflow.wait_condition(lambda: self._operator_decision is not None)
        assert self._operator_decision is not None
        taken, self._operator_decision = self._operator_decision, None
        return taken

    # --- handlers ------------------------------------------------------------

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> OrderView:
        order = self._order
        return OrderView(
            order_id=order.order_id,
            status=self._status,
            customer_id=order.customer_id,
            items=order.items,
            total_cents=self._total_cents,
            currency=self._currency,
            steps=list(self._steps.values()),
            failure_reason=self._failure_reason,
            created_at=self._created_at,
            updated_at=self._updated_at,
            priced_lines=self._priced_lines,
            failure_code=self._failure_code,
            operator_actions=self._operator_actions,
        )

    @workflow.update(name=CANCEL_UPDATE)
    async def cancel(self, request: CancelOrder) -> CancelAccepted:
        if self._cancel_request is None and self._local_commit:
            # The validator saw no shipment, but a lost task may have gone on to
            # the commit; the commit waits while this asks (_fulfil).
            self._cancels_being_checked += 1
            try:
                committed = await self._committed_unseen()
            finally:
                self._cancels_being_checked -= 1
            if committed is not None:
                raise ApplicationError(
                    "too late to cancel: the order has been committed", type="TooLate"
                )
        if self._cancel_request is None:
            self._cancel_request = request
            self._set_status(OrderStatus.COMPENSATING)
            # Now: the step in flight may keep the workflow waiting a while.
            self._publish_status()
        return CancelAccepted(self._order.order_id, self._status)

    @cancel.validator
    def _validate_cancel(self, request: CancelOrder) -> None:
        if self._cancel_request is not None:
            return  # a repeated cancel is accepted again, changing nothing
        if self._steps[StepName.CREATE_SHIPMENT].state is StepState.COMPLETED:
            raise ValueError("too late to cancel: the shipment has been created")
        if self._status in (OrderStatus.COMPENSATING, OrderStatus.NEEDS_ATTENTION):
            raise ValueError(f"too late to cancel: the order is {self._status.value}")
        if self._status.is_terminal:
            raise ValueError(f"too late to cancel: the order is {self._status.value}")

    @workflow.update(name=RETRY_COMPENSATION_UPDATE)
    def retry_compensation(self, action: OperatorAction) -> OperatorActionAccepted:
        self._operator_decision = ("retry", action)
        return OperatorActionAccepted(self._order.order_id, self._status)

    @retry_compensation.validator
    def _validate_retry(self, action: OperatorAction) -> None:
        self._require_needs_attention()

    @workflow.update(name=RESOLVE_COMPENSATION_UPDATE)
    def resolve_compensation(self, action: OperatorAction) -> OperatorActionAccepted:
        self._operator_decision = ("resolve", action)
        return OperatorActionAccepted(self._order.order_id, self._status)

    @resolve_compensation.validator
    def _validate_resolve(self, action: OperatorAction) -> None:
        self._require_needs_attention()

    def _require_needs_attention(self) -> None:
        if self._status is not OrderStatus.NEEDS_ATTENTION or self._operator_decision:
            raise ValueError(f"the order is {self._status.value}, not waiting for an operator")

    # --- bookkeeping ---------------------------------------------------------

    def _stop_if_cancel_accepted(self) -> None:
        if self._cancel_request is not None:
            raise _CancelAccepted()

    def _finish(self, status: OrderStatus) -> OrderResult:
        self._set_status(status)
        self._publish_status()
        seconds = seconds_between(workflow.info().start_time, workflow.now())
        self._metrics.order_finished(status.value, seconds)
        workflow.logger.info(
            "order %s%s",
            status.value,
            f": {self._failure_reason}" if self._failure_reason else "",
            extra={
                "order_id": self._order.order_id,
                "status": status.value,
                "duration_ms": round(seconds * 1000),
            },
        )
        # The final view goes into the result: a closed order is then read from
        # what Temporal keeps, with no worker needed (api/temporal_orders.py).
        return OrderResult(self._order.order_id, status, self._failure_reason, view=self.status())

    def _step_finished(
        self,
        step: str,
        outcome: StepOutcomeLabel,
        started: datetime,
        *,
        error: str | None = None,
    ) -> None:
        """One line and one observation per activity the saga waited for."""
        seconds = seconds_between(started, workflow.now())
        self._metrics.step_finished(step, outcome, seconds)
        fields = {
            "order_id": self._order.order_id,
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

    def _set_status(self, status: OrderStatus) -> None:
        self._touch()
        if status is self._status:
            return  # an upsert is a command in the history: only on a change
        self._status = status
        self._status_unpublished = True
        if not self._local_first:
            self._publish_status()
        workflow.set_current_details(f"**{status.value}**")

    def _publish_status(self) -> None:
        """Upsert the OrderStatus search attribute, if it changed since the last upsert.

        An upsert is a command, one history event and a visibility write each.
        A local-first order calls this only where its workflow task can end
        (before waiting on a queue or an operator, on a cancel, at the end):
        statuses it passes through within one task were never observable.
        The first upsert also sets the order's customer, so an order started
        by any client (not only the API, which sets it at start) is listed and
        filterable. The total is known only once reserved: the first status
        upsert after the reservation carries it, so it costs no command of
        its own.
        """
        if not self._status_unpublished:
            return
        self._status_unpublished = False
        attributes: list[SearchAttributeUpdate[Any]] = [
            ORDER_STATUS_KEY.value_set(self._status.value)
        ]
        if not self._listed:
            self._listed = True
            attributes.append(CUSTOMER_ID_KEY.value_set(self._order.customer_id))
        if self._total_unpublished and self._total_cents is not None:
            self._total_unpublished = False
            attributes.append(ORDER_TOTAL_CENTS_KEY.value_set(self._total_cents))
        workflow.upsert_search_attributes(attributes)

    def _touch(self) -> None:
        self._updated_at = workflow.now().isoformat()

    def _mark_failed_step(self, step: StepName) -> None:
        """Let operators filter `OrderStatus = "FAILED" AND FailedStep = "charge_payment"`."""
        # An upsert is a command: a history recorded before this change has
        # none here, so replaying it must not add one.
        if workflow.patched(FAILED_STEP_PATCH):
            workflow.upsert_search_attributes([FAILED_STEP_KEY.value_set(step.value)])


def is_refusal(err: ActivityError) -> bool:
    """The domain refused outright: the step did nothing and needs no undoing."""
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.non_retryable


def failure_code_of(err: ActivityError) -> str:
    """The stable code of why a forward step failed, for the order's failure_code.

    A refusal carries its domain's code; a step that ran out of retries or
    timed out failed because its service did not answer in time.
    """
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable and cause.type:
        return cause.type
    return errors.SERVICE_UNAVAILABLE


def outcome_of(err: ActivityError) -> StepOutcomeLabel:
    return "refused" if is_refusal(err) else "failed"


def milliseconds_since(started: datetime) -> int:
    return round(seconds_between(started, workflow.now()) * 1000)


def describe_failure(err: ActivityError, *, earlier_attempts: int = 0) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        text = f"{cause.type}: {cause.message}"
        if not cause.non_retryable:
            attempts = attempts_of(err, earlier_attempts=earlier_attempts)
            return f"gave up after {attempts} attempts: {text}"
        return text
    if isinstance(cause, TimeoutError):
        return f"timed out ({cause.type.name if cause.type else 'unknown'})"
    return str(cause or err)


def attempts_of(err: ActivityError, *, earlier_attempts: int = 0) -> int:
    """Activities put their attempt number in the error's details.

    earlier_attempts: those made before the call reached the queue whose
    attempt numbers the error carries (the local attempt).
    """
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.details:
        first = cause.details[0]
        if isinstance(first, int):
            return earlier_attempts + first
    if err.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED:
        return FORWARD_STEP_MAX_ATTEMPTS  # the whole budget, wherever it was spent
    return earlier_attempts + 1


def after_local_attempt(policy: RetryPolicy) -> RetryPolicy:
    """What is left of a retry budget once the local attempt has used one."""
    if policy.maximum_attempts <= 0:
        return policy  # unlimited stays unlimited
    return replace(policy, maximum_attempts=max(policy.maximum_attempts - 1, 1))


def as_activity_error(raised: BaseException, method: Callable[..., Any]) -> ActivityError:
    """A failed local attempt as the ActivityError the rest of the saga handles.

    The SDK raises a local activity's own ApplicationError or TimeoutError
    when its last attempt fails, not one wrapped in an ActivityError as a
    remote activity's always is.
    """
    name = getattr(method, "__name__", "")
    wrapped = ActivityError(
        f"local attempt of {name or 'activity'} failed",
        scheduled_event_id=0,
        started_event_id=0,
        identity="",
        activity_type=name,
        activity_id="",
        retry_state=None,
    )
    wrapped.__cause__ = raised
    return wrapped
