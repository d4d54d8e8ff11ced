"""The Temporal SDK runtime of a worker process, with its Prometheus endpoint.

The SDK's own metrics (task slots, schedule-to-start latency, poll results) and
the saga's business metrics (emitted through workflow.metric_meter(), which the
SDK leaves out while replaying) are served on one port per worker process.
"""

from __future__ import annotations

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from ordersaga.runtime.settings import Settings
from workflows.metrics import HISTOGRAM_BUCKETS


def worker_runtime(settings: Settings) -> Runtime:
    """A runtime serving /metrics on worker_listen_host:worker_metrics_port (0 = none).

    A Runtime owns threads and a listening socket: build one per process, at start.
    """
    metrics = None
    if settings.worker_metrics_port:
        metrics = PrometheusConfig(
            bind_address=f"{settings.worker_listen_host}:{settings.worker_metrics_port}",
            # Prometheus conventions: seconds, `_total` on counters, and the unit
            # in the name (temporal_activity_schedule_to_start_latency_seconds).
            durations_as_seconds=True,
            counters_total_suffix=True,
            unit_suffix=True,
            # The SDK's default buckets suit neither an HTTP step nor a whole order.
            histogram_bucket_overrides=HISTOGRAM_BUCKETS,
        )
    return Runtime(telemetry=TelemetryConfig(metrics=metrics))
