"""A worker that records no spans still carries the order's trace to its activities.

workers/tracing.py: with no exporter the worker swaps temporalio's
TracingInterceptor for TraceContextInterceptor, which makes no spans but hands
the trace context the order was started with to every step it runs.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from contracts.orders import OrderStatus
from tests.workflows.conftest import saga_workers, sample_order
from workers.tracing import TraceContextInterceptor, records_spans, worker_interceptors
from workflows.order import OrderWorkflow


class _SeenTraces(Interceptor):
    """Records, per activity run, the trace id current when the activity runs."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        seen = self.seen

        class _Record(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                context = trace.get_current_span().get_span_context()
                seen[activity.info().activity_type] = context.trace_id
                return await super().execute_activity(input)

        return _Record(next)


async def test_every_local_step_runs_in_the_trace_the_order_was_started_in(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    exporter = InMemorySpanExporter()
    api_provider = TracerProvider()
    api_provider.add_span_processor(SimpleSpanProcessor(exporter))
    api_tracer = api_provider.get_tracer("test-api")
    config = time_skipping_env.client.config()
    config["interceptors"] = [TracingInterceptor(api_tracer)]
    api_client = Client(**config)
    seen = _SeenTraces()
    async with saga_workers(
        time_skipping_env, interceptors=[TraceContextInterceptor(), seen]
    ) as saga:
        order = sample_order()
        with api_tracer.start_as_current_span("POST /orders") as submit:
            handle = await api_client.start_workflow(
                OrderWorkflow.run, order, id=order.order_id, task_queue=saga.orders_queue
            )
        result = await handle.result()
    assert result.status is OrderStatus.COMPLETED
    trace_id = submit.get_span_context().trace_id
    assert seen.seen == {
        "reserve_inventory": trace_id,
        "charge_payment": trace_id,
        "create_shipment": trace_id,
        "commit_reservation": trace_id,
    }


def test_the_worker_traces_fully_whenever_its_provider_may_record() -> None:
    recording = TracerProvider()
    silent = TracerProvider(sampler=ALWAYS_OFF)
    assert records_spans(recording)
    assert not records_spans(silent)
    assert [type(i) for i in worker_interceptors(recording)] == [TracingInterceptor]
    assert [type(i) for i in worker_interceptors(silent)] == [TraceContextInterceptor]
