from __future__ import annotations

import pytest

from contracts.orders import CompensationName, StepName, format_money
from workflows.saga import CompensationStack


def test_compensations_unwind_in_reverse_order_of_the_steps() -> None:
    stack = CompensationStack()
    stack.record_success(StepName.RESERVE_INVENTORY, "res_1")
    stack.record_success(StepName.CHARGE_PAYMENT, "ch_1")
    stack.record_ambiguous_failure(StepName.CREATE_SHIPMENT)

    undo = stack.in_undo_order()

    assert [p.name for p in undo] == [
        CompensationName.CANCEL_SHIPMENT,
        CompensationName.REFUND_PAYMENT,
        CompensationName.RELEASE_INVENTORY,
    ]
    assert [p.resource_id for p in undo] == [None, "ch_1", "res_1"]


def test_a_step_cannot_be_recorded_twice() -> None:
    stack = CompensationStack()
    stack.record_success(StepName.CHARGE_PAYMENT, "ch_1")
    with pytest.raises(ValueError, match="recorded twice"):
        stack.record_ambiguous_failure(StepName.CHARGE_PAYMENT)


def test_a_step_without_a_compensation_is_refused() -> None:
    stack = CompensationStack()
    with pytest.raises(ValueError, match="no compensation"):
        stack.record_success(StepName.COMMIT_RESERVATION, "res_1")


def test_money_is_formatted_without_floats() -> None:
    assert format_money(5997, "USD") == "59.97 USD"
    assert format_money(5, "EUR") == "0.05 EUR"


def test_the_stack_knows_which_steps_it_holds() -> None:
    stack = CompensationStack()
    stack.record_success(StepName.RESERVE_INVENTORY, "res_1")
    stack.record_ambiguous_failure(StepName.CHARGE_PAYMENT)

    assert StepName.RESERVE_INVENTORY in stack
    assert StepName.CHARGE_PAYMENT in stack
    assert StepName.CREATE_SHIPMENT not in stack
