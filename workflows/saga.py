"""The saga's memory of what to undo, and the order it is undone in.

Pure and deterministic: no Temporal calls here, so the rules are unit-testable
and the workflow stays a readable sequence of steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.orders import COMPENSATION_FOR, CompensationName, StepName


@dataclass(frozen=True)
class PendingCompensation:
    step: StepName
    resource_id: str | None

    @property
    def name(self) -> CompensationName:
        return COMPENSATION_FOR[self.step]


class CompensationStack:
    """Forward steps that may have taken effect, most recent last."""

    def __init__(self) -> None:
        self._pending: list[PendingCompensation] = []

    def record_success(self, step: StepName, resource_id: str | None) -> None:
        self._push(PendingCompensation(step, resource_id))

    def record_ambiguous_failure(self, step: StepName) -> None:
        """A step that timed out or ran out of retries may still have taken effect
        on the service; its compensation will look the resource up by order."""
        self._push(PendingCompensation(step, None))

    def _push(self, pending: PendingCompensation) -> None:
        if pending.step not in COMPENSATION_FOR:
            raise ValueError(f"{pending.step} has no compensation")
        if step_already_recorded := [p for p in self._pending if p.step == pending.step]:
            raise ValueError(f"{step_already_recorded[0].step} recorded twice")
        self._pending.append(pending)

    def in_undo_order(self) -> list[PendingCompensation]:
        return list(reversed(self._pending))

    def __contains__(self, step: object) -> bool:
        return any(pending.step == step for pending in self._pending)

    def __len__(self) -> int:
        return len(self._pending)
