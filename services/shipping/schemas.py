"""The shipping API's request and response bodies. Answers carry the country
of the address, never the name or street."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from contracts import fields
from contracts.orders import Address
from ordersaga.runtime.fields import City, PostalCode, StrictRequest, Text, assigned_country
from services.common.schemas import Identifier, Lines
from services.shipping.domain import ShipmentState

# fields.COUNTRY_PATTERN in either case, and a country's (the API's rule): the
# API sends upper case, and a lower case one from another caller is taken as
# the same country.
CountryCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$"),
    AfterValidator(assigned_country),
]
# A second address line may be left empty.
OptionalText = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=fields.TEXT_MAX_LENGTH,
        pattern=fields.PRINTABLE_PATTERN,
    ),
]


class AddressIn(StrictRequest):
    name: Text
    line1: Text
    line2: OptionalText | None = None
    city: City
    postal_code: PostalCode
    country: CountryCode

    def to_domain(self) -> Address:
        return Address(
            name=self.name,
            line1=self.line1,
            line2=self.line2 or None,
            city=self.city,
            postal_code=self.postal_code,
            country=self.country,
        )


class ShipmentCreate(StrictRequest):
    order_id: Identifier
    lines: Lines
    address: AddressIn


class ShipmentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    shipment_id: str
    order_id: str
    state: ShipmentState
    country: str


class ShipmentsPublic(BaseModel):
    items: list[ShipmentPublic]


class ShipmentLedgerEntry(ShipmentPublic):
    created_at: datetime
    updated_at: datetime


class ShipmentLedgerPublic(BaseModel):
    """A page of every shipment, by id. `next_after` is the `after` of the next
    page; null on the last page."""

    items: list[ShipmentLedgerEntry]
    next_after: str | None
