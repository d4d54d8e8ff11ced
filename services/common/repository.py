"""SQL building blocks for the services' repositories."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from sqlalchemy import (
    Column,
    Insert,
    MetaData,
    Row,
    Select,
    Table,
    Update,
    bindparam,
    insert,
    select,
    update,
)

from services.common.db import NAMING_CONVENTION
from services.common.domain import Dated, Line
from services.common.driver_sql import DriverConnection
from services.common.fences import ORDER_FENCES
from services.common.idempotency import IDEMPOTENCY_KEYS


def service_metadata() -> MetaData:
    """A service's MetaData, with the shared idempotency and fence tables already in it."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    IDEMPOTENCY_KEYS.to_metadata(metadata)
    ORDER_FENCES.to_metadata(metadata)
    return metadata


@dataclass(frozen=True)
class _ResourceStatements:
    """What SqlOrderResources runs on its table, built once per table
    (services.common.db.PerDialect says why)."""

    insert: Insert
    lock: Select[Any]
    save_state: Update
    for_order: Select[Any]


@functools.cache
def _resource_statements(table: Table) -> _ResourceStatements:
    (id_column,) = table.primary_key.columns
    return _ResourceStatements(
        # Values and columns come with each call's parameters.
        insert=insert(table),
        lock=select(table).where(id_column == bindparam("p_id")).with_for_update(),
        save_state=update(table)
        .where(id_column == bindparam("p_id"))
        .values(state=bindparam("p_state"), updated_at=bindparam("p_updated_at")),
        for_order=select(table)
        .where(table.c.order_id == bindparam("p_order_id"))
        .order_by(table.c.created_at, id_column),
    )


@functools.cache
def _line_statements(table: Table, parent_column: str) -> tuple[Insert, Select[Any]]:
    """LineStore's statements on its table, built once (see _resource_statements)."""
    parent = table.c[parent_column]
    return insert(table), (
        select(parent, table.c.sku, table.c.quantity)
        .where(parent.in_(bindparam("p_ids", expanding=True)))
        .order_by(parent, table.c.sku)
    )


class LineStore:
    """Lines of goods (sku, quantity) that belong to a parent row: a
    reservation's or a shipment's. The table has the parent column, sku and
    quantity."""

    def __init__(self, connection: DriverConnection, table: Table, parent_column: str) -> None:
        self._connection = connection
        self._parent = table.c[parent_column]
        self._insert, self._select = _line_statements(table, parent_column)

    async def add(self, parent_id: str, lines: Iterable[Line]) -> None:
        rows = [
            {self._parent.key: parent_id, "sku": line.sku, "quantity": line.quantity}
            for line in lines
        ]
        if rows:
            await self._connection.execute(self._insert, rows)

    async def of(self, parent_ids: Sequence[str]) -> dict[str, list[Line]]:
        result = await self._connection.execute(self._select, {"p_ids": list(parent_ids)})
        lines: dict[str, list[Line]] = {}
        for parent_id, sku, quantity in result:
            lines.setdefault(parent_id, []).append(Line(sku=sku, quantity=quantity))
        return lines


class Stateful(Protocol):
    @property
    def state(self) -> StrEnum: ...


ResourceT = TypeVar("ResourceT", bound=Stateful)


class SqlOrderResources(ABC, Generic[ResourceT]):
    """services.common.domain.OrderResources on a table with the resource's id
    as primary key and order_id, state, created_at and updated_at columns.

    Subclasses name the table and say how a resource maps to a row and back.
    """

    table: ClassVar[Table]

    def __init__(self, connection: DriverConnection) -> None:
        self._connection = connection

    @property
    def _id_column(self) -> Column[Any]:
        (column,) = self.table.primary_key.columns
        return column

    def _resource_id(self, resource: ResourceT) -> str:
        return str(getattr(resource, self._id_column.key))

    @abstractmethod
    def _to_row(self, resource: ResourceT) -> dict[str, Any]:
        """Every column but the timestamps."""

    @abstractmethod
    async def _from_rows(self, rows: Sequence[Row[Any]]) -> list[ResourceT]: ...

    @property
    def _statements(self) -> _ResourceStatements:
        return _resource_statements(self.table)

    async def add(self, resource: ResourceT) -> None:
        now = datetime.now(UTC)
        await self._connection.execute(
            self._statements.insert,
            {**self._to_row(resource), "created_at": now, "updated_at": now},
        )

    async def lock(self, resource_id: str) -> ResourceT | None:
        rows = (await self._connection.execute(self._statements.lock, {"p_id": resource_id})).all()
        found = await self._from_rows(rows)
        return found[0] if found else None

    async def save_state(self, resource: ResourceT) -> None:
        await self._connection.execute(
            self._statements.save_state,
            {
                "p_id": self._resource_id(resource),
                "p_state": resource.state.value,
                "p_updated_at": datetime.now(UTC),
            },
        )

    async def for_order(self, order_id: str) -> list[ResourceT]:
        rows = (
            await self._connection.execute(self._statements.for_order, {"p_order_id": order_id})
        ).all()
        return await self._from_rows(rows)

    async def ledger_page(
        self, *, after: str | None, limit: int, changed_since: datetime | None
    ) -> list[Dated[ResourceT]]:
        # Keyset pagination on the primary key: a page boundary never skips or
        # repeats a row, whatever is added or changed between pages.
        query = select(self.table).order_by(self._id_column).limit(limit)
        if after is not None:
            query = query.where(self._id_column > after)
        if changed_since is not None:
            query = query.where(self.table.c.updated_at >= as_utc(changed_since))
        rows = (await self._connection.execute(query)).all()
        resources = await self._from_rows(rows)
        return [
            Dated(resource, as_utc(row.created_at), as_utc(row.updated_at))
            for resource, row in zip(resources, rows, strict=True)
        ]


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime. SQLite keeps none of the zone, and every time the
    services write is UTC, so a naive one read back is UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # A moment within a day of year 1 or 9999 (a caller's bound): past either end.
        offset = moment.utcoffset()
        edge = datetime.max if offset is not None and offset < timedelta(0) else datetime.min
        return edge.replace(tzinfo=UTC)
