"""What every Temporal client, worker and replayer of ordersaga must agree on.

The replay gate (tests/replay) replays histories with exactly these, so a change
here that would break in-flight workflows is caught there, not in production.
"""

from __future__ import annotations

from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.converter import DataConverter

# The default JSON/dataclass converter; named so all parties share one value.
DATA_CONVERTER = DataConverter.default


def temporal_interceptors() -> list[TracingInterceptor]:
    """Interceptors for Client.connect (workers inherit them) and for Replayer.

    Tracing spans Temporal's own calls (StartWorkflow, RunWorkflow, StartActivity,
    RunActivity) and carries the trace context through the workflow's headers.
    With no tracer provider configured it records nothing.
    """
    return [TracingInterceptor()]
