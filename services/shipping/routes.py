"""The shipping HTTP API."""

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
ShippingWrite = Annotated[
    WorkerWrite[SqlShippingUnitOfWork, domain.ShippingPolicy],
    Depends(worker_write(SqlShippingUnitOfWork, domain.ShippingPolicy)),
]

# Every route here takes a credential (the app factory authenticates); each
# says which callers it admits.
shipments_router = APIRouter(
    prefix="/shipments", tags=["shipments"], responses=error_responses(UNAUTHORIZED, FORBIDDEN)
)


@servable
@shipments_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ShipmentPublic,
    responses=error_responses(*IDEMPOTENT_ERRORS, *FORWARD_REFUSALS, errors.ADDRESS_UNDELIVERABLE),
)
async def create_shipment(*, shipment: ShipmentCreate, write: ShippingWrite) -> Response:
    """Ship an order's lines to an address (the workers only)."""
    return await write.run(
        lambda tx: domain.create_shipment(
            tx,
            order_id=shipment.order_id,
            lines=[line.to_domain() for line in shipment.lines],
            address=shipment.address.to_domain(),
            policy=write.policy,
        ),
        present=ShipmentPublic,
        status_code=status.HTTP_201_CREATED,
    )


add_action_route(
    shipments_router,
    "/{shipment_id}/cancel",
    name="cancel_shipment",
    action=domain.cancel,
    write=ShippingWrite,
    present=ShipmentPublic,
    refusals=(errors.NOT_FOUND,),
    description="Cancel a shipment (the workers only). Cancelling twice cancels once.",
)


@shipments_router.get(
    "",
    response_model=ShipmentsPublic,
    dependencies=[WorkerOrAdmin, QUERY_PARAMETERS_CHECKED],
)
async def list_shipments(*, order_id: OrderIdQuery, uow: ShippingUoW) -> ShipmentsPublic:
    async with uow:
        found = await uow.shipments.for_order(order_id)
    return ShipmentsPublic(items=[ShipmentPublic.model_validate(s) for s in found])


ledger_router = admin_router()
add_ledger_route(
    ledger_router,
    SqlShippingUnitOfWork,
    name="shipment_ledger",
    ledger=lambda uow: uow.shipments,
    public=ShipmentPublic,
    entry=ShipmentLedgerEntry,
    page=ShipmentLedgerPublic,
    resource_id=lambda shipment: shipment.shipment_id,
    description="Every shipment (its country, never the address), a page at a time by "
    "id, for a reconciliation audit (`ordersaga audit`).",
)
