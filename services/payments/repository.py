"""SQL adapters for the payments domain's repositories, and its unit of work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import Row, Table, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import SqlUnitOfWork, dialect_insert
from services.common.fences import SqlFences
from services.common.repository import SqlOrderResources
from services.payments.domain import Charge, ChargeState
from services.payments.tables import charges, customer_exposure


class SqlChargeRepository(SqlOrderResources[Charge]):
    table: ClassVar[Table] = charges

    def _to_row(self, resource: Charge) -> dict[str, Any]:
        return {
            "charge_id": resource.charge_id,
            "order_id": resource.order_id,
            "customer_id": resource.customer_id,
            "amount_cents": resource.amount_cents,
            "currency": resource.currency,
            "state": resource.state.value,
            "issuer_refuses_refund": resource.issuer_refuses_refund,
        }

    async def _from_rows(self, rows: Sequence[Row[Any]]) -> list[Charge]:
        return [
            Charge(
                charge_id=row.charge_id,
                order_id=row.order_id,
                customer_id=row.customer_id,
                amount_cents=row.amount_cents,
                currency=row.currency,
                state=ChargeState(row.state),
                issuer_refuses_refund=row.issuer_refuses_refund,
            )
            for row in rows
        ]


class SqlExposureRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add_within_limit(self, customer_id: str, amount_cents: int, limit_cents: int) -> bool:
        await self._connection.execute(
            dialect_insert(self._connection, customer_exposure)
            .values(customer_id=customer_id, outstanding_cents=0)
            .on_conflict_do_nothing(index_elements=[customer_exposure.c.customer_id])
        )
        # Conditional, like taking stock: concurrent charges of one customer
        # queue on its row and each sees the total the one before left.
        outstanding = customer_exposure.c.outstanding_cents
        result = await self._connection.execute(
            update(customer_exposure)
            .where(
                customer_exposure.c.customer_id == customer_id,
                outstanding + amount_cents <= limit_cents,
            )
            .values(outstanding_cents=outstanding + amount_cents)
        )
        return result.rowcount == 1

    async def subtract(self, customer_id: str, amount_cents: int) -> None:
        await self._connection.execute(
            update(customer_exposure)
            .where(customer_exposure.c.customer_id == customer_id)
            .values(outstanding_cents=customer_exposure.c.outstanding_cents - amount_cents)
        )


class SqlPaymentsUnitOfWork(SqlUnitOfWork):
    charges: SqlChargeRepository
    exposure: SqlExposureRepository
    fences: SqlFences

    def _bind(self, connection: AsyncConnection) -> None:
        self.charges = SqlChargeRepository(connection)
        self.exposure = SqlExposureRepository(connection)
        self.fences = SqlFences(connection)
