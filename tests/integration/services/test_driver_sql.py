"""A unit of work's statements run on the driver (services/common/driver_sql.py):
what they write and read is what SQLAlchemy writes and reads, a transaction
commits only when told, a driver's error is raised as SQLAlchemy's, and a
connection whose state is unknown never goes back to the pool. On SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Column, Integer, MetaData, Table, exc, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ordersaga.runtime.telemetry import build_tracer_provider
from services.common.db import create_engine, driver_transaction, transaction
from services.common.driver_sql import DriverResult, compiled_for, trace_statements
from services.common.idempotency import IDEMPOTENCY_KEYS, IdempotencyStore
from services.common.repository import as_utc
from services.payments.domain import Charge, ChargeState
from services.payments.repository import SqlChargeRepository
from services.payments.tables import charges
from tests.integration.services.support import (
    POSTGRES_URL,
    Databases,
    PostgresDatabases,
    new_order_id,
    payments_app,
    serving,
)

# Values at the edges of what the columns hold: 64-bit amounts (and the least
# a charge may be), text beyond
# ASCII, both booleans, both states.
CHARGES = [
    Charge(
        charge_id="ch_edge_max",
        order_id=new_order_id(),
        customer_id="cus_ünïcødé_✓",
        amount_cents=2**63 - 1,
        currency="EUR",
        state=ChargeState.REFUNDED,
        issuer_refuses_refund=True,
    ),
    Charge(
        charge_id="ch_edge_zero",
        order_id=new_order_id(),
        customer_id="cus_quote'\"\\",
        amount_cents=1,
        currency="USD",
        state=ChargeState.CAPTURED,
        issuer_refuses_refund=False,
    ),
]


async def migrated_engine(url: str, *, pool_size: int = 1) -> AsyncEngine:
    async with serving(payments_app(url)):  # the lifespan migrates
        pass
    return create_engine(url, pool_size=pool_size)


@pytest.fixture
async def engine(databases: Databases) -> AsyncIterator[AsyncEngine]:
    engine = await migrated_engine(await databases.new("payments"))
    try:
        yield engine
    finally:
        await engine.dispose()


CHARGE_COLUMNS = (
    charges.c.charge_id,
    charges.c.order_id,
    charges.c.customer_id,
    charges.c.amount_cents,
    charges.c.currency,
    charges.c.state,
    charges.c.issuer_refuses_refund,
)


def as_row(charge: Charge) -> tuple[object, ...]:
    """The charge as its columns hold it."""
    return (
        charge.charge_id,
        charge.order_id,
        charge.customer_id,
        charge.amount_cents,
        charge.currency,
        charge.state.value,
        charge.issuer_refuses_refund,
    )


async def charges_through_sqlalchemy(
    engine: AsyncEngine, order_id: str
) -> list[tuple[object, ...]]:
    """The order's charges as SQLAlchemy's own execution reads them."""
    async with transaction(engine, write=False) as connection:
        rows = await connection.execute(
            select(*CHARGE_COLUMNS).where(charges.c.order_id == order_id)
        )
        return [tuple(row) for row in rows]


@pytest.mark.parametrize("charge", CHARGES, ids=lambda charge: charge.charge_id)
async def test_a_row_written_on_the_driver_reads_alike_through_sqlalchemy_and_back(
    engine: AsyncEngine, charge: Charge
) -> None:
    before = datetime.now(UTC)
    async with driver_transaction(engine, write=True) as connection:
        await SqlChargeRepository(connection).add(charge)
        await connection.commit()

    assert await charges_through_sqlalchemy(engine, charge.order_id) == [as_row(charge)]
    async with driver_transaction(engine, write=False) as connection:
        repository = SqlChargeRepository(connection)
        assert await repository.for_order(charge.order_id) == [charge]
        # Times go through SQLAlchemy's processors both ways (SQLite keeps text).
        page = await repository.ledger_page(after=None, limit=10, changed_since=before)
    (dated,) = [dated for dated in page if dated.resource == charge]
    assert before <= dated.created_at <= datetime.now(UTC)
    assert dated.created_at.tzinfo is not None


async def test_a_row_written_through_sqlalchemy_reads_alike_on_the_driver(
    engine: AsyncEngine,
) -> None:
    charge = CHARGES[0]
    now = datetime.now(UTC)
    async with transaction(engine, write=True) as connection:
        await connection.execute(
            insert(charges).values(
                charge_id=charge.charge_id,
                order_id=charge.order_id,
                customer_id=charge.customer_id,
                amount_cents=charge.amount_cents,
                currency=charge.currency,
                state=charge.state.value,
                issuer_refuses_refund=charge.issuer_refuses_refund,
                created_at=now,
                updated_at=now,
            )
        )
    async with driver_transaction(engine, write=False) as connection:
        assert await SqlChargeRepository(connection).for_order(charge.order_id) == [charge]
        # The bound is inclusive: a time bound on the driver compares equal to
        # the same time SQLAlchemy wrote (on SQLite, the same text).
        page = await SqlChargeRepository(connection).ledger_page(
            after=None, limit=10, changed_since=now
        )
        later = await SqlChargeRepository(connection).ledger_page(
            after=None, limit=10, changed_since=now + timedelta(microseconds=1)
        )
    assert [as_utc(dated.updated_at) for dated in page] == [now]
    assert later == []


async def test_a_stored_answer_is_the_same_json_through_either(engine: AsyncEngine) -> None:
    answer = {"order_id": "ord_✓", "amount_cents": 2**63 - 1, "lines": [{"sku": 'a"b\\c'}]}
    body = json.dumps(answer, ensure_ascii=False).encode()
    async with driver_transaction(engine, write=True) as connection:
        assert await IdempotencyStore(connection).record("worker", "key-1", "f" * 64, 201, body)
        # The key is taken now: the second record does nothing and says so.
        assert not await IdempotencyStore(connection).record(
            "worker", "key-1", "0" * 64, 409, b"{}"
        )
        await connection.commit()

    async with transaction(engine, write=False) as connection:
        stored = (
            await connection.execute(
                select(IDEMPOTENCY_KEYS.c.response_body, IDEMPOTENCY_KEYS.c.status_code)
            )
        ).one()
    assert (stored.response_body, stored.status_code) == (answer, 201)
    async with driver_transaction(engine, write=False) as connection:
        replayed = await IdempotencyStore(connection).get("worker", "key-1")
        missing = await IdempotencyStore(connection).get("admin", "key-1")
    assert replayed is not None
    assert (replayed.body, replayed.status_code, replayed.request_fingerprint) == (
        answer,
        201,
        "f" * 64,
    )
    assert missing is None


async def test_nothing_is_kept_unless_committed(engine: AsyncEngine) -> None:
    uncommitted, failed, committed = (
        Charge(f"ch_{name}", new_order_id(), "cus_1", 100, "USD")
        for name in ("uncommitted", "failed", "committed")
    )
    async with driver_transaction(engine, write=True) as connection:
        await SqlChargeRepository(connection).add(uncommitted)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with driver_transaction(engine, write=True) as connection:
            await SqlChargeRepository(connection).add(failed)
            raise Boom

    async with driver_transaction(engine, write=True) as connection:
        await SqlChargeRepository(connection).add(committed)
        await connection.commit()
        with pytest.raises(exc.ResourceClosedError):
            await SqlChargeRepository(connection).add(uncommitted)

    assert await charges_through_sqlalchemy(engine, uncommitted.order_id) == []
    assert await charges_through_sqlalchemy(engine, failed.order_id) == []
    assert await charges_through_sqlalchemy(engine, committed.order_id) == [as_row(committed)]


async def test_a_drivers_error_is_sqlalchemys_and_the_connection_is_clean_after(
    engine: AsyncEngine,
) -> None:
    first = Charge("ch_twice", new_order_id(), "cus_1", 100, "USD")
    again = Charge("ch_twice", new_order_id(), "cus_2", 200, "USD")
    async with driver_transaction(engine, write=True) as connection:
        await SqlChargeRepository(connection).add(first)
        await connection.commit()

    with pytest.raises(exc.IntegrityError) as raised:
        async with driver_transaction(engine, write=True) as connection:
            await SqlChargeRepository(connection).add(again)
            await connection.commit()
    assert raised.value.orig is not None  # the driver's own error, kept as the cause
    # SQLAlchemy's rendering without the parameters (hide_parameters, as the engines).
    assert "[parameters" not in str(raised.value)

    # The pool holds one connection: the next transaction gets the same one,
    # outside any transaction, and it works.
    later = Charge("ch_later", new_order_id(), "cus_3", 300, "USD")
    async with driver_transaction(engine, write=True) as connection:
        await SqlChargeRepository(connection).add(later)
        await connection.commit()
    assert await charges_through_sqlalchemy(engine, later.order_id) == [as_row(later)]
    assert await charges_through_sqlalchemy(engine, again.order_id) == []


async def test_each_statement_is_a_span_with_its_text_and_never_its_values(
    engine: AsyncEngine,
) -> None:
    exporter = InMemorySpanExporter()
    recording = build_tracer_provider("payments", span_processors=[SimpleSpanProcessor(exporter)])
    charge = Charge("ch_traced_secret_value", new_order_id(), "cus_secret_value", 100, "USD")
    try:
        trace_statements(engine, recording)
        async with driver_transaction(engine, write=True) as connection:
            await SqlChargeRepository(connection).add(charge)
            await SqlChargeRepository(connection).for_order(charge.order_id)
            await connection.commit()
    finally:
        trace_statements(engine, build_tracer_provider("payments", environ={}))  # records none

    spans = exporter.get_finished_spans()
    assert [span.name.split()[0] for span in spans] == ["INSERT", "SELECT"]
    for span in spans:
        attributes = dict(span.attributes or {})
        assert attributes["db.system"] == engine.dialect.name
        assert str(attributes["db.statement"]).split()[0] == span.name.split()[0]
        assert "secret_value" not in repr(attributes)
    # A provider that records nothing stops the spans (and their cost).
    async with driver_transaction(engine, write=False) as connection:
        await SqlChargeRepository(connection).for_order(charge.order_id)
    assert len(exporter.get_finished_spans()) == 2


async def test_statements_whose_rows_are_unknown_are_refused(engine: AsyncEngine) -> None:
    async with driver_transaction(engine, write=False) as connection:
        with pytest.raises(TypeError, match="not TextClause"):
            await connection.execute(text("SELECT 1"))
        with pytest.raises(TypeError, match="many rows"):
            await connection.execute(
                insert(charges).returning(charges.c.charge_id),
                [{"charge_id": "a"}, {"charge_id": "b"}],
            )


def test_a_column_default_computed_in_python_is_refused_not_skipped() -> None:
    # SQLAlchemy's execution computes such a default; the driver would write NULL.
    table = Table(
        "t", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer, default=1)
    )
    # The services' dialects; neither engine connects.
    engines = (
        create_engine("sqlite+aiosqlite://"),
        create_engine("postgresql+asyncpg://x@127.0.0.1/x"),
    )
    for dialect in (engine.dialect for engine in engines):
        with pytest.raises(TypeError, match="computed in Python"):
            compiled_for(insert(table), dialect, {"id": 1})
        assert compiled_for(insert(table), dialect, {"id": 1, "n": 2}).names


def test_a_result_answers_as_sqlalchemys_does() -> None:
    assert DriverResult([], 0).first() is None
    assert DriverResult([], 0).one_or_none() is None
    assert DriverResult([(1, "a"), (2, "b")], 2).scalars() == [1, 2]
    assert DriverResult([(7,)], 1).scalar_one() == 7
    assert DriverResult([(None,)], 1).scalar_one_or_none() is None
    with pytest.raises(exc.NoResultFound):
        DriverResult([], 0).scalar_one()
    with pytest.raises(exc.MultipleResultsFound):
        DriverResult([(1,), (2,)], 2).scalar_one()
    with pytest.raises(exc.MultipleResultsFound):
        DriverResult([(1,), (2,)], 2).one_or_none()


F = TypeVar("F", bound=Callable[..., object])


def only_on_postgres(test: F) -> F:
    """A test of PostgreSQL's own behaviour (a backend cancelled or closed)."""
    marked: F = pytest.mark.postgres(
        pytest.mark.skipif(not POSTGRES_URL, reason="ORDERSAGA_TEST_POSTGRES_URL is not set")(test)
    )
    return marked


@pytest.fixture
async def postgres_engine(
    postgres_databases: PostgresDatabases | None,
) -> AsyncIterator[AsyncEngine]:
    """The payments schema on a PostgreSQL database of its own, one pooled connection."""
    assert postgres_databases is not None
    url = await postgres_databases.acquire()
    engine = await migrated_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()
        await postgres_databases.release(url)


async def backend_pid(engine: AsyncEngine) -> int:
    async with driver_transaction(engine, write=False) as connection:
        pid = (await connection.execute(select(func.pg_backend_pid()))).scalar_one()
        in_transaction = (
            await connection.execute(select(func.txid_current_if_assigned()))
        ).scalar_one()
    assert in_transaction is None  # nothing was left written before this one
    return int(pid)


@only_on_postgres
async def test_a_statement_cancelled_midway_closes_its_connection(
    postgres_engine: AsyncEngine,
) -> None:
    first = await backend_pid(postgres_engine)
    started = asyncio.Event()

    async def sleeping() -> None:
        async with driver_transaction(postgres_engine, write=True) as connection:
            await SqlChargeRepository(connection).add(
                Charge("ch_cancelled", new_order_id(), "cus_1", 100, "USD")
            )
            started.set()
            await connection.execute(select(func.pg_sleep(30)))

    task = asyncio.create_task(sleeping())
    await started.wait()
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Its state unknown, the connection was closed: the pool's one connection
    # is a new one, at once, and nothing of the cancelled transaction was kept.
    assert await asyncio.wait_for(backend_pid(postgres_engine), 5) != first
    async with transaction(postgres_engine, write=False) as connection:
        kept = (
            await connection.execute(
                select(func.count()).where(charges.c.charge_id == "ch_cancelled")
            )
        ).scalar_one()
    assert kept == 0


@only_on_postgres
async def test_a_connection_postgres_closes_midway_is_an_error_the_services_retry(
    postgres_engine: AsyncEngine,
) -> None:
    first = await backend_pid(postgres_engine)
    # SQLAlchemy's errors of these two kinds are the services' 503s (services.common.errors).
    with pytest.raises((exc.OperationalError, exc.InterfaceError)):
        async with driver_transaction(postgres_engine, write=True) as connection:
            await SqlChargeRepository(connection).add(
                Charge("ch_closed", new_order_id(), "cus_1", 100, "USD")
            )
            async with postgres_engine.connect() as admin:  # the pool overflows for it
                await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            await SqlChargeRepository(connection).add(
                Charge("ch_closed_2", new_order_id(), "cus_1", 100, "USD")
            )
            await connection.commit()
    # The pool's next connection is a new one, and works.
    assert await asyncio.wait_for(backend_pid(postgres_engine), 5) != first
