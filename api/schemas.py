"""Request and response bodies of the HTTP API.

Requests are strict (no coercion of "2" into 2, no unknown fields): a payment
API should refuse what it does not understand rather than guess. Responses
carry no address and no payment token.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
)

from contracts import fields
from contracts.orders import (
    Address,
    OrderLine,
    OrderStatus,
    PaymentDetails,
    PlaceOrder,
    StepState,
)
from ordersaga.runtime.fields import (
    City,
    CountryCode,
    LineQuantity,
    PostalCode,
    Sku,
    StrictRequest,
    Text,
    TotalCents,
    iso_currency,
)

# The same types the services check their fields with (ordersaga.runtime.fields):
# what the API accepts, they accept.


class OrderLineCreate(StrictRequest):
    sku: Sku
    quantity: LineQuantity


class PaymentCreate(StrictRequest):
    # SecretStr keeps the token out of reprs, tracebacks and debug logs.
    token: SecretStr = Field(
        min_length=1, max_length=255, json_schema_extra={"pattern": fields.PAYMENT_TOKEN_PATTERN}
    )

    @field_validator("token")
    @classmethod
    def _printable(cls, value: SecretStr) -> SecretStr:
        if not _PAYMENT_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("a payment token is 1-255 visible ASCII characters")
        return value


_PAYMENT_TOKEN = re.compile(fields.PAYMENT_TOKEN_PATTERN)


class ShippingAddressCreate(StrictRequest):
    name: Text
    line1: Text
    line2: Text | None = None
    city: City
    postal_code: PostalCode
    country: CountryCode

    def to_address(self) -> Address:
        # The contract's Address has these fields, name for name.
        return Address(**self.model_dump())


class OrderCreate(StrictRequest):
    """An order: what to send, where, and how to pay. Prices are not part of it:
    the catalog prices every line when the stock is reserved, and the charge is
    that total (GET /products lists the prices)."""

    items: list[OrderLineCreate] = Field(min_length=1, max_length=fields.MAX_LINES_PER_ORDER)
    currency: Annotated[str, StringConstraints(pattern=fields.CURRENCY_PATTERN)] = Field(
        description="ISO 4217 currency code; must be the catalog's currency"
    )
    payment: PaymentCreate
    shipping_address: ShippingAddressCreate
    expected_total_cents: TotalCents | None = Field(
        default=None,
        description=(
            "Optional: what you expect to pay. When the catalog's total at "
            "reservation differs, nothing is charged and the order ends FAILED "
            "with failure_code PRICE_CHANGED."
        ),
    )

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        return iso_currency(value)

    def canonical(self) -> dict[str, Any]:
        """The whole request as plain JSON values, token included, for the
        fingerprint: a different card is a different request."""
        body = self.model_dump(mode="json")
        body["payment"]["token"] = self.payment.token.get_secret_value()
        return body

    def to_place_order(self, order_id: str, customer_id: str) -> PlaceOrder:
        return PlaceOrder(
            order_id=order_id,
            customer_id=customer_id,
            items=[OrderLine(line.sku, line.quantity) for line in self.items],
            currency=self.currency,
            payment=PaymentDetails(token=self.payment.token.get_secret_value()),
            shipping_address=self.shipping_address.to_address(),
            expected_total_cents=self.expected_total_cents,
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
    unit_price_cents: int | None = Field(
        description="The catalog's price when the stock was reserved; null before."
    )


class OperatorActionPublic(BaseModel):
    operator: str
    decision: str
    step: str
    note: str
    at: datetime | None


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
    total_cents: int | None = Field(
        description="The reserved total, at the catalog's prices; null until reserved."
    )
    currency: str
    steps: list[StepPublic]
    failure_code: str | None = Field(
        description="Why the order ended, as a stable code (e.g. PAYMENT_DECLINED)."
    )
    failure_reason: str | None = Field(
        description="Why the order ended, in words; operators see the full account."
    )
    operator_actions: list[OperatorActionPublic] = Field(
        description="Operators' decisions on the order (operators only; empty for customers)."
    )
    created_at: datetime | None
    updated_at: datetime | None
    stale: bool = Field(
        description="True when no worker answered in time and the order was read from "
        "the state it last published: its steps and prices are not known, and an open "
        "order's status may have moved on."
    )


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
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] = Field(
        default="cancelled by customer",
        description="Why, in the customer's words: printable text, no control characters.",
    )

    @field_validator("reason")
    @classmethod
    def _printable(cls, value: str) -> str:
        # Shown back as the order's failure_reason, to the customer and to
        # operators: the same rule as an operator's note.
        return printable(value, "a reason")


class OrderCancelAccepted(BaseModel):
    order_id: str
    status: OrderStatus


class OperatorActionRequest(StrictRequest):
    note: Annotated[str, StringConstraints(max_length=1000)] = Field(
        default="",
        description="Why, in the operator's words: printable text, no control characters.",
    )

    @field_validator("note")
    @classmethod
    def _printable(cls, value: str) -> str:
        # Kept in the order's history and shown back to operators (API, Web UI,
        # audit report). A note may be left empty.
        return printable(value, "a note") if value else value


_PRINTABLE = re.compile(fields.PRINTABLE_PATTERN)


def printable(value: str, what: str) -> str:
    """`value`, refused when it holds a control character: an escape sequence
    or a line break in text shown back later could restyle a terminal or forge
    a log line. The rule of the shipping address's text (contracts.fields)."""
    if not _PRINTABLE.fullmatch(value):
        raise ValueError(f"{what} may not contain control characters (line breaks included)")
    return value


class OperatorActionAcceptedPublic(BaseModel):
    order_id: str
    status: OrderStatus


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str | None


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[FieldError] | None = None


class ErrorResponse(BaseModel):
    detail: ErrorDetail


class ReadinessReport(BaseModel):
    status: str
    reason: str | None = None
