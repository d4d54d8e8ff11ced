"""The pydantic types of the fields an order carries, for the API and the services.

Built once from contracts.fields, so that the API (at the edge) and every
service (behind it) check a field by one definition: what the API accepts, no
service refuses for its shape. Lower layers see only contracts.fields' plain
constants (contracts imports no pydantic).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

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
