"""Fences: once an order's compensation has run in a service, no forward request
for that order takes effect there any more, however late it lands.

A forward request the caller gave up on (its HTTP call timed out, its activity
ran out of retries) can still be running in the service, held up by a slow
database or a stall. Its order meanwhile compensates: it looks the order's
resources up, finds none yet, and ends FAILED; then the request commits a
charge or a shipment nobody will undo. Looking up is a one-off check that a
late write overtakes.

So the compensation first fences the order (`PUT /fences/{order_id}`), then
looks up and undoes. Every forward request passes the order's gate in the
transaction that makes its effect (services.common.domain.admit), and the two
are serialised on one row per order:

- the gate inserts the order's row (ON CONFLICT DO NOTHING ... RETURNING,
  one statement, for an order's first forward request here); when the row is
  there already, it locks it and reads it (SELECT ... FOR UPDATE). The fence
  inserts it fenced, or sets `fenced_at` on the existing row (ON CONFLICT DO
  UPDATE). Each takes the row's lock, so on PostgreSQL whichever comes second
  waits for the first to commit (on the unique index, or on the row lock) and
  then sees what it committed (READ COMMITTED: each statement reads the
  latest commits; a locked row is re-read after the wait). Two forward
  requests of one order queue on the row too, which is what lets the second
  see what the first made (services.common.domain.admit_once). On SQLite
  every write transaction holds the database's write lock from BEGIN
  IMMEDIATE (services.common.db), so they never overlap at all.
- A forward request that got through the gate first has committed its effect
  before the fence commits, so the compensation's look-up, which starts after
  the fence, finds it and undoes it. One that comes after the fence is refused
  with 409 ORDER_FENCED, in the transaction that would have made the effect.

Fences are per order, not per caller: only the workers may send forward
requests or fences (and both name the order in the request), whereas
idempotency keys are per caller because callers choose them. A row is also
written for every order that makes a forward request, unfenced: it is the
thing the gate and the fence lock, one small row per order and service.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import Column, DateTime, MetaData, String, Table, bindparam, func, select

from contracts import errors
from services.common.auth import WorkerOnly
from services.common.db import NAMING_CONVENTION, PerDialect, dialect_insert, driver_transaction
from services.common.domain import Admission
from services.common.driver_sql import DriverConnection
from services.common.errors import FORBIDDEN, UNAUTHORIZED
from services.common.runtime import Engine
from services.common.schemas import IdPath, error_responses

# Each service copies this table into its own metadata, as the idempotency table.
ORDER_FENCES = Table(
    "order_fences",
    MetaData(naming_convention=NAMING_CONVENTION),
    Column("order_id", String(255), primary_key=True),
    # Set once, by the order's first compensation here; empty while only
    # forward requests have passed the gate.
    Column("fenced_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


# Built once (services.common.db.PerDialect says why). The first forward
# request of an order inserts its row; DO NOTHING when there is one already.
_ADMIT_FIRST = PerDialect(
    lambda insert: (
        insert(ORDER_FENCES)
        .values(
            order_id=bindparam("p_order_id"), fenced_at=None, created_at=bindparam("p_created_at")
        )
        .on_conflict_do_nothing(index_elements=[ORDER_FENCES.c.order_id])
        .returning(ORDER_FENCES.c.order_id)
    )
)
# A later one locks the row the first left (FOR UPDATE; SQLite's writer holds
# the database already) and reads it as any fence committed first left it.
_ADMIT_AGAIN = (
    select(ORDER_FENCES.c.fenced_at)
    .where(ORDER_FENCES.c.order_id == bindparam("p_order_id"))
    .with_for_update()
)


class SqlFences:
    """services.common.domain.Fences on the order_fences table."""

    def __init__(self, connection: DriverConnection) -> None:
        self._connection = connection

    async def admit(self, order_id: str, *, passed_before: bool = False) -> Admission:
        # The row, new or not, stays locked until the commit (on SQLite every
        # writer holds the database's lock anyway): a fence waits until the
        # forward request has committed. The first request of an order pays one
        # statement, which also tells it that nothing was made here before; so
        # does a later one that knows the row is there (`passed_before`), such
        # as a reservation's commit, which would otherwise pay two (the insert
        # doing nothing, then the lock).
        if passed_before:
            row = (await self._connection.execute(_ADMIT_AGAIN, {"p_order_id": order_id})).first()
            if row is not None:
                return Admission.AFTER_ANOTHER if row.fenced_at is None else Admission.FENCED
            # No row after all (an order older than the gates, migration 0003):
            # the insert below makes it, or waits for a fence making it.
        inserted = (
            await self._connection.execute(
                _ADMIT_FIRST.on(self._connection),
                {"p_order_id": order_id, "p_created_at": datetime.now(UTC)},
            )
        ).first()
        if inserted is not None:
            return Admission.FIRST
        fenced_at = (
            await self._connection.execute(_ADMIT_AGAIN, {"p_order_id": order_id})
        ).scalar_one()
        return Admission.AFTER_ANOTHER if fenced_at is None else Admission.FENCED

    async def fence(self, order_id: str) -> datetime:
        now = datetime.now(UTC)
        insert = dialect_insert(self._connection, ORDER_FENCES).values(
            order_id=order_id, fenced_at=now, created_at=now
        )
        fenced_at: datetime = (
            await self._connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[ORDER_FENCES.c.order_id],
                    # Fencing twice fences once: the first time stays.
                    set_={"fenced_at": func.coalesce(ORDER_FENCES.c.fenced_at, now)},
                ).returning(ORDER_FENCES.c.fenced_at)
            )
        ).scalar_one()
        # SQLite keeps no time zone; every time written here is UTC.
        return fenced_at if fenced_at.tzinfo else fenced_at.replace(tzinfo=UTC)


class FencePublic(BaseModel):
    order_id: str
    fenced_at: datetime


# Mounted with the domain's routes: authenticated, and faults apply.
fences_router = APIRouter(
    prefix="/fences", tags=["fences"], responses=error_responses(UNAUTHORIZED, FORBIDDEN)
)


@fences_router.put(
    "/{order_id}",
    response_model=FencePublic,
    dependencies=[WorkerOnly],
    responses=error_responses(errors.INJECTED_FAULT, errors.SERVICE_UNAVAILABLE),
)
async def fence_order(*, order_id: IdPath, engine: Engine) -> FencePublic:
    """The order's compensation has begun: from now on no forward request for
    it takes effect here (409 ORDER_FENCED). Call it before looking up what to
    undo. Fencing twice fences once, so no Idempotency-Key is needed."""
    async with driver_transaction(engine, write=True) as connection:
        fenced_at = await SqlFences(connection).fence(order_id)
        await connection.commit()
    return FencePublic(order_id=order_id, fenced_at=fenced_at)
