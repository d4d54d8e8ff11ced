"""The pure rules of local-first attempts (workflows/runner.py)."""

from __future__ import annotations

from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutError,
    TimeoutType,
)

from workflows.runner import (
    after_local_attempt,
    as_activity_error,
    attempts_of,
    describe_failure,
    is_refusal,
)
from workflows.steps import FORWARD_RETRY_POLICY, RESERVE, UNTIL_DONE_RETRY_POLICY


def test_the_local_attempt_takes_one_from_a_bounded_budget() -> None:
    remaining = after_local_attempt(FORWARD_RETRY_POLICY)

    assert remaining.maximum_attempts == FORWARD_RETRY_POLICY.maximum_attempts - 1
    assert remaining.initial_interval == FORWARD_RETRY_POLICY.initial_interval
    assert remaining.non_retryable_error_types == FORWARD_RETRY_POLICY.non_retryable_error_types


def test_an_unlimited_budget_stays_unlimited() -> None:
    assert after_local_attempt(UNTIL_DONE_RETRY_POLICY).maximum_attempts == 0


def test_a_budget_of_one_still_leaves_the_queue_one_attempt() -> None:
    # maximum_attempts=0 would mean unlimited: never hand over "nothing left".
    assert after_local_attempt(RetryPolicy(maximum_attempts=1)).maximum_attempts == 1


def test_a_local_refusal_is_wrapped_and_still_a_refusal() -> None:
    raw = ApplicationError("no stock", 1, type="OUT_OF_STOCK", non_retryable=True)

    wrapped = as_activity_error(raw, RESERVE.do)

    assert isinstance(wrapped, ActivityError)
    assert wrapped.cause is raw
    assert is_refusal(wrapped)
    assert describe_failure(wrapped) == "OUT_OF_STOCK: no stock"


def test_a_local_timeout_is_wrapped_and_not_a_refusal() -> None:
    raw = TimeoutError("timed out", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[])

    wrapped = as_activity_error(raw, RESERVE.do)

    assert not is_refusal(wrapped)
    assert describe_failure(wrapped) == "timed out (START_TO_CLOSE)"
    assert attempts_of(wrapped) == 1


def test_attempts_count_the_local_one_before_the_queues() -> None:
    failed_on_queue = ActivityError(
        "activity failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="charge_payment",
        activity_id="2",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    failed_on_queue.__cause__ = ApplicationError("503", 3, type="SERVICE_UNAVAILABLE")

    assert attempts_of(failed_on_queue) == 3
    assert attempts_of(failed_on_queue, earlier_attempts=1) == 4
    assert describe_failure(failed_on_queue, earlier_attempts=1).startswith(
        "gave up after 4 attempts"
    )
