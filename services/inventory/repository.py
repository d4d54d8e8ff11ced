"""SQL adapters for the inventory domain's repositories, and its unit of work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import Row, Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import SqlUnitOfWork, dialect_insert
from services.common.repository import LineStore, SqlOrderResources
from services.inventory.domain import Reservation, ReservationState, Stock
from services.inventory.tables import products, reservation_lines, reservations


class SqlProductRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, sku: str) -> Stock | None:
        row = (
            await self._connection.execute(select(products).where(products.c.sku == sku))
        ).one_or_none()
        return Stock(row.sku, row.available, row.reserved) if row else None

    async def unknown(self, skus: Sequence[str]) -> list[str]:
        known = set(
            (
                await self._connection.execute(
                    select(products.c.sku).where(products.c.sku.in_(skus))
                )
            ).scalars()
        )
        return [sku for sku in skus if sku not in known]

    async def take(self, sku: str, quantity: int) -> bool:
        # One conditional UPDATE: the check and the change cannot be split by
        # a concurrent request (PostgreSQL re-checks the condition after the
        # row lock; SQLite runs one writer at a time).
        result = await self._connection.execute(
            update(products)
            .where(products.c.sku == sku, products.c.available >= quantity)
            .values(
                available=products.c.available - quantity,
                reserved=products.c.reserved + quantity,
            )
        )
        return result.rowcount == 1

    async def give_back(self, sku: str, quantity: int) -> None:
        await self._connection.execute(
            update(products)
            .where(products.c.sku == sku)
            .values(
                available=products.c.available + quantity,
                reserved=products.c.reserved - quantity,
            )
        )

    async def ship(self, sku: str, quantity: int) -> None:
        await self._connection.execute(
            update(products)
            .where(products.c.sku == sku)
            .values(reserved=products.c.reserved - quantity)
        )

    async def set_available(self, sku: str, available: int) -> Stock:
        await self._connection.execute(
            dialect_insert(self._connection, products)
            .values(sku=sku, available=available, reserved=0)
            .on_conflict_do_update(index_elements=[products.c.sku], set_={"available": available})
        )
        stock = await self.get(sku)
        assert stock is not None
        return stock

    async def add_if_missing(self, sku: str, available: int) -> None:
        await self._connection.execute(
            dialect_insert(self._connection, products)
            .values(sku=sku, available=available, reserved=0)
            .on_conflict_do_nothing(index_elements=[products.c.sku])
        )

    async def is_empty(self) -> bool:
        first = await self._connection.execute(select(products.c.sku).limit(1))
        return first.first() is None


class SqlReservationRepository(SqlOrderResources[Reservation]):
    table: ClassVar[Table] = reservations

    def __init__(self, connection: AsyncConnection) -> None:
        super().__init__(connection)
        self._lines = LineStore(connection, reservation_lines, "reservation_id")

    async def add(self, resource: Reservation) -> None:
        await super().add(resource)
        await self._lines.add(resource.reservation_id, resource.lines)

    def _to_row(self, resource: Reservation) -> dict[str, Any]:
        return {
            "reservation_id": resource.reservation_id,
            "order_id": resource.order_id,
            "state": resource.state.value,
        }

    async def _from_rows(self, rows: Sequence[Row[Any]]) -> list[Reservation]:
        lines = await self._lines.of([row.reservation_id for row in rows])
        return [
            Reservation(
                reservation_id=row.reservation_id,
                order_id=row.order_id,
                lines=lines.get(row.reservation_id, []),
                state=ReservationState(row.state),
            )
            for row in rows
        ]


class SqlInventoryUnitOfWork(SqlUnitOfWork):
    products: SqlProductRepository
    reservations: SqlReservationRepository

    def _bind(self, connection: AsyncConnection) -> None:
        self.products = SqlProductRepository(connection)
        self.reservations = SqlReservationRepository(connection)
