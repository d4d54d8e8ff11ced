"""The baseline: a bare workflow running N no-op activities one after another.

Its shape mirrors the saga's as seen by Temporal: one workflow task queue, the
activities on another queue (so, like the saga's, they are never eager), one
activity at a time. The happy path is 4 activities (reserve, charge, ship,
commit), the compensation path 5 (reserve, charge, ship refused, refund,
release). What it costs per order is what Temporal itself costs on this machine.

Imported inside the workflow sandbox: stdlib and temporalio only, no side effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

WORKFLOW_QUEUE = "bench-baseline"
ACTIVITY_QUEUE = "bench-baseline-activities"
WORKFLOW_TYPE = "BenchBaselineWorkflow"
HAPPY_PATH_ACTIVITIES = 4
COMPENSATION_PATH_ACTIVITIES = 5


@dataclass
class BaselineInput:
    steps: int


@dataclass
class BaselineResult:
    steps_done: int


@dataclass
class NoOpInput:
    step: int


@dataclass
class NoOpResult:
    step: int


@activity.defn(name="bench_noop")
async def noop(request: NoOpInput) -> NoOpResult:
    return NoOpResult(step=request.step)


@workflow.defn(name=WORKFLOW_TYPE)
class BaselineWorkflow:
    @workflow.run
    async def run(self, request: BaselineInput) -> BaselineResult:
        done = 0
        for step in range(request.steps):
            result = await workflow.execute_activity(
                noop,
                NoOpInput(step),
                task_queue=ACTIVITY_QUEUE,
                start_to_close_timeout=timedelta(seconds=30),
            )
            done += 1 if result.step == step else 0
        return BaselineResult(steps_done=done)


@workflow.defn(name=WORKFLOW_TYPE + "Local")
class LocalActivityBaselineWorkflow:
    """The same steps as local activities: the 'fewer round trips' lever, measured here
    rather than in the saga (see docs/performance.md for the trade-offs)."""

    @workflow.run
    async def run(self, request: BaselineInput) -> BaselineResult:
        done = 0
        for step in range(request.steps):
            result = await workflow.execute_local_activity(
                noop, NoOpInput(step), start_to_close_timeout=timedelta(seconds=30)
            )
            done += 1 if result.step == step else 0
        return BaselineResult(steps_done=done)
