"""The lost-task guard: a cancel may be the first thing a run sees of steps already done.

Local attempts (workflows/runner.py) take effect on the services before their
workflow task records them. A task can be lost after its steps took effect:
its worker dies, or the server rejects it because it would close the order
while a cancel waits. The next run replays without those steps, and a cancel
that arrived meanwhile may stop it before it gets there again. So:

- A cancel seen before the commit first asks inventory whether the order is
  already committed (its stock gone, the point of no return). If it is, a
  customer's cancel is refused as too late and a cancellation through Temporal
  is ignored; the order completes, its unseen steps run again under the same
  idempotency keys, and each service answers with what the lost task did.
- If it is not, the cancel undoes, looked up by order, every step it neither
  saw done nor saw refused; where there is nothing to undo, the service says so.

docs/performance.md measures what this costs and why it beats queueing the commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts import task_queues
    from contracts.activities import FindCommittedReservationInput
    from contracts.orders import COMPENSATION_FOR, StepName, StepState
    from workflows.runner import ACTIVITY_START_TO_CLOSE
    from workflows.saga import CompensationStack
    from workflows.state import OrderState
    from workflows.steps import FIND_COMMITTED_RESERVATION, UNTIL_DONE_RETRY_POLICY

T = TypeVar("T")
Shield = Callable[[Awaitable[T]], Awaitable[T]]


async def reservation_committed_unseen(state: OrderState, shield: Shield[str | None]) -> str | None:
    """The order's committed reservation, when a task this run never saw committed it."""
    if state.steps[StepName.COMMIT_RESERVATION].state is not StepState.PENDING:
        return None
    state.publish()  # the task ends here, waiting for the queue
    return await shield(
        workflow.execute_activity_method(
            FIND_COMMITTED_RESERVATION,
            FindCommittedReservationInput(state.order.order_id),
            task_queue=task_queues.INVENTORY,
            start_to_close_timeout=ACTIVITY_START_TO_CLOSE,
            retry_policy=UNTIL_DONE_RETRY_POLICY,
            summary="before undoing: is the order already committed?",
        )
    )


def undo_unseen_steps(compensations: CompensationStack, refused: set[StepName]) -> None:
    """On a cancel: also undo, looked up by order, each step neither seen done nor refused."""
    for step in COMPENSATION_FOR:
        if step not in compensations and step not in refused:
            compensations.record_ambiguous_failure(step)
