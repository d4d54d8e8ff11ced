"""The order, its status and the record of each saga step."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class OrderStatus(StrEnum):
    RECEIVED = "RECEIVED"
    RESERVING = "RESERVING"
    CHARGING = "CHARGING"
    SHIPPING = "SHIPPING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


# NEEDS_ATTENTION is not terminal: the workflow is still open, waiting for an
# operator to retry or resolve the compensation that was refused.
TERMINAL_STATUSES = frozenset({OrderStatus.COMPLETED, OrderStatus.FAILED, OrderStatus.CANCELLED})


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"


class StepName(StrEnum):
    """Forward steps in the order they run. Each but the last has a compensation."""

    RESERVE_INVENTORY = "reserve_inventory"
    CHARGE_PAYMENT = "charge_payment"
    CREATE_SHIPMENT = "create_shipment"
    COMMIT_RESERVATION = "commit_reservation"


class CompensationName(StrEnum):
    RELEASE_INVENTORY = "release_inventory"
    REFUND_PAYMENT = "refund_payment"
    CANCEL_SHIPMENT = "cancel_shipment"


COMPENSATION_FOR: dict[StepName, CompensationName] = {
    StepName.RESERVE_INVENTORY: CompensationName.RELEASE_INVENTORY,
    StepName.CHARGE_PAYMENT: CompensationName.REFUND_PAYMENT,
    StepName.CREATE_SHIPMENT: CompensationName.CANCEL_SHIPMENT,
}


@dataclass
class OrderLine:
    """What the customer asked for. It has no price: prices come from the catalog."""

    sku: str
    quantity: int


@dataclass
class PricedLine:
    """A line as inventory reserved it, at the catalog's price at that moment."""

    sku: str
    quantity: int
    unit_price_cents: int


@dataclass
class Address:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str | None = None


@dataclass
class PaymentDetails:
    token: str


@dataclass
class PlaceOrder:
    """The workflow input: everything needed to fulfil one order."""

    order_id: str
    customer_id: str
    items: list[OrderLine]
    currency: str
    payment: PaymentDetails
    shipping_address: Address
    # What the customer expects to pay, if they said. Never what is charged:
    # the charge is the reserved total, and a reservation whose total differs
    # from this is refused (PRICE_CHANGED), so the order fails with that reason.
    expected_total_cents: int | None = None

    @property
    def unit_count(self) -> int:
        return sum(line.quantity for line in self.items)


def order_total_cents(lines: list[PricedLine]) -> int:
    return sum(line.quantity * line.unit_price_cents for line in lines)


def format_money(cents: int, currency: str) -> str:
    """`59.97 EUR`, in integer arithmetic: summaries and messages, never floats."""
    return f"{cents // 100}.{cents % 100:02d} {currency}"


@dataclass
class StepView:
    name: str
    state: StepState = StepState.PENDING
    attempts: int = 0
    error: str | None = None


@dataclass
class OperatorRecord:
    """An operator's decision on a parked order: who, what, when and why."""

    operator: str
    decision: str
    step: str
    note: str
    at: str


@dataclass
class OrderView:
    """What the status query returns. Carries no address and no payment token.

    items: what was ordered; priced_lines and total_cents: what was reserved,
    at the catalog's prices (empty and None until the reservation exists).
    failure_code: the stable code of what ended the order (e.g. PAYMENT_DECLINED),
    for the API to turn into words a customer understands; failure_reason is
    the full account, for operators.
    """

    order_id: str
    status: OrderStatus
    customer_id: str
    items: list[OrderLine]
    total_cents: int | None
    currency: str
    steps: list[StepView] = field(default_factory=list)
    failure_reason: str | None = None
    created_at: str = ""
    updated_at: str = ""
    priced_lines: list[PricedLine] = field(default_factory=list)
    failure_code: str | None = None
    operator_actions: list[OperatorRecord] = field(default_factory=list)


@dataclass
class OrderResult:
    """What the workflow returns when it reaches a terminal status.

    view: the order as the status query last showed it, kept in the closed
    execution's result so that reading a finished order needs no worker.
    (Orders that finished before it was added have None here.)
    """

    order_id: str
    status: OrderStatus
    failure_reason: str | None = None
    view: OrderView | None = None


@dataclass
class CancelOrder:
    reason: str = "cancelled by customer"


@dataclass
class CancelAccepted:
    order_id: str
    status: OrderStatus


@dataclass
class OperatorAction:
    """An operator's instruction for an order in NEEDS_ATTENTION.

    operator: who gave it (the subject of the operator's token), recorded with
    the note in the order's history and view.
    """

    note: str = ""
    operator: str = ""


@dataclass
class OperatorActionAccepted:
    order_id: str
    status: OrderStatus


# Names the API and tests use to address the workflow's handlers.
WORKFLOW_TYPE = "OrderWorkflow"
STATUS_QUERY = "status"
CANCEL_UPDATE = "cancel"
RETRY_COMPENSATION_UPDATE = "retry_compensation"
RESOLVE_COMPENSATION_UPDATE = "resolve_compensation"
