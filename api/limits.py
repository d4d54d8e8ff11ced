"""How fast one customer may place orders, counted where every replica sees it.

The `limits` library does the counting: in process memory by default (one API
process, `make dev`), in Redis when ORDERSAGA_RATE_LIMIT_STORAGE_URL names one,
so that several API replicas share one count per customer. A moving window:
no burst of twice the limit at a window's edge.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from api.errors import RateLimited

log = logging.getLogger(__name__)

# The async flavour of a storage URL: "redis://h:p" -> "async+redis://h:p".
_ASYNC_PREFIX = "async+"


def async_storage_url(url: str) -> str:
    return url if url.startswith(_ASYNC_PREFIX) else _ASYNC_PREFIX + url


class OrderRateLimit:
    def __init__(self, limit: str, storage_url: str) -> None:
        self._item: RateLimitItem = parse(limit)
        storage = storage_from_string(async_storage_url(storage_url))
        if not isinstance(storage, Storage):
            raise ValueError(f"{storage_url!r} is not an async rate-limit storage")
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self.description = str(self._item)

    async def check(self, customer_id: str) -> None:
        """Count one order for the customer, or raise RateLimited with Retry-After."""
        if await self._limiter.hit(self._item, "place_order", customer_id):
            return
        stats = await self._limiter.get_window_stats(self._item, "place_order", customer_id)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        log.info("order rate limit reached", extra={"customer_id": customer_id})
        raise RateLimited(
            f"too many orders: at most {self.description} per customer; retry later",
            retry_after_seconds=retry_after,
        )
