"""The saga's business metrics, recorded by the workflow itself.

They go through workflow.metric_meter(), which records nothing while a workflow
replays: a worker restart or a cache eviction never counts an order twice. The
worker's SDK runtime serves them on its Prometheus endpoint (workers/runtime.py)
as:

- ordersaga_orders_started_total
- ordersaga_orders_finished_total{status}
- ordersaga_orders_parked_total
- ordersaga_compensations_total{step}
- ordersaga_step_duration_seconds{step,outcome}   histogram
- ordersaga_order_duration_seconds{status}        histogram

Counters are named here without `_total` because that exporter appends it.
Durations are recorded as unitless floats holding seconds, with `_seconds` in
the name: the exporter appends a unit suffix only to metrics that declare a
unit, and converts only timedelta histograms, so the exposed names and values
depend on neither its unit_suffix nor its durations_as_seconds setting. All
durations are differences of workflow time, which is deterministic.

What each counts:
- finished{status} counts COMPLETED, FAILED and CANCELLED once per order, when
  it ends. NEEDS_ATTENTION is not terminal (the order waits for an operator),
  so it is not a finished status: parked counts each time an order parks, and
  the order is counted under finished once the operator lets it end.
- compensations{step} counts each forward step whose undoing began, labelled by
  the forward step it undoes (reserve_inventory, charge_payment,
  create_shipment); an operator's retry of a refused undo is not a new one.
- step_duration{step,outcome} has one observation per activity the saga waited
  for, retries included: `step` is the action (a forward step, the commit, or a
  compensation such as refund_payment); `outcome` is completed, refused (the
  domain said no outright) or failed (out of retries or timed out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from temporalio import workflow
from temporalio.common import MetricMeter

ORDERS_STARTED = "ordersaga_orders_started"
ORDERS_FINISHED = "ordersaga_orders_finished"
ORDERS_PARKED = "ordersaga_orders_parked"
COMPENSATIONS = "ordersaga_compensations"
STEP_DURATION = "ordersaga_step_duration_seconds"
ORDER_DURATION = "ordersaga_order_duration_seconds"

# One step is one HTTP call to a service (milliseconds), stretched by Temporal's
# retry backoff (1+2+4+8 s) and the 30 s start-to-close timeout.
STEP_DURATION_BUCKETS: Sequence[float] = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
)
# A healthy order ends within seconds; one that rode out an outage within
# minutes; one an operator had to unblock within hours or days.
ORDER_DURATION_BUCKETS: Sequence[float] = (
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
    14400,
    86400,
)
# For PrometheusConfig.histogram_bucket_overrides, keyed by the exposed name.
HISTOGRAM_BUCKETS: Mapping[str, Sequence[float]] = {
    STEP_DURATION: STEP_DURATION_BUCKETS,
    ORDER_DURATION: ORDER_DURATION_BUCKETS,
}

StepOutcomeLabel = Literal["completed", "refused", "failed"]


class SagaMetrics:
    """The saga's instruments on one meter (the current workflow's, in a workflow)."""

    def __init__(self, meter: MetricMeter) -> None:
        self._started = meter.create_counter(ORDERS_STARTED, "Orders whose saga started.")
        self._finished = meter.create_counter(
            ORDERS_FINISHED, "Orders that ended, by terminal status."
        )
        self._parked = meter.create_counter(
            ORDERS_PARKED, "Times an order parked in NEEDS_ATTENTION, waiting for an operator."
        )
        self._compensations = meter.create_counter(
            COMPENSATIONS, "Forward steps whose undoing began, by the step undone."
        )
        self._step_duration = meter.create_histogram_float(
            STEP_DURATION, "Seconds the saga waited for one step, retries included."
        )
        self._order_duration = meter.create_histogram_float(
            ORDER_DURATION, "Seconds from an order's start to its terminal status."
        )

    @classmethod
    def for_current_workflow(cls) -> SagaMetrics:
        return cls(workflow.metric_meter())

    def order_started(self) -> None:
        self._started.add(1)

    def order_finished(self, status: str, seconds: float) -> None:
        self._finished.add(1, {"status": status})
        self._order_duration.record(seconds, {"status": status})

    def order_parked(self) -> None:
        self._parked.add(1)

    def compensation_started(self, step: str) -> None:
        self._compensations.add(1, {"step": step})

    def step_finished(self, step: str, outcome: StepOutcomeLabel, seconds: float) -> None:
        self._step_duration.record(seconds, {"step": step, "outcome": outcome})


def seconds_between(start: datetime, end: datetime) -> float:
    # Never negative: workflow time is monotonic within a run, but the start of
    # the execution is stamped by the server, on a different clock.
    return max((end - start).total_seconds(), 0.0)
