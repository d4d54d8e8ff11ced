"""The inventory API's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from contracts import fields
from ordersaga.runtime.fields import WHOLE_FLOATS_AS_INT, StrictRequest, TotalCents
from services.common.schemas import CurrencyCode, Identifier, Lines, PartialUpdate
from services.inventory.domain import ReservationState

MAX_STOCK = 1_000_000_000
# GET /products answers at most this many products (the catalog is small).
MAX_LISTED_PRODUCTS = 1000

UnitPrice = Annotated[
    int, Field(ge=fields.MIN_UNIT_PRICE_CENTS, le=fields.MAX_UNIT_PRICE_CENTS), WHOLE_FLOATS_AS_INT
]
StockCount = Annotated[int, Field(ge=0, le=MAX_STOCK), WHOLE_FLOATS_AS_INT]


class ReservationCreate(StrictRequest):
    order_id: Identifier
    lines: Lines
    # The order's currency: refused (PRICE_CHANGED) unless it is the catalog's.
    currency: CurrencyCode
    # When given, a reservation whose total differs is refused (PRICE_CHANGED).
    expected_total_cents: TotalCents | None = None


class ReservedLinePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str
    quantity: int
    unit_price_cents: int


class ReservationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    reservation_id: str
    order_id: str
    state: ReservationState
    lines: list[ReservedLinePublic]
    total_cents: int
    currency: str


class ReservationsPublic(BaseModel):
    items: list[ReservationPublic]


class ReservationLedgerEntry(ReservationPublic):
    created_at: datetime
    updated_at: datetime


class ReservationLedgerPublic(BaseModel):
    """A page of every reservation, by id. `next_after` is the `after` of the
    next page; null on the last page."""

    items: list[ReservationLedgerEntry]
    next_after: str | None


class StockHoldingPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str
    available: int
    reserved: int
    held: int = Field(
        description="The sum of this product's lines in reservations still `reserved`: "
        "`reserved` must equal it"
    )


class StockHoldingsPublic(BaseModel):
    """A page of every product by sku; `next_after` as in the ledger."""

    items: list[StockHoldingPublic]
    next_after: str | None


class StockPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str
    available: int
    reserved: int


class ProductUpdate(PartialUpdate):
    """What to set; at least one. A new product needs both."""

    price_cents: UnitPrice | None = None
    available: StockCount | None = None


class ProductPublic(BaseModel):
    sku: str
    price_cents: int
    currency: str
    available: int
    reserved: int


class CatalogItemPublic(BaseModel):
    sku: str
    price_cents: int
    currency: str
    available: int


class CatalogPublic(BaseModel):
    items: list[CatalogItemPublic]
