"""Helpers for the service tests: apps, clients, request bodies and shorthands."""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, TypeVar

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.inventory.app import create_app as create_inventory
from services.payments.app import create_app as create_payments
from services.shipping.app import create_app as create_shipping
from tests.http_server import serving_with_uvicorn
from tests.ports import free_port

POSTGRES_URL = os.environ.get("ORDERSAGA_TEST_POSTGRES_URL")
ADMIN_TOKEN = "test-admin-token-of-32-characters"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WORKER_TOKEN = "test-worker-token-of-32-characters"
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


async def sent_twice(
    client: httpx.AsyncClient, path: str, body: Any = None
) -> tuple[httpx.Response, httpx.Response]:
    """POST the same request twice under one fresh idempotency key: the first
    answer, and the one the repeat got."""
    key = new_key()
    first = await client.post(path, json=body, headers=key)
    again = await client.post(path, json=body, headers=key)
    return first, again


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


class _Credentials(TypedDict):
    admin_token: SecretStr
    worker_token: SecretStr


# The credentials every test app is built with: ADMIN and WORKER send them.
CREDENTIALS = _Credentials(admin_token=SecretStr(ADMIN_TOKEN), worker_token=SecretStr(WORKER_TOKEN))


def inventory_app(database_url: str) -> FastAPI:
    return create_inventory(
        database_url=database_url, catalog_currency=CATALOG_CURRENCY, **CREDENTIALS
    )


def payments_app(database_url: str) -> FastAPI:
    return create_payments(
        database_url=database_url, customer_limit_cents=CUSTOMER_LIMIT_CENTS, **CREDENTIALS
    )


def shipping_app(database_url: str) -> FastAPI:
    return create_shipping(
        database_url=database_url, refused_countries=REFUSED_COUNTRIES, **CREDENTIALS
    )


SERVICE_APPS: dict[str, Callable[[str], FastAPI]] = {
    "inventory": inventory_app,
    "payments": payments_app,
    "shipping": shipping_app,
}


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


@dataclass(frozen=True)
class Resource:
    """What each service makes for an order, and how a test drives it."""

    # The create endpoint, a fresh body for it (order_id= may name the order),
    # and the id field it answers with.
    collection: str
    new_body: Callable[..., dict[str, Any]]
    id_field: str
    # What undoes one: POST {collection}/{id}/{action}.
    action: str
    # Its state once made, and once undone.
    live: str
    undone: str


RESOURCES = {
    # sku_mug is in the catalog every inventory database is seeded with.
    "inventory": Resource(
        "/reservations",
        functools.partial(reservation, "sku_mug"),
        "reservation_id",
        "release",
        "reserved",
        "released",
    ),
    "payments": Resource("/charges", charge, "charge_id", "refund", "captured", "refunded"),
    "shipping": Resource("/shipments", shipment, "shipment_id", "cancel", "created", "cancelled"),
}


@dataclass(frozen=True)
class Service(Resource):
    """One service serving a test over ASGI, with the workers' client of it."""

    name: str
    app: FastAPI
    client: httpx.AsyncClient

    async def create(self) -> httpx.Response:
        return await self.client.post(self.collection, json=self.new_body(), headers=new_key())


ServiceT = TypeVar("ServiceT", bound=Service)


@contextlib.asynccontextmanager
async def serving_service(
    kind: type[ServiceT], name: str, databases: Databases
) -> AsyncIterator[ServiceT]:
    """Serve the named service on a new database, as a `kind` of Service."""
    app = SERVICE_APPS[name](await databases.new(name))
    async with serving(app) as client:
        yield kind(**vars(RESOURCES[name]), name=name, app=app, client=client)


@contextlib.asynccontextmanager
async def serving_over_tcp(app: FastAPI) -> AsyncIterator[int]:
    """Serve the app with uvicorn on a free loopback port, as in production."""
    port = free_port()
    async with serving_with_uvicorn(app, port):
        yield port
