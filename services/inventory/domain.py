"""Inventory rules, free of any database or web framework.

Stock of a product is `available` (can be reserved) plus `reserved` (held for
orders). A reservation holds stock for one order until it is committed (the
goods leave the warehouse) or released (they go back on the shelf).

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
from services.common.domain import (
    DomainError,
    InvalidState,
    Line,
    NotFound,
    OrderResources,
    locked,
    merge_lines,
    new_id,
)


class OutOfStock(DomainError):
    code = errors.OUT_OF_STOCK


class UnknownSku(DomainError):
    code = errors.UNKNOWN_SKU


class ReservationState(StrEnum):
    RESERVED = "reserved"
    RELEASED = "released"
    COMMITTED = "committed"


@dataclass(frozen=True)
class Stock:
    sku: str
    available: int
    reserved: int


@dataclass
class Reservation:
    reservation_id: str
    order_id: str
    lines: list[Line]
    state: ReservationState = ReservationState.RESERVED

    @classmethod
    def for_order(cls, order_id: str, lines: Iterable[Line]) -> Reservation:
        return cls(reservation_id=new_id("res"), order_id=order_id, lines=merge_lines(lines))

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

    async def unknown(self, skus: Sequence[str]) -> list[str]:
        """The skus among these that are not products."""
        ...

    async def take(self, sku: str, quantity: int) -> bool:
        """Move quantity from available to reserved, atomically, if available;
        False when it is not, or when there is no such product."""
        ...

    async def give_back(self, sku: str, quantity: int) -> None:
        """Move quantity from reserved back to available."""
        ...

    async def ship(self, sku: str, quantity: int) -> None:
        """Remove quantity from reserved: it has left the warehouse."""
        ...

    async def set_available(self, sku: str, available: int) -> Stock: ...

    async def add_if_missing(self, sku: str, available: int) -> None: ...

    async def is_empty(self) -> bool: ...


class InventoryUnitOfWork(Protocol):
    @property
    def products(self) -> ProductRepository: ...

    @property
    def reservations(self) -> OrderResources[Reservation]: ...


async def reserve(uow: InventoryUnitOfWork, *, order_id: str, lines: Iterable[Line]) -> Reservation:
    """Reserve every line or none: an unknown or short line refuses the whole
    reservation (the caller rolls back the lines already taken)."""
    reservation = Reservation.for_order(order_id, lines)
    refused: list[Line] = []
    # Lines are sorted by sku, so concurrent reservations lock rows in one order.
    for line in reservation.lines:
        if not await uow.products.take(line.sku, line.quantity):
            refused.append(line)
    if refused:
        await _refuse(uow, refused)
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
    return await _settle(uow, reservation_id, Reservation.release, uow.products.give_back)


async def commit(uow: InventoryUnitOfWork, reservation_id: str) -> Reservation:
    """The goods leave the warehouse. Committing twice commits once."""
    return await _settle(uow, reservation_id, Reservation.commit, uow.products.ship)


async def _settle(
    uow: InventoryUnitOfWork,
    reservation_id: str,
    transition: Callable[[Reservation], bool],
    move_stock: Callable[[str, int], Awaitable[None]],
) -> Reservation:
    reservation = await locked(uow.reservations, reservation_id, "reservation")
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


async def set_available(uow: InventoryUnitOfWork, sku: str, available: int) -> Stock:
    """Create the product or set its available stock; what is reserved stays reserved."""
    return await uow.products.set_available(sku, available)


async def seed(uow: InventoryUnitOfWork, catalog: Mapping[str, int]) -> bool:
    """Stock a fresh database from the catalog; True when it did."""
    if not await uow.products.is_empty():
        return False
    for sku, available in catalog.items():
        # add_if_missing: a replica starting at the same time may seed too.
        await uow.products.add_if_missing(sku, available)
    return True
