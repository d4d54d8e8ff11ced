"""Helpers for the service tests: apps, clients, request bodies and shorthands."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.inventory.app import create_app as create_inventory
from services.payments.app import create_app as create_payments
from services.shipping.app import create_app as create_shipping
from tests.ports import free_port

POSTGRES_URL = os.environ.get("ORDERSAGA_TEST_POSTGRES_URL")
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WORKER_TOKEN = "test-worker-token"
# What the service clients of the tests send unless a test says otherwise.
WORKER = {"Authorization": f"Bearer {WORKER_TOKEN}"}
CATALOG_CURRENCY = "EUR"
CUSTOMER_LIMIT_CENTS = 100_000
REFUSED_COUNTRIES = ("AQ", "KP")
# The recipient of every test shipment: no answer may carry them.
NAME, STREET = "Ada Lovelace", "12 St James's Square"


def new_order_id() -> str:
    return f"ord_{uuid.uuid4().hex[:8]}"


def reservation(sku: str, quantity: int = 1, order_id: str | None = None) -> dict[str, Any]:
    return {
        "order_id": order_id or new_order_id(),
        "lines": [{"sku": sku, "quantity": quantity}],
        "currency": CATALOG_CURRENCY,
    }


def charge(
    *,
    amount_cents: int = 2500,
    token: str = "tok_visa",
    customer_id: str | None = None,
    order_id: str | None = None,
) -> dict[str, Any]:
    return {
        "order_id": order_id or new_order_id(),
        "customer_id": customer_id or f"cus_{uuid.uuid4().hex[:8]}",
        "amount_cents": amount_cents,
        "currency": "EUR",
        "payment_token": token,
    }


def shipment(country: str = "GB", order_id: str | None = None) -> dict[str, Any]:
    return {
        "order_id": order_id or new_order_id(),
        "lines": [{"sku": "sku_mug", "quantity": 2}],
        "address": {
            "name": NAME,
            "line1": STREET,
            "line2": None,
            "city": "London",
            "postal_code": "SW1Y 4JH",
            "country": country,
        },
    }


def new_key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def created(client: httpx.AsyncClient, collection: str, body: Any) -> dict[str, Any]:
    """POST a new resource under a fresh key, expecting it to be made."""
    response = await client.post(collection, json=body, headers=new_key())
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def listed(client: httpx.AsyncClient, collection: str, order_id: str) -> list[dict[str, Any]]:
    response = await client.get(collection, params={"order_id": order_id})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


class PostgresDatabases:
    """Uniquely named databases on the test server, made for this session and
    dropped at its end. CREATE DATABASE takes a checkpoint (a quarter second
    each); emptying a used database's schema takes milliseconds, so a test gets
    a database some earlier test used and that has been emptied since."""

    def __init__(self, server_url: str) -> None:
        self._url = make_url(server_url)
        self._admin = create_async_engine(
            self._url, isolation_level="AUTOCOMMIT", poolclass=NullPool
        )
        self._all: list[str] = []
        self._free: list[str] = []

    async def acquire(self) -> str:
        if not self._free:
            name = f"ordersaga_test_{uuid.uuid4().hex[:16]}"
            async with self._admin.connect() as connection:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
            self._all.append(name)
            self._free.append(name)
        return self._url.set(database=self._free.pop()).render_as_string(hide_password=False)

    async def release(self, url: str) -> None:
        """Empty the database and put it back. Its users must have disconnected."""
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                # A connection left open would make this wait: fail instead.
                await connection.execute(text("SET lock_timeout = '5s'"))
                await connection.execute(text("DROP SCHEMA public CASCADE"))
                await connection.execute(text("CREATE SCHEMA public"))
        finally:
            await engine.dispose()
        self._free.append(str(make_url(url).database))

    async def close(self) -> None:
        try:
            async with self._admin.connect() as connection:
                for name in self._all:
                    await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            await self._admin.dispose()


@contextlib.asynccontextmanager
async def serving(
    app: FastAPI, *, headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (migrations, seeding) and talk to it over ASGI.

    The client sends the workers' credential unless `headers` says otherwise
    (a request's own Authorization header replaces it)."""
    async with (
        app.router.lifespan_context(app),
        asgi_client(app, headers=WORKER if headers is None else headers) as client,
    ):
        yield client


def asgi_client(app: FastAPI, *, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """Another client of an app already serving: say, one without a credential."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://service.test", headers=headers
    )


def inventory_app(database_url: str) -> FastAPI:
    return create_inventory(
        database_url=database_url,
        admin_token=SecretStr(ADMIN_TOKEN),
        worker_token=SecretStr(WORKER_TOKEN),
        catalog_currency=CATALOG_CURRENCY,
    )


def payments_app(database_url: str) -> FastAPI:
    return create_payments(
        database_url=database_url,
        admin_token=SecretStr(ADMIN_TOKEN),
        worker_token=SecretStr(WORKER_TOKEN),
        customer_limit_cents=CUSTOMER_LIMIT_CENTS,
    )


def shipping_app(database_url: str) -> FastAPI:
    return create_shipping(
        database_url=database_url,
        admin_token=SecretStr(ADMIN_TOKEN),
        worker_token=SecretStr(WORKER_TOKEN),
        refused_countries=REFUSED_COUNTRIES,
    )


class Databases:
    """Empty databases on the backend under test, for one test."""

    def __init__(
        self,
        folder: Path,
        cleanup: contextlib.AsyncExitStack,
        postgres: PostgresDatabases | None = None,
    ) -> None:
        self._folder = folder
        self._cleanup = cleanup
        self._postgres = postgres

    async def new(self, name: str) -> str:
        if self._postgres is None:
            # A folder that does not exist yet: the service must create it.
            return f"sqlite+aiosqlite:///{self._folder / name / 'service.sqlite3'}"
        url = await self._postgres.acquire()
        self._cleanup.push_async_callback(self._postgres.release, url)
        return url


@contextlib.asynccontextmanager
async def serving_over_tcp(app: FastAPI) -> AsyncIterator[int]:
    """Serve the app with uvicorn on a free loopback port, as in production."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    # Signals belong to pytest; uvicorn must not take them over.
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError(f"server on port {port} exited during start-up")
            await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        await task
