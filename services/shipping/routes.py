"""The shipping HTTP API."""

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
from services.shipping import domain
from services.shipping.repository import SqlShippingUnitOfWork
from services.shipping.schemas import (
    ShipmentCreate,
    ShipmentLedgerEntry,
    ShipmentLedgerPublic,
    ShipmentPublic,
    ShipmentsPublic,
)

ShippingUoW = Annotated[SqlShippingUnitOfWork, Depends(unit_of_work(SqlShippingUnitOfWork))]
Policy = Annotated[domain.ShippingPolicy, Depends(service_config(domain.ShippingPolicy))]

# Every route here takes a credential (the app factory authenticates); each
# says which callers it admits.
shipments_router = APIRouter(
    prefix="/shipments", tags=["shipments"], responses=error_responses(UNAUTHORIZED, FORBIDDEN)
)


@shipments_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ShipmentPublic,
    dependencies=[WorkerOnly],
    responses=error_responses(*IDEMPOTENT_ERRORS, errors.ADDRESS_UNDELIVERABLE),
)
async def create_shipment(
    *, shipment: ShipmentCreate, uow: ShippingUoW, idempotency: Idempotency, policy: Policy
) -> JSONResponse:
    """Ship an order's lines to an address."""
    return await idempotency.run(
        uow,
        lambda tx: domain.create_shipment(
            tx,
            order_id=shipment.order_id,
            lines=[line.to_domain() for line in shipment.lines],
            address=shipment.address.to_domain(),
            policy=policy,
        ),
        present=ShipmentPublic,
        status_code=status.HTTP_201_CREATED,
    )


@shipments_router.post(
    "/{shipment_id}/cancel",
    response_model=ShipmentPublic,
    dependencies=[WorkerOnly],
    responses=error_responses(*IDEMPOTENT_ERRORS, errors.NOT_FOUND),
)
async def cancel_shipment(
    *, shipment_id: IdPath, uow: ShippingUoW, idempotency: Idempotency
) -> JSONResponse:
    """Cancel a shipment. Cancelling twice cancels once."""
    return await idempotency.run(
        uow,
        lambda tx: domain.cancel(tx, shipment_id),
        present=ShipmentPublic,
        status_code=status.HTTP_200_OK,
    )


@shipments_router.get("", response_model=ShipmentsPublic, dependencies=[WorkerOrAdmin])
async def list_shipments(*, order_id: OrderIdQuery, uow: ShippingUoW) -> ShipmentsPublic:
    async with uow:
        found = await uow.shipments.for_order(order_id)
    return ShipmentsPublic(items=[ShipmentPublic.model_validate(s) for s in found])


# Mounted behind the admin token by the app factory.
ledger_router = APIRouter(
    prefix="/admin/ledger", tags=["admin"], responses=error_responses(UNAUTHORIZED, FORBIDDEN)
)


@ledger_router.get("", response_model=ShipmentLedgerPublic)
async def shipment_ledger(
    *,
    uow: ShippingUoW,
    after: AfterQuery = None,
    limit: LimitQuery = DEFAULT_LEDGER_PAGE,
    changed_since: ChangedSinceQuery = None,
) -> ShipmentLedgerPublic:
    """Every shipment (its country, never the address), a page at a time by id,
    for a reconciliation audit (`ordersaga audit`)."""
    async with uow:
        page = await uow.shipments.ledger_page(
            after=after, limit=limit, changed_since=changed_since
        )
    return ShipmentLedgerPublic(
        items=ledger_entries(page, ShipmentPublic, ShipmentLedgerEntry),
        next_after=next_after(page, limit, lambda resource: resource.shipment_id),
    )
