"""The payments service's app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from opentelemetry.trace import TracerProvider
from pydantic import SecretStr

from services.common.app import ServiceSpec, create_service_app
from services.payments.domain import PaymentPolicy
from services.payments.routes import charges_router, ledger_router

SPEC = ServiceSpec(
    name="payments",
    description="Charges to customers' cards, and their refunds.",
    migrations=Path(__file__).parent / "migrations",
    routers=(charges_router,),
    admin_routers=(ledger_router,),
)


def create_app(
    *,
    database_url: str,
    admin_token: SecretStr,
    worker_token: SecretStr,
    customer_limit_cents: int,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    if customer_limit_cents < 0:
        raise ValueError("customer_limit_cents must not be negative")
    return create_service_app(
        SPEC,
        database_url=database_url,
        admin_token=admin_token,
        worker_token=worker_token,
        tracer_provider=tracer_provider,
        config=PaymentPolicy(customer_limit_cents=customer_limit_cents),
    )
