"""SQL adapters for the payments domain's repositories, and its unit of work."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Row, Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite

from services.common.db import PerDialect, SqlUnitOfWork
from services.common.driver_sql import DriverConnection
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


# What a charge and its refund run, built once (services.common.db.PerDialect says why).
_CUSTOMER = customer_exposure.c.customer_id == bindparam("p_customer_id")
# 64-bit like the columns: an order may total more than 2^31 cents, and so may
# the limit; as INTEGER, PostgreSQL refused them (every charge a 500).
_AMOUNT = bindparam("p_amount_cents", type_=BigInteger)
_OUTSTANDING = customer_exposure.c.outstanding_cents


# One statement, like taking stock: a customer's first charge opens its row
# with the amount (which add_within_limit has checked against the limit); a
# later one adds to the row only while the total stays within the limit.
# Concurrent charges of one customer queue on its row (the first ones on its
# key) and each sees the total the one before left: PostgreSQL checks the
# condition on the row as locked, SQLite runs one writer at a time.
def _add_within_limit(
    insert: Callable[[Table], sqlite.Insert | postgresql.Insert],
) -> sqlite.Insert | postgresql.Insert:
    statement = insert(customer_exposure)
    total = _OUTSTANDING + statement.excluded.outstanding_cents
    return statement.values(
        customer_id=bindparam("p_customer_id"), outstanding_cents=_AMOUNT
    ).on_conflict_do_update(
        index_elements=[customer_exposure.c.customer_id],
        set_={"outstanding_cents": total},
        where=bindparam("p_limit_cents", type_=BigInteger) >= total,
    )


_ADD_WITHIN_LIMIT = PerDialect(_add_within_limit)
_SUBTRACT = (
    update(customer_exposure).where(_CUSTOMER).values(outstanding_cents=_OUTSTANDING - _AMOUNT)
)


class SqlExposureRepository:
    def __init__(self, connection: DriverConnection) -> None:
        self._connection = connection

    async def add_within_limit(self, customer_id: str, amount_cents: int, limit_cents: int) -> bool:
        if amount_cents > limit_cents:
            return False
        result = await self._connection.execute(
            _ADD_WITHIN_LIMIT.on(self._connection),
            {
                "p_customer_id": customer_id,
                "p_amount_cents": amount_cents,
                "p_limit_cents": limit_cents,
            },
        )
        return result.rowcount == 1

    async def subtract(self, customer_id: str, amount_cents: int) -> None:
        await self._connection.execute(
            _SUBTRACT, {"p_customer_id": customer_id, "p_amount_cents": amount_cents}
        )


class SqlPaymentsUnitOfWork(SqlUnitOfWork):
    charges: SqlChargeRepository
    exposure: SqlExposureRepository
    fences: SqlFences

    def _bind(self, connection: DriverConnection) -> None:
        self.charges = SqlChargeRepository(connection)
        self.exposure = SqlExposureRepository(connection)
        self.fences = SqlFences(connection)
