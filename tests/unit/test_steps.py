"""The step table is the saga: its steps, their undos, and what workers must run."""

from __future__ import annotations

from typing import Any

from temporalio import activity

from contracts import task_queues
from contracts.domains import Domain
from contracts.orders import COMPENSATION_FOR, StepName
from contracts.task_queues import ORDERS
from tests.fakes import FakeDomainActivities
from workers.main import queue_activities
from workflows.steps import COMMIT, STEPS, calls_by_queue


def registered_name(fn: Any) -> str:
    definition = activity._Definition.must_from_callable(fn)
    assert definition.name is not None
    return definition.name


def test_the_steps_run_in_the_saga_order_and_each_has_its_undo() -> None:
    assert [step.name for step in STEPS] == [
        StepName.RESERVE_INVENTORY,
        StepName.CHARGE_PAYMENT,
        StepName.CREATE_SHIPMENT,
    ]
    assert {step.name: step.undo.name for step in STEPS} == {
        step: compensation.value for step, compensation in COMPENSATION_FOR.items()
    }
    assert COMMIT.name == StepName.COMMIT_RESERVATION.value


def test_a_call_is_named_as_the_activity_it_calls() -> None:
    for call in [COMMIT, *(c for step in STEPS for c in (step.do, step.undo))]:
        assert call.name == registered_name(call.activity)


def test_each_domain_queue_runs_its_own_calls() -> None:
    assert calls_by_queue() == {
        task_queues.INVENTORY: {
            "reserve_inventory",
            "release_inventory",
            "commit_reservation",
            "find_committed_reservation",
        },
        task_queues.PAYMENTS: {"charge_payment", "refund_payment"},
        task_queues.SHIPPING: {"create_shipment", "cancel_shipment"},
    }


def test_the_fakes_stand_in_for_every_call_under_its_name() -> None:
    fakes = FakeDomainActivities()
    for names in calls_by_queue().values():
        for fake in fakes.activities_named(names):
            assert registered_name(fake) == fake.__name__


async def test_every_queue_s_workers_register_what_the_table_calls_there() -> None:
    async def no_client(domain: Domain) -> Any:
        return None  # activities are only registered here, never called

    for queue, names in calls_by_queue().items():
        registered = {registered_name(fn) for fn in await queue_activities(queue, no_client)}
        assert names <= registered, f"{queue}: the table calls {sorted(names - registered)}"
        # The orders worker runs every call's first attempt locally.
        local = {registered_name(fn) for fn in await queue_activities(ORDERS, no_client)}
        assert names <= local
