"""The payments API's request and response bodies. No response carries the token."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from services.common.schemas import Identifier
from services.payments.domain import ChargeState

# Ten billion in minor units: far beyond any order, well inside a BIGINT.
MAX_AMOUNT_CENTS = 1_000_000_000_000

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$", to_upper=True)]


class ChargeCreate(BaseModel):
    order_id: Identifier
    customer_id: Identifier
    amount_cents: int = Field(gt=0, le=MAX_AMOUNT_CENTS)
    currency: Currency
    # SecretStr: the token shows as '**********' in any repr, log or traceback.
    payment_token: SecretStr = Field(min_length=1, max_length=255)


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
