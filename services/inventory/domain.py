"""Inventory rules, free of any database or web framework.

Stock of a product is `available` (can be reserved) plus `reserved` (held for
orders). A reservation holds stock for one order until it is committed (the
goods leave the warehouse) or released (they go back on the shelf).

The catalog owns prices, in one currency. A reservation fixes each line's unit
price as the catalog has it at that moment; the order is charged the
reservation's total, and a later price change does not touch it.

The functions take a unit of work and do not commit it: the caller does, so
that an idempotent request's stored answer commits together with its effect.
A raised DomainError means the caller rolls back what was done.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn, Protocol

from contracts import errors
from contracts.orders import format_money
from services.common.domain import (
    DomainError,
    Fences,
    InvalidState,
    Line,
    NotFound,
    OrderResources,
    admit,
    admit_once,
    locked,
    merge_lines,
    new_id,
)
from services.inventory.catalog import CatalogEntry


class OutOfStock(DomainError):
    code = errors.OUT_OF_STOCK


class UnknownSku(DomainError):
    code = errors.UNKNOWN_SKU


class PriceChanged(DomainError):
    """The order is not in the catalog's currency, or its reserved total is not
    the one the customer expected."""

    code = errors.PRICE_CHANGED


@dataclass(frozen=True)
class InventoryPolicy:
    # The currency of every price in the catalog.
    catalog_currency: str


class ReservationState(StrEnum):
    RESERVED = "reserved"
    RELEASED = "released"
    COMMITTED = "committed"


@dataclass(frozen=True)
class Stock:
    sku: str
    available: int
    reserved: int


@dataclass(frozen=True)
class Product:
    sku: str
    price_cents: int
    available: int
    reserved: int


@dataclass(frozen=True)
class StockHolding:
    """A product's stock beside what its open reservations hold: `reserved`
    must equal `held`, the sum of its lines in reservations still reserved."""

    sku: str
    available: int
    reserved: int
    held: int


@dataclass(frozen=True)
class ReservedLine:
    """A line as reserved: at the catalog's unit price when it was reserved."""

    sku: str
    quantity: int
    unit_price_cents: int


@dataclass
class Reservation:
    reservation_id: str
    order_id: str
    lines: list[ReservedLine]
    currency: str
    state: ReservationState = ReservationState.RESERVED

    @property
    def total_cents(self) -> int:
        return sum(line.quantity * line.unit_price_cents for line in self.lines)

    def release(self) -> bool:
        """Mark released; True when the stock must go back (not released before)."""
        if self.state is ReservationState.COMMITTED:
            raise InvalidState(
                f"reservation {self.reservation_id} is committed: its stock has left the warehouse"
            )
        if self.state is ReservationState.RELEASED:
            return False
        self.state = ReservationState.RELEASED
        return True

    def commit(self) -> bool:
        """Mark committed; True when the stock must leave (not committed before)."""
        if self.state is ReservationState.RELEASED:
            raise InvalidState(
                f"reservation {self.reservation_id} was released: its stock is back on sale"
            )
        if self.state is ReservationState.COMMITTED:
            return False
        self.state = ReservationState.COMMITTED
        return True


class ProductRepository(Protocol):
    async def get(self, sku: str) -> Stock | None: ...

    async def product(self, sku: str) -> Product | None: ...

    async def listing(self, limit: int) -> list[Product]:
        """The first `limit` products, by sku."""
        ...

    async def holdings(self, *, after: str | None, limit: int) -> list[StockHolding]:
        """Up to `limit` products by sku, after the sku `after`, each with what
        its reservations hold, read at one moment."""
        ...

    async def unknown(self, skus: Sequence[str]) -> list[str]:
        """The skus among these that are not products."""
        ...

    async def take(self, sku: str, quantity: int) -> int | None:
        """Move quantity from available to reserved, atomically, if available,
        and say the unit price it was taken at; None when it is not available,
        or when there is no such product."""
        ...

    async def give_back(self, sku: str, quantity: int) -> None:
        """Move quantity from reserved back to available."""
        ...

    async def ship(self, sku: str, quantity: int) -> None:
        """Remove quantity from reserved: it has left the warehouse."""
        ...

    async def add(self, sku: str, *, price_cents: int, available: int) -> None: ...

    async def change(self, sku: str, *, price_cents: int | None, available: int | None) -> bool:
        """Set what is given of an existing product; False when there is none."""
        ...

    async def add_if_missing(self, sku: str, *, price_cents: int, available: int) -> None: ...

    async def is_empty(self) -> bool: ...


class InventoryUnitOfWork(Protocol):
    @property
    def products(self) -> ProductRepository: ...

    @property
    def reservations(self) -> OrderResources[Reservation]: ...

    @property
    def fences(self) -> Fences: ...


async def reserve(
    uow: InventoryUnitOfWork,
    *,
    order_id: str,
    lines: Iterable[Line],
    currency: str,
    expected_total_cents: int | None,
    policy: InventoryPolicy,
) -> Reservation:
    """Reserve every line at the catalog's prices, or none.

    An unknown or short line refuses the whole reservation, and so does a
    currency other than the catalog's or a total other than the expected one
    (the caller rolls back the lines already taken). Nothing is reserved for
    an order whose release has run here (ORDER_FENCED).
    """
    merged = merge_lines(lines)
    # An order reserves once: asked again under another key, the same lines (at
    # the expected total, if one is given) get the reservation made (reserved or
    # committed), anything else INVALID_STATE.
    held = await admit_once(
        uow.fences,
        uow.reservations,
        order_id,
        kind="reservation",
        same_request=lambda made: (
            made.state is not ReservationState.RELEASED
            and made.currency == currency
            and expected_total_cents in (None, made.total_cents)
            and [(line.sku, line.quantity) for line in made.lines]
            == [(line.sku, line.quantity) for line in merged]
        ),
    )
    if held is not None:
        return held
    if currency != policy.catalog_currency:
        raise PriceChanged(f"prices are in {policy.catalog_currency}, not {currency}")
    reserved: list[ReservedLine] = []
    refused: list[Line] = []
    # merge_lines sorts by sku, so concurrent reservations lock rows in one order.
    for line in merged:
        unit_price = await uow.products.take(line.sku, line.quantity)
        if unit_price is None:
            refused.append(line)
        else:
            reserved.append(ReservedLine(line.sku, line.quantity, unit_price))
    if refused:
        await _refuse(uow, refused)
    reservation = Reservation(
        reservation_id=new_id("res"), order_id=order_id, lines=reserved, currency=currency
    )
    if expected_total_cents is not None and reservation.total_cents != expected_total_cents:
        raise PriceChanged(
            f"the total at today's prices is {format_money(reservation.total_cents, currency)}, "
            f"not the expected {format_money(expected_total_cents, currency)}"
        )
    await uow.reservations.add(reservation)
    return reservation


async def _refuse(uow: InventoryUnitOfWork, refused: Sequence[Line]) -> NoReturn:
    """Say why these lines could not be taken: an unknown sku before a short one.
    Only a refusal pays for these reads, not every reservation."""
    unknown = await uow.products.unknown([line.sku for line in refused])
    if unknown:
        raise UnknownSku(f"no such product: {', '.join(unknown)}")
    short: list[str] = []
    for line in refused:
        stock = await uow.products.get(line.sku)
        available = stock.available if stock else 0
        short.append(f"{line.sku} ({line.quantity} requested, {available} available)")
    raise OutOfStock(f"not enough stock of {', '.join(short)}")


async def release(uow: InventoryUnitOfWork, reservation_id: str) -> Reservation:
    """Put the stock back on sale. Releasing twice releases once."""
    reservation = await locked(uow.reservations, reservation_id, "reservation")
    return await _settle(uow, reservation, Reservation.release, uow.products.give_back)


async def commit(uow: InventoryUnitOfWork, reservation_id: str) -> Reservation:
    """The goods leave the warehouse. Committing twice commits once.

    Not once the order's release has begun (ORDER_FENCED): its compensation
    may have looked the reservation up before this commit and be about to
    release it, which a commit in between would turn into a refusal.
    """
    reservation = await locked(uow.reservations, reservation_id, "reservation")
    if reservation.state is ReservationState.RESERVED:
        # The reservation passed the gate when it was made.
        await admit(uow.fences, reservation.order_id, passed_before=True)
    return await _settle(uow, reservation, Reservation.commit, uow.products.ship)


async def _settle(
    uow: InventoryUnitOfWork,
    reservation: Reservation,
    transition: Callable[[Reservation], bool],
    move_stock: Callable[[str, int], Awaitable[None]],
) -> Reservation:
    """Apply the transition to the reservation, locked by the caller."""
    if transition(reservation):
        for line in reservation.lines:
            await move_stock(line.sku, line.quantity)
        await uow.reservations.save_state(reservation)
    return reservation


async def stock_of(uow: InventoryUnitOfWork, sku: str) -> Stock:
    stock = await uow.products.get(sku)
    if stock is None:
        raise NotFound(f"no product {sku}")
    return stock


async def put_product(
    uow: InventoryUnitOfWork, sku: str, *, price_cents: int | None, available: int | None
) -> Product:
    """Set a product's price and/or available stock (what is reserved stays
    reserved, at the prices it was reserved at); a new product needs both."""
    if not await uow.products.change(sku, price_cents=price_cents, available=available):
        if price_cents is None or available is None:
            raise NotFound(f"no product {sku}; a new product needs both price_cents and available")
        await uow.products.add(sku, price_cents=price_cents, available=available)
    product = await uow.products.product(sku)
    assert product is not None
    return product


async def seed(uow: InventoryUnitOfWork, catalog: Mapping[str, CatalogEntry]) -> bool:
    """Stock a fresh database from the catalog; True when it did."""
    if not await uow.products.is_empty():
        return False
    for sku, entry in catalog.items():
        # add_if_missing: a replica starting at the same time may seed too.
        await uow.products.add_if_missing(
            sku, price_cents=entry.price_cents, available=entry.available
        )
    return True
