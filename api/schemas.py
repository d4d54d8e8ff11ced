"""Request and response bodies of the HTTP API.

Requests are strict (no coercion of "2" into 2, no unknown fields): a payment
API should refuse what it does not understand rather than guess. Responses
carry no address and no payment token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from api.ids import SAFE_ID_PATTERN
from contracts.orders import (
    Address,
    OrderLine,
    OrderStatus,
    PaymentDetails,
    PlaceOrder,
    StepState,
)

# Bounds a search attribute (int64) and every service's arithmetic comfortably:
# 100 lines x 1000 units x this price stays far below 2**63.
MAX_UNIT_PRICE_CENTS = 10_000_000_000

SafeId = Annotated[str, StringConstraints(pattern=SAFE_ID_PATTERN)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class StrictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class OrderLineCreate(StrictRequest):
    sku: SafeId
    quantity: int = Field(ge=1, le=1000)
    unit_price_cents: int = Field(ge=0, le=MAX_UNIT_PRICE_CENTS)


class PaymentCreate(StrictRequest):
    # SecretStr keeps the token out of reprs, tracebacks and debug logs.
    token: SecretStr = Field(min_length=1, max_length=255)


class ShippingAddressCreate(StrictRequest):
    name: Text
    line1: Text
    line2: Text | None = None
    city: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    postal_code: Annotated[str, StringConstraints(min_length=1, max_length=20)]
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = Field(
        description="ISO 3166-1 alpha-2 country code"
    )


class OrderCreate(StrictRequest):
    customer_id: SafeId = Field(
        description="The customer placing the order; Idempotency-Keys are scoped to it."
    )
    items: list[OrderLineCreate] = Field(min_length=1, max_length=100)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = Field(
        description="ISO 4217 currency code"
    )
    payment: PaymentCreate
    shipping_address: ShippingAddressCreate

    def canonical(self) -> dict[str, Any]:
        """The whole request as plain JSON values, token included, for the
        fingerprint: a different card is a different request."""
        body = self.model_dump(mode="json")
        body["payment"]["token"] = self.payment.token.get_secret_value()
        return body

    def to_place_order(self, order_id: str) -> PlaceOrder:
        address = self.shipping_address
        return PlaceOrder(
            order_id=order_id,
            customer_id=self.customer_id,
            items=[
                OrderLine(line.sku, line.quantity, line.unit_price_cents) for line in self.items
            ],
            currency=self.currency,
            payment=PaymentDetails(token=self.payment.token.get_secret_value()),
            shipping_address=Address(
                name=address.name,
                line1=address.line1,
                line2=address.line2,
                city=address.city,
                postal_code=address.postal_code,
                country=address.country,
            ),
        )


class OrderLinks(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    self_: str = Field(alias="self")
    cancel: str


class OrderAccepted(BaseModel):
    """The answer to the original acceptance; a replay gets exactly this again
    (the current status is at GET /orders/{order_id})."""

    order_id: str
    status: OrderStatus
    links: OrderLinks


class OrderLinePublic(BaseModel):
    sku: str
    quantity: int
    unit_price_cents: int


class StepPublic(BaseModel):
    name: str
    state: StepState
    attempts: int
    error: str | None


class OrderPublic(BaseModel):
    order_id: str
    status: OrderStatus
    customer_id: str
    items: list[OrderLinePublic]
    total_cents: int
    currency: str
    steps: list[StepPublic]
    failure_reason: str | None
    created_at: datetime | None
    updated_at: datetime | None


class OrderSummary(BaseModel):
    """One row of a listing, read from search attributes alone."""

    order_id: str
    status: OrderStatus | None
    customer_id: str | None
    total_cents: int | None
    started_at: datetime | None
    closed_at: datetime | None


class OrderPage(BaseModel):
    items: list[OrderSummary]
    next_page_token: str | None = Field(
        description="Pass back as next_page_token for the next page; null on the last page."
    )


class CancelRequest(StrictRequest):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] = (
        "cancelled by customer"
    )


class OrderCancelAccepted(BaseModel):
    order_id: str
    status: OrderStatus


class OperatorActionRequest(StrictRequest):
    note: Annotated[str, StringConstraints(max_length=1000)] = ""


class OperatorActionAcceptedPublic(BaseModel):
    order_id: str
    status: OrderStatus


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    detail: ErrorDetail


class ReadinessReport(BaseModel):
    status: str
    reason: str | None = None
