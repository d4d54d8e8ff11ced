"""The services' SQLite driver (services/common/sqlite_driver.py): inline
statements, but a write that waits for another writer's lock does not block
the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine, transaction


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "service.sqlite3"


@pytest.fixture
async def engine(database: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with transaction(engine, write=True) as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
        yield engine
    finally:
        await engine.dispose()


async def insert(engine: AsyncEngine, value: int) -> None:
    async with transaction(engine, write=True) as connection:
        await connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": value})


async def test_a_write_waits_for_another_writer_without_blocking_the_loop(
    engine: AsyncEngine, database: Path
) -> None:
    other = sqlite3.connect(database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        writing = asyncio.create_task(insert(engine, 1))
        # The loop keeps turning while the write waits for the lock.
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert not writing.done()
        other.execute("COMMIT")
        await asyncio.wait_for(writing, timeout=5)
    finally:
        other.close()

    async with transaction(engine, write=False) as connection:
        assert (await connection.execute(text("SELECT x FROM t"))).scalars().all() == [1]
