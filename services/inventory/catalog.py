"""The products a fresh inventory database starts with.

Seeded once, at start-up, only when the products table is empty: a restart
never resets stock. Operators and tests add or restock products through the
admin endpoint `PUT /products/{sku}`.

    sku_mug       100   a mug
    sku_tshirt    100   a t-shirt
    sku_poster    100   a poster
    sku_sticker  1000   a sticker (plenty: for load tests)
    sku_hoodie     25   a hoodie (scarce: runs out in demos)
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

CATALOG: Mapping[str, int] = MappingProxyType(
    {
        "sku_mug": 100,
        "sku_tshirt": 100,
        "sku_poster": 100,
        "sku_sticker": 1000,
        "sku_hoodie": 25,
    }
)
