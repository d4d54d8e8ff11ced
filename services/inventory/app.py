"""The inventory service's app."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Unpack

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import fields
from services.common.app import ServiceArguments, ServiceSpec, create_service_app
from services.inventory import domain
from services.inventory.catalog import CATALOG
from services.inventory.repository import SqlInventoryUnitOfWork
from services.inventory.routes import (
    audit_router,
    catalog_router,
    products_router,
    reservations_router,
    stock_router,
)


async def seed_catalog(engine: AsyncEngine) -> None:
    async with SqlInventoryUnitOfWork(engine, write=True) as uow:
        await domain.seed(uow, CATALOG)
        await uow.commit()


SPEC = ServiceSpec(
    name="inventory",
    description="Products, their prices and stock, and reservations of stock for orders.",
    migrations=Path(__file__).parent / "migrations",
    routers=(reservations_router, stock_router),
    admin_routers=(products_router, audit_router),
    public_routers=(catalog_router,),
    on_startup=seed_catalog,
)


def create_app(*, catalog_currency: str = "EUR", **common: Unpack[ServiceArguments]) -> FastAPI:
    if not re.fullmatch(fields.CURRENCY_PATTERN, catalog_currency):
        raise ValueError(f"catalog_currency must be a currency code, got {catalog_currency!r}")
    policy = domain.InventoryPolicy(catalog_currency=catalog_currency)
    return create_service_app(SPEC, config=policy, **common)
