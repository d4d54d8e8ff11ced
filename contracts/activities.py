"""One dataclass in and one out for every activity.

Compensations carry the id of what to undo when the forward step returned one,
and otherwise only the order id: a forward step that failed ambiguously (timed
out, retries exhausted) may still have taken effect, so its compensation looks
the resource up by order and treats "nothing found" as already undone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.orders import Address, OrderLine, PricedLine


def idempotency_key(order_id: str, step: str, operator_retry: int = 0) -> str:
    """`{order_id}:{step}`; an operator-ordered retry is a new request, so a new key."""
    key = f"{order_id}:{step}"
    return f"{key}:retry-{operator_retry}" if operator_retry else key


@dataclass
class ReserveInventoryInput:
    """Reserve the lines at the catalog's current prices.

    currency: the order's; inventory refuses one that is not the catalog's.
    expected_total_cents: when the customer said what they expect to pay,
    inventory refuses (PRICE_CHANGED) a reservation whose total differs.
    """

    order_id: str
    lines: list[OrderLine]
    idempotency_key: str
    currency: str = ""
    expected_total_cents: int | None = None


@dataclass
class ReleaseInventoryInput:
    order_id: str
    reservation_id: str | None
    idempotency_key: str


@dataclass
class CommitReservationInput:
    order_id: str
    reservation_id: str
    idempotency_key: str


@dataclass
class FindCommittedReservationInput:
    """Which order's committed reservation to look for (a read: no idempotency key)."""

    order_id: str


@dataclass
class ChargePaymentInput:
    order_id: str
    customer_id: str
    amount_cents: int
    currency: str
    payment_token: str
    idempotency_key: str


@dataclass
class RefundPaymentInput:
    order_id: str
    charge_id: str | None
    idempotency_key: str


@dataclass
class CreateShipmentInput:
    order_id: str
    lines: list[OrderLine]
    address: Address
    idempotency_key: str


@dataclass
class CancelShipmentInput:
    order_id: str
    shipment_id: str | None
    idempotency_key: str


@dataclass
class StepOutcome:
    """What a forward step or compensation did.

    resource_id: the reservation, charge or shipment it created or undid (None
    when a compensation found nothing to undo). attempt: the activity attempt
    that succeeded, for the step record.
    """

    resource_id: str | None
    attempt: int = 1
    nothing_to_undo: bool = False
    # A reservation only: its lines at the prices it fixed, and their total in
    # its currency. The charge is exactly this total.
    priced_lines: list[PricedLine] = field(default_factory=list)
    total_cents: int | None = None
    currency: str | None = None
