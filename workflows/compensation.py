"""Calls that must succeed: the undos, in reverse, and the commit.

They are retried until done. One refused outright parks the order in
NEEDS_ATTENTION until an operator retries it (a new request under a new
idempotency key) or resolves it (marks it done by hand); an undo refused does
not hold up the others, which run first, so stock is released even while a
refund waits for an operator.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.activities import StepOutcome, idempotency_key
    from contracts.orders import OperatorAction, OrderStatus, StepName, StepState
    from workflows.metrics import seconds_between
    from workflows.operators import OperatorDecision, operator_record
    from workflows.runner import LocalFirstRunner, StepCall, describe_failure, outcome_of
    from workflows.saga import CompensationStack, PendingCompensation
    from workflows.state import OrderState
    from workflows.steps import STEP_BY_NAME

# Live: a refused undo used to park the order before the undos after it ran;
# since this patch every undo runs first. The gate holds orders from before,
# which replay the old order (tests/replay/test_patch_lifecycle.py).
UNDO_ALL_BEFORE_PARKING_PATCH = "undo-all-before-parking"


class UntilDone:
    """Runs calls that must succeed, parking the order on a refusal."""

    def __init__(self, state: OrderState, runner: LocalFirstRunner) -> None:
        self._state = state
        self._runner = runner
        # Set by the operator updates (OrderWorkflow), taken by the parked call.
        self.operator_decision: tuple[OperatorDecision, OperatorAction] | None = None
        # Undos refused and not yet retried or resolved by an operator.
        self.refused_undos: set[StepName] = set()

    async def unwind(self, compensations: CompensationStack) -> None:
        """Undo, in reverse, every step that may have taken effect."""
        state = self._state
        state.set_status(OrderStatus.COMPENSATING)
        undo = compensations.in_undo_order()
        if not undo:
            return  # the first step was refused: nothing took effect
        started = workflow.now()
        workflow.logger.info(
            "compensation started: undoing %s",
            ", ".join(pending.step.value for pending in undo),
            extra={"order_id": state.order.order_id, "status": state.status.value},
        )
        refused: list[PendingCompensation] = []
        for pending in undo:
            record = state.steps[pending.step]
            before = record.state
            record.state = StepState.COMPENSATING
            state.touch()
            state.metrics.compensation_started(pending.step.value)
            outcome: StepOutcome | None
            try:
                outcome = await self.attempt(
                    pending.step, self._undo_call(pending), action=pending.name.value
                )
            except ActivityError:
                if self._undo_all_before_parking():
                    refused.append(pending)
                    continue
                outcome = await self.settle_with_operator(
                    pending.step, self._undo_call(pending), action=pending.name.value
                )
            if before in _MAYBE_NEVER_HAPPENED and outcome is not None and outcome.nothing_to_undo:
                # The service found nothing of it: it never happened, so nothing
                # was undone either. A step never seen running stays pending; a
                # step whose calls all failed stays failed (not "compensated",
                # which would send an operator looking for a refund).
                record.state = before
        for pending in refused:
            await self.settle_with_operator(
                pending.step, self._undo_call(pending), action=pending.name.value
            )
        workflow.logger.info(
            "compensation finished",
            extra={
                "order_id": state.order.order_id,
                "duration_ms": round(seconds_between(started, workflow.now()) * 1000),
            },
        )

    def _undo_all_before_parking(self) -> bool:
        return workflow.patched(UNDO_ALL_BEFORE_PARKING_PATCH)

    def _undo_call(self, pending: PendingCompensation) -> StepCall:
        return self._runner.bind(STEP_BY_NAME[pending.step].undo, self._state, pending.resource_id)

    async def commit(self, call: StepCall) -> StepOutcome | None:
        """The commit: must succeed; a refusal waits for an operator."""
        action = StepName.COMMIT_RESERVATION.value
        try:
            return await self.attempt(StepName.COMMIT_RESERVATION, call, action=action)
        except ActivityError:
            return await self.settle_with_operator(StepName.COMMIT_RESERVATION, call, action=action)

    async def attempt(
        self, step: StepName, call: StepCall, *, action: str, operator_retry: int = 0
    ) -> StepOutcome:
        """One call that must succeed (its retries included).

        A refusal is written on the step's error and raised. A refused commit
        leaves its step FAILED. A refused undo leaves its step COMPENSATING,
        in refused_undos until an operator decides: the undo is outstanding,
        and "failed" on a charge whose refund was refused would tell its
        customer that nothing was charged.
        """
        state = self._state
        record = state.steps[step]
        started = workflow.now()
        key = idempotency_key(state.order.order_id, action, operator_retry)
        try:
            outcome = await call(key)
        except ActivityError as err:
            reason = describe_failure(err, earlier_attempts=self._runner.attempts_before_queue(key))
            refusal = f"{action} refused: {reason}"
            # A refusal after an operator's retry keeps what came before it.
            record.error = f"{record.error}; {refusal}" if operator_retry else refusal
            if _is_commit(step):
                record.state = StepState.FAILED
            else:
                self.refused_undos.add(step)
            state.step_finished(action, outcome_of(err), started, error=refusal)
            raise
        state.step_finished(action, "completed", started)
        if _is_commit(step):
            # A forward step's record counts its own attempts; a
            # compensation keeps those of the step it undid.
            record.attempts = outcome.attempt
        record.state = _done_state(step)
        state.touch()
        return outcome

    async def settle_with_operator(
        self, step: StepName, call: StepCall, *, action: str
    ) -> StepOutcome | None:
        """Park the order on a refused call until an operator settles it.

        Returns the retry's outcome, or None when an operator resolved it.
        """
        state = self._state
        record = state.steps[step]
        resume = OrderStatus.SHIPPING if _is_commit(step) else OrderStatus.COMPENSATING
        operator_retries = 0
        while True:
            state.metrics.order_parked()
            workflow.logger.warning(
                "order parked in %s until an operator retries or resolves %s",
                OrderStatus.NEEDS_ATTENTION.value,
                action,
                extra={
                    "order_id": state.order.order_id,
                    "step": action,
                    "status": OrderStatus.NEEDS_ATTENTION.value,
                },
            )
            decision, taken = await self._wait_for_operator()
            state.record_operator_decision(
                operator_record(decision, taken, action, workflow.now()), record
            )
            self.refused_undos.discard(step)
            if decision == "resolve":
                record.state = _done_state(step)
                state.set_status(resume)
                return None
            operator_retries += 1
            record.state = StepState.RUNNING if _is_commit(step) else StepState.COMPENSATING
            state.set_status(resume)
            try:
                outcome = await self.attempt(
                    step, call, action=action, operator_retry=operator_retries
                )
            except ActivityError:
                continue
            state.set_status(resume)
            return outcome

    async def _wait_for_operator(self) -> tuple[OperatorDecision, OperatorAction]:
        self.operator_decision = None
        self._state.set_status(OrderStatus.NEEDS_ATTENTION)
        self._state.publish()
        await workflow.wait_condition(lambda: self.operator_decision is not None)
        assert self.operator_decision is not None
        taken, self.operator_decision = self.operator_decision, None
        return taken


# Steps undone by order because they may have taken effect unseen: a cancel's
# unseen steps (still pending) and steps whose last call failed ambiguously.
_MAYBE_NEVER_HAPPENED = frozenset({StepState.PENDING, StepState.FAILED})


def _is_commit(step: StepName) -> bool:
    return step is StepName.COMMIT_RESERVATION


def _done_state(step: StepName) -> StepState:
    return StepState.COMPLETED if _is_commit(step) else StepState.COMPENSATED
