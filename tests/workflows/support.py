"""What the workflow tests read back: step states, the history, and a lost workflow task."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import WorkflowHandle
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from contracts.orders import CANCEL_UPDATE, CancelAccepted, CancelOrder, OrderView, StepState

FORWARD = ("reserve_inventory", "charge_payment", "create_shipment", "commit_reservation")
# The fake catalog: sku_mug 12.50 EUR, sku_poster 9.99 EUR; the sample order is
# two mugs and a poster.
CATALOG_TOTAL = 2 * 1250 + 999


def step_states(view: OrderView) -> dict[str, StepState]:
    return {step.name: step.state for step in view.steps}


def send_cancel(
    handle: WorkflowHandle[Any, Any], request: CancelOrder | None = None
) -> asyncio.Task[CancelAccepted]:
    """The customer's cancel, sent now and answered whenever the workflow answers it."""
    return asyncio.create_task(
        handle.execute_update(CANCEL_UPDATE, request or CancelOrder(), result_type=CancelAccepted)
    )


async def activity_tasks_scheduled(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, str]]:
    """(activity, task queue) of every activity task the history scheduled."""
    history = await handle.fetch_history()
    return [
        (
            event.activity_task_scheduled_event_attributes.activity_type.name,
            event.activity_task_scheduled_event_attributes.task_queue.name,
        )
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def activity_summaries(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The summary of every activity task the history scheduled."""
    history = await handle.fetch_history()
    return [
        event.user_metadata.summary.data.decode().strip('"')
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def workflow_tasks_completed(handle: WorkflowHandle[Any, Any]) -> int:
    history = await handle.fetch_history()
    return sum(
        event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED for event in history.events
    )


async def workflow_task_failures(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The cause of every failed workflow task in the history, by name."""
    history = await handle.fetch_history()
    return [
        WorkflowTaskFailedCause.Name(event.workflow_task_failed_event_attributes.cause)
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]


async def status_upserts(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The OrderStatus value of every search attribute upsert in the history, in order."""
    history = await handle.fetch_history()
    upserted = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            continue
        fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
        if "OrderStatus" in fields.indexed_fields:
            upserted.append(fields.indexed_fields["OrderStatus"].data.decode().strip('"'))
    return upserted


class LoseOneTask(Interceptor):
    """Fail, once, the workflow task that reaches a given point.

    What a worker dying at that moment does: the local steps before it have
    reached the services, but their markers never reach the history. The next
    workflow task replays without them. `before` names the local activity the
    task is lost just before starting; None loses it as the order closes,
    after every step took effect.
    """

    def __init__(self, before: str | None) -> None:
        self.before = before
        self.lost = 0

    def _lose_once(self) -> None:
        if self.lost == 0:
            self.lost += 1
            raise RuntimeError("the worker died here (simulated by the test)")

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        interceptor = self

        class Outbound(WorkflowOutboundInterceptor):
            def start_activity(self, input: StartActivityInput) -> Any:
                if input.activity == interceptor.before:
                    interceptor._lose_once()
                return super().start_activity(input)

            def start_local_activity(self, input: StartLocalActivityInput) -> Any:
                if input.activity == interceptor.before:
                    interceptor._lose_once()
                return super().start_local_activity(input)

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(Outbound(outbound))

            async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
                result = await super().execute_workflow(input)
                if interceptor.before is None:
                    interceptor._lose_once()
                return result

        return Inbound
