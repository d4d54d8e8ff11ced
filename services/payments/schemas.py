"""The payments API's request and response bodies. No response carries the token."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from contracts import fields
from ordersaga.runtime.fields import StrictRequest, TotalCents
from services.common.schemas import CurrencyCode, Identifier
from services.payments.domain import ChargeState


class ChargeCreate(StrictRequest):
    order_id: Identifier
    customer_id: Identifier
    # The reserved total the workflow passes on; no order can cost more.
    amount_cents: TotalCents
    currency: CurrencyCode
    # SecretStr: the token shows as '**********' in any repr, log or traceback.
    payment_token: SecretStr = Field(
        min_length=1, max_length=255, json_schema_extra={"pattern": fields.PAYMENT_TOKEN_PATTERN}
    )

    @field_validator("payment_token")
    @classmethod
    def _printable_token(cls, token: SecretStr) -> SecretStr:
        # The message names the rule, never the token.
        if not re.fullmatch(fields.PAYMENT_TOKEN_PATTERN, token.get_secret_value()):
            raise ValueError("a payment token is 1-255 visible ASCII characters")
        return token


class ChargePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    charge_id: str
    order_id: str
    customer_id: str
    amount_cents: int
    currency: str
    state: ChargeState


class ChargesPublic(BaseModel):
    items: list[ChargePublic]


class ChargeLedgerEntry(ChargePublic):
    created_at: datetime
    updated_at: datetime


class ChargeLedgerPublic(BaseModel):
    """A page of every charge, by id. `next_after` is the `after` of the next
    page; null on the last page."""

    items: list[ChargeLedgerEntry]
    next_after: str | None
