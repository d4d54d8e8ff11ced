"""In-memory implementations of the services' domain protocols.

The domain layers (services/*/domain.py) are written against these protocols,
not against SQL, so their rules can be tested here without a database: mypy
checks that each fake satisfies its protocol where a test hands it to a
domain function. The SQL adapters are held to the same rules by the
integration tests, on SQLite and PostgreSQL.

Like the SQL adapters, a repository hands out copies: a domain object changed
in place is stored only through `save_state`. `refusals_roll_back` plays the
caller's transaction, which a DomainError rolls back.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from services.common.domain import Admission, Dated, DomainError
from services.inventory.domain import (
    Product,
    Reservation,
    ReservationState,
    Stock,
    StockHolding,
)
from services.payments.domain import Charge
from services.shipping.domain import Shipment


class _Resource(Protocol):
    @property
    def order_id(self) -> str: ...


ResourceT = TypeVar("ResourceT", bound=_Resource)


class MemoryResources(Generic[ResourceT]):
    """services.common.domain.OrderResources in a dict, by id."""

    def __init__(self, id_of: Callable[[ResourceT], str]) -> None:
        self._id_of = id_of
        self.rows: dict[str, Dated[ResourceT]] = {}

    async def add(self, resource: ResourceT) -> None:
        now = datetime.now(UTC)
        self.rows[self._id_of(resource)] = Dated(copy.deepcopy(resource), now, now)

    async def lock(self, resource_id: str) -> ResourceT | None:
        row = self.rows.get(resource_id)
        return copy.deepcopy(row.resource) if row else None

    async def save_state(self, resource: ResourceT) -> None:
        row = self.rows[self._id_of(resource)]
        self.rows[self._id_of(resource)] = replace(
            row, resource=copy.deepcopy(resource), updated_at=datetime.now(UTC)
        )

    async def for_order(self, order_id: str) -> list[ResourceT]:
        return [
            copy.deepcopy(row.resource)
            for row in self.rows.values()
            if row.resource.order_id == order_id
        ]

    async def ledger_page(
        self, *, after: str | None, limit: int, changed_since: datetime | None
    ) -> list[Dated[ResourceT]]:
        return [
            copy.deepcopy(row)
            for resource_id, row in sorted(self.rows.items())
            if (after is None or resource_id > after)
            and (changed_since is None or row.updated_at >= changed_since)
        ][:limit]


@dataclass
class MemoryFences:
    """services.common.domain.Fences in a dict: order id -> when fenced (None: not)."""

    orders: dict[str, datetime | None] = field(default_factory=dict)

    async def admit(self, order_id: str, *, passed_before: bool = False) -> Admission:
        # One dict lookup either way: `passed_before` saves nothing here.
        if order_id not in self.orders:
            self.orders[order_id] = None
            return Admission.FIRST
        return Admission.AFTER_ANOTHER if self.orders[order_id] is None else Admission.FENCED

    async def fence(self, order_id: str) -> datetime:
        fenced_at = self.orders.get(order_id) or datetime.now(UTC)
        self.orders[order_id] = fenced_at
        return fenced_at


@dataclass
class MemoryProducts:
    """services.inventory.domain.ProductRepository in a dict, by sku."""

    rows: dict[str, Product] = field(default_factory=dict)
    # What `holdings` sums: the reservations of the same unit of work.
    reservations: MemoryResources[Reservation] | None = None

    async def get(self, sku: str) -> Stock | None:
        found = self.rows.get(sku)
        return Stock(found.sku, found.available, found.reserved) if found else None

    async def product(self, sku: str) -> Product | None:
        return self.rows.get(sku)

    async def listing(self, limit: int) -> list[Product]:
        return [self.rows[sku] for sku in sorted(self.rows)][:limit]

    async def holdings(self, *, after: str | None, limit: int) -> list[StockHolding]:
        open_lines = [
            line
            for row in (self.reservations.rows.values() if self.reservations else ())
            if row.resource.state is ReservationState.RESERVED
            for line in row.resource.lines
        ]
        return [
            StockHolding(
                p.sku,
                p.available,
                p.reserved,
                sum(line.quantity for line in open_lines if line.sku == p.sku),
            )
            for p in await self.listing(len(self.rows))
            if after is None or p.sku > after
        ][:limit]

    async def unknown(self, skus: Sequence[str]) -> list[str]:
        return [sku for sku in skus if sku not in self.rows]

    async def take(self, sku: str, quantity: int) -> int | None:
        found = self.rows.get(sku)
        if found is None or found.available < quantity:
            return None
        self.rows[sku] = replace(
            found, available=found.available - quantity, reserved=found.reserved + quantity
        )
        return found.price_cents

    async def give_back(self, sku: str, quantity: int) -> None:
        found = self.rows[sku]
        self.rows[sku] = replace(
            found, available=found.available + quantity, reserved=found.reserved - quantity
        )

    async def ship(self, sku: str, quantity: int) -> None:
        found = self.rows[sku]
        self.rows[sku] = replace(found, reserved=found.reserved - quantity)

    async def add(self, sku: str, *, price_cents: int, available: int) -> None:
        self.rows[sku] = Product(sku, price_cents, available, 0)

    async def change(self, sku: str, *, price_cents: int | None, available: int | None) -> bool:
        found = self.rows.get(sku)
        if found is None:
            return False
        self.rows[sku] = replace(
            found,
            price_cents=found.price_cents if price_cents is None else price_cents,
            available=found.available if available is None else available,
        )
        return True

    async def add_if_missing(self, sku: str, *, price_cents: int, available: int) -> None:
        if sku not in self.rows:
            await self.add(sku, price_cents=price_cents, available=available)

    async def is_empty(self) -> bool:
        return not self.rows


@dataclass
class MemoryExposure:
    """services.payments.domain.ExposureRepository in a dict, by customer."""

    outstanding: dict[str, int] = field(default_factory=dict)

    async def add_within_limit(self, customer_id: str, amount_cents: int, limit_cents: int) -> bool:
        total = self.outstanding.get(customer_id, 0) + amount_cents
        if total > limit_cents:
            return False
        self.outstanding[customer_id] = total
        return True

    async def subtract(self, customer_id: str, amount_cents: int) -> None:
        self.outstanding[customer_id] -= amount_cents


class MemoryInventory:
    """services.inventory.domain.InventoryUnitOfWork."""

    def __init__(self) -> None:
        self.reservations: MemoryResources[Reservation] = MemoryResources(
            lambda r: r.reservation_id
        )
        self.products = MemoryProducts(reservations=self.reservations)
        self.fences = MemoryFences()


class MemoryPayments:
    """services.payments.domain.PaymentsUnitOfWork."""

    def __init__(self) -> None:
        self.charges: MemoryResources[Charge] = MemoryResources(lambda c: c.charge_id)
        self.exposure = MemoryExposure()
        self.fences = MemoryFences()


class MemoryShipping:
    """services.shipping.domain.ShippingUnitOfWork."""

    def __init__(self) -> None:
        self.shipments: MemoryResources[Shipment] = MemoryResources(lambda s: s.shipment_id)
        self.fences = MemoryFences()


@asynccontextmanager
async def refusals_roll_back(uow: Any) -> AsyncIterator[None]:
    """The caller's transaction: a DomainError undoes what the block did."""
    before = copy.deepcopy(vars(uow))
    try:
        yield
    except DomainError:
        vars(uow).clear()
        vars(uow).update(before)
        raise
