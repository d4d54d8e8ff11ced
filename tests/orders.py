"""The one order builder of the tests: a POST /orders body.

Items are SKUs and quantities only (the catalog prices them); the customer is
the bearer token's subject (tests/tokens.py), never a body field.
"""

from __future__ import annotations

from typing import Any

CUSTOMER_NAME = "Ada Lovelace"
STREET = "12 St James's Square"
POSTAL_CODE = "SW1Y 4JH"
PAYMENT_TOKEN = "tok_visa_secret_4242"


def order_body(
    *,
    sku: str = "sku_mug",
    quantity: int = 1,
    items: list[dict[str, Any]] | None = None,
    country: str = "GB",
    payment_token: str = PAYMENT_TOKEN,
    **overrides: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "items": items if items is not None else [{"sku": sku, "quantity": quantity}],
        "currency": "EUR",
        "payment": {"token": payment_token},
        "shipping_address": {
            "name": CUSTOMER_NAME,
            "line1": STREET,
            "city": "London",
            "postal_code": POSTAL_CODE,
            "country": country,
        },
    }
    body.update(overrides)
    return body
