"""SQLite for the async engine with a thread hand-off only where SQLite can wait.

aiosqlite runs every driver call on a thread of its own and hands the result
back to the event loop: opening a cursor, executing, fetching and closing are
a hand-off each, three or four per statement, some thirty-five for one
idempotent write. Each wakes a thread and passes the GIL back and forth,
which cost more CPU than the statements themselves (a py-spy profile put a
fifth of the service's CPU in waking aiosqlite's thread alone).

This connection keeps the aiosqlite interface SQLAlchemy's aiosqlite dialect
speaks (it is that dialect's `async_creator`), and also runs a unit of work's
statements itself (`begin`, `run`, `run_many`: services.common.driver_sql).
Either way it runs a call inline on the event loop unless it can wait on
another connection or on the disk:

- `BEGIN IMMEDIATE` waits for the database's write lock while another process
  (or another engine in this one) writes. It is tried inline without waiting;
  only when the lock is taken does it go to a thread, where busy_timeout
  sleeps while the loop serves other requests;
- checkpoints, which copy the WAL into the database and sync both files, run
  on a thread (Checkpoints), never inside a COMMIT;
- opening a connection (the WAL pragma may wait on a lock): on a thread.

Everything else waits on neither: inside a write transaction this connection
already holds the write lock, in WAL mode reads never wait for writers, and
with synchronous=NORMAL a COMMIT appends to the WAL without syncing it. So a
request makes no thread hand-off at all unless another process writes too
(one in 100 writes also starts a checkpoint).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

# The statement services.common.db issues to start a write transaction.
BEGIN_WRITE = "BEGIN IMMEDIATE"


class InlineSqliteCursor:
    """aiosqlite.Cursor's interface over a sqlite3 cursor, run inline."""

    def __init__(self, connection: InlineSqliteConnection, cursor: sqlite3.Cursor) -> None:
        self._connection = connection
        self._cursor = cursor

    async def __aenter__(self) -> InlineSqliteCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineSqliteCursor:
        if sql == BEGIN_WRITE:
            await self._connection.begin_write()
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(
        self, sql: str, parameters: Iterable[Sequence[Any]]
    ) -> InlineSqliteCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _CursorContext:
    """What aiosqlite's `cursor()` returns: awaitable, and an async context."""

    def __init__(self, cursor: InlineSqliteCursor) -> None:
        self._cursor = cursor

    def __await__(self) -> Any:
        return self._cursor.__aenter__().__await__()

    async def __aenter__(self) -> InlineSqliteCursor:
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        await self._cursor.__aexit__(*exc)


class Checkpoints:
    """Checkpoints of one database file, on a thread, off the commits.

    Every connection is opened with `PRAGMA wal_autocheckpoint=0`, so no
    COMMIT copies the WAL back into the database (and syncs both files)
    inline. Instead every `WRITES`-th write transaction starts a PASSIVE
    checkpoint (the kind SQLite's automatic one is) on a thread, on a
    connection of its own; one at a time. Counted in transactions, not WAL
    bytes: the WAL file keeps its size after a checkpoint (SQLite writes it
    again from its start), so its size says nothing about what is left to copy.
    """

    # A service's write is a handful of pages: 100 of them stay well below the
    # 1000 pages after which SQLite's own automatic checkpoint would run.
    WRITES = 100

    def __init__(self, database: str) -> None:
        self._database = database
        self._writes = 0
        self._running: asyncio.Future[None] | None = None

    def after_write(self) -> None:
        self._writes += 1
        if self._writes >= self.WRITES and self._running is None:
            self._writes = 0
            self._running = asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
            self._running.add_done_callback(self._done)

    def _checkpoint(self) -> None:
        connection = sqlite3.connect(self._database)
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            connection.close()

    def _done(self, finished: asyncio.Future[None]) -> None:
        self._running = None
        if not finished.cancelled() and finished.exception() is not None:
            # The next write tries again; meanwhile the WAL only grows.
            log.warning("SQLite checkpoint of %s failed: %r", self._database, finished.exception())


class InlineSqliteConnection:
    """aiosqlite.Connection's interface over a sqlite3 connection (see the module)."""

    def __init__(
        self, connection: sqlite3.Connection, *, busy_timeout_ms: int, checkpoints: Checkpoints
    ) -> None:
        # The attribute SQLAlchemy's adapter reads to see the connection is open.
        self._connection: sqlite3.Connection | None = connection
        self._busy_timeout_ms = busy_timeout_ms
        self._checkpoints = checkpoints
        # In a transaction begun with BEGIN IMMEDIATE, until it ends.
        self.writing = False

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    async def in_thread(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, partial(call, *args))

    async def begin_write(self) -> None:
        """BEGIN IMMEDIATE: inline when the write lock is free, as it is unless
        another process or engine writes (this engine's writers queue in
        services.common.db first); else on a thread, waiting as busy_timeout says."""
        connection = self._conn
        connection.execute("PRAGMA busy_timeout=0")
        try:
            connection.execute(BEGIN_WRITE)
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            connection.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            await self.in_thread(connection.execute, BEGIN_WRITE)
        else:
            connection.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        self.writing = True

    async def begin(self, *, write: bool) -> None:
        """A transaction on this connection: BEGIN IMMEDIATE for a writer, a
        deferred BEGIN for a reader (services.common.driver_sql)."""
        if write:
            await self.begin_write()
        else:
            self._conn.execute("BEGIN")

    def run(self, sql: str, parameters: Sequence[Any]) -> tuple[list[Any], int]:
        """One statement, inline: its rows (all of them) and its row count."""
        cursor = self._conn.execute(sql, parameters)
        try:
            rows = cursor.fetchall() if cursor.description is not None else []
            return rows, cursor.rowcount
        finally:
            cursor.close()

    def run_many(self, sql: str, parameters: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, parameters).close()

    def cursor(self) -> _CursorContext:
        return _CursorContext(InlineSqliteCursor(self, self._conn.cursor()))

    async def commit(self) -> None:
        writing, self.writing = self.writing, False
        self._conn.commit()
        if writing:
            self._checkpoints.after_write()

    async def rollback(self) -> None:
        self.writing = False
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def stop(self) -> None:
        """Close at once (SQLAlchemy's terminate, when a connection is abandoned)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def connector(
    database: str, *, setup: Callable[[sqlite3.Connection], None], busy_timeout_ms: int
) -> Callable[[], Any]:
    """The async creator of the engine: opens `database` on a thread, runs
    `setup` (pragmas, `busy_timeout_ms` among them) there too, and hands
    back the inline connection."""

    def open_connection() -> sqlite3.Connection:
        # Used from the event loop and, for begin and commit, from the
        # executor's threads, never from two at once (the session waits).
        connection = sqlite3.connect(database, check_same_thread=False)
        try:
            setup(connection)
            # Checkpoints run on a thread instead (Checkpoints).
            connection.execute("PRAGMA wal_autocheckpoint=0")
        except BaseException:
            connection.close()
            raise
        return connection

    checkpoints = Checkpoints(database)

    async def create() -> InlineSqliteConnection:
        loop = asyncio.get_running_loop()
        connection = await loop.run_in_executor(None, open_connection)
        return InlineSqliteConnection(
            connection, busy_timeout_ms=busy_timeout_ms, checkpoints=checkpoints
        )

    return create
