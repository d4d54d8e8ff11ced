"""The whole system in one test process: the real services behind uvicorn on
free loopback ports, a real worker with the real activities, and the API.

Everything talks over real HTTP and a real Temporal dev server; only the
process boundaries are collapsed, so a test can read the domain state after.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from temporalio.client import Client

from ordersaga.settings import Settings
from tests.ports import free_port

ADMIN_TOKEN = "integration-admin-token"


@contextlib.asynccontextmanager
async def serve(app: Any, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    # Signals belong to pytest; uvicorn must not take them over.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError(f"server on port {port} exited during start-up")
            await asyncio.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        await task


@dataclass
class Stack:
    settings: Settings
    api: httpx.AsyncClient
    inventory: httpx.AsyncClient
    payments: httpx.AsyncClient
    shipping: httpx.AsyncClient

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@contextlib.asynccontextmanager
async def running_stack(client: Client, data_dir: Path) -> AsyncIterator[Stack]:
    from api.app import create_app as create_api
    from services.inventory.app import create_app as create_inventory
    from services.payments.app import create_app as create_payments
    from services.shipping.app import create_app as create_shipping
    from workers.main import build_workers

    settings = Settings(
        data_dir=data_dir,
        temporal_address=client.service_client.config.target_host,
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        api_port=free_port(),
        inventory_port=free_port(),
        payments_port=free_port(),
        shipping_port=free_port(),
        http_read_timeout_seconds=10,
    )
    apps: list[tuple[Any, int]] = [
        (
            create_inventory(
                database_url=settings.database_url("inventory"), admin_token=ADMIN_TOKEN
            ),
            settings.inventory_port,
        ),
        (
            create_payments(
                database_url=settings.database_url("payments"),
                admin_token=ADMIN_TOKEN,
                customer_limit_cents=settings.payments_customer_limit_cents,
            ),
            settings.payments_port,
        ),
        (
            create_shipping(
                database_url=settings.database_url("shipping"),
                admin_token=ADMIN_TOKEN,
                refused_countries=settings.shipping_refused_countries,
            ),
            settings.shipping_port,
        ),
        (create_api(settings, client=client), settings.api_port),
    ]
    async with contextlib.AsyncExitStack() as stack:
        for app, port in apps:
            await stack.enter_async_context(serve(app, port))
        workers = await stack.enter_async_context(
            build_workers(client, settings, ["orders", "inventory", "payments", "shipping"])
        )
        for worker in workers:
            await stack.enter_async_context(worker)

        def http(port: int) -> httpx.AsyncClient:
            return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)

        clients = [
            await stack.enter_async_context(http(port))
            for port in (
                settings.api_port,
                settings.inventory_port,
                settings.payments_port,
                settings.shipping_port,
            )
        ]
        yield Stack(settings, *clients)
