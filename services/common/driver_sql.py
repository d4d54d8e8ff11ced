"""A unit of work's statements, run on the database driver's own connection.

SQLAlchemy builds every statement the services run, compiles it for the
dialect, owns the pool (checkout, the asyncpg closed-connection check,
invalidation) and runs migrations and health checks. What it does not do here
is execute a unit of work's statements. Through its async engine each
statement is a new greenlet, an execution context, parameter and result
set-up and the pool's events: measured warm, 59 µs of CPU per statement on
SQLite where sqlite3 itself takes 1, and 142 µs on PostgreSQL where asyncpg
takes 54 (docs/performance.md, round 22). A saga write runs four to six
statements, so that layer was the largest part of a service request.

So a unit of work checks a connection out of the engine's pool, begins its
transaction on the driver (sqlite3 inline through services.common.sqlite_driver,
or asyncpg), and runs each statement there:

- **Compiled by SQLAlchemy, once.** A statement is compiled for the dialect
  (`Compiled`, with the column keys its parameters name, as SQLAlchemy does
  itself) once per statement object and parameter keys, and kept while the
  statement lives. The values of a call go through SQLAlchemy's
  `construct_params` and each parameter type's bind processor, and the
  columns of a result through their types' result processors: what is
  written and read is what SQLAlchemy would write and read (a SQLite
  datetime is SQLAlchemy's text, JSON is parsed back). Expanding parameters
  (`IN` lists) are expanded per call by `construct_expanded_state`.
- **The transaction is the driver's.** BEGIN (BEGIN IMMEDIATE for a SQLite
  writer, after this process's writer queue, services.common.db), COMMIT and
  ROLLBACK are sent on the driver's connection. A unit of work that ends
  without committing rolls back; one interrupted mid-statement (cancelled),
  or whose connection failed, invalidates the connection, which the pool
  replaces, so no connection goes back in an unknown state.
- **Errors are SQLAlchemy's.** A driver's error is raised as SQLAlchemy's
  class of its PEP 249 kind (`OperationalError`, `IntegrityError`, ...),
  without the parameters, which the services' handlers already map: a
  database that cannot answer now is a 503 the caller retries. PostgreSQL's
  transient failures (serialization, deadlock, lock not available, shutdown,
  too many connections) are `OperationalError`, and a connection asyncpg can
  no longer use is `InterfaceError`, both 503s; through SQLAlchemy's own
  execution the first were a generic `DBAPIError` and the second an
  `InternalError`, both 500s.
- **Traced like SQLAlchemy's.** Where spans are recorded (trace_statements),
  each statement is a client span named and described as OpenTelemetry's
  SQLAlchemy instrumentation names its own: the statement's text, never its
  parameters.
"""

from __future__ import annotations

import collections
import contextlib
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from opentelemetry import trace
from sqlalchemy import exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import SelectBase, UpdateBase

from ordersaga.runtime.telemetry import records_spans
from services.common.sqlite_driver import InlineSqliteConnection

Parameters = Mapping[str, Any]
Processor = Callable[[Any], Any] | None


class DriverResult:
    """The rows of one statement (all of them, read at once) and its row count:
    the part of SQLAlchemy's `Result` the repositories use."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    def first(self) -> Any | None:
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> Any | None:
        if len(self._rows) > 1:
            raise exc.MultipleResultsFound("more than one row where one or none was expected")
        return self.first()

    def scalar_one(self) -> Any:
        if not self._rows:
            raise exc.NoResultFound("no row where exactly one was expected")
        if len(self._rows) > 1:
            raise exc.MultipleResultsFound("more than one row where exactly one was expected")
        return self._rows[0][0]

    def scalar_one_or_none(self) -> Any | None:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]


@dataclass(frozen=True)
class _Compiled:
    """A statement compiled for one dialect and one set of parameter keys."""

    compiled: SQLCompiler
    sql: str
    names: tuple[str, ...]
    bind_processors: Mapping[str, Processor]
    # Expanding (IN lists) or literal-execute parameters: the SQL is finished per call.
    expands: bool
    # None when the statement returns no rows.
    row_type: type[tuple[Any, ...]] | None
    result_processors: tuple[Processor, ...]

    def arguments(self, parameters: Parameters | None) -> tuple[str, tuple[Any, ...]]:
        """The SQL to send and its positional arguments, processed."""
        if self.expands:
            state = self.compiled.construct_expanded_state(parameters)
            names = state.positiontup or ()
            values = state.parameters
            processors = {**self.bind_processors, **state.processors}
            return state.statement, tuple(_processed(values, names, processors))
        values = self.compiled.construct_params(parameters)
        return self.sql, tuple(_processed(values, self.names, self.bind_processors))

    def rows(self, raw_rows: Sequence[Sequence[Any]]) -> list[Any]:
        row_type = self.row_type
        if row_type is None:
            return []
        processors = self.result_processors
        if not any(processors):
            return [row_type(*row) for row in raw_rows]
        return [
            row_type(
                *(
                    value if processor is None or value is None else processor(value)
                    for value, processor in zip(row, processors, strict=True)
                )
            )
            for row in raw_rows
        ]


def _processed(
    values: Mapping[str, Any], names: Sequence[str], processors: Mapping[str, Processor]
) -> Iterator[Any]:
    for name in names:
        value = values[name]
        processor = processors.get(name)
        yield value if processor is None else processor(value)


def _compile(statement: ClauseElement, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
    if not isinstance(statement, SelectBase | UpdateBase):
        # A text() statement does not say whether it returns rows; text().columns() does.
        raise TypeError(
            f"run a select(), an INSERT, UPDATE or DELETE, not {type(statement).__name__}"
        )
    # column_keys as SQLAlchemy passes them: an INSERT or UPDATE names the
    # columns its parameters give values for.
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    if not isinstance(compiled, SQLCompiler) or compiled.positiontup is None:
        raise TypeError(f"cannot run {type(statement).__name__} on the driver")
    if compiled.insert_prefetch or compiled.update_prefetch:
        # SQLAlchemy's execution computes those in Python; here nobody would.
        raise TypeError(
            "a column default or onupdate computed in Python does not run on the driver: "
            "pass the column's value"
        )
    binds = compiled.binds
    bind_processors = {
        name: bind.type.dialect_impl(dialect).bind_processor(dialect)
        for name, bind in binds.items()
    }
    expands = any(bind.expanding or bind.literal_execute for bind in binds.values())
    returns_rows = isinstance(statement, SelectBase) or bool(compiled.effective_returning)
    # The keys SQLAlchemy's rows have: a column's name, a label, a function's name.
    columns = list(statement.exported_columns.items()) if returns_rows else []
    row_keys = [key or f"column_{index}" for index, (key, _column) in enumerate(columns)]
    return _Compiled(
        compiled=compiled,
        sql=compiled.string,
        names=tuple(compiled.positiontup),
        bind_processors=bind_processors,
        expands=expands,
        # Rows read by attribute (row.state) and unpacked, as SQLAlchemy's.
        row_type=collections.namedtuple("Row", row_keys) if columns else None,
        result_processors=tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for _key, column in columns
        ),
    )


# Compiled once per statement object, dialect and parameter keys; dropped with
# the statement (the services' statements are built once, at import, so this
# holds a few dozen; one built per call is compiled per call).
_compiled: weakref.WeakKeyDictionary[
    ClauseElement, dict[tuple[str, tuple[str, ...]], _Compiled]
] = weakref.WeakKeyDictionary()


def compiled_for(
    statement: ClauseElement, dialect: Dialect, parameters: Parameters | None
) -> _Compiled:
    keys = tuple(sorted(parameters)) if parameters else ()
    forms = _compiled.get(statement)
    if forms is None:
        forms = _compiled[statement] = {}
    form = forms.get((dialect.name, keys))
    if form is None:
        form = forms[(dialect.name, keys)] = _compile(statement, dialect, keys)
    return form


class _Driver(Protocol):
    async def begin(self, *, write: bool) -> None: ...
    async def run(
        self, sql: str, arguments: tuple[Any, ...], *, rows: bool
    ) -> tuple[Sequence[Any], int]:
        """The statement's rows (when it returns any) and its row count."""

    async def run_many(self, sql: str, arguments: list[tuple[Any, ...]]) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...


class _Sqlite:
    def __init__(self, connection: InlineSqliteConnection) -> None:
        self._connection = connection

    async def begin(self, *, write: bool) -> None:
        await self._connection.begin(write=write)

    async def run(
        self, sql: str, arguments: tuple[Any, ...], *, rows: bool
    ) -> tuple[Sequence[Any], int]:
        found, rowcount = self._connection.run(sql, arguments)
        return found, len(found) if rows else rowcount

    async def run_many(self, sql: str, arguments: list[tuple[Any, ...]]) -> None:
        self._connection.run_many(sql, arguments)

    async def commit(self) -> None:
        await self._connection.commit()

    async def rollback(self) -> None:
        await self._connection.rollback()


class _Asyncpg:
    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def begin(self, *, write: bool) -> None:
        # READ COMMITTED, read-write: what SQLAlchemy's asyncpg dialect began.
        await self._connection.execute("BEGIN")

    async def run(
        self, sql: str, arguments: tuple[Any, ...], *, rows: bool
    ) -> tuple[Sequence[Any], int]:
        if rows:
            found = await self._connection.fetch(sql, *arguments)
            return found, len(found)
        status: str = await self._connection.execute(sql, *arguments)
        # "INSERT 0 1", "UPDATE 3": the count is the status's last word.
        count = status.rpartition(" ")[2]
        return [], int(count) if count.isdigit() else -1

    async def run_many(self, sql: str, arguments: list[tuple[Any, ...]]) -> None:
        await self._connection.executemany(sql, arguments)

    async def commit(self) -> None:
        await self._connection.execute("COMMIT")

    async def rollback(self) -> None:
        # Also after a failed statement or COMMIT: whatever is open ends here,
        # so the pool never hands out a connection inside a transaction.
        if self._connection.is_in_transaction():
            await self._connection.execute("ROLLBACK")


# PostgreSQL's classes of errors that mean "not now" rather than "wrong": the
# transaction was rolled back (serialization failure, deadlock), resources ran
# short (too many connections), an operator intervened (shutdown, a cancelled
# statement), the connection failed, or a lock was not available.
_POSTGRES_TRANSIENT_CLASSES = ("08", "40", "53", "57")
_POSTGRES_LOCK_NOT_AVAILABLE = "55P03"


# asyncpg's own errors, not PostgreSQL's: the connection is in a state the
# client cannot go on from (closed, or a protocol state it did not expect, as
# when PostgreSQL ends the session between two statements).
_ASYNCPG_CLIENT_ERRORS = (asyncpg.InterfaceError, asyncpg.InternalClientError)


def _translated(error: Exception, sql: str) -> exc.DBAPIError | None:
    """SQLAlchemy's exception for a driver's, or None when it is not a driver's."""
    if isinstance(error, sqlite3.Error):
        kind = getattr(exc, type(error).__name__, None)
        if not (isinstance(kind, type) and issubclass(kind, exc.DBAPIError)):
            kind = exc.DatabaseError
        return kind(sql, None, error, hide_parameters=True)
    if isinstance(error, asyncpg.PostgresError):
        state = getattr(error, "sqlstate", None) or ""
        kind = exc.DatabaseError
        if isinstance(error, asyncpg.IntegrityConstraintViolationError):
            kind = exc.IntegrityError
        elif isinstance(error, asyncpg.exceptions.SyntaxOrAccessError):
            kind = exc.ProgrammingError
        elif state[:2] in _POSTGRES_TRANSIENT_CLASSES or state == _POSTGRES_LOCK_NOT_AVAILABLE:
            kind = exc.OperationalError
        return kind(sql, None, error, hide_parameters=True)
    if isinstance(error, _ASYNCPG_CLIENT_ERRORS):
        return exc.InterfaceError(sql, None, error, hide_parameters=True)
    return None


def _lost(error: BaseException) -> bool:
    """Whether `error` says the connection failed."""
    if isinstance(error, exc.DBAPIError):
        return error.orig is not None and _lost(error.orig)
    return isinstance(
        error, (OSError, *_ASYNCPG_CLIENT_ERRORS, asyncpg.exceptions.PostgresConnectionError)
    )


# The tracers of the engines whose statements are traced (trace_statements).
_tracers: weakref.WeakKeyDictionary[Engine, trace.Tracer] = weakref.WeakKeyDictionary()


def trace_statements(engine: AsyncEngine, tracer_provider: trace.TracerProvider | None) -> None:
    """A span per statement the engine's units of work run, when the provider
    records spans at all (ordersaga.runtime.telemetry.instrument_engine says
    why not otherwise)."""
    if records_spans(tracer_provider):
        _tracers[engine.sync_engine] = trace.get_tracer(__name__, tracer_provider=tracer_provider)
    else:
        _tracers.pop(engine.sync_engine, None)


class DriverConnection:
    """A connection in a unit of work's transaction, run on the driver (see
    the module): `execute` takes a SQLAlchemy statement and its parameters
    (a mapping, or a list of them for many rows)."""

    def __init__(self, connection: AsyncConnection, driver: _Driver) -> None:
        self.dialect: Dialect = connection.dialect
        self._driver = driver
        self._open = True
        self._tracer = _tracers.get(connection.sync_engine)
        self._database = connection.sync_engine.url.database or ""

    async def execute(
        self, statement: ClauseElement, parameters: Parameters | Sequence[Parameters] | None = None
    ) -> DriverResult:
        if not self._open:
            raise exc.ResourceClosedError("this unit of work's transaction has ended")
        if isinstance(parameters, Sequence):
            return await self._execute_many(statement, parameters)
        form = compiled_for(statement, self.dialect, parameters)
        sql, arguments = form.arguments(parameters)
        with self._span(sql):
            try:
                found, rowcount = await self._driver.run(
                    sql, arguments, rows=form.row_type is not None
                )
            except Exception as error:
                raise _translated(error, sql) or error from error
        return DriverResult(form.rows(found), rowcount)

    @contextlib.contextmanager
    def _span(self, sql: str) -> Iterator[None]:
        if self._tracer is None:
            yield
            return
        # The statement's first word and the database, as OpenTelemetry's
        # SQLAlchemy instrumentation names a span, with its attributes.
        operation = sql.split(None, 1)[0] if sql.strip() else self.dialect.name
        with self._tracer.start_as_current_span(
            f"{operation} {self._database}".strip(),
            kind=trace.SpanKind.CLIENT,
            attributes={
                "db.system": self.dialect.name,
                "db.name": self._database,
                "db.statement": sql,
            },
        ):
            yield

    async def _execute_many(
        self, statement: ClauseElement, rows: Sequence[Parameters]
    ) -> DriverResult:
        if not rows:
            return DriverResult([], 0)
        form = compiled_for(statement, self.dialect, rows[0])
        if form.expands or form.row_type is not None:
            raise TypeError("many rows at once take a plain INSERT or UPDATE")
        arguments = [form.arguments(row)[1] for row in rows]
        with self._span(form.sql):
            try:
                await self._driver.run_many(form.sql, arguments)
            except Exception as error:
                raise _translated(error, form.sql) or error from error
        return DriverResult([], len(rows))

    async def commit(self) -> None:
        self._open = False
        try:
            await self._driver.commit()
        except Exception as error:
            raise _translated(error, "COMMIT") or error from error

    async def _rollback(self) -> None:
        self._open = False
        await self._driver.rollback()

    async def _abandon(self, checked_out: AsyncConnection, error: BaseException) -> None:
        """End the transaction after `error` without raising another: roll
        back, or close the connection when its state is unknown."""
        self._open = False
        if _state_unknown(error):
            await checked_out.invalidate()
            return
        try:
            # Also after a failed COMMIT, which may leave the transaction open.
            await self._driver.rollback()
        except Exception:
            await checked_out.invalidate()


def _state_unknown(error: BaseException) -> bool:
    """Whether a connection is of no further use after `error`: it was
    cancelled or timed out (asyncio.timeout cancels), perhaps mid-statement,
    or it failed. Such a connection is closed rather than returned to the pool."""
    return not isinstance(error, Exception) or isinstance(error, TimeoutError) or _lost(error)


def _driver_of(connection: AsyncConnection) -> _Driver:
    checked_out = connection.sync_connection
    if checked_out is None:
        raise RuntimeError("the connection is closed")
    # Checked out already, so this asks SQLAlchemy for nothing more.
    driver_connection = checked_out.connection.driver_connection
    if isinstance(driver_connection, InlineSqliteConnection):
        return _Sqlite(driver_connection)
    if connection.dialect.driver == "asyncpg":
        return _Asyncpg(driver_connection)
    raise TypeError(f"no driver-level transactions on {connection.dialect.driver}")


@contextlib.asynccontextmanager
async def driver_transaction(
    checked_out: AsyncConnection, *, write: bool
) -> AsyncIterator[DriverConnection]:
    """A transaction on the driver connection of `checked_out`, a connection
    of an engine's pool, rolled back unless committed. The caller checks the
    connection out and back in (services.common.db.driver_transaction)."""
    driver = _driver_of(checked_out)
    try:
        await driver.begin(write=write)
    except BaseException as error:
        if _state_unknown(error):
            await checked_out.invalidate()
        if isinstance(error, Exception):
            raise _translated(error, "BEGIN") or error from error
        raise
    connection = DriverConnection(checked_out, driver)
    try:
        yield connection
    except BaseException as error:
        await connection._abandon(checked_out, error)
        raise
    if connection._open:
        # Ended without a commit: roll back.
        try:
            await connection._rollback()
        except Exception as error:
            await checked_out.invalidate()
            raise _translated(error, "ROLLBACK") or error from error
