"""OrderWorkflow: reserve -> charge -> ship -> commit, and every step that took
effect undone in reverse when a later one fails or the customer cancels.

The rules, and where each is kept:
- The steps, what they call and what undoes them: workflows/steps.py.
- A step in flight is never abandoned (workflows/shield.py). A cancel, the
  customer's `cancel` update or a cancellation through Temporal, takes effect
  when the step lands, so the saga always knows what to undo.
- A forward step has a bounded retry budget. A refusal means it did nothing; a
  step that ran out of retries or timed out may have taken effect, so it is
  undone too (the undo looks it up by order).
- The charge is the total the reservation fixed, at the catalog's prices
  (workflows/state.py); nothing the client sent sets the amount.
- Undos run in reverse, shielded, until done; a refused one parks the order for
  an operator once the others have run (workflows/compensation.py).
- Every call runs local first, then on its domain's queue (workflows/runner.py);
  what that means for a cancel is workflows/lost_task.py.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.activities import idempotency_key
    from contracts.orders import (
        CANCEL_UPDATE,
        RESOLVE_COMPENSATION_UPDATE,
        RETRY_COMPENSATION_UPDATE,
        STATUS_QUERY,
        WORKFLOW_TYPE,
        CancelAccepted,
        CancelOrder,
        OperatorAction,
        OperatorActionAccepted,
        OrderResult,
        OrderStatus,
        OrderView,
        PlaceOrder,
        StepName,
        StepState,
    )
    from workflows.compensation import UntilDone
    from workflows.lost_task import reservation_committed_unseen, undo_unseen_steps
    from workflows.runner import (
        LocalFirstRunner,
        attempts_of,
        describe_failure,
        failure_code_of,
        is_refusal,
        outcome_of,
    )
    from workflows.saga import CompensationStack
    from workflows.shield import CancellationShield
    from workflows.state import OrderState
    from workflows.steps import COMMIT, STEPS, SagaStep

# Retired through the lifecycle in docs/changing-workflows.md: every order runs
# its calls local first, the commit included; orders from before no longer run.
LOCAL_FIRST_PATCH = "local-first-attempt"
LOCAL_COMMIT_PATCH = "local-commit"
# A customer's cancel being checked (cancel()) holds the next forward step, not
# only the commit: without it an order whose cancel arrived while it reserved
# went on to charge the card and ship, and then undid both. Asked only where a
# check is pending, so a marker appears on that path alone; orders recorded
# before it replay going on with the next step.
CANCEL_HOLDS_NEXT_STEP_PATCH = "cancel-holds-next-step"


# Statuses of an order being undone (or waiting for an operator to finish it).
_UNWINDING = frozenset({OrderStatus.COMPENSATING, OrderStatus.NEEDS_ATTENTION})


class _CancelAccepted(Exception):
    """Raised between steps once the customer's cancel has been accepted."""


# PINNED: an order runs start to end on the build that started it, so its
# compensations never change mid-order (docs/deploying-workers.md).
@workflow.defn(name=WORKFLOW_TYPE, versioning_behavior=VersioningBehavior.PINNED)
class OrderWorkflow:
    @workflow.init
    def __init__(self, order: PlaceOrder) -> None:
        workflow.deprecate_patch(LOCAL_FIRST_PATCH)
        workflow.deprecate_patch(LOCAL_COMMIT_PATCH)
        self._state = OrderState(order)
        self._shield = CancellationShield()
        self._runner = LocalFirstRunner(before_queue=self._state.publish)
        self._until_done = UntilDone(self._state, self._runner)
        self._compensations = CompensationStack()
        self._refused: set[StepName] = set()
        self._cancel_request: CancelOrder | None = None
        # Customer cancels asking inventory whether a lost task committed the
        # order (cancel()); the next step and the commit wait for them.
        self._cancels_being_checked = 0

    @workflow.run
    async def run(self, order: PlaceOrder) -> OrderResult:
        state = self._state
        workflow.set_current_details(f"**{state.status.value}**")
        state.metrics.order_started()
        workflow.logger.info(
            "order received: %d units of %d SKU(s)",
            order.unit_count,
            len(order.items),
            extra={"order_id": order.order_id, "status": state.status.value},
        )
        try:
            result = await self._fulfil()
        except asyncio.CancelledError:
            reservation_id = await reservation_committed_unseen(state, self._shield.through)
            if reservation_id is None:
                # Cancelled through Temporal itself (Web UI, CLI): the same unwinding
                # as a customer cancel, then end the execution as cancelled.
                state.fail("cancelled through Temporal", None)
                await self._unwind(cancelled=True)
                state.finish(OrderStatus.CANCELLED)
                raise
            result = await self._complete_after_unseen_commit(reservation_id)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _fulfil(self) -> OrderResult:
        done: dict[StepName, str | None] = {}
        try:
            for step in STEPS:
                await self._await_cancel_checks()
                self._stop_if_cancel_accepted()
                done[step.name] = await self._forward(step)
            # A customer's cancel still being checked (cancel()) decides before
            # the commit; one accepted while the shipment was being created wins.
            if self._cancels_being_checked:
                await workflow.wait_condition(lambda: not self._cancels_being_checked)
            self._stop_if_cancel_accepted()
        except (_CancelAccepted, ActivityError):
            # A cancel accepted while a step was in flight wins even if that
            # step then failed: the customer was told the order is cancelled.
            if self._cancel_request is not None:
                self._state.fail(self._cancel_request.reason, None)
            cancelled = self._cancel_request is not None
            await self._unwind(cancelled=cancelled or self._shield.cancelled_through_temporal)
            return self._state.finish(OrderStatus.CANCELLED if cancelled else OrderStatus.FAILED)
        await self._commit(done[StepName.RESERVE_INVENTORY])
        return self._state.finish(OrderStatus.COMPLETED)

    async def _forward(self, step: SagaStep) -> str | None:
        """Run one forward step; record what it did, or why it failed."""
        state = self._state
        state.set_status(step.status)
        record = state.steps[step.name]
        record.state = StepState.RUNNING
        started = workflow.now()
        key = idempotency_key(state.order.order_id, step.name.value)
        call = self._runner.bind(step.do, state, resource_id=None)
        try:
            outcome = await self._shield.through(call(key))
            if step.fixes_prices:
                state.hold_prices(outcome)
        except ActivityError as err:
            earlier = self._runner.attempts_before_queue(key)
            record.state = StepState.FAILED
            record.error = describe_failure(err, earlier_attempts=earlier)
            record.attempts = attempts_of(err, earlier_attempts=earlier)
            state.fail(f"{step.name.value} failed: {record.error}", failure_code_of(err))
            state.mark_failed_step(step.name)
            state.step_finished(step.name.value, outcome_of(err), started, error=record.error)
            if is_refusal(err):
                self._refused.add(step.name)
            else:
                self._compensations.record_ambiguous_failure(step.name)
            state.touch()
            if self._shield.cancelled_through_temporal:
                raise asyncio.CancelledError() from err
            raise
        record.state = StepState.COMPLETED
        record.attempts = outcome.attempt
        state.step_finished(step.name.value, "completed", started)
        self._compensations.record_success(step.name, outcome.resource_id)
        state.touch()
        if self._shield.cancelled_through_temporal:
            raise asyncio.CancelledError()
        return outcome.resource_id

    async def _commit(self, reservation_id: str | None) -> None:
        # Past the point of no return: the shipment exists and the customer can
        # no longer cancel, so neither does a cancellation through Temporal.
        # Local too, so a healthy order closes in the task that ran its steps;
        # should that task be lost, the next run asks before undoing (lost_task).
        self._state.steps[StepName.COMMIT_RESERVATION].state = StepState.RUNNING
        await self._shield.through(
            self._until_done.commit(self._runner.bind(COMMIT, self._state, reservation_id))
        )

    async def _complete_after_unseen_commit(self, reservation_id: str) -> OrderResult:
        """A cancellation through Temporal arrived after a lost task committed the order.

        The stock has left, so it no longer applies: the steps this run has not
        seen run again under their idempotency keys, and the order completes.
        """
        self._shield.cancelled_through_temporal = False
        workflow.logger.warning(
            "cancel arrived after the order was committed; completing it",
            extra={"order_id": self._state.order.order_id, "status": self._state.status.value},
        )
        for step in STEPS:
            if self._state.steps[step.name].state is not StepState.COMPLETED:
                await self._forward(step)
        await self._commit(reservation_id)
        return self._state.finish(OrderStatus.COMPLETED)

    async def _unwind(self, *, cancelled: bool) -> None:
        """Undo in reverse. A cancellation arriving meanwhile must not stop it."""
        if cancelled:
            undo_unseen_steps(self._compensations, self._refused)
        await self._shield.through(self._until_done.unwind(self._compensations))

    async def _await_cancel_checks(self) -> None:
        """Start no step while a customer's cancel is being checked: it is decided first."""
        if self._cancels_being_checked and workflow.patched(CANCEL_HOLDS_NEXT_STEP_PATCH):
            await workflow.wait_condition(lambda: not self._cancels_being_checked)

    def _a_step_failed(self) -> bool:
        # A refused undo counts as a failure, as it did when its step showed
        # FAILED: this decides whether the cancel check's patch is asked, and
        # histories have recorded that.
        return bool(self._until_done.refused_undos) or any(
            self._state.steps[step.name].state is StepState.FAILED for step in STEPS
        )

    def _failed_while_cancel_checked(self) -> bool:
        """Whether a step failed while a customer's cancel was being checked: the
        order is then being undone as FAILED (_fulfil), and would not end
        CANCELLED as accepted. The patch is asked only once a step has failed,
        as every history since it recorded: keep that order of the two tests."""
        return self._a_step_failed() and workflow.patched(CANCEL_HOLDS_NEXT_STEP_PATCH)

    def _stop_if_cancel_accepted(self) -> None:
        if self._cancel_request is not None:
            raise _CancelAccepted()

    # --- handlers ----------------------------------------------------------------

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> OrderView:
        return self._state.view()

    @workflow.update(name=CANCEL_UPDATE)
    async def cancel(self, request: CancelOrder) -> CancelAccepted:
        if self._cancel_request is None:
            # The validator saw no shipment, but a lost task may have gone on to
            # the commit; the next step and the commit wait while this asks (_fulfil).
            self._cancels_being_checked += 1
            try:
                committed = await reservation_committed_unseen(self._state, self._shield.through)
            finally:
                self._cancels_being_checked -= 1
            if committed is not None:
                raise ApplicationError(
                    "too late to cancel: the order has been committed", type="TooLate"
                )
            if self._cancel_request is None and self._failed_while_cancel_checked():
                raise ApplicationError(
                    "too late to cancel: a step has failed and the order is being undone",
                    type="TooLate",
                )
        if self._cancel_request is None:
            self._cancel_request = request
            self._state.set_status(OrderStatus.COMPENSATING)
            # Now: the step in flight may keep the workflow waiting a while.
            self._state.publish()
        return CancelAccepted(self._state.order.order_id, self._state.status)

    @cancel.validator
    def _validate_cancel(self, request: CancelOrder) -> None:
        if self._cancel_request is not None:
            return  # a repeated cancel is accepted again, changing nothing
        if self._cancels_being_checked:
            # Another cancel is being decided: this one gets the same answer
            # (the handler asks too), not a refusal on a step that landed
            # meanwhile of an order that may yet end CANCELLED.
            return
        status = self._state.status
        if self._state.steps[StepName.CREATE_SHIPMENT].state is StepState.COMPLETED:
            raise ValueError("too late to cancel: the shipment has been created")
        if status in _UNWINDING or status.is_terminal:
            raise ValueError(f"too late to cancel: the order is {status.value}")

    @workflow.update(name=RETRY_COMPENSATION_UPDATE)
    def retry_compensation(self, action: OperatorAction) -> OperatorActionAccepted:
        self._until_done.operator_decision = ("retry", action)
        return OperatorActionAccepted(self._state.order.order_id, self._state.status)

    @retry_compensation.validator
    def _validate_retry(self, action: OperatorAction) -> None:
        self._require_needs_attention()

    @workflow.update(name=RESOLVE_COMPENSATION_UPDATE)
    def resolve_compensation(self, action: OperatorAction) -> OperatorActionAccepted:
        self._until_done.operator_decision = ("resolve", action)
        return OperatorActionAccepted(self._state.order.order_id, self._state.status)

    @resolve_compensation.validator
    def _validate_resolve(self, action: OperatorAction) -> None:
        self._require_needs_attention()

    def _require_needs_attention(self) -> None:
        status = self._state.status
        if status is not OrderStatus.NEEDS_ATTENTION or self._until_done.operator_decision:
            raise ValueError(f"the order is {status.value}, not waiting for an operator")
