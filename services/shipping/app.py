"""The shipping service's app."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI
from opentelemetry.trace import TracerProvider
from pydantic import SecretStr

from services.common.app import ServiceSpec, create_service_app
from services.shipping.domain import ShippingPolicy
from services.shipping.routes import ledger_router, shipments_router

SPEC = ServiceSpec(
    name="shipping",
    description="Shipments of orders to customers' addresses.",
    migrations=Path(__file__).parent / "migrations",
    routers=(shipments_router,),
    admin_routers=(ledger_router,),
)


def create_app(
    *,
    database_url: str,
    admin_token: SecretStr,
    worker_token: SecretStr,
    refused_countries: Sequence[str],
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    return create_service_app(
        SPEC,
        database_url=database_url,
        admin_token=admin_token,
        worker_token=worker_token,
        tracer_provider=tracer_provider,
        config=ShippingPolicy.refusing(refused_countries),
    )
