"""The trace context through a worker that records no spans.

temporalio's TracingInterceptor makes a span for every workflow run, workflow
task completion, activity start and activity run, and converts the trace
context to and from a header payload at each hop. When this process's tracer
provider samples nothing (no exporter: ordersaga.runtime.telemetry gives it
the ALWAYS_OFF sampler), every one of those spans is made and dropped: about
3 % of the saga worker's CPU under bench load in a py-spy profile, for
nothing.

What such a worker still owes the other processes is the trace context: the
id of the trace the API started travels with the order to its activities, so
every log line (ordersaga.runtime.logging) and every request to a service
carries it. TraceContextInterceptor does only that, on the same header
(`_tracer-data`): a workflow hands the header it was started with to the
activities, child workflows and signals it starts, and an activity runs with
the context in its header as the current one. Spans made inside an activity
(activities/http.py: the step's and the HTTP client's) are children of the
caller's span instead of a dropped RunActivity span: the same trace id, and
as before nothing is recorded.

A worker whose provider records spans uses TracingInterceptor
(worker_interceptors).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from opentelemetry import context, propagate, trace
from temporalio import client, workflow
from temporalio import worker as temporal_worker
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadConverter

from ordersaga.runtime.telemetry import records_spans
from ordersaga.runtime.temporal_config import temporal_interceptors

# TracingInterceptor's header: the two interceptors read each other's.
HEADER_KEY = "_tracer-data"


def worker_interceptors(
    provider: trace.TracerProvider | None = None,
) -> list[client.Interceptor]:
    """The worker's interceptors: tracing when spans are recorded, else the
    trace context alone."""
    if records_spans(provider):
        return list(temporal_interceptors())
    return [TraceContextInterceptor()]


def _context_from(headers: Mapping[str, Payload]) -> context.Context | None:
    payload = headers.get(HEADER_KEY)
    if not payload:
        return None
    carrier = PayloadConverter.default.from_payloads([payload])[0]
    if not carrier:
        return None
    return propagate.extract(carrier)


class TraceContextInterceptor(client.Interceptor, temporal_worker.Interceptor):
    """Carries the caller's trace context through workflows and activities, no spans."""

    def intercept_activity(
        self, next: temporal_worker.ActivityInboundInterceptor
    ) -> temporal_worker.ActivityInboundInterceptor:
        return _ActivityInbound(next)

    def workflow_interceptor_class(
        self, input: temporal_worker.WorkflowInterceptorClassInput
    ) -> type[temporal_worker.WorkflowInboundInterceptor]:
        return _WorkflowInbound


class _ActivityInbound(temporal_worker.ActivityInboundInterceptor):
    async def execute_activity(self, input: temporal_worker.ExecuteActivityInput) -> Any:
        ctx = _context_from(input.headers)
        if ctx is None:
            return await super().execute_activity(input)
        token = context.attach(ctx)
        try:
            return await super().execute_activity(input)
        finally:
            context.detach(token)


class _WorkflowInbound(temporal_worker.WorkflowInboundInterceptor):
    def init(self, outbound: temporal_worker.WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound))


def _with_trace_header(headers: Mapping[str, Payload]) -> Mapping[str, Payload]:
    """The headers with the workflow's own trace header, when it was started with one."""
    header = workflow.info().headers.get(HEADER_KEY)
    if not header:
        return headers
    return {**headers, HEADER_KEY: header}


class _WorkflowOutbound(temporal_worker.WorkflowOutboundInterceptor):
    def start_activity(
        self, input: temporal_worker.StartActivityInput
    ) -> workflow.ActivityHandle[Any]:
        input.headers = _with_trace_header(input.headers)
        return super().start_activity(input)

    def start_local_activity(
        self, input: temporal_worker.StartLocalActivityInput
    ) -> workflow.ActivityHandle[Any]:
        input.headers = _with_trace_header(input.headers)
        return super().start_local_activity(input)

    async def start_child_workflow(
        self, input: temporal_worker.StartChildWorkflowInput
    ) -> workflow.ChildWorkflowHandle[Any, Any]:
        input.headers = _with_trace_header(input.headers)
        return await super().start_child_workflow(input)

    async def signal_child_workflow(self, input: temporal_worker.SignalChildWorkflowInput) -> None:
        input.headers = _with_trace_header(input.headers)
        await super().signal_child_workflow(input)

    async def signal_external_workflow(
        self, input: temporal_worker.SignalExternalWorkflowInput
    ) -> None:
        input.headers = _with_trace_header(input.headers)
        await super().signal_external_workflow(input)

    def continue_as_new(self, input: temporal_worker.ContinueAsNewInput) -> NoReturn:
        input.headers = _with_trace_header(input.headers)
        super().continue_as_new(input)


__all__ = [
    "HEADER_KEY",
    "TraceContextInterceptor",
    "records_spans",
    "worker_interceptors",
]
