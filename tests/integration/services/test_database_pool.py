"""A service's PostgreSQL connections are kept open up to the pool size, so
a transaction under load does not open and close a connection of its own
(Settings.service_database_pool_size)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from services.common.db import POOL_OVERFLOW, create_engine, transaction
from tests.integration.services.support import POSTGRES_URL, PostgresDatabases

POOL_SIZE = 12


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="ORDERSAGA_TEST_POSTGRES_URL is not set")
async def test_concurrent_transactions_leave_their_connections_open_for_the_next(
    postgres_databases: PostgresDatabases,
) -> None:
    url = await postgres_databases.acquire()
    engine = create_engine(url, pool_size=POOL_SIZE)
    # Every transaction holds its connection until all have one, so the pool
    # must hand out POOL_SIZE connections at once.
    all_in = asyncio.Barrier(POOL_SIZE)

    async def hold_a_connection() -> None:
        async with transaction(engine, write=True) as connection:
            await connection.execute(text("SELECT 1"))
            await all_in.wait()

    try:
        await asyncio.wait_for(
            asyncio.gather(*(hold_a_connection() for _ in range(POOL_SIZE))), timeout=30
        )
        # SQLAlchemy's default pool (5) would have closed 7 of the 12 by now.
        assert engine.pool.checkedin() == POOL_SIZE  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
        await postgres_databases.release(url)


def test_a_burst_past_the_pool_may_open_a_bounded_number_more() -> None:
    # No connection is made: the pool's bounds are what is checked.
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none", pool_size=POOL_SIZE)
    assert engine.pool.size() == POOL_SIZE  # type: ignore[attr-defined]
    assert engine.pool._max_overflow == POOL_OVERFLOW  # type: ignore[attr-defined]
