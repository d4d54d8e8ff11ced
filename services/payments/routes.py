"""The payments HTTP API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.responses import JSONResponse

from contracts import errors
from services.common.auth import WorkerOnly, WorkerOrAdmin
from services.common.errors import FORBIDDEN, UNAUTHORIZED
from services.common.idempotency import IDEMPOTENT_ERRORS, Idempotency
from services.common.runtime import service_config, unit_of_work
from services.common.schemas import (
    DEFAULT_LEDGER_PAGE,
    AfterQuery,
    ChangedSinceQuery,
    IdPath,
    LimitQuery,
    OrderIdQuery,
    error_responses,
    ledger_entries,
    next_after,
)
from services.payments import domain
from services.payments.repository import SqlPaymentsUnitOfWork
from services.payments.schemas import (
    ChargeCreate,
    ChargeLedgerEntry,
    ChargeLedgerPublic,
    ChargePublic,
    ChargesPublic,
)

PaymentsUoW = Annotated[SqlPaymentsUnitOfWork, Depends(unit_of_work(SqlPaymentsUnitOfWork))]
Policy = Annotated[domain.PaymentPolicy, Depends(service_config(domain.PaymentPolicy))]

# Every route here takes a credential (the app factory authenticates); each
# says which callers it admits.
charges_router = APIRouter(
    prefix="/charges", tags=["charges"], responses=error_responses(UNAUTHORIZED, FORBIDDEN)
)


@charges_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ChargePublic,
    dependencies=[WorkerOnly],
    responses=error_responses(*IDEMPOTENT_ERRORS, errors.PAYMENT_DECLINED),
)
async def create_charge(
    *, charge: ChargeCreate, uow: PaymentsUoW, idempotency: Idempotency, policy: Policy
) -> JSONResponse:
    """Capture a payment for an order."""
    return await idempotency.run(
        uow,
        lambda tx: domain.charge(
            tx,
            order_id=charge.order_id,
            customer_id=charge.customer_id,
            amount_cents=charge.amount_cents,
            currency=charge.currency,
            payment_token=charge.payment_token.get_secret_value(),
            policy=policy,
        ),
        present=ChargePublic,
        status_code=status.HTTP_201_CREATED,
    )


@charges_router.post(
    "/{charge_id}/refund",
    response_model=ChargePublic,
    dependencies=[WorkerOnly],
    responses=error_responses(*IDEMPOTENT_ERRORS, errors.NOT_FOUND, errors.REFUND_REFUSED),
)
async def refund_charge(
    *, charge_id: IdPath, uow: PaymentsUoW, idempotency: Idempotency
) -> JSONResponse:
    """Give the money back. Refunding twice refunds once."""
    return await idempotency.run(
        uow,
        lambda tx: domain.refund(tx, charge_id),
        present=ChargePublic,
        status_code=status.HTTP_200_OK,
    )


@charges_router.get("", response_model=ChargesPublic, dependencies=[WorkerOrAdmin])
async def list_charges(*, order_id: OrderIdQuery, uow: PaymentsUoW) -> ChargesPublic:
    async with uow:
        found = await uow.charges.for_order(order_id)
    return ChargesPublic(items=[ChargePublic.model_validate(c) for c in found])


# Mounted behind the admin token by the app factory.
ledger_router = APIRouter(
    prefix="/admin/ledger",
    tags=["admin"],
    responses=error_responses(UNAUTHORIZED, FORBIDDEN),
)


@ledger_router.get("", response_model=ChargeLedgerPublic)
async def charge_ledger(
    *,
    uow: PaymentsUoW,
    after: AfterQuery = None,
    limit: LimitQuery = DEFAULT_LEDGER_PAGE,
    changed_since: ChangedSinceQuery = None,
) -> ChargeLedgerPublic:
    """Every charge, a page at a time by id, for a reconciliation audit
    (`ordersaga audit`): orders Temporal does not know, double charges."""
    async with uow:
        page = await uow.charges.ledger_page(after=after, limit=limit, changed_since=changed_since)
    return ChargeLedgerPublic(
        items=ledger_entries(page, ChargePublic, ChargeLedgerEntry),
        next_after=next_after(page, limit, lambda resource: resource.charge_id),
    )
