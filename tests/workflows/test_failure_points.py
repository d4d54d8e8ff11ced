"""OrderWorkflow at each of its failure points: one table, one test, on the time-skipping server.

A row (Case) says what goes wrong and when: a domain refuses a step, a service
keeps failing, a cancel lands while a step is in flight, a workflow task is
lost, a compensation is refused and operators step in. Then what the order must
look like at the end. Every row is checked the same way (check_ended): the final
status, every step's state, every activity called, in order, every undo with
what it undid, the failure code and reason, the idempotency keys, the status
the order is listed with and the workflow tasks that failed. A row that parks
the order also says how it looked each time an operator decided (Decide).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from contracts import errors
from contracts.orders import (
    RESOLVE_COMPENSATION_UPDATE,
    RETRY_COMPENSATION_UPDATE,
    CancelOrder,
    OperatorAction,
    OrderResult,
    OrderStatus,
    OrderView,
    StepState,
)
from tests.fakes import FakeDomainActivities, answer_lost, transient
from tests.workflows.conftest import SagaHarness, saga_workers, sample_order
from tests.workflows.support import (
    CATALOG_TOTAL,
    FORWARD,
    LoseOneTask,
    activity_tasks_scheduled,
    send_cancel,
    status_upserts,
    step_states,
    workflow_task_failures,
    workflow_tasks_completed,
)
from workflows.search_attributes import ORDER_STATUS_KEY
from workflows.steps import FORWARD_STEP_MAX_ATTEMPTS

# --- the vocabulary of the table ------------------------------------------------------

COMPLETED = StepState.COMPLETED
FAILED = StepState.FAILED
COMPENSATED = StepState.COMPENSATED
# A refused undo's step while the order is parked: its undo is outstanding.
COMPENSATING = StepState.COMPENSATING
PENDING = StepState.PENDING


def steps(*states: StepState) -> dict[str, StepState]:
    """Every step's state, in saga order; those not given are pending."""
    return dict(zip(FORWARD, [*states, *[PENDING] * (len(FORWARD) - len(states))], strict=True))


ALL_COMPLETED = steps(COMPLETED, COMPLETED, COMPLETED, COMPLETED)

# A fault a fake raises: TRANSIENT is a passing one, Temporal retries it; any
# other is the domain's refusal with that code.
TRANSIENT = "transient"
ANSWER_LOST = "answer-lost"  # a passing fault after the call took effect

# An undo as the fakes saw it: the compensation, and the id of what it undid
# (None: the workflow never saw the step done, so the service looks it up by order).
Undo = tuple[str, str | None]
RELEASE: Undo = ("release_inventory", "res_fake")
RELEASE_BY_ORDER: Undo = ("release_inventory", None)
REFUND: Undo = ("refund_payment", "ch_fake")
REFUND_BY_ORDER: Undo = ("refund_payment", None)
CANCEL_SHIPMENT: Undo = ("cancel_shipment", "shp_fake")
CANCEL_SHIPMENT_BY_ORDER: Undo = ("cancel_shipment", None)
UNDOES = {
    "release_inventory": "reserve_inventory",
    "refund_payment": "charge_payment",
    "cancel_shipment": "create_shipment",
}
UNDONE_ID_FIELD = {
    "release_inventory": "reservation_id",
    "refund_payment": "charge_id",
    "cancel_shipment": "shipment_id",
}

# Asks inventory whether the order is committed: a cancel seen before the
# commit may come after a lost workflow task that committed it.
LOOKUP = "find_committed_reservation"
TOO_LATE = "too late to cancel"
TOO_LATE_COMMITTED = "too late to cancel: the order has been committed"
# Why a task the server would not take failed: it closed the order while an
# update or a cancellation waited.
REJECTED_TASK = "WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND"
LOST_TASK = "WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE"
OPERATOR_UPDATES = {"retry": RETRY_COMPENSATION_UPDATE, "resolve": RESOLVE_COMPENSATION_UPDATE}


@dataclass(frozen=True)
class Containing:
    """A failure reason that must contain this text (a plain str must be the whole reason)."""

    part: str


@dataclass(frozen=True)
class Cancel:
    """A cancel sent while the call `during` is in flight; the call lands once the cancel is in.

    The call is held on its domain's queue, or, `locally`, in its local
    attempt: that holds the workflow task, and a customer's cancel waits for it.
    A customer's cancel is accepted unless `refused` gives the text of its refusal.
    """

    during: str
    through_temporal: bool = False
    reason: str | None = None
    locally: bool = False
    refused: str | None = None


@dataclass(frozen=True)
class LoseTask:
    """Lose the workflow task once, before the local call `before` (None: as the order closes)."""

    before: str | None


@dataclass(frozen=True)
class Decide:
    """An operator's decision on the parked order, and how the order looked when it was taken."""

    decision: Literal["retry", "resolve"]
    on: str  # the refused compensation this settles
    refusal: str  # the code it was refused with
    action: OperatorAction
    parked_steps: dict[str, StepState]
    parked_undone: tuple[Undo, ...]  # every undo run by then


@dataclass(frozen=True)
class Case:
    """One failure point: what goes wrong, and how the order ends.

    The first fields script the fakes (activity name -> fault) and the test;
    the rest are what the order must show at the end. Left at their defaults,
    they describe a completed order.
    """

    name: str
    # What goes wrong.
    fail_always: Mapping[str, str] = field(default_factory=dict)
    fail_next: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    order: Mapping[str, Any] = field(default_factory=dict)
    cancel: Cancel | None = None
    lose_task: LoseTask | None = None
    decisions: tuple[Decide, ...] = ()
    # How the order ends.
    status: OrderStatus = OrderStatus.COMPLETED
    steps: dict[str, StepState] = field(default_factory=lambda: ALL_COMPLETED)
    calls: tuple[str, ...] = FORWARD  # every activity called but the undos, in order
    undone: tuple[Undo, ...] = ()  # the undos, in order (they run after every other call)
    code: str | None = None
    reason: str | Containing | None = None
    total: int | None = CATALOG_TOTAL
    failed_tasks: tuple[str, ...] = ()
    # Checked only where given.
    attempts: tuple[int, ...] | None = None
    ran_locally: tuple[bool, ...] | None = None  # one per call, undos included
    queued: tuple[tuple[str, str], ...] | None = None
    workflow_tasks: int | None = None
    upserts: tuple[str, ...] | None = None


def refused(code: str) -> Containing:
    """The reason of an order a domain refused: it names the refusal's code."""
    return Containing(code)


# Refused at the last step, so there is something to undo: the rows whose
# undos fail or are refused start from it (dataclasses.replace).
SHIP_REFUSED = Case(
    "ship-refused-address-undeliverable",
    fail_always={"create_shipment": errors.ADDRESS_UNDELIVERABLE},
    status=OrderStatus.FAILED,
    steps=steps(COMPENSATED, COMPENSATED, FAILED),
    calls=("reserve_inventory", "charge_payment", "create_shipment"),
    undone=(REFUND, RELEASE),
    code=errors.ADDRESS_UNDELIVERABLE,
    reason=refused(errors.ADDRESS_UNDELIVERABLE),
)
REFUND_ALWAYS_REFUSED = {**SHIP_REFUSED.fail_always, "refund_payment": errors.REFUND_REFUSED}
CHARGE_PAST_ITS_BUDGET = Case(
    # The charge may have gone through before the service stopped answering,
    # so it is refunded too, looked up by order. Payments finds none: the
    # charge stays failed, not "compensated" (nothing was refunded).
    "charge-faults-past-its-retry-budget",
    fail_always={"charge_payment": TRANSIENT},
    status=OrderStatus.FAILED,
    steps=steps(COMPENSATED, FAILED),
    calls=("reserve_inventory", *["charge_payment"] * FORWARD_STEP_MAX_ATTEMPTS),
    undone=(REFUND_BY_ORDER, RELEASE),
    code=errors.SERVICE_UNAVAILABLE,
    reason=Containing(f"gave up after {FORWARD_STEP_MAX_ATTEMPTS} attempts"),
    attempts=(1, FORWARD_STEP_MAX_ATTEMPTS, 0, 0),
)

CASES = [
    Case(
        "nothing-fails",
        attempts=(1, 1, 1, 1),
        # Every step ran locally, in the order's one workflow task, whose one
        # status upsert is the final one: no earlier status could be seen.
        ran_locally=(True,) * len(FORWARD),
        queued=(),
        workflow_tasks=1,
        upserts=("COMPLETED",),
    ),
    # --- a domain refuses a forward step: final at once, even in the local attempt
    Case(
        "reserve-refused-out-of-stock",
        fail_always={"reserve_inventory": errors.OUT_OF_STOCK},
        status=OrderStatus.FAILED,
        steps=steps(FAILED),
        calls=("reserve_inventory",),
        code=errors.OUT_OF_STOCK,
        reason=refused(errors.OUT_OF_STOCK),
        total=None,
        attempts=(1, 0, 0, 0),
    ),
    Case(
        "reserve-refused-price-changed",
        order={"expected_total_cents": CATALOG_TOTAL - 1},
        status=OrderStatus.FAILED,
        steps=steps(FAILED),
        calls=("reserve_inventory",),
        code=errors.PRICE_CHANGED,
        reason=refused(errors.PRICE_CHANGED),
        total=None,
    ),
    Case(
        "charge-refused-payment-declined",
        fail_always={"charge_payment": errors.PAYMENT_DECLINED},
        status=OrderStatus.FAILED,
        steps=steps(COMPENSATED, FAILED),
        calls=("reserve_inventory", "charge_payment"),
        undone=(RELEASE,),
        code=errors.PAYMENT_DECLINED,
        reason=refused(errors.PAYMENT_DECLINED),
        queued=(),
    ),
    Case(
        # Fenced: the service made no charge, so there is no refund to run.
        "charge-refused-order-fenced",
        fail_always={"charge_payment": errors.ORDER_FENCED},
        status=OrderStatus.FAILED,
        steps=steps(COMPENSATED, FAILED),
        calls=("reserve_inventory", "charge_payment"),
        undone=(RELEASE,),
        code=errors.ORDER_FENCED,
        reason=refused(errors.ORDER_FENCED),
        attempts=(1, 1, 0, 0),
    ),
    SHIP_REFUSED,
    # --- passing faults: retried, on the domain's queue once the local attempt failed
    Case(
        "charge-faults-twice-then-succeeds",
        fail_next={"charge_payment": (TRANSIENT, TRANSIENT)},
        calls=(
            "reserve_inventory",
            "charge_payment",
            "charge_payment",
            "charge_payment",
            "create_shipment",
            "commit_reservation",
        ),
        # The local attempt, then two on the payments queue: three, counted across both.
        attempts=(1, 3, 1, 1),
        ran_locally=(True, True, False, False, True, True),
        queued=(("charge_payment", "payments"),),
    ),
    CHARGE_PAST_ITS_BUDGET,
    replace(
        CHARGE_PAST_ITS_BUDGET,
        # Every charge went through and every answer was lost: payments finds
        # the charge by order and refunds it.
        name="charge-lands-but-every-answer-is-lost",
        fail_always={"charge_payment": ANSWER_LOST},
        steps=steps(COMPENSATED, COMPENSATED),
    ),
    replace(
        SHIP_REFUSED,
        # Undoing has no budget: a compensation is retried until it succeeds.
        name="release-faults-eight-times-then-succeeds",
        fail_next={"release_inventory": (TRANSIENT,) * 8},
        undone=(REFUND, *[RELEASE] * 9),
    ),
    # --- the customer cancels: accepted until the shipment exists, even mid-step.
    # A cancelled order also undoes, looked up by order, every step it did not
    # see done (a lost workflow task may have done it); where there is nothing
    # to undo, the step stays pending.
    Case(
        "customer-cancels-while-reserving",
        cancel=Cancel(during="reserve_inventory"),
        status=OrderStatus.CANCELLED,
        steps=steps(COMPENSATED),
        calls=("reserve_inventory", LOOKUP),
        undone=(CANCEL_SHIPMENT_BY_ORDER, REFUND_BY_ORDER, RELEASE),
        reason=CancelOrder().reason,
    ),
    Case(
        "customer-cancels-while-charging",
        cancel=Cancel(during="charge_payment", reason="changed my mind"),
        status=OrderStatus.CANCELLED,
        steps=steps(COMPENSATED, COMPENSATED),
        calls=("reserve_inventory", "charge_payment", LOOKUP),
        undone=(CANCEL_SHIPMENT_BY_ORDER, REFUND, RELEASE),
        reason="changed my mind",
        upserts=("CHARGING", "COMPENSATING", "CANCELLED"),
    ),
    Case(
        "customer-cancels-while-shipping",
        cancel=Cancel(during="create_shipment"),
        status=OrderStatus.CANCELLED,
        steps=steps(COMPENSATED, COMPENSATED, COMPENSATED),
        calls=("reserve_inventory", "charge_payment", "create_shipment", LOOKUP),
        undone=(CANCEL_SHIPMENT, REFUND, RELEASE),
        reason=CancelOrder().reason,
    ),
    Case(
        # The customer was told the order is cancelled; the refusal does not change that.
        "customer-cancels-while-shipping-and-the-shipment-is-refused",
        fail_always={"create_shipment": errors.ADDRESS_UNDELIVERABLE},
        cancel=Cancel(during="create_shipment", reason="changed my mind"),
        status=OrderStatus.CANCELLED,
        steps=steps(COMPENSATED, COMPENSATED, FAILED),
        calls=("reserve_inventory", "charge_payment", "create_shipment", LOOKUP),
        undone=(REFUND, RELEASE),
        reason="changed my mind",
    ),
    Case(
        "customer-cancel-once-shipped-is-refused",
        cancel=Cancel(during="commit_reservation", refused=TOO_LATE),
    ),
    Case(
        # The local attempt holds the order's one task, so the cancel waits; the
        # task goes on to commit and close the order, the waiting update makes
        # the server reject it. The next run's cancel asks inventory before any
        # step runs again: committed, so the cancel is refused, and the steps
        # run again under their keys (the same answers) to the commit.
        "customer-cancels-while-shipping-locally",
        cancel=Cancel(during="create_shipment", locally=True, refused=TOO_LATE_COMMITTED),
        calls=(*FORWARD, LOOKUP, *FORWARD),
        failed_tasks=(REJECTED_TASK,),
    ),
    # --- cancellation through Temporal (Web UI, CLI): the step in flight lands
    # first, then the same unwinding; once shipped, it is ignored.
    Case(
        "temporal-cancels-while-charging",
        cancel=Cancel(during="charge_payment", through_temporal=True),
        status=OrderStatus.CANCELLED,
        steps=steps(COMPENSATED, COMPENSATED),
        calls=("reserve_inventory", "charge_payment", LOOKUP),
        undone=(CANCEL_SHIPMENT_BY_ORDER, REFUND, RELEASE),
        reason="cancelled through Temporal",
    ),
    Case(
        "temporal-cancels-once-shipped-and-the-order-completes",
        cancel=Cancel(during="commit_reservation", through_temporal=True),
    ),
    Case(
        # The order's one task would close it with the cancellation waiting: the
        # server rejects it and its steps' markers with it, so the next run sees
        # the cancel first, though the stock has left. It asks inventory before
        # undoing anything, finds the commit, and completes the order.
        "temporal-cancels-while-shipping-locally",
        cancel=Cancel(during="create_shipment", through_temporal=True, locally=True),
        calls=(*FORWARD, "reserve_inventory", LOOKUP, *FORWARD[1:]),
        failed_tasks=(REJECTED_TASK,),
    ),
    # --- a workflow task is lost (its worker died) after its local steps took effect
    Case(
        # The next run saw the cancel before charging and shipping again;
        # inventory had no commit, so it undid them anyway, looked up by order.
        "temporal-cancels-after-a-lost-task-that-did-not-commit",
        lose_task=LoseTask(before="commit_reservation"),
        cancel=Cancel(during="create_shipment", through_temporal=True, locally=True),
        status=OrderStatus.CANCELLED,
        steps=steps(COMPENSATED, COMPENSATED, COMPENSATED),
        calls=(
            "reserve_inventory",
            "charge_payment",
            "create_shipment",
            "reserve_inventory",  # the next run's first step, finding the same reservation
            LOOKUP,
        ),
        undone=(CANCEL_SHIPMENT_BY_ORDER, REFUND_BY_ORDER, RELEASE),
        reason="cancelled through Temporal",
        failed_tasks=(LOST_TASK,),
    ),
    Case(
        # Without asking inventory, the next run would have refunded and cancelled
        # the shipment of an order whose stock had left the warehouse.
        "temporal-cancels-after-a-lost-task-that-committed",
        lose_task=LoseTask(before=None),
        cancel=Cancel(during="commit_reservation", through_temporal=True, locally=True),
        calls=(*FORWARD, "reserve_inventory", LOOKUP, *FORWARD[1:]),
        failed_tasks=(LOST_TASK,),
    ),
    Case(
        # The next run's validator saw no shipment yet; inventory knew better.
        "customer-cancels-after-a-lost-task-that-committed",
        lose_task=LoseTask(before=None),
        cancel=Cancel(during="commit_reservation", locally=True, refused=TOO_LATE_COMMITTED),
        calls=(*FORWARD, LOOKUP, *FORWARD),
        failed_tasks=(LOST_TASK,),
    ),
    Case(
        # The next run's cancel asks inventory before any step runs again:
        # nothing was committed, so it is accepted, and every step the run never
        # saw is undone, newest first, looked up by order.
        "customer-cancels-after-a-lost-task-that-did-not-commit",
        lose_task=LoseTask(before="commit_reservation"),
        cancel=Cancel(during="create_shipment", locally=True),
        status=OrderStatus.CANCELLED,
        steps=steps(COMPENSATED, COMPENSATED, COMPENSATED),
        calls=(*FORWARD[:3], LOOKUP),
        undone=(CANCEL_SHIPMENT_BY_ORDER, REFUND_BY_ORDER, RELEASE_BY_ORDER),
        total=None,  # the run never saw the reservation that priced it
        reason=CancelOrder().reason,
        failed_tasks=(LOST_TASK,),
    ),
    # --- a compensation refused outright: the other undos still run, then the
    # order waits in NEEDS_ATTENTION for an operator's decision on each.
    replace(
        SHIP_REFUSED,
        name="refund-refused-then-retried-by-an-operator",
        fail_next={"refund_payment": (errors.REFUND_REFUSED,)},
        decisions=(
            Decide(
                "retry",
                on="refund_payment",
                refusal=errors.REFUND_REFUSED,
                action=OperatorAction(note="issuer back up", operator="ops_ada"),
                parked_steps=steps(COMPENSATED, COMPENSATING, FAILED),
                parked_undone=(REFUND, RELEASE),
            ),
        ),
        undone=(REFUND, RELEASE, REFUND),
    ),
    replace(
        SHIP_REFUSED,
        name="refund-refused-then-resolved-by-an-operator",
        fail_always=REFUND_ALWAYS_REFUSED,
        decisions=(
            Decide(
                "resolve",
                on="refund_payment",
                refusal=errors.REFUND_REFUSED,
                action=OperatorAction(note="refunded by bank transfer", operator="ops_ada"),
                parked_steps=steps(COMPENSATED, COMPENSATING, FAILED),
                parked_undone=(REFUND, RELEASE),
            ),
        ),
        # Only the refused undo was outstanding: nothing ran again.
        undone=(REFUND, RELEASE),
    ),
    replace(
        SHIP_REFUSED,
        # Retrying a refund the issuer keeps refusing parks the order again.
        name="refund-refused-retried-refused-again-then-resolved",
        fail_always=REFUND_ALWAYS_REFUSED,
        decisions=(
            Decide(
                "retry",
                on="refund_payment",
                refusal=errors.REFUND_REFUSED,
                action=OperatorAction(),
                parked_steps=steps(COMPENSATED, COMPENSATING, FAILED),
                parked_undone=(REFUND, RELEASE),
            ),
            Decide(
                "resolve",
                on="refund_payment",
                refusal=errors.REFUND_REFUSED,
                action=OperatorAction(note="refunded by bank transfer"),
                parked_steps=steps(COMPENSATED, COMPENSATING, FAILED),
                parked_undone=(REFUND, RELEASE, REFUND),
            ),
        ),
        undone=(REFUND, RELEASE, REFUND),
    ),
    replace(
        SHIP_REFUSED,
        # Both undos were tried before the order parked; then each waits for its own decision.
        name="refund-and-release-refused-each-retried-by-an-operator",
        fail_next={
            "refund_payment": (errors.REFUND_REFUSED,),
            "release_inventory": (errors.INVALID_STATE,),
        },
        decisions=(
            Decide(
                "retry",
                on="refund_payment",
                refusal=errors.REFUND_REFUSED,
                action=OperatorAction(operator="ops_1"),
                parked_steps=steps(COMPENSATING, COMPENSATING, FAILED),
                parked_undone=(REFUND, RELEASE),
            ),
            Decide(
                "retry",
                on="release_inventory",
                refusal=errors.INVALID_STATE,
                action=OperatorAction(operator="ops_2"),
                parked_steps=steps(COMPENSATING, COMPENSATED, FAILED),
                parked_undone=(REFUND, RELEASE, REFUND),
            ),
        ),
        undone=(REFUND, RELEASE, REFUND, RELEASE),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_failure_point(time_skipping_env: WorkflowEnvironment, case: Case) -> None:
    losing = LoseOneTask(case.lose_task.before) if case.lose_task else None
    async with saga_workers(time_skipping_env, interceptors=[losing] if losing else []) as saga:
        script_faults(saga.fakes, case)
        gate = (
            saga.fakes.hold_calls(case.cancel.during, on_queue=not case.cancel.locally)
            if case.cancel
            else None
        )
        handle = await saga.start(sample_order(**case.order))
        if case.cancel and gate:
            await cancel_while_in_flight(saga, handle, case.cancel, gate)
        parked = [await decide(saga, handle, case, index) for index in range(len(case.decisions))]
        result = await ending(handle, case)
        await check_ended(saga, handle, case, result, parked)
    if losing:
        assert losing.lost == 1


# --- playing a row ----------------------------------------------------------------------


def fault(code: str) -> ApplicationError:
    # The message leaves the code out: a code found in a failure reason came
    # from the error's type.
    if code == TRANSIENT:
        return transient()
    if code == ANSWER_LOST:
        return answer_lost()
    return ApplicationError("the fake domain said no", type=code, non_retryable=True)


def script_faults(fakes: FakeDomainActivities, case: Case) -> None:
    for name, code in case.fail_always.items():
        fakes.fail_always[name] = fault(code)
    for name, codes in case.fail_next.items():
        fakes.fail_next[name] = [fault(code) for code in codes]


async def cancel_while_in_flight(
    saga: SagaHarness, handle: WorkflowHandle[Any, Any], cancel: Cancel, gate: asyncio.Event
) -> None:
    await saga.wait_entered(cancel.during)
    if cancel.through_temporal:
        await handle.cancel()
        await asyncio.sleep(0.2)  # the cancellation reaches the server before the call lands
        gate.set()
        return
    answer = send_cancel(handle, CancelOrder(cancel.reason) if cancel.reason else None)
    if cancel.locally:
        await asyncio.sleep(0.2)
        # The local attempt holds the workflow task: the update waits for it.
        assert not answer.done()
        gate.set()
    if cancel.refused is not None:
        with pytest.raises(WorkflowUpdateFailedError) as refusal:
            await answer
        assert cancel.refused in str(refusal.value.cause)
    else:
        accepted = await answer
        assert accepted.status is OrderStatus.COMPENSATING
        if not cancel.locally:
            # Listed as compensating at once, though the call is still in flight.
            assert await listed_status(handle) == OrderStatus.COMPENSATING.value
    gate.set()


async def decide(
    saga: SagaHarness, handle: WorkflowHandle[Any, Any], case: Case, index: int
) -> OrderView:
    """Check the parked order against the row's index-th decision, then take it."""
    decision = case.decisions[index]
    parked = await wait_parked(saga, handle, decided=index)
    assert step_states(parked) == decision.parked_steps
    assert undos_run(saga.fakes) == list(decision.parked_undone)
    outstanding = next(step for step in parked.steps if step.name == UNDOES[decision.on])
    assert outstanding.error is not None and decision.refusal in outstanding.error
    assert operator_records(parked) == expected_records(case)[:index]
    assert await listed_status(handle) == OrderStatus.NEEDS_ATTENTION.value
    with pytest.raises(WorkflowUpdateFailedError) as too_late:
        await send_cancel(handle)
    assert TOO_LATE in str(too_late.value.cause)
    await handle.execute_update(OPERATOR_UPDATES[decision.decision], decision.action)
    return parked


async def wait_parked(
    saga: SagaHarness, handle: WorkflowHandle[Any, Any], *, decided: int, within: float = 20
) -> OrderView:
    """The order once parked after `decided` operator decisions."""
    async with asyncio.timeout(within):
        while True:
            view = await saga.view(handle)
            parked = view.status is OrderStatus.NEEDS_ATTENTION
            if parked and len(view.operator_actions) == decided:
                return view
            await asyncio.sleep(0.05)


async def ending(handle: WorkflowHandle[Any, OrderResult], case: Case) -> OrderResult | None:
    """The workflow's result; None when a cancellation through Temporal ended it cancelled."""
    if case.cancel and case.cancel.through_temporal and case.status is OrderStatus.CANCELLED:
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        assert isinstance(failure.value.cause, CancelledError)
        return None
    return await handle.result()


# --- checking how it ended ------------------------------------------------------------------


async def check_ended(
    saga: SagaHarness,
    handle: WorkflowHandle[Any, Any],
    case: Case,
    result: OrderResult | None,
    parked: list[OrderView],
) -> None:
    fakes = saga.fakes
    view = await saga.view(handle)
    assert view.status is case.status
    if result is not None:
        assert result.status is case.status
        assert_reason(result.failure_reason, case.reason)
    assert_reason(view.failure_reason, case.reason)
    assert view.failure_code == case.code
    assert step_states(view) == case.steps
    assert fakes.names_called() == [*case.calls, *(name for name, _ in case.undone)]
    assert undos_run(fakes) == list(case.undone)
    assert (view.total_cents, view.priced_lines != []) == (case.total, case.total is not None)
    commits = fakes.inputs_of("commit_reservation")
    assert [commit.reservation_id for commit in commits] == ["res_fake"] * len(commits)
    assert keys_sent(fakes) == keys_expected(view.order_id, case)
    assert operator_records(view) == expected_records(case)
    for record, before in zip(view.operator_actions, parked, strict=True):
        assert record.at >= before.updated_at
    assert_operator_remarks(view, case)
    assert await listed_status(handle) == case.status.value
    assert await workflow_task_failures(handle) == list(case.failed_tasks)
    if case.attempts is not None:
        assert tuple(step.attempts for step in view.steps) == case.attempts
    if case.ran_locally is not None:
        assert fakes.ran_locally == list(case.ran_locally)
    if case.queued is not None:
        assert await activity_tasks_scheduled(handle) == list(case.queued)
    if case.workflow_tasks is not None:
        assert await workflow_tasks_completed(handle) == case.workflow_tasks
    if case.upserts is not None:
        assert await status_upserts(handle) == list(case.upserts)


def assert_reason(reason: str | None, expected: str | Containing | None) -> None:
    if isinstance(expected, Containing):
        assert reason is not None and expected.part in reason
    else:
        assert reason == expected


def undos_run(fakes: FakeDomainActivities) -> list[Undo]:
    return [
        (name, getattr(request, UNDONE_ID_FIELD[name]))
        for name, request in fakes.calls
        if name in UNDONE_ID_FIELD
    ]


def keys_sent(fakes: FakeDomainActivities) -> dict[str, list[str]]:
    """Each step's and undo's idempotency keys, each once, in the order first sent."""
    keys: dict[str, list[str]] = {}
    for name, request in fakes.calls:
        if name in FORWARD or name in UNDONE_ID_FIELD:
            sent = keys.setdefault(name, [])
            if request.idempotency_key not in sent:
                sent.append(request.idempotency_key)
    return keys


def keys_expected(order_id: str, case: Case) -> dict[str, list[str]]:
    """One key per call, however often retried or run again; an operator's retry is a new one."""
    called = [*case.calls, *(name for name, _ in case.undone)]
    expected: dict[str, list[str]] = {}
    for name in dict.fromkeys(called):
        if name in FORWARD or name in UNDONE_ID_FIELD:
            retries = sum(d.decision == "retry" and d.on == name for d in case.decisions)
            base = f"{order_id}:{name}"
            expected[name] = [base, *(f"{base}:retry-{n}" for n in range(1, retries + 1))]
    return expected


def operator_records(view: OrderView) -> list[tuple[str, str, str, str]]:
    return [(r.operator, r.decision, r.step, r.note) for r in view.operator_actions]


def expected_records(case: Case) -> list[tuple[str, str, str, str]]:
    return [(d.action.operator, d.decision, d.on, d.action.note) for d in case.decisions]


def assert_operator_remarks(view: OrderView, case: Case) -> None:
    """A settled step's error tells, in order, what each operator decided; the last one ends it."""
    for undo, step in UNDOES.items():
        remarks = [remark(d) for d in case.decisions if d.on == undo]
        if not remarks:
            continue
        error = next(s.error for s in view.steps if s.name == step) or ""
        position = 0
        for text in remarks:
            position = error.index(text, position) + len(text)
        assert error.endswith(remarks[-1])


def remark(decided: Decide) -> str:
    verb = "retried" if decided.decision == "retry" else "resolved"
    operator = decided.action.operator
    who = f"operator {operator}" if operator else "operator"
    note = decided.action.note
    return f"; {verb} by {who}" + (f": {note}" if note else "")


async def listed_status(handle: WorkflowHandle[Any, Any]) -> str | None:
    """The OrderStatus the order is listed with (its search attribute)."""
    described = await handle.describe()
    return described.typed_search_attributes.get(ORDER_STATUS_KEY)
