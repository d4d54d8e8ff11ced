"""The inventory API's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts import fields
from services.common.schemas import CurrencyCode, Identifier, Lines
from services.inventory.domain import ReservationState

MAX_STOCK = 1_000_000_000
# GET /products answers at most this many products (the catalog is small).
MAX_LISTED_PRODUCTS = 1000

UnitPrice = Annotated[int, Field(ge=fields.MIN_UNIT_PRICE_CENTS, le=fields.MAX_UNIT_PRICE_CENTS)]


class ReservationCreate(BaseModel):
    order_id: Identifier
    lines: Lines
    # The order's currency: refused (PRICE_CHANGED) unless it is the catalog's.
    currency: CurrencyCode
    # When given, a reservation whose total differs is refused (PRICE_CHANGED).
    expected_total_cents: int | None = Field(default=None, ge=1, le=fields.MAX_ORDER_TOTAL_CENTS)


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


def _at_least_one_field(schema: dict[str, Any]) -> None:
    """The document says what the model checks: at least one of the two, each a
    number when given (null is taken as "not given", so the document leaves it out)."""
    schema["anyOf"] = [{"required": ["price_cents"]}, {"required": ["available"]}]
    for prop in schema["properties"].values():
        options = [option for option in prop.pop("anyOf", []) if option.get("type") != "null"]
        if options:
            prop.update(options[0])
        prop.pop("default", None)


class ProductUpdate(BaseModel):
    """What to set; at least one. A new product needs both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_at_least_one_field)

    price_cents: UnitPrice | None = None
    available: int | None = Field(default=None, ge=0, le=MAX_STOCK)

    @model_validator(mode="after")
    def _something_to_set(self) -> Self:
        if self.price_cents is None and self.available is None:
            raise ValueError("give price_cents, available or both")
        return self


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
