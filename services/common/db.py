"""Async engines for SQLite (the embedded default) and PostgreSQL, and the unit
of work every request runs in (its statements on the driver: driver_sql).

SQLAlchemy's own transactions (`begin`, `transaction`) remain for what is not
a unit of work: migrations, health checks, tests."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from sqlalchemy import Connection, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ordersaga.runtime.settings import DEFAULT_SERVICE_DATABASE_POOL_SIZE
from services.common import driver_sql, sqlite_driver
from services.common.driver_sql import DriverConnection

# Named constraints, so later migrations (batch mode on SQLite) can address them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 5000
# asyncpg waits 60 s by default; a caller (an activity with a read timeout of a
# few seconds) should get a quick 503 and retry instead.
POSTGRES_CONNECT_TIMEOUT_SECONDS = 5
# How many more PostgreSQL connections than the pool's size
# (Settings.service_database_pool_size) a burst may open, each closed after use.
POOL_OVERFLOW = 10
# Execution option that marks a connection as about to write (see _on_sqlite_begin).
WRITE_OPTION = "ordersaga_write"


def create_engine(
    database_url: str, *, pool_size: int = DEFAULT_SERVICE_DATABASE_POOL_SIZE
) -> AsyncEngine:
    """The service's engine; `pool_size` is PostgreSQL's connections kept open
    (SQLite's writers queue for one connection anyway). The URL is one
    Settings validated (ordersaga.runtime.settings.database_url_problem)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        asyncpg = url.get_driver_name() == "asyncpg"
        engine = create_async_engine(
            url,
            hide_parameters=True,
            # asyncpg is asked at checkout instead (_replace_if_closed); another
            # driver keeps SQLAlchemy's ping.
            pool_pre_ping=not asyncpg,
            pool_size=pool_size,
            max_overflow=POOL_OVERFLOW,
            connect_args={"timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS} if asyncpg else {},
        )
        if asyncpg:
            event.listen(engine.sync_engine, "checkout", _replace_if_closed)
        return engine
    database = url.database or ":memory:"
    if database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        hide_parameters=True,
        # A thread hand-off per transaction, not per driver call (sqlite_driver).
        async_creator=sqlite_driver.connector(
            database, setup=_set_up_sqlite_connection, busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS
        ),
    )
    event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
    return engine


def redacted_database_url(database_url: str) -> str:
    """The URL as it may be logged: no password, no query (a parameter may
    carry a secret too)."""
    try:
        url = make_url(database_url)
    except (ArgumentError, ValueError):
        return "(not a database URL)"
    return url.set(query={}).render_as_string(hide_password=True)


def database_error_text(error: DBAPIError | OSError) -> str:
    """One line on why the database could not be used: the driver's message
    (PostgreSQL's, such as 'role "x" does not exist'), without SQLAlchemy's
    wrapping, the statement or a traceback."""
    cause: BaseException = error
    if isinstance(error, DBAPIError) and error.orig is not None:
        cause = error.orig
    if isinstance(cause, TimeoutError) and not str(cause):
        return f"no answer within {POSTGRES_CONNECT_TIMEOUT_SECONDS} s"
    text = " ".join(str(cause).split())
    return text or type(cause).__name__


def _replace_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Hand out no pooled asyncpg connection that PostgreSQL has closed (a
    restart, a failover, an idle timeout): the pool replaces it with a new one.

    asyncpg learns of the close as soon as the event loop reads it from the
    socket, so this asks the driver, with no round trip. SQLAlchemy's
    `pool_pre_ping` asks the server instead: BEGIN, an empty statement and
    ROLLBACK, three round trips on every checkout, which cost 0.15 ms of the
    service's CPU per request (docs/performance.md, round 5). What neither
    catches, a close that lands after the checkout, fails that request with a
    503, which its caller retries; SQLAlchemy then replaces the pool's older
    connections too.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("PostgreSQL closed this connection while it was in the pool")


def _set_up_sqlite_connection(dbapi_connection: sqlite3.Connection) -> None:
    # Take BEGIN away from the sqlite3 driver (it would defer it to the first
    # write, and skip it for SAVEPOINT and DDL) so that _on_sqlite_begin decides.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers run beside the one writer; NORMAL is durable enough
        # with WAL; the busy timeout makes a waiting writer queue, not fail.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    # A deferred transaction that reads and then writes fails with "database is
    # locked" when another writer got in between, and busy_timeout cannot help.
    # Writers take the write lock up front instead, so they queue in order.
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def dialect_insert(
    connection: AsyncConnection | DriverConnection, table: Table
) -> sqlite.Insert | postgresql.Insert:
    """An INSERT that knows ON CONFLICT, for the two databases we run on."""
    return _insert_for(connection.dialect.name, table)


def _insert_for(dialect: str, table: Table) -> sqlite.Insert | postgresql.Insert:
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


StatementT = TypeVar("StatementT")


class PerDialect(Generic[StatementT]):
    """A statement with ON CONFLICT, built once per kind of database.

    The statements a request runs are built once, with bind parameters for
    their values: building a statement and computing its cache key took about
    0.1 ms each time, more than SQLite takes to run it, and SQLAlchemy keeps
    the key of a statement object once computed.
    """

    def __init__(
        self, build: Callable[[Callable[[Table], sqlite.Insert | postgresql.Insert]], StatementT]
    ) -> None:
        self._build = build
        self._built: dict[str, StatementT] = {}

    def on(self, connection: AsyncConnection | DriverConnection) -> StatementT:
        dialect = connection.dialect.name
        statement = self._built.get(dialect)
        if statement is None:
            statement = self._built[dialect] = self._build(partial(_insert_for, dialect))
        return statement


# One writer at a time per SQLite engine, queued in-process. SQLite allows one
# writer anyway; waiting here is a fair queue, where waiting in busy_timeout is
# sleep-and-poll that can time out under load. Other processes still meet
# BEGIN IMMEDIATE and busy_timeout.
_sqlite_writers: weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock] = weakref.WeakKeyDictionary()


def _writers_turn(
    engine: AsyncEngine, *, write: bool
) -> contextlib.AbstractAsyncContextManager[object]:
    """Held while a transaction may write: a SQLite writer's place in this
    process's queue (nothing to wait for otherwise)."""
    if write and engine.dialect.name == "sqlite":
        return _sqlite_writers.setdefault(engine, asyncio.Lock())
    return contextlib.nullcontext()


# Each engine's twin whose connections carry WRITE_OPTION from the start. Made
# once: setting the option on each write's connection instead was one more
# call into SQLAlchemy's sync layer (a greenlet) per transaction. The twin
# shares the engine's pool, dialect and events.
_write_engines: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()


def _writing(engine: AsyncEngine) -> AsyncEngine:
    write_engine = _write_engines.get(engine)
    if write_engine is None:
        write_engine = _write_engines[engine] = engine.execution_options(**{WRITE_OPTION: True})
    return write_engine


@contextlib.asynccontextmanager
async def begin(engine: AsyncEngine, *, write: bool) -> AsyncIterator[AsyncConnection]:
    """A connection in a new transaction (begun by its first statement), rolled
    back unless the holder commits."""
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(_writers_turn(engine, write=write))
        connection = await stack.enter_async_context(
            (_writing(engine) if write else engine).connect()
        )
        # The first statement begins the transaction (SQLAlchemy's autobegin,
        # which fires the same "begin" event): an explicit begin() would be one
        # more call into SQLAlchemy's sync layer, each a new greenlet.
        yield connection


@contextlib.asynccontextmanager
async def transaction(engine: AsyncEngine, *, write: bool) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that commits when the block ends cleanly."""
    async with begin(engine, write=write) as connection:
        yield connection
        await connection.commit()


@contextlib.asynccontextmanager
async def driver_transaction(
    engine: AsyncEngine, *, write: bool
) -> AsyncIterator[DriverConnection]:
    """A connection of the engine's pool in a transaction run on the driver
    (services.common.driver_sql), rolled back unless the holder commits.
    SQLite's writers queue in this process first (_writers_turn), as in `begin`."""
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(_writers_turn(engine, write=write))
        checked_out = await stack.enter_async_context(engine.connect())
        connection = await stack.enter_async_context(
            driver_sql.driver_transaction(checked_out, write=write)
        )
        yield connection


class SqlUnitOfWork:
    """One database transaction per `async with`, run on the driver
    (services.common.driver_sql); rolled back unless committed.

    Subclasses bind their repositories to the connection in `_bind`. A unit of
    work is re-enterable, one transaction at a time.
    """

    def __init__(self, engine: AsyncEngine, *, write: bool = False) -> None:
        self._engine = engine
        self._write = write
        self._stack: contextlib.AsyncExitStack | None = None
        self._connection: DriverConnection | None = None

    def writing(self) -> Self:
        """The same unit of work for a transaction that will write."""
        return type(self)(self._engine, write=True)

    @property
    def connection(self) -> DriverConnection:
        if self._connection is None:
            raise RuntimeError("the unit of work is not open; use `async with uow:`")
        return self._connection

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            connection = await stack.enter_async_context(
                driver_transaction(self._engine, write=self._write)
            )
            self._connection = connection
            self._bind(connection)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stack, self._stack, self._connection = self._stack, None, None
        if stack is not None:
            # Rolls back whatever was not committed, and returns the connection.
            await stack.__aexit__(exc_type, exc, traceback)

    async def commit(self) -> None:
        await self.connection.commit()

    def _bind(self, connection: DriverConnection) -> None:
        """Create the repositories on this transaction's connection."""
