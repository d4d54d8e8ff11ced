"""The payments service's app."""

from __future__ import annotations

from pathlib import Path
from typing import Unpack

from fastapi import FastAPI

from contracts.fields import MAX_CUSTOMER_LIMIT_CENTS
from services.common.app import ServiceArguments, ServiceSpec, create_service_app
from services.payments.domain import PaymentPolicy
from services.payments.routes import charges_router, ledger_router

SPEC = ServiceSpec(
    name="payments",
    description="Charges to customers' cards, and their refunds.",
    migrations=Path(__file__).parent / "migrations",
    routers=(charges_router,),
    admin_routers=(ledger_router,),
)


def create_app(*, customer_limit_cents: int, **common: Unpack[ServiceArguments]) -> FastAPI:
    if not 0 <= customer_limit_cents <= MAX_CUSTOMER_LIMIT_CENTS:
        raise ValueError(f"customer_limit_cents must be from 0 to {MAX_CUSTOMER_LIMIT_CENTS}")
    policy = PaymentPolicy(customer_limit_cents=customer_limit_cents)
    return create_service_app(SPEC, config=policy, **common)
