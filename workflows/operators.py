"""What an operator decided about a parked order, as the order keeps it.

Pure: the workflow passes the time in (workflow.now()), so this stays
deterministic and free of Temporal calls.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from contracts.orders import OperatorAction, OperatorRecord

OperatorDecision = Literal["retry", "resolve"]


def operator_record(
    decision: OperatorDecision, taken: OperatorAction, action: str, at: datetime
) -> OperatorRecord:
    """The order's record of one decision on the refused call `action`."""
    return OperatorRecord(
        operator=taken.operator,
        decision=decision,
        step=action,
        note=taken.note.strip(),
        at=at.isoformat(),
    )


def operator_remark(record: OperatorRecord) -> str:
    """What the decision adds to the step's error: `; resolved by operator ops_ada: note`.

    An action from a client that sent no operator (older API builds) reads
    `; resolved by operator: note`, as before operators were named.
    """
    verb = "resolved" if record.decision == "resolve" else "retried"
    who = f"operator {record.operator}" if record.operator else "operator"
    return f"; {verb} by {who}" + (f": {record.note}" if record.note else "")
