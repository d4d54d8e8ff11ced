"""The inventory API's request and response bodies."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.common.schemas import Identifier, LinePublic, Lines
from services.inventory.domain import ReservationState

MAX_STOCK = 1_000_000_000


class ReservationCreate(BaseModel):
    order_id: Identifier
    lines: Lines


class ReservationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    reservation_id: str
    order_id: str
    state: ReservationState
    lines: list[LinePublic]


class ReservationsPublic(BaseModel):
    items: list[ReservationPublic]


class StockPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str
    available: int
    reserved: int


class ProductUpdate(BaseModel):
    available: int = Field(ge=0, le=MAX_STOCK)
