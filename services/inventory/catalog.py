"""The products a fresh inventory database starts with, at their prices.

Seeded once, at start-up, only when the products table is empty: a restart
never resets stock or prices. Operators and tests add, restock or reprice
products through the admin endpoint `PUT /products/{sku}`. Prices are in minor
units of the catalog's currency (settings.catalog_currency, EUR by default).

    sku_mug       12.50   100   a mug
    sku_tshirt    20.00   100   a t-shirt
    sku_poster    15.00   100   a poster
    sku_sticker    3.00  1000   a sticker (plenty: for load tests)
    sku_hoodie    45.00    25   a hoodie (scarce: runs out in demos)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class CatalogEntry:
    price_cents: int
    available: int


CATALOG: Mapping[str, CatalogEntry] = MappingProxyType(
    {
        "sku_mug": CatalogEntry(price_cents=1250, available=100),
        "sku_tshirt": CatalogEntry(price_cents=2000, available=100),
        "sku_poster": CatalogEntry(price_cents=1500, available=100),
        "sku_sticker": CatalogEntry(price_cents=300, available=1000),
        "sku_hoodie": CatalogEntry(price_cents=4500, available=25),
    }
)
