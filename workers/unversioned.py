"""OrderWorkflow for workers that run without Worker Versioning.

OrderWorkflow declares itself PINNED, and the Temporal server refuses every
workflow task completion that carries a versioning behaviour from a worker
that is not versioned ("versioning behavior cannot be specified without
deployment options being set with versioned mode"): the order would stall.
An unversioned worker (ORDERSAGA_WORKER_VERSIONING=false) registers this
subclass instead: the same type name, code and history, no behaviour.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.orders import WORKFLOW_TYPE, OrderResult, PlaceOrder
    from workflows.order import OrderWorkflow


@workflow.defn(name=WORKFLOW_TYPE)
class UnversionedOrderWorkflow(OrderWorkflow):
    @workflow.run
    async def run(self, order: PlaceOrder) -> OrderResult:
        return await super().run(order)
