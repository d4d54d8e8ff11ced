"""DELIBERATELY BROKEN copies of OrderWorkflow, under the real workflow type name.

- DeliberatelyReorderedOrderWorkflow charges before it reserves, so replaying
  any committed history with it must fail: proof that the gate bites.
- DeliberatelyUnpatchedOrderWorkflow makes the undo-all-before-parking change
  without its `workflow.patched` guard, so replaying a history recorded before
  that change, in which an undo was refused, must fail: proof that the patch
  is needed.
- DeliberatelyUnguardedCancelCheckOrderWorkflow makes the cancel-holds-next-step
  change the same way: a step waits for a cancel being checked whatever the
  history says. Replaying an order recorded before it, whose shipment went
  ahead while the check ran, must fail; so must one recorded after it, whose
  patch marker no longer has its `workflow.patched` call.
- DeliberatelyUnguardedCancelRefusalOrderWorkflow makes that change's other
  half unguarded: a cancel whose check ends after a step failed is refused.
  Replaying an order recorded after it down that branch must fail on its
  marker.
- DeliberatelyUncountedRefusedUndoOrderWorkflow no longer counts a refused
  undo as a failure (its step shows COMPENSATING, not FAILED). Replaying the
  order whose customer's cancel was checked while it parked on a refused
  refund must fail: that history asked the patch, and refused the cancel.

They live under tests/, which is not part of the installed package, and no
worker registers them (workers register OrderWorkflow by class), so neither
can ever run for real.
"""

from __future__ import annotations

from temporalio import workflow

from contracts.orders import WORKFLOW_TYPE, OrderResult, OrderStatus, PlaceOrder, StepState
from workflows.compensation import UntilDone
from workflows.order import OrderWorkflow
from workflows.steps import CHARGE, RESERVE, SHIP, STEPS


@workflow.defn(name=WORKFLOW_TYPE)
class DeliberatelyReorderedOrderWorkflow(OrderWorkflow):
    # The SDK wants the run method defined on the class itself.
    @workflow.run
    async def run(self, order: PlaceOrder) -> OrderResult:
        return await super().run(order)

    async def _fulfil(self) -> OrderResult:
        # The "refactoring" under test: charge first, then reserve.
        for step in (CHARGE, RESERVE, SHIP):
            await self._forward(step)
        return self._state.finish(OrderStatus.COMPLETED)


class _UnguardedUntilDone(UntilDone):
    def _undo_all_before_parking(self) -> bool:
        # The change as first written, without `if workflow.patched(...)`: a
        # refused undo waits until the others have run, whatever the history says.
        return True


@workflow.defn(name=WORKFLOW_TYPE)
class DeliberatelyUnpatchedOrderWorkflow(OrderWorkflow):
    @workflow.init
    def __init__(self, order: PlaceOrder) -> None:
        super().__init__(order)
        self._until_done = _UnguardedUntilDone(self._state, self._runner)

    @workflow.run
    async def run(self, order: PlaceOrder) -> OrderResult:
        return await super().run(order)


@workflow.defn(name=WORKFLOW_TYPE)
class DeliberatelyUnguardedCancelCheckOrderWorkflow(OrderWorkflow):
    @workflow.run
    async def run(self, order: PlaceOrder) -> OrderResult:
        return await super().run(order)

    async def _await_cancel_checks(self) -> None:
        # The change as first written, without `workflow.patched(...)`.
        if self._cancels_being_checked:
            await workflow.wait_condition(lambda: not self._cancels_being_checked)


@workflow.defn(name=WORKFLOW_TYPE)
class DeliberatelyUnguardedCancelRefusalOrderWorkflow(OrderWorkflow):
    @workflow.run
    async def run(self, order: PlaceOrder) -> OrderResult:
        return await super().run(order)

    def _failed_while_cancel_checked(self) -> bool:
        # The same change's other half without `workflow.patched(...)`.
        return self._a_step_failed()


@workflow.defn(name=WORKFLOW_TYPE)
class DeliberatelyUncountedRefusedUndoOrderWorkflow(OrderWorkflow):
    @workflow.run
    async def run(self, order: PlaceOrder) -> OrderResult:
        return await super().run(order)

    def _a_step_failed(self) -> bool:
        # A "tidy-up" that reads a failure off the step states alone: a refused
        # undo leaves its step COMPENSATING, so it no longer counts, and a
        # customer's cancel checked meanwhile would be accepted.
        return any(self._state.steps[step.name].state is StepState.FAILED for step in STEPS)
