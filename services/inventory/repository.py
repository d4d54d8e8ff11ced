"""SQL adapters for the inventory domain's repositories, and its unit of work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import Integer, Row, Table, bindparam, func, insert, select, update

from services.common.db import SqlUnitOfWork, dialect_insert
from services.common.driver_sql import DriverConnection
from services.common.fences import SqlFences
from services.common.repository import SqlOrderResources
from services.inventory.domain import (
    Product,
    Reservation,
    ReservationState,
    ReservedLine,
    Stock,
    StockHolding,
)
from services.inventory.tables import products, reservation_lines, reservations

# What a reservation, its release and its commit run, built once
# (services.common.db.PerDialect says why).
_SKU = products.c.sku == bindparam("p_sku")
_QUANTITY = bindparam("p_quantity", type_=Integer)
# One conditional UPDATE: the check and the change cannot be split by a
# concurrent request (PostgreSQL re-checks the condition after the row lock;
# SQLite runs one writer at a time). RETURNING reads the price from the row
# as locked, so a concurrent repricing is either wholly before this
# reservation or wholly after it.
_TAKE = (
    update(products)
    .where(_SKU, products.c.available >= _QUANTITY)
    .values(available=products.c.available - _QUANTITY, reserved=products.c.reserved + _QUANTITY)
    .returning(products.c.price_cents)
)
_GIVE_BACK = (
    update(products)
    .where(_SKU)
    .values(available=products.c.available + _QUANTITY, reserved=products.c.reserved - _QUANTITY)
)
_SHIP = update(products).where(_SKU).values(reserved=products.c.reserved - _QUANTITY)
_ADD_LINES = insert(reservation_lines)
# A reservation and its lines in one statement (lock and its lines read were
# two round trips on PostgreSQL): only the reservation's row is locked, and a
# reservation with no line, which the domain never makes, still comes back.
_LOCK_WITH_LINES = (
    select(
        reservations,
        reservation_lines.c.sku,
        reservation_lines.c.quantity,
        reservation_lines.c.unit_price_cents,
    )
    .select_from(reservations.outerjoin(reservation_lines))
    .where(reservations.c.reservation_id == bindparam("p_id"))
    .order_by(reservation_lines.c.sku)
    .with_for_update(of=reservations)
)
_LINES_OF = (
    select(reservation_lines)
    .where(reservation_lines.c.reservation_id.in_(bindparam("p_ids", expanding=True)))
    .order_by(reservation_lines.c.reservation_id, reservation_lines.c.sku)
)


class SqlProductRepository:
    def __init__(self, connection: DriverConnection) -> None:
        self._connection = connection

    async def get(self, sku: str) -> Stock | None:
        row = (
            await self._connection.execute(select(products).where(products.c.sku == sku))
        ).one_or_none()
        return Stock(row.sku, row.available, row.reserved) if row else None

    async def product(self, sku: str) -> Product | None:
        row = (
            await self._connection.execute(select(products).where(products.c.sku == sku))
        ).one_or_none()
        return _product(row) if row else None

    async def listing(self, limit: int) -> list[Product]:
        rows = await self._connection.execute(
            select(products).order_by(products.c.sku).limit(limit)
        )
        return [_product(row) for row in rows]

    async def holdings(self, *, after: str | None, limit: int) -> list[StockHolding]:
        # One statement, so the counters and the reservations are one snapshot
        # on PostgreSQL too (READ COMMITTED gives each statement its own).
        held = (
            select(func.coalesce(func.sum(reservation_lines.c.quantity), 0))
            .select_from(reservation_lines.join(reservations))
            .where(
                reservations.c.state == ReservationState.RESERVED.value,
                reservation_lines.c.sku == products.c.sku,
            )
            .scalar_subquery()
        )
        query = (
            select(products.c.sku, products.c.available, products.c.reserved, held.label("held"))
            .order_by(products.c.sku)
            .limit(limit)
        )
        if after is not None:
            query = query.where(products.c.sku > after)
        rows = await self._connection.execute(query)
        return [StockHolding(row.sku, row.available, row.reserved, int(row.held)) for row in rows]

    async def unknown(self, skus: Sequence[str]) -> list[str]:
        known = set(
            (
                await self._connection.execute(
                    select(products.c.sku).where(products.c.sku.in_(skus))
                )
            ).scalars()
        )
        return [sku for sku in skus if sku not in known]

    async def take(self, sku: str, quantity: int) -> int | None:
        result = await self._connection.execute(_TAKE, {"p_sku": sku, "p_quantity": quantity})
        price: int | None = result.scalar_one_or_none()
        return price

    async def give_back(self, sku: str, quantity: int) -> None:
        await self._connection.execute(_GIVE_BACK, {"p_sku": sku, "p_quantity": quantity})

    async def ship(self, sku: str, quantity: int) -> None:
        await self._connection.execute(_SHIP, {"p_sku": sku, "p_quantity": quantity})

    async def add(self, sku: str, *, price_cents: int, available: int) -> None:
        await self._connection.execute(
            insert(products).values(
                sku=sku, price_cents=price_cents, available=available, reserved=0
            )
        )

    async def change(self, sku: str, *, price_cents: int | None, available: int | None) -> bool:
        values = {
            name: value
            for name, value in (("price_cents", price_cents), ("available", available))
            if value is not None
        }
        result = await self._connection.execute(
            update(products).where(products.c.sku == sku).values(**values)
        )
        return result.rowcount == 1

    async def add_if_missing(self, sku: str, *, price_cents: int, available: int) -> None:
        await self._connection.execute(
            dialect_insert(self._connection, products)
            .values(sku=sku, price_cents=price_cents, available=available, reserved=0)
            .on_conflict_do_nothing(index_elements=[products.c.sku])
        )

    async def is_empty(self) -> bool:
        first = await self._connection.execute(select(products.c.sku).limit(1))
        return first.first() is None


def _product(row: Row[Any]) -> Product:
    return Product(row.sku, row.price_cents, row.available, row.reserved)


class SqlReservationRepository(SqlOrderResources[Reservation]):
    table: ClassVar[Table] = reservations

    async def add(self, resource: Reservation) -> None:
        await super().add(resource)
        rows = [
            {
                "reservation_id": resource.reservation_id,
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price_cents": line.unit_price_cents,
            }
            for line in resource.lines
        ]
        if rows:
            await self._connection.execute(_ADD_LINES, rows)

    async def lock(self, resource_id: str) -> Reservation | None:
        rows = (await self._connection.execute(_LOCK_WITH_LINES, {"p_id": resource_id})).all()
        if not rows:
            return None
        lines = [
            ReservedLine(row.sku, row.quantity, row.unit_price_cents)
            for row in rows
            if row.sku is not None
        ]
        return _reservation(rows[0], lines)

    def _to_row(self, resource: Reservation) -> dict[str, Any]:
        return {
            "reservation_id": resource.reservation_id,
            "order_id": resource.order_id,
            "state": resource.state.value,
            "currency": resource.currency,
        }

    async def _from_rows(self, rows: Sequence[Row[Any]]) -> list[Reservation]:
        lines = await self._lines_of([row.reservation_id for row in rows])
        return [_reservation(row, lines.get(row.reservation_id, [])) for row in rows]

    async def _lines_of(self, reservation_ids: Sequence[str]) -> dict[str, list[ReservedLine]]:
        result = await self._connection.execute(_LINES_OF, {"p_ids": list(reservation_ids)})
        lines: dict[str, list[ReservedLine]] = {}
        for row in result:
            lines.setdefault(row.reservation_id, []).append(
                ReservedLine(row.sku, row.quantity, row.unit_price_cents)
            )
        return lines


def _reservation(row: Row[Any], lines: list[ReservedLine]) -> Reservation:
    return Reservation(
        reservation_id=row.reservation_id,
        order_id=row.order_id,
        lines=lines,
        currency=row.currency,
        state=ReservationState(row.state),
    )


class SqlInventoryUnitOfWork(SqlUnitOfWork):
    products: SqlProductRepository
    reservations: SqlReservationRepository
    fences: SqlFences

    def _bind(self, connection: DriverConnection) -> None:
        self.products = SqlProductRepository(connection)
        self.reservations = SqlReservationRepository(connection)
        self.fences = SqlFences(connection)
