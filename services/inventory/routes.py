"""The inventory HTTP API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.responses import JSONResponse

from contracts import errors
from services.common.idempotency import IDEMPOTENT_ERRORS, Idempotency
from services.common.runtime import unit_of_work
from services.common.schemas import IdPath, OrderIdQuery, SkuPath, error_responses
from services.inventory import domain
from services.inventory.repository import SqlInventoryUnitOfWork
from services.inventory.schemas import (
    ProductUpdate,
    ReservationCreate,
    ReservationPublic,
    ReservationsPublic,
    StockPublic,
)

InventoryUoW = Annotated[SqlInventoryUnitOfWork, Depends(unit_of_work(SqlInventoryUnitOfWork))]

reservations_router = APIRouter(prefix="/reservations", tags=["reservations"])


@reservations_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ReservationPublic,
    responses=error_responses(*IDEMPOTENT_ERRORS, errors.OUT_OF_STOCK, errors.UNKNOWN_SKU),
)
async def create_reservation(
    *, reservation: ReservationCreate, uow: InventoryUoW, idempotency: Idempotency
) -> JSONResponse:
    """Reserve stock for an order: every line, or none when one is short."""
    lines = [line.to_domain() for line in reservation.lines]
    return await idempotency.run(
        uow,
        lambda tx: domain.reserve(tx, order_id=reservation.order_id, lines=lines),
        present=ReservationPublic,
        status_code=status.HTTP_201_CREATED,
    )


@reservations_router.post(
    "/{reservation_id}/release",
    response_model=ReservationPublic,
    responses=error_responses(*IDEMPOTENT_ERRORS, errors.NOT_FOUND, errors.INVALID_STATE),
)
async def release_reservation(
    *, reservation_id: IdPath, uow: InventoryUoW, idempotency: Idempotency
) -> JSONResponse:
    """Put the reserved stock back on sale. Releasing twice releases once."""
    return await idempotency.run(
        uow,
        lambda tx: domain.release(tx, reservation_id),
        present=ReservationPublic,
        status_code=status.HTTP_200_OK,
    )


@reservations_router.post(
    "/{reservation_id}/commit",
    response_model=ReservationPublic,
    responses=error_responses(*IDEMPOTENT_ERRORS, errors.NOT_FOUND, errors.INVALID_STATE),
)
async def commit_reservation(
    *, reservation_id: IdPath, uow: InventoryUoW, idempotency: Idempotency
) -> JSONResponse:
    """The order shipped: the reserved stock leaves the warehouse."""
    return await idempotency.run(
        uow,
        lambda tx: domain.commit(tx, reservation_id),
        present=ReservationPublic,
        status_code=status.HTTP_200_OK,
    )


@reservations_router.get("", response_model=ReservationsPublic)
async def list_reservations(*, order_id: OrderIdQuery, uow: InventoryUoW) -> ReservationsPublic:
    async with uow:
        found = await uow.reservations.for_order(order_id)
    return ReservationsPublic(items=[ReservationPublic.model_validate(r) for r in found])


stock_router = APIRouter(prefix="/stock", tags=["stock"])


@stock_router.get("/{sku}", response_model=StockPublic, responses=error_responses(errors.NOT_FOUND))
async def get_stock(*, sku: SkuPath, uow: InventoryUoW) -> StockPublic:
    async with uow:
        return StockPublic.model_validate(await domain.stock_of(uow, sku))


# Mounted behind the admin token by the app factory.
products_router = APIRouter(prefix="/products", tags=["admin"])


@products_router.put("/{sku}", response_model=StockPublic)
async def put_product(*, sku: SkuPath, product: ProductUpdate, uow: InventoryUoW) -> StockPublic:
    """Create the product or set its available stock (reserved stock is kept)."""
    async with uow.writing() as tx:
        stock = await domain.set_available(tx, sku, product.available)
        await tx.commit()
    return StockPublic.model_validate(stock)
