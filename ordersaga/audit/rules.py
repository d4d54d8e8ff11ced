"""The reconciliation rules: what must hold between Temporal's orders and the
three ledgers (payments, shipping, inventory).

Plain data in, findings out: no I/O, no clock, no Temporal or HTTP types, so
every rule is tested with hand-made rows (tests/unit/test_audit_rules.py).
ordersaga.audit.collect reads the real rows into these shapes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, TypeVar

from contracts.orders import CompensationName, OrderStatus, format_money

Severity = Literal["error", "warning"]

# Temporal's execution status of a workflow that has not closed.
RUNNING = "RUNNING"
COMPLETED_EXECUTION = "COMPLETED"
# Cancelled through Temporal itself (Web UI, `temporal workflow cancel`): the
# saga unwinds as for a customer's cancel, publishes CANCELLED, then re-raises
# the cancellation, so the execution ends CANCELED, with no result.
CANCELED_EXECUTION = "CANCELED"

# Ledger states (services/*/domain.py), as the services answer them.
CAPTURED, REFUNDED = "captured", "refunded"
SHIPMENT_CREATED, SHIPMENT_CANCELLED = "created", "cancelled"
RESERVED, RELEASED, COMMITTED = "reserved", "released", "committed"

_COMPENSATED = frozenset({OrderStatus.FAILED.value, OrderStatus.CANCELLED.value})


class Kind(StrEnum):
    """What is wrong. Stable names: they are the `kind` label of the metric."""

    # A FAILED or CANCELLED order (cancelled through Temporal included) that
    # kept an effect it should have undone.
    CHARGE_NOT_REFUNDED = "charge_not_refunded"
    SHIPMENT_NOT_CANCELLED = "shipment_not_cancelled"
    RESERVATION_COMMITTED = "reservation_committed"
    # Any closed order whose reservation still holds stock.
    RESERVATION_NOT_RELEASED = "reservation_not_released"
    # A COMPLETED order without exactly its one charge (of the reserved total),
    # one live shipment and one committed reservation.
    COMPLETED_CHARGE_MISMATCH = "completed_charge_mismatch"
    COMPLETED_SHIPMENT_MISMATCH = "completed_shipment_mismatch"
    COMPLETED_RESERVATION_MISMATCH = "completed_reservation_mismatch"
    # Any order, open or closed.
    DOUBLE_CHARGE = "double_charge"
    MULTIPLE_LIVE_SHIPMENTS = "multiple_live_shipments"
    # A ledger row whose order Temporal does not know.
    ORPHAN_CHARGE = "orphan_charge"
    ORPHAN_SHIPMENT = "orphan_shipment"
    ORPHAN_RESERVATION = "orphan_reservation"
    # A product whose `reserved` is not what its open reservations hold.
    STOCK_MISMATCH = "stock_mismatch"
    # The workflow closed without the saga's own end (terminated, timed out,
    # failed, canceled short of CANCELLED, or completed without a terminal
    # order status): nothing compensated.
    WORKFLOW_CLOSED_ABNORMALLY = "workflow_closed_abnormally"
    # Open for longer than any order should take, and not parked.
    ORDER_OPEN_TOO_LONG = "order_open_too_long"
    # NEEDS_ATTENTION: waiting, by design, for an operator's retry or resolve.
    ORDER_PARKED = "order_parked"
    # A FAILED or CANCELLED order that kept an effect (a charge_not_refunded,
    # shipment_not_cancelled or reservation_committed otherwise) whose undo an
    # operator resolved: they said it was settled by hand. For the books.
    RESOLVED_BY_OPERATOR = "resolved_by_operator"


# Every kind is an error but these two: the saga did what it is meant to and an
# operator has work to do, or has done it by hand; the audit reports them
# without failing.
SEVERITY: Mapping[Kind, Severity] = {
    **dict.fromkeys(Kind, "error"),
    Kind.ORDER_PARKED: "warning",
    Kind.RESOLVED_BY_OPERATOR: "warning",
}


@dataclass(frozen=True)
class Resolution:
    """An operator's `resolve` of a parked order's refused call, as the order's
    result keeps it (OrderView.operator_actions with decision "resolve")."""

    # The refused call: refund_payment, cancel_shipment, release_inventory, ...
    step: str
    # The subject of the operator's token ("" from API builds that sent none).
    operator: str
    note: str
    at: str

    def describe(self) -> str:
        who = f"operator {self.operator}" if self.operator else "an operator"
        when = f" at {self.at}" if self.at else ""
        why = f": {self.note!r}" if self.note else " (no note)"
        return f"{self.step} resolved by {who}{when}{why}"


@dataclass(frozen=True)
class Order:
    """An order as Temporal's visibility has it."""

    order_id: str
    # Temporal's execution status: RUNNING, COMPLETED, FAILED, TERMINATED, ...
    execution_status: str
    # The OrderStatus search attribute (None when the workflow never set it).
    order_status: str | None
    started_at: datetime
    closed_at: datetime | None = None
    total_cents: int | None = None
    failed_step: str | None = None
    # NEEDS_ATTENTION only: why, from the order's status query, when a worker answered.
    parked_reason: str | None = None
    # A compensated order that kept an effect only: the calls operators resolved,
    # from the order's final view (empty when none, or when it could not be read),
    resolutions: tuple[Resolution, ...] = ()
    # ... and why that view could not be read, when it could not.
    resolutions_unread: str | None = None

    @property
    def is_open(self) -> bool:
        return self.execution_status == RUNNING

    @property
    def is_compensated(self) -> bool:
        """Closed by the saga itself as FAILED or CANCELLED: completed, or
        canceled through Temporal once the saga had unwound to CANCELLED (it
        publishes that status only after its last undo)."""
        if self.execution_status == CANCELED_EXECUTION:
            return self.order_status == OrderStatus.CANCELLED.value
        return self.execution_status == COMPLETED_EXECUTION and self.order_status in _COMPENSATED

    @property
    def has_result(self) -> bool:
        """Whether the execution returned the order's result (its final view,
        with the operators' decisions): a canceled one re-raised instead."""
        return self.execution_status == COMPLETED_EXECUTION

    def resolution_of(self, step: str) -> Resolution | None:
        """The operator's last resolve of the call `step`, if any."""
        found = [r for r in self.resolutions if r.step == step]
        return found[-1] if found else None


@dataclass(frozen=True)
class Charge:
    charge_id: str
    order_id: str
    state: str
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class Shipment:
    shipment_id: str
    order_id: str
    state: str
    country: str = ""


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    order_id: str
    state: str
    total_cents: int
    currency: str


@dataclass(frozen=True)
class StockLevel:
    """A product's counters, and `held`: the sum of its lines in reservations
    still `reserved`, read in the same statement."""

    sku: str
    available: int
    reserved: int
    held: int


@dataclass(frozen=True)
class Snapshot:
    """What the audit read.

    orders: the orders the audit checks. known_order_ids: orders Temporal knows
    but the audit does not check (outside --since, or started while it read);
    their rows are not orphans. A row whose order is in neither is an orphan.
    """

    taken_at: datetime
    orders: Sequence[Order] = ()
    charges: Sequence[Charge] = ()
    shipments: Sequence[Shipment] = ()
    reservations: Sequence[Reservation] = ()
    stock: Sequence[StockLevel] = ()
    known_order_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Finding:
    kind: Kind
    # What it is about: a charge, shipment or reservation id, a sku, or the order.
    subject: str
    message: str
    order_id: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.kind]

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "severity": self.severity,
            "order_id": self.order_id,
            "subject": self.subject,
            "message": self.message,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class Policy:
    # An order open (and not parked) for longer than this is stuck.
    max_open: timedelta = timedelta(minutes=15)


def check(snapshot: Snapshot, policy: Policy | None = None) -> list[Finding]:
    """Every discrepancy in the snapshot, errors first, then by kind and order."""
    policy = policy or Policy()
    charges = _by_order(snapshot.charges)
    shipments = _by_order(snapshot.shipments)
    reservations = _by_order(snapshot.reservations)
    findings: list[Finding] = []
    for order in snapshot.orders:
        ledger = Ledger(
            charges.get(order.order_id, []),
            shipments.get(order.order_id, []),
            reservations.get(order.order_id, []),
        )
        findings.extend(_check_order(order, ledger, snapshot.taken_at, policy))
    known = {order.order_id for order in snapshot.orders} | snapshot.known_order_ids
    findings.extend(_orphans(snapshot, known))
    findings.extend(
        _duplicates_of_unchecked_orders(snapshot, {o.order_id for o in snapshot.orders})
    )
    findings.extend(_stock(snapshot.stock))
    return sorted(findings, key=_order_of_findings)


def orders_that_kept_an_effect(orders: Iterable[Order], ledger: Ledger) -> list[str]:
    """The FAILED or CANCELLED orders with a row still in its forward state:
    those whose resolutions (if an operator resolved the undo) decide between
    an error and a resolved_by_operator warning. collect reads only theirs.

    One cancelled through Temporal included: it has no result, but its status
    query (answered by a worker) holds the same view.
    """
    compensated = {o.order_id for o in orders if o.is_compensated}
    return sorted(
        {
            row.order_id
            for row in ledger.rows()
            if row.order_id in compensated and _left_in_effect(row) is not None
        }
    )


def count_by_kind(findings: Iterable[Finding]) -> dict[Kind, int]:
    """Every kind, with 0 for those not found (a metric needs each series)."""
    counts = dict.fromkeys(Kind, 0)
    for finding in findings:
        counts[finding.kind] += 1
    return counts


# --- per order ---------------------------------------------------------------------


@dataclass(frozen=True)
class Ledger:
    """The services' rows: of one order when checked, of many when collected."""

    charges: list[Charge]
    shipments: list[Shipment]
    reservations: list[Reservation]

    def rows(self) -> list[Charge | Shipment | Reservation]:
        return [*self.charges, *self.shipments, *self.reservations]

    def order_ids(self) -> set[str]:
        return {row.order_id for row in self.rows()}

    def evidence(self) -> dict[str, Any]:
        return {
            "charges": [_row(c) for c in self.charges],
            "shipments": [_row(s) for s in self.shipments],
            "reservations": [_row(r) for r in self.reservations],
        }


def _check_order(order: Order, ledger: Ledger, now: datetime, policy: Policy) -> Iterable[Finding]:
    yield from _duplicates(order.order_id, ledger, _order_evidence(order))
    if order.is_open:
        yield from _open_order(order, now, policy)
        return
    status = order.order_status
    if order.is_compensated:
        yield from _compensated_order(order, ledger)
    elif order.execution_status == COMPLETED_EXECUTION and status == OrderStatus.COMPLETED.value:
        yield from _completed_order(order, ledger)
    else:
        yield Finding(
            Kind.WORKFLOW_CLOSED_ABNORMALLY,
            order.order_id,
            f"the workflow closed as {order.execution_status} with order status "
            f"{status or '(none)'}: the saga neither finished nor compensated",
            order.order_id,
            {**_order_evidence(order), **ledger.evidence()},
        )
    for reservation in ledger.reservations:
        if reservation.state == RESERVED:
            yield _about(
                order,
                Kind.RESERVATION_NOT_RELEASED,
                reservation.reservation_id,
                f"{status or order.execution_status} order still holds reservation "
                f"{reservation.reservation_id}: its stock is neither shipped nor back on sale",
                reservation=_row(reservation),
            )


def _open_order(order: Order, now: datetime, policy: Policy) -> Iterable[Finding]:
    if order.order_status == OrderStatus.NEEDS_ATTENTION.value:
        reason = order.parked_reason or "(no worker answered the status query)"
        yield _about(
            order,
            Kind.ORDER_PARKED,
            order.order_id,
            f"parked in NEEDS_ATTENTION: {reason}",
            open_minutes=_minutes(now - order.started_at),
            reason=order.parked_reason,
        )
        return
    open_for = now - order.started_at
    if open_for > policy.max_open:
        yield _about(
            order,
            Kind.ORDER_OPEN_TOO_LONG,
            order.order_id,
            f"open for {_minutes(open_for)} minutes in {order.order_status or 'no status'} "
            f"(the limit is {_minutes(policy.max_open)})",
            open_minutes=_minutes(open_for),
            max_open_minutes=_minutes(policy.max_open),
        )


def _compensated_order(order: Order, ledger: Ledger) -> Iterable[Finding]:
    """A FAILED or CANCELLED order undid every step it took: a row still in its
    forward state is a step left in effect. Unless an operator resolved that
    very undo (the refused call that parked the order): then they said it was
    settled by hand, and the row is reported for the books, as a warning."""
    for row in ledger.rows():
        left = _left_in_effect(row)
        if left is None:
            continue
        kind, what, undo = left
        noun, row_id = _noun_and_id(row)
        message = f"{order.order_status} order has {what}"
        resolution = order.resolution_of(undo.value)
        if resolution is None:
            if order.resolutions_unread:
                # An operator may have settled it by hand: say why the audit
                # cannot tell, rather than let them think it missed their resolve.
                message += f" (an operator's resolve could not be read: {order.resolutions_unread})"
            yield _about(order, kind, row_id, message, **{noun: _row(row)})
        else:
            yield _about(
                order,
                Kind.RESOLVED_BY_OPERATOR,
                row_id,
                f"{message}; {resolution.describe()}",
                **{noun: _row(row)},
                unresolved_kind=kind.value,
                resolution=asdict(resolution),
            )


def _left_in_effect(
    row: Charge | Shipment | Reservation,
) -> tuple[Kind, str, CompensationName] | None:
    """What the row's forward state means once its order was compensated, if
    it is still in it: the kind of finding, the row described, and the undo
    that should have changed it."""
    if isinstance(row, Charge) and row.state == CAPTURED:
        money = format_money(row.amount_cents, row.currency)
        return (
            Kind.CHARGE_NOT_REFUNDED,
            f"captured charge {row.charge_id} ({money}), never refunded",
            CompensationName.REFUND_PAYMENT,
        )
    if isinstance(row, Shipment) and row.state == SHIPMENT_CREATED:
        return (
            Kind.SHIPMENT_NOT_CANCELLED,
            f"live shipment {row.shipment_id}, never cancelled",
            CompensationName.CANCEL_SHIPMENT,
        )
    if isinstance(row, Reservation) and row.state == COMMITTED:
        what = f"committed reservation {row.reservation_id}: its stock left the warehouse"
        return Kind.RESERVATION_COMMITTED, what, CompensationName.RELEASE_INVENTORY
    return None


def _completed_order(order: Order, ledger: Ledger) -> Iterable[Finding]:
    committed = [r for r in ledger.reservations if r.state == COMMITTED]
    captured = [c for c in ledger.charges if c.state == CAPTURED]
    live = [s for s in ledger.shipments if s.state == SHIPMENT_CREATED]
    if len(committed) != 1:
        yield _about(
            order,
            Kind.COMPLETED_RESERVATION_MISMATCH,
            order.order_id,
            f"COMPLETED order has {len(committed)} committed reservations, not 1",
            reservations=[_row(r) for r in ledger.reservations],
        )
    # More than one is a double charge (below), reported once as that.
    if not captured:
        yield _about(
            order,
            Kind.COMPLETED_CHARGE_MISMATCH,
            order.order_id,
            "COMPLETED order has no captured charge",
            charges=[_row(c) for c in ledger.charges],
        )
    elif len(captured) == 1 and len(committed) == 1:
        (charge,), (reservation,) = captured, committed
        charged = (charge.amount_cents, charge.currency)
        if charged != (reservation.total_cents, reservation.currency):
            yield _about(
                order,
                Kind.COMPLETED_CHARGE_MISMATCH,
                charge.charge_id,
                f"COMPLETED order was charged {format_money(*charged)}, but its "
                f"reservation totals {format_money(reservation.total_cents, reservation.currency)}",
                charge=_row(charge),
                reservation=_row(reservation),
            )
    if not live:
        yield _about(
            order,
            Kind.COMPLETED_SHIPMENT_MISMATCH,
            order.order_id,
            "COMPLETED order has no live shipment",
            shipments=[_row(s) for s in ledger.shipments],
        )


def _duplicates(order_id: str, ledger: Ledger, order: Mapping[str, Any]) -> Iterable[Finding]:
    """A second charge is a double charge even once refunded: the card was
    charged twice, so idempotency failed somewhere."""
    if len(ledger.charges) > 1:
        yield Finding(
            Kind.DOUBLE_CHARGE,
            order_id,
            f"{len(ledger.charges)} charges for one order "
            f"({', '.join(f'{c.charge_id} {c.state}' for c in ledger.charges)})",
            order_id,
            {**order, "charges": [_row(c) for c in ledger.charges]},
        )
    live = [s for s in ledger.shipments if s.state == SHIPMENT_CREATED]
    if len(live) > 1:
        yield Finding(
            Kind.MULTIPLE_LIVE_SHIPMENTS,
            order_id,
            f"{len(live)} live shipments for one order ({', '.join(s.shipment_id for s in live)})",
            order_id,
            {**order, "shipments": [_row(s) for s in ledger.shipments]},
        )


def _duplicates_of_unchecked_orders(snapshot: Snapshot, checked: set[str]) -> Iterable[Finding]:
    """Duplicates are wrong whatever the order's state: check the rows of orders
    outside the window (or orphans) too."""
    charges = _by_order(c for c in snapshot.charges if c.order_id not in checked)
    shipments = _by_order(s for s in snapshot.shipments if s.order_id not in checked)
    for order_id in sorted(charges.keys() | shipments.keys()):
        ledger = Ledger(charges.get(order_id, []), shipments.get(order_id, []), [])
        yield from _duplicates(order_id, ledger, {})


# --- across orders -----------------------------------------------------------------


def _orphans(snapshot: Snapshot, known: set[str]) -> Iterable[Finding]:
    for charge in snapshot.charges:
        money = format_money(charge.amount_cents, charge.currency)
        yield from _orphan(Kind.ORPHAN_CHARGE, "charge", charge.charge_id, charge, known, money)
    for shipment in snapshot.shipments:
        yield from _orphan(Kind.ORPHAN_SHIPMENT, "shipment", shipment.shipment_id, shipment, known)
    for reservation in snapshot.reservations:
        yield from _orphan(
            Kind.ORPHAN_RESERVATION, "reservation", reservation.reservation_id, reservation, known
        )


def _orphan(
    kind: Kind,
    noun: str,
    row_id: str,
    row: Charge | Shipment | Reservation,
    known: set[str],
    amount: str | None = None,
) -> Iterable[Finding]:
    """A finding when the row's order is not one Temporal knows."""
    if row.order_id in known:
        return
    shown = f"{row_id} ({amount})" if amount is not None else row_id
    yield Finding(
        kind,
        row_id,
        f"{row.state} {noun} {shown} is for order {row.order_id}, which Temporal does not know",
        row.order_id,
        {noun: _row(row)},
    )


def _stock(levels: Iterable[StockLevel]) -> Iterable[Finding]:
    for level in levels:
        if level.reserved != level.held:
            yield Finding(
                Kind.STOCK_MISMATCH,
                level.sku,
                f"{level.sku}: {level.reserved} reserved, but its open reservations hold "
                f"{level.held}",
                None,
                {"stock": _row(level), "difference": level.reserved - level.held},
            )


# --- helpers -----------------------------------------------------------------------


def _about(order: Order, kind: Kind, subject: str, message: str, **evidence: Any) -> Finding:
    return Finding(kind, subject, message, order.order_id, {**_order_evidence(order), **evidence})


def _order_evidence(order: Order) -> dict[str, Any]:
    return {
        "order": {
            "order_status": order.order_status,
            "execution_status": order.execution_status,
            "started_at": order.started_at.isoformat(),
            "closed_at": order.closed_at.isoformat() if order.closed_at else None,
            "total_cents": order.total_cents,
            "failed_step": order.failed_step,
        }
    }


def _noun_and_id(row: Charge | Shipment | Reservation) -> tuple[str, str]:
    """The row's noun (its key in the evidence) and its id."""
    if isinstance(row, Charge):
        return "charge", row.charge_id
    if isinstance(row, Shipment):
        return "shipment", row.shipment_id
    return "reservation", row.reservation_id


def _row(row: Charge | Shipment | Reservation | StockLevel) -> dict[str, Any]:
    return asdict(row)


RowT = TypeVar("RowT", Charge, Shipment, Reservation)


def _by_order(rows: Iterable[RowT]) -> dict[str, list[RowT]]:
    grouped: dict[str, list[RowT]] = defaultdict(list)
    for row in rows:
        grouped[row.order_id].append(row)
    return grouped


def _minutes(span: timedelta) -> int:
    return int(span.total_seconds() // 60)


def _order_of_findings(finding: Finding) -> tuple[int, str, str, str]:
    return (
        0 if finding.severity == "error" else 1,
        finding.kind.value,
        finding.order_id or "",
        finding.subject,
    )
