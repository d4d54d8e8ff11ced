"""The payments HTTP API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.responses import Response

from contracts import errors
from ordersaga.runtime.query import QUERY_PARAMETERS_CHECKED
from services.common.auth import WorkerOrAdmin
from services.common.direct_writes import servable
from services.common.domain import FORWARD_REFUSALS
from services.common.errors import FORBIDDEN, UNAUTHORIZED
from services.common.idempotency import IDEMPOTENT_ERRORS
from services.common.runtime import unit_of_work
from services.common.schemas import OrderIdQuery, error_responses
from services.common.writes import (
    WorkerWrite,
    add_action_route,
    add_ledger_route,
    admin_router,
    worker_write,
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
PaymentsWrite = Annotated[
    WorkerWrite[SqlPaymentsUnitOfWork, domain.PaymentPolicy],
    Depends(worker_write(SqlPaymentsUnitOfWork, domain.PaymentPolicy)),
]

# Every route here takes a credential (the app factory authenticates); each
# says which callers it admits.
charges_router = APIRouter(
    prefix="/charges", tags=["charges"], responses=error_responses(UNAUTHORIZED, FORBIDDEN)
)


@servable
@charges_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ChargePublic,
    responses=error_responses(*IDEMPOTENT_ERRORS, *FORWARD_REFUSALS, errors.PAYMENT_DECLINED),
)
async def create_charge(*, charge: ChargeCreate, write: PaymentsWrite) -> Response:
    """Capture a payment for an order (the workers only)."""
    return await write.run(
        lambda tx: domain.charge(
            tx,
            order_id=charge.order_id,
            customer_id=charge.customer_id,
            amount_cents=charge.amount_cents,
            currency=charge.currency,
            payment_token=charge.payment_token.get_secret_value(),
            policy=write.policy,
        ),
        present=ChargePublic,
        status_code=status.HTTP_201_CREATED,
    )


add_action_route(
    charges_router,
    "/{charge_id}/refund",
    name="refund_charge",
    action=domain.refund,
    write=PaymentsWrite,
    present=ChargePublic,
    refusals=(errors.NOT_FOUND, errors.REFUND_REFUSED),
    description="Give the money back (the workers only). Refunding twice refunds once.",
)


@charges_router.get(
    "",
    response_model=ChargesPublic,
    dependencies=[WorkerOrAdmin, QUERY_PARAMETERS_CHECKED],
)
async def list_charges(*, order_id: OrderIdQuery, uow: PaymentsUoW) -> ChargesPublic:
    async with uow:
        found = await uow.charges.for_order(order_id)
    return ChargesPublic(items=[ChargePublic.model_validate(c) for c in found])


ledger_router = admin_router()
add_ledger_route(
    ledger_router,
    SqlPaymentsUnitOfWork,
    name="charge_ledger",
    ledger=lambda uow: uow.charges,
    public=ChargePublic,
    entry=ChargeLedgerEntry,
    page=ChargeLedgerPublic,
    resource_id=lambda charge: charge.charge_id,
    description="Every charge, a page at a time by id, for a reconciliation audit "
    "(`ordersaga audit`): orders Temporal does not know, double charges.",
)
