"""A service's PostgreSQL connections are kept open up to the pool size, so
a transaction under load does not open and close a connection of its own
(Settings.service_database_pool_size); one that PostgreSQL closed meanwhile is
replaced before a request gets it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import POOL_OVERFLOW, create_engine, transaction
from tests.integration.services.support import POSTGRES_URL, PostgresDatabases

POOL_SIZE = 12
CLOSED_POOL_SIZE = 4


@contextlib.asynccontextmanager
async def engine_on_own_database(
    databases: PostgresDatabases, pool_size: int
) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """A service's engine (`pool_size` kept open) on a database of its own, and
    the database's URL; disposed and the database released afterwards."""
    url = await databases.acquire()
    engine = create_engine(url, pool_size=pool_size)
    try:
        yield engine, url
    finally:
        await engine.dispose()
        await databases.release(url)


async def backends_at_once(engine: AsyncEngine, count: int) -> set[int]:
    """`count` write transactions that each hold their connection until all
    have one (so the pool must hand out `count` at once); their backends' pids."""
    all_in = asyncio.Barrier(count)

    async def backend() -> int:
        async with transaction(engine, write=True) as connection:
            pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await all_in.wait()
        return int(pid)

    return set(await asyncio.wait_for(asyncio.gather(*(backend() for _ in range(count))), 30))


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="ORDERSAGA_TEST_POSTGRES_URL is not set")
async def test_concurrent_transactions_leave_their_connections_open_for_the_next(
    postgres_databases: PostgresDatabases,
) -> None:
    async with engine_on_own_database(postgres_databases, POOL_SIZE) as (engine, _url):
        await backends_at_once(engine, POOL_SIZE)
        # SQLAlchemy's default pool (5) would have closed 7 of the 12 by now.
        assert engine.pool.checkedin() == POOL_SIZE  # type: ignore[attr-defined]


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="ORDERSAGA_TEST_POSTGRES_URL is not set")
async def test_connections_postgres_closed_in_the_pool_are_replaced_before_use(
    postgres_databases: PostgresDatabases,
) -> None:
    async with engine_on_own_database(postgres_databases, CLOSED_POOL_SIZE) as (engine, url):
        pooled = await backends_at_once(engine, CLOSED_POOL_SIZE)
        assert len(pooled) == CLOSED_POOL_SIZE
        # As a restart or an administrator would: every pooled connection closed
        # by the server while no request holds it.
        administrator = create_engine(url, pool_size=1)
        try:
            async with transaction(administrator, write=False) as admin:
                terminated = (
                    await admin.execute(
                        text(
                            "SELECT count(*) FROM unnest(CAST(:pids AS int[])) AS pid "
                            "WHERE pg_terminate_backend(pid)"
                        ),
                        {"pids": sorted(pooled)},
                    )
                ).scalar_one()
        finally:
            await administrator.dispose()
        assert terminated == CLOSED_POOL_SIZE
        await asyncio.sleep(0.2)  # for the event loop to read the closes
        # Without the check each of these would fail (InterfaceError, a 503).
        replaced = await backends_at_once(engine, CLOSED_POOL_SIZE)
        assert replaced.isdisjoint(pooled)
        assert engine.pool.checkedin() == CLOSED_POOL_SIZE  # type: ignore[attr-defined]


def test_a_burst_past_the_pool_may_open_a_bounded_number_more() -> None:
    # No connection is made: the pool's bounds are what is checked.
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none", pool_size=POOL_SIZE)
    assert engine.pool.size() == POOL_SIZE  # type: ignore[attr-defined]
    assert engine.pool._max_overflow == POOL_OVERFLOW  # type: ignore[attr-defined]
