"""The inventory HTTP API."""

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
from services.common.runtime import service_config, unit_of_work
from services.common.schemas import (
    DEFAULT_LEDGER_PAGE,
    AfterQuery,
    LimitQuery,
    OrderIdQuery,
    SkuPath,
    error_responses,
)
from services.common.writes import (
    WorkerWrite,
    add_action_route,
    add_ledger_route,
    admin_router,
    worker_write,
)
from services.inventory import domain
from services.inventory.repository import SqlInventoryUnitOfWork
from services.inventory.schemas import (
    MAX_LISTED_PRODUCTS,
    CatalogItemPublic,
    CatalogPublic,
    ProductPublic,
    ProductUpdate,
    ReservationCreate,
    ReservationLedgerEntry,
    ReservationLedgerPublic,
    ReservationPublic,
    ReservationsPublic,
    StockHoldingPublic,
    StockHoldingsPublic,
    StockPublic,
)

InventoryUoW = Annotated[SqlInventoryUnitOfWork, Depends(unit_of_work(SqlInventoryUnitOfWork))]
Policy = Annotated[domain.InventoryPolicy, Depends(service_config(domain.InventoryPolicy))]
InventoryWrite = Annotated[
    WorkerWrite[SqlInventoryUnitOfWork, domain.InventoryPolicy],
    Depends(worker_write(SqlInventoryUnitOfWork, domain.InventoryPolicy)),
]

# Every route here takes a credential (the app factory authenticates); each
# says which callers it admits.
reservations_router = APIRouter(
    prefix="/reservations",
    tags=["reservations"],
    responses=error_responses(UNAUTHORIZED, FORBIDDEN),
)


@servable
@reservations_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ReservationPublic,
    responses=error_responses(
        *IDEMPOTENT_ERRORS,
        *FORWARD_REFUSALS,
        errors.OUT_OF_STOCK,
        errors.UNKNOWN_SKU,
        errors.PRICE_CHANGED,
    ),
)
async def create_reservation(*, reservation: ReservationCreate, write: InventoryWrite) -> Response:
    """Reserve stock for an order at the catalog's prices (the workers only):
    every line, or none when one is short, the currency is not the catalog's or
    the total is not the expected one."""
    lines = [line.to_domain() for line in reservation.lines]
    return await write.run(
        lambda tx: domain.reserve(
            tx,
            order_id=reservation.order_id,
            lines=lines,
            currency=reservation.currency,
            expected_total_cents=reservation.expected_total_cents,
            policy=write.policy,
        ),
        present=ReservationPublic,
        status_code=status.HTTP_201_CREATED,
    )


add_action_route(
    reservations_router,
    "/{reservation_id}/release",
    name="release_reservation",
    action=domain.release,
    write=InventoryWrite,
    present=ReservationPublic,
    refusals=(errors.NOT_FOUND, errors.INVALID_STATE),
    description="Put the reserved stock back on sale (the workers only). "
    "Releasing twice releases once.",
)
add_action_route(
    reservations_router,
    "/{reservation_id}/commit",
    name="commit_reservation",
    action=domain.commit,
    write=InventoryWrite,
    present=ReservationPublic,
    refusals=(errors.NOT_FOUND, errors.INVALID_STATE),
    description="The order shipped: the reserved stock leaves the warehouse (the workers only).",
)


@reservations_router.get(
    "",
    response_model=ReservationsPublic,
    dependencies=[WorkerOrAdmin, QUERY_PARAMETERS_CHECKED],
)
async def list_reservations(*, order_id: OrderIdQuery, uow: InventoryUoW) -> ReservationsPublic:
    async with uow:
        found = await uow.reservations.for_order(order_id)
    return ReservationsPublic(items=[ReservationPublic.model_validate(r) for r in found])


stock_router = APIRouter(
    prefix="/stock", tags=["stock"], responses=error_responses(UNAUTHORIZED, FORBIDDEN)
)


@stock_router.get(
    "/{sku}",
    response_model=StockPublic,
    dependencies=[WorkerOrAdmin],
    responses=error_responses(errors.NOT_FOUND),
)
async def get_stock(*, sku: SkuPath, uow: InventoryUoW) -> StockPublic:
    async with uow:
        return StockPublic.model_validate(await domain.stock_of(uow, sku))


# Public: what anyone may know before ordering. Mounted without a credential.
catalog_router = APIRouter(prefix="/products", tags=["catalog"])


@catalog_router.get("", response_model=CatalogPublic)
async def list_products(*, uow: InventoryUoW, policy: Policy) -> CatalogPublic:
    """The catalog: each product's price (in the catalog's currency) and stock."""
    async with uow:
        found = await uow.products.listing(MAX_LISTED_PRODUCTS)
    return CatalogPublic(
        items=[
            CatalogItemPublic(
                sku=p.sku,
                price_cents=p.price_cents,
                currency=policy.catalog_currency,
                available=p.available,
            )
            for p in found
        ]
    )


# Mounted behind the admin token by the app factory.
products_router = APIRouter(prefix="/products", tags=["admin"])


@products_router.put(
    "/{sku}", response_model=ProductPublic, responses=error_responses(errors.NOT_FOUND)
)
async def put_product(
    *, sku: SkuPath, product: ProductUpdate, uow: InventoryUoW, policy: Policy
) -> ProductPublic:
    """Set a product's price and/or available stock (reserved stock and the
    prices reservations fixed are kept); creating a product needs both."""
    async with uow.writing() as tx:
        found = await domain.put_product(
            tx, sku, price_cents=product.price_cents, available=product.available
        )
        await tx.commit()
    return ProductPublic(
        sku=found.sku,
        price_cents=found.price_cents,
        currency=policy.catalog_currency,
        available=found.available,
        reserved=found.reserved,
    )


# Mounted behind the admin token by the app factory: what a reconciliation
# audit (`ordersaga audit`) reads, every row a page at a time.
audit_router = admin_router()


add_ledger_route(
    audit_router,
    SqlInventoryUnitOfWork,
    name="reservation_ledger",
    ledger=lambda uow: uow.reservations,
    public=ReservationPublic,
    entry=ReservationLedgerEntry,
    page=ReservationLedgerPublic,
    resource_id=lambda reservation: reservation.reservation_id,
    description="Every reservation, a page at a time by id.",
)


@audit_router.get(
    "/stock", response_model=StockHoldingsPublic, dependencies=[QUERY_PARAMETERS_CHECKED]
)
async def stock_holdings(
    *, uow: InventoryUoW, after: AfterQuery = None, limit: LimitQuery = DEFAULT_LEDGER_PAGE
) -> StockHoldingsPublic:
    """Every product's stock, and what its open reservations hold: `reserved`
    must equal `held`. Each page is read at one moment."""
    async with uow:
        page = await uow.products.holdings(after=after, limit=limit)
    return StockHoldingsPublic(
        items=[StockHoldingPublic.model_validate(holding) for holding in page],
        next_after=page[-1].sku if len(page) == limit else None,
    )
