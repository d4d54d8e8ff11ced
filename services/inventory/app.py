"""The inventory service's app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from opentelemetry.trace import TracerProvider
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.app import ServiceSpec, create_service_app
from services.inventory import domain
from services.inventory.catalog import CATALOG
from services.inventory.repository import SqlInventoryUnitOfWork
from services.inventory.routes import products_router, reservations_router, stock_router


async def seed_catalog(engine: AsyncEngine) -> None:
    async with SqlInventoryUnitOfWork(engine, write=True) as uow:
        await domain.seed(uow, CATALOG)
        await uow.commit()


SPEC = ServiceSpec(
    name="inventory",
    description="Products, their stock, and reservations of stock for orders.",
    migrations=Path(__file__).parent / "migrations",
    routers=(reservations_router, stock_router),
    admin_routers=(products_router,),
    on_startup=seed_catalog,
)


def create_app(
    *, database_url: str, admin_token: str, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    return create_service_app(
        SPEC, database_url=database_url, admin_token=admin_token, tracer_provider=tracer_provider
    )
