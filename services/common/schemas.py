"""Request and response building blocks shared by the services' HTTP layers.

The string types bound length and character set: what reaches the database is
always storable (PostgreSQL rejects NUL characters; ids fit their columns), so
bad input is a 422, never a 500. The rules are contracts.fields, the API's own:
what the API accepts, every service accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Self, TypeVar

from fastapi import Path, Query
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from contracts import fields
from ordersaga.runtime.fields import LineQuantity, StrictRequest, iso_currency
from ordersaga.runtime.fields import Sku as Sku
from ordersaga.runtime.fields import Text as Text
from services.common.domain import Dated, Line
from services.common.errors import HTTP_STATUS

VISIBLE_ASCII = r"^[\x21-\x7E]+$"

# Ids made by callers (order, customer): visible ASCII, as in a URL or a log line.
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=VISIBLE_ASCII)]


# fields.CURRENCY_PATTERN in either case: the API sends upper case, and a lower
# case code from another caller is taken as the same currency. One the API
# would refuse (`ZZZ`) is refused here too.
CurrencyCode = Annotated[
    str, StringConstraints(to_upper=True, pattern=r"^[A-Za-z]{3}$"), AfterValidator(iso_currency)
]

# Ids in paths and queries, held to the same rules so a malformed one is a 422.
IdPath = Annotated[str, Path(min_length=1, max_length=255, pattern=VISIBLE_ASCII)]
SkuPath = Annotated[
    str, Path(min_length=1, max_length=fields.SKU_MAX_LENGTH, pattern=fields.SKU_PATTERN)
]
OrderIdQuery = Annotated[
    str,
    Query(min_length=1, max_length=255, pattern=VISIBLE_ASCII, description="The order's id"),
]

# The admin ledger listings (GET /admin/ledger, inventory's GET /admin/stock):
# keyset pages, for a reconciliation audit that reads every row.
DEFAULT_LEDGER_PAGE = 500
MAX_LEDGER_PAGE = 1000
AfterQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=255,
        pattern=VISIBLE_ASCII,
        description="Start after this id: the previous page's `next_after`",
    ),
]
LimitQuery = Annotated[
    int, Query(ge=1, le=MAX_LEDGER_PAGE, description="At most this many rows in the page")
]
ChangedSinceQuery = Annotated[
    datetime | None,
    Query(
        description="Only rows made or changed at or after this moment (ISO 8601; "
        "UTC when it names no zone)"
    ),
]


class LineItem(StrictRequest):
    sku: Sku
    quantity: LineQuantity

    def to_domain(self) -> Line:
        return Line(sku=self.sku, quantity=self.quantity)


# The lines of a reservation or a shipment request.
Lines = Annotated[list[LineItem], Field(min_length=1, max_length=fields.MAX_LINES_PER_ORDER)]


class LinePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str
    quantity: int


def _at_least_one_field(schema: dict[str, Any]) -> None:
    """The document says what PartialUpdate checks: at least one field, each a
    value of its type when given (null is taken as "not given", so the
    document leaves it out)."""
    schema["anyOf"] = [{"required": [name]} for name in schema["properties"]]
    for prop in schema["properties"].values():
        options = [option for option in prop.pop("anyOf", []) if option.get("type") != "null"]
        if options:
            prop.update(options[0])
        prop.pop("default", None)


class PartialUpdate(StrictRequest):
    """A PUT body that changes only the fields it names, each optional (None:
    not given), and at least one: an empty body is a 422 that says so."""

    model_config = ConfigDict(json_schema_extra=_at_least_one_field)

    @model_validator(mode="after")
    def _something_to_set(self) -> Self:
        names = list(type(self).model_fields)
        if all(getattr(self, name) is None for name in names):
            raise ValueError(f"give {', '.join(names[:-1])}, {names[-1]} or both")
        return self


class ErrorDetail(BaseModel):
    code: str
    message: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorDetail(ErrorDetail):
    fields: list[FieldError]


class ValidationErrorPublic(BaseModel):
    detail: ValidationErrorDetail


class ErrorPublic(BaseModel):
    detail: ErrorDetail


def error_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error codes a route may answer with."""
    codes_by_status: dict[int, list[str]] = {}
    for code in codes:
        codes_by_status.setdefault(HTTP_STATUS[code], []).append(code)
    return {
        status: {"model": ErrorPublic, "description": " or ".join(status_codes)}
        for status, status_codes in sorted(codes_by_status.items())
    }


def edge_responses() -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for what any route with a body or parameters may answer:
    the HTTP guard's refusals and the validation error shape."""
    return {
        400: {"model": ErrorPublic, "description": "MALFORMED_JSON or REQUEST_REJECTED"},
        413: {"model": ErrorPublic, "description": "BODY_TOO_LARGE"},
        415: {"model": ErrorPublic, "description": "UNSUPPORTED_MEDIA_TYPE"},
        422: {"model": ValidationErrorPublic, "description": "REQUEST_REJECTED (fields)"},
    }


EntryT = TypeVar("EntryT", bound=BaseModel)


def ledger_entries(
    page: Sequence[Dated[Any]], public: type[BaseModel], entry: type[EntryT]
) -> list[EntryT]:
    """A ledger page's resources in their public shape, each with when it was
    made and last changed."""
    return [
        entry(
            **public.model_validate(dated.resource).model_dump(),
            created_at=dated.created_at,
            updated_at=dated.updated_at,
        )
        for dated in page
    ]


def next_after(
    page: Sequence[Dated[Any]], limit: int, resource_id: Callable[[Any], str]
) -> str | None:
    """The `after` of the next page: the last id of a full page, None after the last."""
    return resource_id(page[-1].resource) if len(page) == limit else None
