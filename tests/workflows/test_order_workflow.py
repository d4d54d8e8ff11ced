"""OrderWorkflow, one test per failure point, on the time-skipping server.

Each test asserts the final status, every step's state, and exactly which
compensations ran, in which order, with which inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import CancelledError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from contracts import errors
from contracts.orders import (
    CANCEL_UPDATE,
    RESOLVE_COMPENSATION_UPDATE,
    RETRY_COMPENSATION_UPDATE,
    CancelAccepted,
    CancelOrder,
    OperatorAction,
    OrderStatus,
    OrderView,
    PricedLine,
    StepState,
)
from tests.fakes import FakeDomainActivities, fake_domain_workers, refusal, transient
from tests.workflows.conftest import SagaHarness, sample_order
from workflows.search_attributes import ORDER_STATUS_KEY, ORDER_TOTAL_CENTS_KEY
from workflows.steps import FORWARD_STEP_MAX_ATTEMPTS

FORWARD = ("reserve_inventory", "charge_payment", "create_shipment", "commit_reservation")


def step_states(view: OrderView) -> dict[str, StepState]:
    return {step.name: step.state for step in view.steps}


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


def every_step_under_one_key(fakes: FakeDomainActivities) -> bool:
    """Each forward step, however often it ran, always went with the same idempotency key."""
    return all(
        len({request.idempotency_key for request in fakes.inputs_of(step)}) == 1 for step in FORWARD
    )


def send_cancel(handle: WorkflowHandle[Any, Any]) -> asyncio.Task[CancelAccepted]:
    """The customer's cancel, sent now and answered whenever the workflow answers it."""
    return asyncio.create_task(
        handle.execute_update(CANCEL_UPDATE, CancelOrder(), result_type=CancelAccepted)
    )


# --- local-first attempts ----------------------------------------------------------


async def test_a_healthy_order_runs_every_step_locally_in_one_workflow_task(
    saga: SagaHarness,
) -> None:
    handle = await saga.start(sample_order())

    result = await handle.result()

    assert result.status is OrderStatus.COMPLETED
    assert saga.fakes.names_called() == list(FORWARD)
    assert saga.fakes.names_called_locally() == list(FORWARD)
    assert await activity_tasks_scheduled(handle) == []
    assert await workflow_tasks_completed(handle) == 1


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


async def test_the_status_is_upserted_once_per_workflow_task_that_changed_it(
    saga: SagaHarness,
) -> None:
    handle = await saga.start(sample_order())
    await handle.result()

    # Every status before COMPLETED passes within the order's one task:
    # nothing could have seen them.
    assert await status_upserts(handle) == ["COMPLETED"]
    description = await handle.describe()
    assert description.typed_search_attributes.get(ORDER_STATUS_KEY) == "COMPLETED"


async def test_an_accepted_cancel_is_visible_while_the_step_in_flight_lands(
    saga: SagaHarness,
) -> None:
    gate = saga.fakes.hold_calls("charge_payment")
    handle = await saga.start(sample_order())
    await saga.wait_entered("charge_payment")

    await handle.execute_update(CANCEL_UPDATE, CancelOrder(), result_type=CancelAccepted)
    described = await handle.describe()
    gate.set()
    await handle.result()

    # Listed as COMPENSATING at once, though the charge was still in flight.
    assert described.typed_search_attributes.get(ORDER_STATUS_KEY) == "COMPENSATING"
    assert await status_upserts(handle) == ["CHARGING", "COMPENSATING", "CANCELLED"]


async def test_a_local_attempt_that_fails_hands_the_step_to_its_domain_queue(
    saga: SagaHarness,
) -> None:
    saga.fakes.fail_next["charge_payment"] = [transient(), transient()]
    handle = await saga.start(sample_order())

    result = await handle.result()

    assert result.status is OrderStatus.COMPLETED
    # The local attempt failed; the payments queue's first attempt failed too,
    # and its second succeeded: three attempts, counted across both places.
    places = list(zip(saga.fakes.names_called(), saga.fakes.ran_locally, strict=True))
    assert places == [
        ("reserve_inventory", True),
        ("charge_payment", True),
        ("charge_payment", False),
        ("charge_payment", False),
        ("create_shipment", True),
        ("commit_reservation", True),
    ]
    assert await activity_tasks_scheduled(handle) == [("charge_payment", "payments")]
    view = await saga.view(handle)
    assert [step.attempts for step in view.steps] == [1, 3, 1, 1]


async def test_a_refusal_in_the_local_attempt_is_final(saga: SagaHarness) -> None:
    saga.fakes.fail_always["charge_payment"] = refusal("CARD_DECLINED")
    handle = await saga.start(sample_order())

    result = await handle.result()

    assert result.status is OrderStatus.FAILED
    assert result.failure_reason is not None and "CARD_DECLINED" in result.failure_reason
    assert len(saga.fakes.inputs_of("charge_payment")) == 1
    assert await activity_tasks_scheduled(handle) == []
    assert saga.fakes.compensations_run() == ["release_inventory"]


async def test_a_cancel_that_makes_the_server_reject_the_closing_task_cannot_undo_a_commit(
    saga: SagaHarness,
) -> None:
    # The cancellation reaches the server while the order's one task is still
    # running its local steps. That task then closes the order, so the server
    # rejects it and drops the steps' markers with it; the next run sees the
    # cancel before any step, though the stock has already left.
    gate = saga.fakes.hold_calls("create_shipment", on_queue=False)
    handle = await saga.start(sample_order())
    await saga.wait_entered("create_shipment")

    await handle.cancel()
    await asyncio.sleep(0.2)  # let the cancellation reach the server first
    gate.set()
    result = await handle.result()

    assert await workflow_task_failures(handle) == ["WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND"]
    # The next run asked inventory before undoing anything, found the order
    # committed, and ran the steps again under their keys: each service answers
    # with what the first call did, so nothing happens twice.
    assert result.status is OrderStatus.COMPLETED
    assert saga.fakes.names_called() == [
        *FORWARD,
        "reserve_inventory",
        "find_committed_reservation",
        "charge_payment",
        "create_shipment",
        "commit_reservation",
    ]
    assert every_step_under_one_key(saga.fakes)
    assert saga.fakes.compensations_run() == []
    view = await saga.view(handle)
    assert step_states(view) == dict.fromkeys(FORWARD, StepState.COMPLETED)


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


@contextlib.asynccontextmanager
async def saga_losing_one_task(
    env: WorkflowEnvironment, losing: LoseOneTask
) -> AsyncIterator[SagaHarness]:
    saga = SagaHarness(env, FakeDomainActivities(), f"orders-test-{uuid.uuid4()}")
    async with fake_domain_workers(
        saga.client,
        saga.fakes,
        orders_queue=saga.orders_queue,
        close_orders=saga.terminate_unfinished,
        interceptors=[losing],
    ):
        yield saga


async def test_a_cancel_after_a_lost_task_undoes_the_steps_the_task_carried_out(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    losing = LoseOneTask(before="commit_reservation")
    async with saga_losing_one_task(time_skipping_env, losing) as saga:
        fakes = saga.fakes
        gate = fakes.hold_calls("create_shipment", on_queue=False)
        handle = await saga.start(sample_order())
        await fakes.wait_entered("create_shipment")
        await handle.cancel()
        await asyncio.sleep(0.2)  # the cancel is in the history before the task fails
        gate.set()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        view = await saga.view(handle)

    assert losing.lost == 1
    assert isinstance(failure.value.cause, CancelledError)
    # The run after the lost task saw the cancel before charging and shipping
    # again; inventory had no commit, so it undid them anyway, looked up by order.
    assert fakes.calls_for(view.order_id) == [
        "reserve_inventory",
        "charge_payment",
        "create_shipment",
        "reserve_inventory",  # the next run's first step, finding the same reservation
        "find_committed_reservation",
        "cancel_shipment",
        "refund_payment",
        "release_inventory",
    ]
    assert [request.shipment_id for request in fakes.inputs_of("cancel_shipment")] == [None]
    assert [request.charge_id for request in fakes.inputs_of("refund_payment")] == [None]
    assert view.status is OrderStatus.CANCELLED
    assert step_states(view) == {
        "reserve_inventory": StepState.COMPENSATED,
        "charge_payment": StepState.COMPENSATED,
        "create_shipment": StepState.COMPENSATED,
        "commit_reservation": StepState.PENDING,
    }


async def test_a_cancel_after_a_lost_task_that_committed_completes_the_order(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    losing = LoseOneTask(before=None)
    async with saga_losing_one_task(time_skipping_env, losing) as saga:
        fakes = saga.fakes
        gate = fakes.hold_calls("commit_reservation", on_queue=False)
        handle = await saga.start(sample_order())
        await fakes.wait_entered("commit_reservation")
        await handle.cancel()
        await asyncio.sleep(0.2)  # the cancel is in the history before the task fails
        gate.set()
        result = await handle.result()
        view = await saga.view(handle)

    assert losing.lost == 1
    # Without asking inventory, the next run would have refunded and cancelled
    # the shipment of an order whose stock had left the warehouse.
    assert result.status is OrderStatus.COMPLETED
    assert fakes.compensations_run() == []
    assert fakes.calls_for(view.order_id)[4:6] == [
        "reserve_inventory",
        "find_committed_reservation",
    ]
    assert every_step_under_one_key(fakes)
    assert step_states(view) == dict.fromkeys(FORWARD, StepState.COMPLETED)


async def test_a_customer_cancel_after_a_lost_task_that_committed_is_refused(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    losing = LoseOneTask(before=None)
    async with saga_losing_one_task(time_skipping_env, losing) as saga:
        fakes = saga.fakes
        gate = fakes.hold_calls("commit_reservation", on_queue=False)
        handle = await saga.start(sample_order())
        await fakes.wait_entered("commit_reservation")
        cancel = send_cancel(handle)
        await asyncio.sleep(0.2)  # the update reaches the server before the task fails
        gate.set()
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await cancel
        result = await handle.result()

    assert losing.lost == 1
    # The next run's validator saw no shipment yet; inventory knew better.
    assert "too late to cancel: the order has been committed" in str(refused.value.cause)
    assert result.status is OrderStatus.COMPLETED
    assert fakes.compensations_run() == []
    assert every_step_under_one_key(fakes)


async def test_a_customer_cancel_after_a_lost_task_that_did_not_commit_undoes_its_steps(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    losing = LoseOneTask(before="commit_reservation")
    async with saga_losing_one_task(time_skipping_env, losing) as saga:
        fakes = saga.fakes
        gate = fakes.hold_calls("create_shipment", on_queue=False)
        handle = await saga.start(sample_order())
        await fakes.wait_entered("create_shipment")
        cancel = send_cancel(handle)
        await asyncio.sleep(0.2)
        gate.set()
        accepted = await cancel
        result = await handle.result()
        view = await saga.view(handle)

    assert losing.lost == 1
    assert accepted.status is OrderStatus.COMPENSATING
    assert result.status is OrderStatus.CANCELLED
    # Whatever the next run saw again before the cancel took effect, everything
    # the lost task did is undone, newest first, and nothing was committed.
    assert fakes.compensations_run() == ["cancel_shipment", "refund_payment", "release_inventory"]
    assert "commit_reservation" not in fakes.names_called()
    assert step_states(view)["commit_reservation"] is StepState.PENDING


async def test_the_commit_waits_while_a_customer_cancel_is_being_checked(
    saga: SagaHarness,
) -> None:
    lookup = saga.fakes.hold_calls("find_committed_reservation")
    charge = saga.fakes.hold_calls("charge_payment")
    handle = await saga.start(sample_order())
    await saga.wait_entered("charge_payment")
    cancel = send_cancel(handle)
    await saga.wait_entered("find_committed_reservation")

    # The charge lands and the order ships while the cancel's check is held:
    # the next step would be the commit.
    charge.set()
    await saga.wait_entered("create_shipment")
    await asyncio.sleep(0.2)
    lookup.set()
    accepted = await cancel
    result = await handle.result()

    # Inventory had no commit, so the cancel was accepted; the order must not
    # have committed meanwhile, or the customer would have been told a lie.
    assert accepted.status is OrderStatus.COMPENSATING
    assert result.status is OrderStatus.CANCELLED
    assert "commit_reservation" not in saga.fakes.names_called()
    assert saga.fakes.compensations_run() == [
        "cancel_shipment",
        "refund_payment",
        "release_inventory",
    ]


async def test_a_customer_cancel_sent_during_the_orders_one_task_is_refused_once_committed(
    saga: SagaHarness,
) -> None:
    gate = saga.fakes.hold_calls("create_shipment", on_queue=False)
    handle = await saga.start(sample_order())
    await saga.wait_entered("create_shipment")

    cancel = send_cancel(handle)
    await asyncio.sleep(0.2)
    # The local attempt holds the workflow task: the update waits for it.
    assert not cancel.done()
    gate.set()
    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await cancel

    # The task went on to commit and close the order; the waiting update made
    # the server reject it, and the next run's check found the commit.
    assert "too late to cancel: the order has been committed" in str(rejected.value.cause)
    result = await handle.result()
    assert result.status is OrderStatus.COMPLETED
    assert saga.fakes.compensations_run() == []
    assert every_step_under_one_key(saga.fakes)


async def test_happy_path_completes_and_commits_the_reservation(saga: SagaHarness) -> None:
    handle = await saga.start(sample_order())

    result = await handle.result()

    assert result.status is OrderStatus.COMPLETED
    assert result.failure_reason is None
    view = await saga.view(handle)
    assert step_states(view) == dict.fromkeys(FORWARD, StepState.COMPLETED)
    assert saga.fakes.names_called() == list(FORWARD)
    assert saga.fakes.compensations_run() == []
    (commit,) = saga.fakes.inputs_of("commit_reservation")
    assert commit.reservation_id == "res_fake"
    assert commit.idempotency_key == f"{view.order_id}:commit_reservation"
    assert view.total_cents == 2 * 1250 + 999
    assert [step.attempts for step in view.steps] == [1, 1, 1, 1]


async def test_out_of_stock_fails_with_nothing_to_undo(saga: SagaHarness) -> None:
    saga.fakes.fail_always["reserve_inventory"] = refusal("OUT_OF_STOCK")
    handle = await saga.start(sample_order())

    result = await handle.result()

    assert result.status is OrderStatus.FAILED
    assert result.failure_reason is not None and "OUT_OF_STOCK" in result.failure_reason
    view = await saga.view(handle)
    assert step_states(view) == {
        "reserve_inventory": StepState.FAILED,
        "charge_payment": StepState.PENDING,
        "create_shipment": StepState.PENDING,
        "commit_reservation": StepState.PENDING,
    }
    # A refusal is final: one attempt, and nothing happened that needs undoing.
    assert saga.fakes.names_called() == ["reserve_inventory"]
    assert view.steps[0].attempts == 1


async def test_payment_declined_releases_the_stock(saga: SagaHarness) -> None:
    saga.fakes.fail_always["charge_payment"] = refusal("PAYMENT_DECLINED")
    handle = await saga.start(sample_order())

    result = await handle.result()

    assert result.status is OrderStatus.FAILED
    assert result.failure_reason is not None and "PAYMENT_DECLINED" in result.failure_reason
    view = await saga.view(handle)
    assert step_states(view) == {
        "reserve_inventory": StepState.COMPENSATED,
        "charge_payment": StepState.FAILED,
        "create_shipment": StepState.PENDING,
        "commit_reservation": StepState.PENDING,
    }
    assert saga.fakes.compensations_run() == ["release_inventory"]
    (release,) = saga.fakes.inputs_of("release_inventory")
    assert release.reservation_id == "res_fake"
    assert release.idempotency_key == f"{view.order_id}:release_inventory"


async def test_a_fenced_charge_did_nothing_so_only_the_stock_is_released(
    saga: SagaHarness,
) -> None:
    """ORDER_FENCED is a refusal like a decline: the service made no charge, so
    there is no refund to run (the workflow needs no case of its own for it)."""
    saga.fakes.fail_always["charge_payment"] = refusal(errors.ORDER_FENCED)
    handle = await saga.start(sample_order())

    result = await handle.result()

    assert result.status is OrderStatus.FAILED
    view = await saga.view(handle)
    assert view.failure_code == errors.ORDER_FENCED
    assert step_states(view)["charge_payment"] is StepState.FAILED
    assert view.steps[1].attempts == 1
    assert saga.fakes.compensations_run() == ["release_inventory"]


async def test_undeliverable_address_refunds_then_releases(saga: SagaHarness) -> None:
    saga.fakes.fail_always["create_shipment"] = refusal("ADDRESS_UNDELIVERABLE")
    handle = await saga.start(sample_order())

    result = await handle.result()

    assert result.status is OrderStatus.FAILED
    assert result.failure_reason is not None
    assert "ADDRESS_UNDELIVERABLE" in result.failure_reason
    view = await saga.view(handle)
    assert step_states(view) == {
        "reserve_inventory": StepState.COMPENSATED,
        "charge_payment": StepState.COMPENSATED,
        "create_shipment": StepState.FAILED,
        "commit_reservation": StepState.PENDING,
    }
    assert saga.fakes.compensations_run() == ["refund_payment", "release_inventory"]
    assert saga.fakes.inputs_of("refund_payment")[0].charge_id == "ch_fake"


async def test_transient_faults_are_retried_then_succeed(saga: SagaHarness) -> None:
    saga.fakes.fail_next["charge_payment"] = [transient(), transient()]
    handle = await saga.start(sample_order())

    result = await handle.result()

    assert result.status is OrderStatus.COMPLETED
    view = await saga.view(handle)
    assert step_states(view) == dict.fromkeys(FORWARD, StepState.COMPLETED)
    charge = next(step for step in view.steps if step.name == "charge_payment")
    assert charge.attempts == 3
    # Every retry sent the same idempotency key, so the service charges once.
    keys = {request.idempotency_key for request in saga.fakes.inputs_of("charge_payment")}
    assert keys == {f"{view.order_id}:charge_payment"}
    assert saga.fakes.compensations_run() == []


async def test_forward_retry_budget_exhausted_fails_and_undoes_the_ambiguous_step(
    saga: SagaHarness,
) -> None:
    saga.fakes.fail_always["charge_payment"] = transient()
    handle = await saga.start(sample_order())

    result = await handle.result()

    assert result.status is OrderStatus.FAILED
    assert result.failure_reason is not None
    assert f"gave up after {FORWARD_STEP_MAX_ATTEMPTS} attempts" in result.failure_reason
    assert len(saga.fakes.inputs_of("charge_payment")) == FORWARD_STEP_MAX_ATTEMPTS
    view = await saga.view(handle)
    # The charge may have gone through before the service stopped answering,
    # so it is refunded too, looked up by order (no charge id is known).
    assert step_states(view) == {
        "reserve_inventory": StepState.COMPENSATED,
        "charge_payment": StepState.COMPENSATED,
        "create_shipment": StepState.PENDING,
        "commit_reservation": StepState.PENDING,
    }
    assert saga.fakes.compensations_run() == ["refund_payment", "release_inventory"]
    assert saga.fakes.inputs_of("refund_payment")[0].charge_id is None


async def test_compensation_faults_are_retried_until_they_succeed(saga: SagaHarness) -> None:
    saga.fakes.fail_always["create_shipment"] = refusal("ADDRESS_UNDELIVERABLE")
    saga.fakes.fail_next["release_inventory"] = [transient() for _ in range(8)]
    handle = await saga.start(sample_order())

    result = await handle.result()

    assert result.status is OrderStatus.FAILED
    assert len(saga.fakes.inputs_of("release_inventory")) == 9
    assert saga.fakes.compensations_run()[-1] == "release_inventory"


async def test_cancel_before_shipping_undoes_what_was_done(saga: SagaHarness) -> None:
    gate = saga.fakes.hold_calls("charge_payment")
    handle = await saga.start(sample_order())
    await saga.wait_entered("charge_payment")

    accepted = await handle.execute_update(
        CANCEL_UPDATE, CancelOrder(reason="changed my mind"), result_type=CancelAccepted
    )
    assert accepted.status is OrderStatus.COMPENSATING
    gate.set()
    result = await handle.result()

    assert result.status is OrderStatus.CANCELLED
    assert result.failure_reason == "changed my mind"
    view = await saga.view(handle)
    assert step_states(view) == {
        "reserve_inventory": StepState.COMPENSATED,
        "charge_payment": StepState.COMPENSATED,
        "create_shipment": StepState.PENDING,
        "commit_reservation": StepState.PENDING,
    }
    # The charge in flight when the cancel arrived completed, so it is refunded.
    # The shipment is looked up by order too, in case a lost workflow task
    # created it; there is none, so it stays pending.
    assert saga.fakes.compensations_run() == [
        "cancel_shipment",
        "refund_payment",
        "release_inventory",
    ]
    assert [request.shipment_id for request in saga.fakes.inputs_of("cancel_shipment")] == [None]
    assert "create_shipment" not in saga.fakes.names_called()


async def test_cancel_while_create_shipment_is_in_flight_undoes_the_shipment_too(
    saga: SagaHarness,
) -> None:
    gate = saga.fakes.hold_calls("create_shipment")
    handle = await saga.start(sample_order())
    await saga.wait_entered("create_shipment")

    await handle.execute_update(CANCEL_UPDATE, CancelOrder(), result_type=CancelAccepted)
    # The shipment is created after the cancel was accepted: its side effect happened.
    gate.set()
    result = await handle.result()

    assert result.status is OrderStatus.CANCELLED
    view = await saga.view(handle)
    assert step_states(view) == {
        "reserve_inventory": StepState.COMPENSATED,
        "charge_payment": StepState.COMPENSATED,
        "create_shipment": StepState.COMPENSATED,
        "commit_reservation": StepState.PENDING,
    }
    assert saga.fakes.compensations_run() == [
        "cancel_shipment",
        "refund_payment",
        "release_inventory",
    ]
    assert saga.fakes.inputs_of("cancel_shipment")[0].shipment_id == "shp_fake"
    assert "commit_reservation" not in saga.fakes.names_called()


async def test_a_cancelled_order_whose_step_in_flight_is_then_refused_ends_cancelled(
    saga: SagaHarness,
) -> None:
    gate = saga.fakes.hold_calls("create_shipment")
    saga.fakes.fail_always["create_shipment"] = refusal("ADDRESS_UNDELIVERABLE")
    handle = await saga.start(sample_order())
    await saga.wait_entered("create_shipment")

    await handle.execute_update(
        CANCEL_UPDATE, CancelOrder(reason="changed my mind"), result_type=CancelAccepted
    )
    gate.set()
    result = await handle.result()

    # The customer was told the order is cancelled; the refusal does not change that.
    assert result.status is OrderStatus.CANCELLED
    assert result.failure_reason == "changed my mind"
    view = await saga.view(handle)
    assert step_states(view)["create_shipment"] is StepState.FAILED
    assert saga.fakes.compensations_run() == ["refund_payment", "release_inventory"]


async def test_cancel_after_the_shipment_is_created_is_rejected(saga: SagaHarness) -> None:
    gate = saga.fakes.hold_calls("commit_reservation")
    handle = await saga.start(sample_order())
    await saga.wait_entered("commit_reservation")

    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await handle.execute_update(CANCEL_UPDATE, CancelOrder(), result_type=CancelAccepted)
    assert "too late to cancel" in str(rejected.value.cause)
    gate.set()
    result = await handle.result()

    assert result.status is OrderStatus.COMPLETED
    assert saga.fakes.compensations_run() == []


async def test_cancel_of_a_finished_order_is_rejected(saga: SagaHarness) -> None:
    handle = await saga.start(sample_order())
    await handle.result()

    # A closed workflow takes no updates: the server itself refuses the call.
    with pytest.raises(RPCError):
        await handle.execute_update(CANCEL_UPDATE, CancelOrder(), result_type=CancelAccepted)


async def test_cancellation_through_temporal_waits_for_the_step_in_flight_then_undoes(
    saga: SagaHarness,
) -> None:
    gate = saga.fakes.hold_calls("charge_payment")
    handle = await saga.start(sample_order())
    await saga.wait_entered("charge_payment")

    await handle.cancel()
    await asyncio.sleep(0.2)  # give the cancellation time to reach the workflow first
    gate.set()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    assert isinstance(failure.value.cause, CancelledError)
    view = await saga.view(handle)
    assert view.status is OrderStatus.CANCELLED
    # The shipment is looked up by order (a lost task may have made one): none.
    assert saga.fakes.compensations_run() == [
        "cancel_shipment",
        "refund_payment",
        "release_inventory",
    ]
    assert step_states(view)["charge_payment"] is StepState.COMPENSATED
    assert step_states(view)["create_shipment"] is StepState.PENDING


async def test_cancellation_through_temporal_after_shipping_lets_the_order_complete(
    saga: SagaHarness,
) -> None:
    gate = saga.fakes.hold_calls("commit_reservation")
    handle = await saga.start(sample_order())
    await saga.wait_entered("commit_reservation")

    await handle.cancel()
    await asyncio.sleep(0.2)  # give the cancellation time to reach the workflow first
    gate.set()
    result = await handle.result()

    assert result.status is OrderStatus.COMPLETED
    assert saga.fakes.compensations_run() == []
    view = await saga.view(handle)
    assert step_states(view) == dict.fromkeys(FORWARD, StepState.COMPLETED)


async def test_refund_refused_needs_attention_until_an_operator_retries(
    saga: SagaHarness,
) -> None:
    saga.fakes.fail_always["create_shipment"] = refusal("ADDRESS_UNDELIVERABLE")
    saga.fakes.fail_next["refund_payment"] = [refusal("REFUND_REFUSED")]
    handle = await saga.start(sample_order())

    view = await saga.wait_for_status(handle, OrderStatus.NEEDS_ATTENTION)
    refund_step = step_states(view)["charge_payment"]
    assert refund_step is StepState.FAILED
    # The refusal held up nothing else: the stock was released before the order parked.
    assert saga.fakes.compensations_run() == ["refund_payment", "release_inventory"]
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(CANCEL_UPDATE, CancelOrder(), result_type=CancelAccepted)

    await handle.execute_update(
        RETRY_COMPENSATION_UPDATE, OperatorAction(note="issuer back up", operator="ops_ada")
    )
    result = await handle.result()

    assert result.status is OrderStatus.FAILED
    view = await saga.view(handle)
    assert step_states(view)["charge_payment"] is StepState.COMPENSATED
    assert step_states(view)["reserve_inventory"] is StepState.COMPENSATED
    assert saga.fakes.compensations_run() == [
        "refund_payment",
        "release_inventory",
        "refund_payment",
    ]
    # The operator's retry is a new request to the payment service: a new key.
    keys = [request.idempotency_key for request in saga.fakes.inputs_of("refund_payment")]
    assert keys == [f"{view.order_id}:refund_payment", f"{view.order_id}:refund_payment:retry-1"]
    (retried,) = view.operator_actions
    assert (retried.operator, retried.decision, retried.step, retried.note) == (
        "ops_ada",
        "retry",
        "refund_payment",
        "issuer back up",
    )
    assert "retried by operator ops_ada" in (view.steps[1].error or "")


async def test_refund_refused_needs_attention_until_an_operator_resolves(
    saga: SagaHarness,
) -> None:
    saga.fakes.fail_always["create_shipment"] = refusal("ADDRESS_UNDELIVERABLE")
    saga.fakes.fail_always["refund_payment"] = refusal("REFUND_REFUSED")
    handle = await saga.start(sample_order())
    await saga.wait_for_status(handle, OrderStatus.NEEDS_ATTENTION)

    # Retrying a refund the issuer keeps refusing parks the order again.
    await handle.execute_update(RETRY_COMPENSATION_UPDATE, OperatorAction())
    await saga.wait_for_status(handle, OrderStatus.NEEDS_ATTENTION)
    assert saga.fakes.compensations_run() == [
        "refund_payment",
        "release_inventory",
        "refund_payment",
    ]
    await handle.execute_update(
        RESOLVE_COMPENSATION_UPDATE, OperatorAction(note="refunded by bank transfer")
    )
    result = await handle.result()

    assert result.status is OrderStatus.FAILED
    view = await saga.view(handle)
    charge = next(step for step in view.steps if step.name == "charge_payment")
    assert charge.state is StepState.COMPENSATED
    assert charge.error is not None
    assert charge.error.endswith("resolved by operator: refunded by bank transfer")
    assert saga.fakes.compensations_run() == [
        "refund_payment",
        "release_inventory",
        "refund_payment",
    ]
    assert [action.decision for action in view.operator_actions] == ["retry", "resolve"]


async def test_operator_actions_are_rejected_unless_the_order_needs_attention(
    saga: SagaHarness,
) -> None:
    gate = saga.fakes.hold_calls("reserve_inventory")
    handle = await saga.start(sample_order())
    await saga.wait_entered("reserve_inventory")

    for update in (RETRY_COMPENSATION_UPDATE, RESOLVE_COMPENSATION_UPDATE):
        with pytest.raises(WorkflowUpdateFailedError) as rejected:
            await handle.execute_update(update, OperatorAction())
        assert "not waiting for an operator" in str(rejected.value.cause)
    gate.set()
    assert (await handle.result()).status is OrderStatus.COMPLETED


# --- the server sets the price ---------------------------------------------------

# The fake catalog: sku_mug 12.50 EUR, sku_poster 9.99 EUR; the sample order is
# two mugs and a poster.
CATALOG_TOTAL = 2 * 1250 + 999


@pytest.mark.parametrize(
    ("catalog_changes", "expected_total", "charged"),
    [
        pytest.param({}, None, CATALOG_TOTAL, id="no-expectation"),
        pytest.param({}, CATALOG_TOTAL, CATALOG_TOTAL, id="expected-the-catalog-total"),
        pytest.param({"sku_mug": 1500}, None, 2 * 1500 + 999, id="price-rose-before-reserving"),
        pytest.param({"sku_poster": 1}, None, 2 * 1250 + 1, id="price-fell-before-reserving"),
    ],
)
async def test_the_charge_is_exactly_the_reserved_total(
    saga: SagaHarness, catalog_changes: dict[str, int], expected_total: int | None, charged: int
) -> None:
    saga.fakes.catalog_prices.update(catalog_changes)
    handle = await saga.start(sample_order(expected_total_cents=expected_total))

    result = await handle.result()

    assert result.status is OrderStatus.COMPLETED
    (reserve,) = saga.fakes.inputs_of("reserve_inventory")
    assert (reserve.currency, reserve.expected_total_cents) == ("EUR", expected_total)
    (charge,) = saga.fakes.inputs_of("charge_payment")
    assert (charge.amount_cents, charge.currency) == (charged, "EUR")
    view = await saga.view(handle)
    assert view.total_cents == charged
    prices = saga.fakes.catalog_prices
    assert view.priced_lines == [
        PricedLine("sku_mug", 2, prices["sku_mug"]),
        PricedLine("sku_poster", 1, prices["sku_poster"]),
    ]
    assert view.failure_code is None


async def test_nothing_is_priced_before_the_reservation(saga: SagaHarness) -> None:
    gate = saga.fakes.hold_calls("reserve_inventory")
    handle = await saga.start(sample_order())
    await saga.wait_entered("reserve_inventory")

    view = await saga.view(handle)
    gate.set()
    await handle.result()

    assert (view.total_cents, view.priced_lines) == (None, [])


async def test_a_price_changed_refusal_fails_the_order_with_nothing_to_undo(
    saga: SagaHarness,
) -> None:
    handle = await saga.start(sample_order(expected_total_cents=CATALOG_TOTAL - 1))

    result = await handle.result()

    assert result.status is OrderStatus.FAILED
    assert result.failure_reason is not None and errors.PRICE_CHANGED in result.failure_reason
    assert saga.fakes.names_called() == ["reserve_inventory"]
    view = await saga.view(handle)
    assert view.failure_code == errors.PRICE_CHANGED
    assert (view.total_cents, view.priced_lines) == (None, [])
    assert step_states(view)["reserve_inventory"] is StepState.FAILED


async def test_the_reserved_total_rides_the_status_upsert_of_a_healthy_order(
    saga: SagaHarness,
) -> None:
    saga.fakes.catalog_prices["sku_mug"] = 1300
    handle = await saga.start(sample_order())
    await handle.result()

    description = await handle.describe()
    assert description.typed_search_attributes.get(ORDER_TOTAL_CENTS_KEY) == 2 * 1300 + 999
    # No upsert of its own: the order's one status upsert carries it.
    assert await status_upserts(handle) == ["COMPLETED"]


async def activity_summaries(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The summary of every activity task the history scheduled."""
    history = await handle.fetch_history()
    return [
        event.user_metadata.summary.data.decode().strip('"')
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def test_an_order_waiting_on_its_charge_is_listed_with_the_reserved_total(
    saga: SagaHarness,
) -> None:
    saga.fakes.catalog_prices["sku_poster"] = 1000
    gate = saga.fakes.hold_calls("charge_payment")
    handle = await saga.start(sample_order())
    await saga.wait_entered("charge_payment")

    described = await handle.describe()
    gate.set()
    await handle.result()

    assert described.typed_search_attributes.get(ORDER_TOTAL_CENTS_KEY) == 2 * 1250 + 1000
    assert await status_upserts(handle) == ["CHARGING", "COMPLETED"]
    assert await activity_summaries(handle) == ["charge 35.00 EUR"]


# --- what ended the order ---------------------------------------------------------


@pytest.mark.parametrize(
    ("activity", "error", "code"),
    [
        pytest.param("reserve_inventory", refusal(errors.OUT_OF_STOCK), errors.OUT_OF_STOCK),
        pytest.param("charge_payment", refusal(errors.PAYMENT_DECLINED), errors.PAYMENT_DECLINED),
        pytest.param(
            "create_shipment",
            refusal(errors.ADDRESS_UNDELIVERABLE),
            errors.ADDRESS_UNDELIVERABLE,
        ),
        pytest.param(
            "charge_payment", transient(), errors.SERVICE_UNAVAILABLE, id="retries-ran-out"
        ),
    ],
)
async def test_a_failed_order_names_what_ended_it(
    saga: SagaHarness, activity: str, error: Exception, code: str
) -> None:
    saga.fakes.fail_always[activity] = error
    handle = await saga.start(sample_order())

    result = await handle.result()

    assert result.status is OrderStatus.FAILED
    assert (await saga.view(handle)).failure_code == code


async def test_a_cancelled_order_has_no_failure_code(saga: SagaHarness) -> None:
    gate = saga.fakes.hold_calls("create_shipment")
    saga.fakes.fail_always["create_shipment"] = refusal(errors.ADDRESS_UNDELIVERABLE)
    handle = await saga.start(sample_order())
    await saga.wait_entered("create_shipment")
    await handle.execute_update(CANCEL_UPDATE, CancelOrder(), result_type=CancelAccepted)
    gate.set()

    result = await handle.result()

    assert result.status is OrderStatus.CANCELLED
    assert (await saga.view(handle)).failure_code is None


# --- a refused compensation strands nothing ------------------------------------------


async def test_a_refused_refund_still_releases_the_stock_before_the_order_parks(
    saga: SagaHarness,
) -> None:
    saga.fakes.fail_always["create_shipment"] = refusal(errors.ADDRESS_UNDELIVERABLE)
    saga.fakes.fail_always["refund_payment"] = refusal(errors.REFUND_REFUSED)
    handle = await saga.start(sample_order())

    parked = await saga.wait_for_status(handle, OrderStatus.NEEDS_ATTENTION)

    # The stock went back while the refund waits for an operator: a refusal
    # cannot be used to hold every product reserved.
    assert saga.fakes.compensations_run() == ["refund_payment", "release_inventory"]
    assert step_states(parked) == {
        "reserve_inventory": StepState.COMPENSATED,
        "charge_payment": StepState.FAILED,
        "create_shipment": StepState.FAILED,
        "commit_reservation": StepState.PENDING,
    }
    outstanding = next(step for step in parked.steps if step.name == "charge_payment")
    assert outstanding.error is not None and errors.REFUND_REFUSED in outstanding.error
    assert parked.operator_actions == []

    await handle.execute_update(
        RESOLVE_COMPENSATION_UPDATE,
        OperatorAction(note="refunded by bank transfer", operator="ops_ada"),
    )
    result = await handle.result()

    assert result.status is OrderStatus.FAILED
    # Only the refused step was outstanding: nothing ran again.
    assert saga.fakes.compensations_run() == ["refund_payment", "release_inventory"]
    view = await saga.view(handle)
    assert view.failure_code == errors.ADDRESS_UNDELIVERABLE
    charge = next(step for step in view.steps if step.name == "charge_payment")
    assert charge.state is StepState.COMPENSATED
    assert charge.error is not None
    assert charge.error.endswith("resolved by operator ops_ada: refunded by bank transfer")
    (resolved,) = view.operator_actions
    assert (resolved.operator, resolved.decision, resolved.step, resolved.note) == (
        "ops_ada",
        "resolve",
        "refund_payment",
        "refunded by bank transfer",
    )
    assert resolved.at >= parked.updated_at


async def test_every_refused_compensation_waits_for_its_own_operator_decision(
    saga: SagaHarness,
) -> None:
    saga.fakes.fail_always["create_shipment"] = refusal(errors.ADDRESS_UNDELIVERABLE)
    saga.fakes.fail_next["refund_payment"] = [refusal(errors.REFUND_REFUSED)]
    saga.fakes.fail_next["release_inventory"] = [refusal(errors.INVALID_STATE)]
    handle = await saga.start(sample_order())

    parked = await saga.wait_for_status(handle, OrderStatus.NEEDS_ATTENTION)
    assert step_states(parked)["reserve_inventory"] is StepState.FAILED
    assert step_states(parked)["charge_payment"] is StepState.FAILED
    await handle.execute_update(RETRY_COMPENSATION_UPDATE, OperatorAction(operator="ops_1"))
    await saga.wait_for_status(handle, OrderStatus.NEEDS_ATTENTION)
    await handle.execute_update(RETRY_COMPENSATION_UPDATE, OperatorAction(operator="ops_2"))
    result = await handle.result()

    assert result.status is OrderStatus.FAILED
    # Both undos were tried before the order parked; then each retried in turn.
    assert saga.fakes.compensations_run() == [
        "refund_payment",
        "release_inventory",
        "refund_payment",
        "release_inventory",
    ]
    view = await saga.view(handle)
    assert [(action.operator, action.step) for action in view.operator_actions] == [
        ("ops_1", "refund_payment"),
        ("ops_2", "release_inventory"),
    ]
