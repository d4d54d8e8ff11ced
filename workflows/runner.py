"""Every saga call runs local first, then on its domain's queue.

The first attempt runs in the workflow's own worker as a local activity: a
healthy order is then one workflow task and no activity task instead of five
and four. A refusal there is final, as on the queue. Any other failure (a 5xx,
a service out of reach, or an attempt slower than LOCAL_ATTEMPT_TIMEOUT) hands
the call to its domain's task queue with what is left of its retry budget,
where Temporal retries it with backoff and the Web UI shows it pending; the same
idempotency key makes the queued attempt find whatever the local one did.

What a local attempt did is recorded only when its workflow task completes;
workflows/lost_task.py says what that means for a cancel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState, TimeoutError

with workflow.unsafe.imports_passed_through():
    from contracts import errors
    from contracts.activities import StepOutcome
    from workflows.metrics import StepOutcomeLabel
    from workflows.steps import FORWARD_STEP_MAX_ATTEMPTS, Call

if TYPE_CHECKING:
    from workflows.state import OrderState

# One HTTP call bounded by the client's own connect/read timeouts, plus slack.
ACTIVITY_START_TO_CLOSE = timedelta(seconds=30)
# A local attempt holds the workflow task, and queries, the customer's cancel
# and operators' updates wait for the task to end. A healthy call takes
# milliseconds; one slower than this goes on on the domain's queue, so a cancel
# sent while a slow step is in flight is decided within this bound, by the
# contract (accepted until the shipment exists), not by when the call returns.
# Not less: on a loaded two-core machine healthy calls took over 500 ms, and
# each such call is a second request to its service.
LOCAL_ATTEMPT_TIMEOUT = timedelta(seconds=1)
ONE_LOCAL_ATTEMPT = RetryPolicy(maximum_attempts=1)

# A call ready to run but for its idempotency key, which depends on who runs it
# (a forward step, an undo, an operator's retry).
StepCall = Callable[[str], Awaitable[StepOutcome]]


class LocalFirstRunner:
    """Runs saga calls local first; remembers which ones went on to a queue.

    before_queue: called just before the workflow waits on a queue, where its
    task ends (the order publishes its status there).
    """

    def __init__(self, before_queue: Callable[[], None]) -> None:
        self._before_queue = before_queue
        # Idempotency keys of calls whose local attempt failed and that went on
        # on their domain's queue, where attempts count from 1 again.
        self._handed_over: set[str] = set()

    def bind(self, call: Call, state: OrderState, resource_id: str | None) -> StepCall:
        """The call with its request built from the order's state when it runs."""
        return lambda key: self.run(
            call, call.request(state, key, resource_id), summary=call.summary(state)
        )

    async def run(self, call: Call, request: Any, *, summary: str) -> StepOutcome:
        try:
            return await workflow.execute_local_activity_method(
                call.activity,
                request,
                start_to_close_timeout=LOCAL_ATTEMPT_TIMEOUT,
                retry_policy=ONE_LOCAL_ATTEMPT,
                summary=summary,
            )
        except ActivityError as err:
            if is_refusal(err):
                raise
        except (ApplicationError, TimeoutError) as raw:
            if is_refusal(wrapped := as_activity_error(raw, call)):
                raise wrapped from raw
        self._handed_over.add(request.idempotency_key)
        self._before_queue()
        outcome: StepOutcome = await workflow.execute_activity_method(
            call.activity,
            request,
            task_queue=call.task_queue,
            start_to_close_timeout=ACTIVITY_START_TO_CLOSE,
            retry_policy=after_local_attempt(call.retry_policy),
            summary=summary,
        )
        return replace(outcome, attempt=outcome.attempt + 1)

    def attempts_before_queue(self, key: str) -> int:
        """Attempts made before the domain's queue took the call over: the local one."""
        return 1 if key in self._handed_over else 0


def is_refusal(err: ActivityError) -> bool:
    """The domain refused outright: the step did nothing and needs no undoing."""
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.non_retryable


def failure_code_of(err: ActivityError) -> str:
    """The stable code of why a forward step failed, for the order's failure_code.

    A refusal carries its domain's code; a step that ran out of retries or
    timed out failed because its service did not answer in time.
    """
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable and cause.type:
        return cause.type
    return errors.SERVICE_UNAVAILABLE


def outcome_of(err: ActivityError) -> StepOutcomeLabel:
    return "refused" if is_refusal(err) else "failed"


def describe_failure(err: ActivityError, *, earlier_attempts: int = 0) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        text = f"{cause.type}: {cause.message}"
        if not cause.non_retryable:
            attempts = attempts_of(err, earlier_attempts=earlier_attempts)
            return f"gave up after {attempts} attempts: {text}"
        return text
    if isinstance(cause, TimeoutError):
        return f"timed out ({cause.type.name if cause.type else 'unknown'})"
    return str(cause or err)


def attempts_of(err: ActivityError, *, earlier_attempts: int = 0) -> int:
    """Activities put their attempt number in the error's details.

    earlier_attempts: those made before the call reached the queue whose
    attempt numbers the error carries (the local attempt).
    """
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.details:
        first = cause.details[0]
        if isinstance(first, int):
            return earlier_attempts + first
    if err.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED:
        return FORWARD_STEP_MAX_ATTEMPTS  # the whole budget, wherever it was spent
    return earlier_attempts + 1


def after_local_attempt(policy: RetryPolicy) -> RetryPolicy:
    """What is left of a retry budget once the local attempt has used one."""
    if policy.maximum_attempts <= 0:
        return policy  # unlimited stays unlimited
    return replace(policy, maximum_attempts=max(policy.maximum_attempts - 1, 1))


def as_activity_error(raised: BaseException, call: Call) -> ActivityError:
    """A failed local attempt as the ActivityError the rest of the saga handles.

    The SDK raises a local activity's own ApplicationError or TimeoutError
    when its last attempt fails, not one wrapped in an ActivityError as a
    remote activity's always is.
    """
    wrapped = ActivityError(
        f"local attempt of {call.name} failed",
        scheduled_event_id=0,
        started_event_id=0,
        identity="",
        activity_type=call.name,
        activity_id="",
        retry_state=None,
    )
    wrapped.__cause__ = raised
    return wrapped
