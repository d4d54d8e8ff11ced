"""Each service in-process over ASGI, on a database of its own per test.

Every test runs on a fresh SQLite file, and again on an empty PostgreSQL
database when ORDERSAGA_TEST_POSTGRES_URL names a server, e.g.
postgresql+asyncpg://postgres@127.0.0.1:5432/test (the database in the URL is
only used to create and drop the test databases).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.services.support import (
    POSTGRES_URL,
    Databases,
    PostgresDatabases,
    inventory_app,
    payments_app,
    serving,
    shipping_app,
)


@pytest.fixture(scope="session")
async def postgres_databases() -> AsyncIterator[PostgresDatabases | None]:
    if POSTGRES_URL is None:
        yield None
        return
    databases = PostgresDatabases(POSTGRES_URL)
    try:
        yield databases
    finally:
        await databases.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    not POSTGRES_URL, reason="ORDERSAGA_TEST_POSTGRES_URL is not set"
                ),
            ],
        ),
    ]
)
async def databases(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_databases: PostgresDatabases | None,
) -> AsyncIterator[Databases]:
    postgres = postgres_databases if request.param == "postgres" else None
    async with contextlib.AsyncExitStack() as cleanup:
        yield Databases(tmp_path, cleanup, postgres)


@pytest.fixture
async def inventory(databases: Databases) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(inventory_app(await databases.new("inventory"))) as client:
        yield client


@pytest.fixture
async def payments(databases: Databases) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(payments_app(await databases.new("payments"))) as client:
        yield client


@pytest.fixture
async def shipping(databases: Databases) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(shipping_app(await databases.new("shipping"))) as client:
        yield client
