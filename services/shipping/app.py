"""The shipping service's app."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Unpack

from fastapi import FastAPI

from services.common.app import ServiceArguments, ServiceSpec, create_service_app
from services.shipping.domain import ShippingPolicy
from services.shipping.routes import ledger_router, shipments_router

SPEC = ServiceSpec(
    name="shipping",
    description="Shipments of orders to customers' addresses.",
    migrations=Path(__file__).parent / "migrations",
    routers=(shipments_router,),
    admin_routers=(ledger_router,),
)


def create_app(*, refused_countries: Sequence[str], **common: Unpack[ServiceArguments]) -> FastAPI:
    return create_service_app(SPEC, config=ShippingPolicy.refusing(refused_countries), **common)
