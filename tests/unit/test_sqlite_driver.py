"""The services' SQLite driver (services/common/sqlite_driver.py): inline
statements, but nothing that waits on another connection or syncs the disk
blocks the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine, driver_transaction, transaction
from services.common.sqlite_driver import Checkpoints, InlineSqliteConnection

# The test table, as SQLAlchemy sees it (the driver runs Core statements only).
t = Table("t", MetaData(), Column("x", Integer))


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


def in_database_file(database: Path) -> list[int]:
    """What the database file holds, leaving out the WAL: what checkpoints copied."""
    connection = sqlite3.connect(f"file:{database}?immutable=1", uri=True)
    try:
        return [x for (x,) in connection.execute("SELECT x FROM t ORDER BY x")]
    except sqlite3.OperationalError:  # the table itself is still only in the WAL
        return []
    finally:
        connection.close()


async def test_a_commit_leaves_the_checkpoint_to_a_thread(
    engine: AsyncEngine, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Checkpoints, "WRITES", 3)
    # Read the file once the checkpoint is over: read while the thread copies
    # pages into it, the file can be half written ("malformed").
    checkpointed = asyncio.Event()
    finish = Checkpoints._done

    def finish_and_tell(self: Checkpoints, finished: asyncio.Future[None]) -> None:
        finish(self, finished)
        checkpointed.set()

    monkeypatch.setattr(Checkpoints, "_done", finish_and_tell)
    await insert(engine, 1)
    # The connections never checkpoint themselves.
    assert in_database_file(database) == []
    assert not checkpointed.is_set()

    await insert(engine, 2)
    await asyncio.wait_for(checkpointed.wait(), timeout=5)
    assert in_database_file(database) == [1, 2]


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


@pytest.mark.parametrize("write", [True, False])
async def test_only_a_write_transaction_holds_the_write_lock_from_its_begin(
    engine: AsyncEngine, database: Path, write: bool
) -> None:
    """A writer that read first and took the lock only at its first write would
    fail with "database is locked" when another writer got in between
    (services.common.db._on_sqlite_begin): so a write transaction takes the lock
    at BEGIN, which comes with its first statement (a read here), and a read
    transaction never does."""
    async with transaction(engine, write=write) as connection:
        await connection.execute(text("SELECT x FROM t"))
        assert write_lock_is_held(database) is write


@pytest.mark.parametrize("write", [True, False])
async def test_a_unit_of_works_write_transaction_holds_the_write_lock_from_its_begin(
    engine: AsyncEngine, database: Path, write: bool
) -> None:
    """The same on the driver (services.common.driver_sql), where a unit of
    work's transaction runs: BEGIN IMMEDIATE before any statement for a writer,
    a deferred BEGIN for a reader."""
    async with driver_transaction(engine, write=write):
        assert write_lock_is_held(database) is write


def write_lock_is_held(database: Path) -> bool:
    """Whether another connection's BEGIN IMMEDIATE finds the database locked."""
    other = sqlite3.connect(database, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        if "locked" not in str(error):
            raise
        return True
    else:
        other.execute("ROLLBACK")
        return False
    finally:
        other.close()


async def test_a_unit_of_works_writers_queue_in_the_process(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second writer waits for the first's end in this process's queue
    (services.common.db._writers_turn) rather than in SQLite's busy_timeout,
    which would have sent its BEGIN IMMEDIATE to a thread to sleep and poll."""
    handed_off: list[object] = []
    in_thread = InlineSqliteConnection.in_thread

    async def recorded(self: InlineSqliteConnection, call: Any, *args: Any) -> Any:
        handed_off.append(args)
        return await in_thread(self, call, *args)

    monkeypatch.setattr(InlineSqliteConnection, "in_thread", recorded)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with driver_transaction(engine, write=True) as connection:
            await connection.execute(t.insert().values(x=1))
            inside.set()
            await release.wait()
            await connection.commit()

    holder = asyncio.create_task(first())
    await inside.wait()
    second = asyncio.create_task(insert_on_the_driver(engine, 2))
    await asyncio.sleep(0.05)
    assert not second.done()
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, second), timeout=5)
    assert handed_off == []
    async with transaction(engine, write=False) as connection:
        assert (await connection.execute(text("SELECT x FROM t ORDER BY x"))).scalars().all() == [
            1,
            2,
        ]


async def insert_on_the_driver(engine: AsyncEngine, value: int) -> None:
    async with driver_transaction(engine, write=True) as connection:
        await connection.execute(t.insert().values(x=value))
        await connection.commit()
