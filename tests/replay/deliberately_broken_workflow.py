"""DELIBERATELY BROKEN copies of OrderWorkflow, under the real workflow type name.

- DeliberatelyReorderedOrderWorkflow charges before it reserves, so replaying
  any committed history with it must fail: proof that the gate bites.
- DeliberatelyUnpatchedOrderWorkflow makes the FailedStep change without its
  `workflow.patched` guard, so replaying a history recorded before that change,
  in which a step failed, must fail: proof that the patch is needed.

They live under tests/, which is not part of the installed package, and no
worker registers them (workers register OrderWorkflow by class), so neither
can ever run for real.
"""

from __future__ import annotations

from temporalio import workflow

from contracts.orders import WORKFLOW_TYPE, OrderResult, OrderStatus, PlaceOrder, StepName
from workflows.order import OrderWorkflow
from workflows.search_attributes import FAILED_STEP_KEY


@workflow.defn(name=WORKFLOW_TYPE)
class DeliberatelyReorderedOrderWorkflow(OrderWorkflow):
    # The SDK wants the run method defined on the class itself.
    @workflow.run
    async def run(self, order: PlaceOrder) -> OrderResult:
        return await super().run(order)

    async def _fulfil(self) -> OrderResult:
        # The "refactoring" under test: charge first, then reserve.
        await self._forward(StepName.CHARGE_PAYMENT, OrderStatus.CHARGING, self._charge)
        await self._forward(StepName.RESERVE_INVENTORY, OrderStatus.RESERVING, self._reserve)
        await self._forward(StepName.CREATE_SHIPMENT, OrderStatus.SHIPPING, self._ship)
        return self._finish(OrderStatus.COMPLETED)


@workflow.defn(name=WORKFLOW_TYPE)
class DeliberatelyUnpatchedOrderWorkflow(OrderWorkflow):
    @workflow.run
    async def run(self, order: PlaceOrder) -> OrderResult:
        return await super().run(order)

    def _mark_failed_step(self, step: StepName) -> None:
        # The change as first written, without `if workflow.patched(...)`.
        workflow.upsert_search_attributes([FAILED_STEP_KEY.value_set(step.value)])
