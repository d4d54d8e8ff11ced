from __future__ import annotations

from datetime import UTC, datetime

from contracts.orders import OperatorAction
from workflows.operators import operator_record, operator_remark

AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_a_decision_is_recorded_with_who_what_when_and_why() -> None:
    taken = OperatorAction(note="  refunded by bank transfer ", operator="ops_ada")

    record = operator_record("resolve", taken, "refund_payment", AT)

    assert (record.operator, record.decision, record.step, record.note, record.at) == (
        "ops_ada",
        "resolve",
        "refund_payment",
        "refunded by bank transfer",
        "2026-12-04T12:00:00+00:00",
    )


def test_the_remark_names_the_operator() -> None:
    resolved = operator_record(
        "resolve", OperatorAction("by hand", "ops_ada"), "refund_payment", AT
    )
    retried = operator_record("retry", OperatorAction(operator="ops_bo"), "refund_payment", AT)

    assert operator_remark(resolved) == "; resolved by operator ops_ada: by hand"
    assert operator_remark(retried) == "; retried by operator ops_bo"


def test_an_unnamed_operator_reads_as_before_operators_were_named() -> None:
    record = operator_record("resolve", OperatorAction(note="by hand"), "refund_payment", AT)

    assert operator_remark(record) == "; resolved by operator: by hand"
