"""The pydantic types of the fields an order carries, for the API and the services.

Built once from contracts.fields, so that the API (at the edge) and every
service (behind it) check a field by one definition: what the API accepts, no
service refuses for its shape. Lower layers see only contracts.fields' plain
constants (contracts imports no pydantic). Country codes also come from
pycountry's ISO 3166-1 list: a pattern alone lets `XX` through.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from contracts import fields

Sku = Annotated[
    str,
    StringConstraints(min_length=1, max_length=fields.SKU_MAX_LENGTH, pattern=fields.SKU_PATTERN),
]


def _typed_by_people(*, max_length: int, pattern: str) -> StringConstraints:
    """Free text from people (names, streets, cities, postal codes): whitespace
    around it is stripped and a blank value refused."""
    return StringConstraints(
        strip_whitespace=True, min_length=1, max_length=max_length, pattern=pattern
    )


# Names and streets: any printable character.
Text = Annotated[
    str, _typed_by_people(max_length=fields.TEXT_MAX_LENGTH, pattern=fields.TEXT_PATTERN)
]
City = Annotated[
    str, _typed_by_people(max_length=fields.CITY_MAX_LENGTH, pattern=fields.TEXT_PATTERN)
]
PostalCode = Annotated[
    str,
    _typed_by_people(max_length=fields.POSTAL_CODE_MAX_LENGTH, pattern=fields.POSTAL_CODE_PATTERN),
]


# Kosovo's code is user-assigned in ISO 3166-1, not official, but carriers,
# card networks and the EU use it; the rest are the officially assigned codes.
_IN_USE_THOUGH_USER_ASSIGNED = frozenset({"XK"})


@functools.cache
def country_codes() -> frozenset[str]:
    """The ISO 3166-1 alpha-2 codes of countries, in upper case."""
    return frozenset(country.alpha_2 for country in pycountry.countries) | (
        _IN_USE_THOUGH_USER_ASSIGNED
    )


def assigned_country(code: str) -> str:
    """`code` when it names a country; a ValueError (a 422) when it only has the
    shape of one (`XX`, `ZZ`), so that no shipment goes to no country."""
    if code not in country_codes():
        raise ValueError("not a country: use the ISO 3166-1 alpha-2 code of one")
    return code


def iso_currency(code: str) -> str:
    """`code` when it names an ISO 4217 currency; a ValueError (a 422) when it
    only has the shape of one (`ZZZ`). The API's rule and the services'."""
    if not fields.is_iso_currency(code):
        raise ValueError(f"{code} is not an ISO 4217 currency code")
    return code


def _document_country_codes(schema: dict[str, Any]) -> None:
    # Called when a schema is built, not at import: the list is loaded then.
    schema["enum"] = sorted(country_codes())


# ISO 3166-1 alpha-2, upper case, and a country's: the OpenAPI document lists them.
CountryCode = Annotated[
    str,
    StringConstraints(pattern=fields.COUNTRY_PATTERN),
    AfterValidator(assigned_country),
    Field(description="ISO 3166-1 alpha-2 country code", json_schema_extra=_document_country_codes),
]


class StrictRequest(BaseModel):
    """A request body, at the API and at the services alike: no coercion ("2"
    is not 2, nor "true" true) and no field it does not name."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _integral_float_as_int(value: object) -> object:
    # JSON Schema counts 2.0 as an integer, as the OpenAPI documents promise;
    # strict validation would refuse it. Strings and 2.5 are still refused.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# After a whole-number field's bounds, which must come first so that the
# OpenAPI document shows them as minimum and maximum:
#     quantity: Annotated[int, Field(ge=1, le=1000), WHOLE_FLOATS_AS_INT]
WHOLE_FLOATS_AS_INT = BeforeValidator(_integral_float_as_int)

# An order line's quantity, and an order's total (what the customer expects to
# pay, what payments captures).
LineQuantity = Annotated[int, Field(ge=1, le=fields.MAX_QUANTITY_PER_LINE), WHOLE_FLOATS_AS_INT]
TotalCents = Annotated[int, Field(ge=1, le=fields.MAX_ORDER_TOTAL_CENTS), WHOLE_FLOATS_AS_INT]
