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
# Free text from people (names, streets): any printable character; whitespace
# around it is stripped and a blank value refused.
Text = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=fields.TEXT_MAX_LENGTH,
        pattern=fields.TEXT_PATTERN,
    ),
]
City = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=fields.CITY_MAX_LENGTH,
        pattern=fields.TEXT_PATTERN,
    ),
]
PostalCode = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=fields.POSTAL_CODE_MAX_LENGTH,
        pattern=fields.POSTAL_CODE_PATTERN,
    ),
]
