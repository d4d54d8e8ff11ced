"""How fast one customer may place orders, and how many may be open at once.

The rate is counted where every replica sees it.

The `limits` library does the counting: in process memory by default (one API
process, `make dev`), in Redis when ORDERSAGA_RATE_LIMIT_STORAGE_URL names one,
so that several API replicas share one count per customer. A sliding window
counter: the last window's count, weighted by how much of it still overlaps,
plus the current one's, so there is no burst of twice the limit at a window's
edge. (The library's moving window keeps every hit and, in process memory,
scans them all on a thread after every hit: half a millisecond of CPU per
order and most of the API's thread hand-offs; docs/performance.md.) In
process memory the library's storage also sweeps out expired keys after every
hit, walking every key it holds; MemorySweptEachSecond sweeps once a second.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import coredis.exceptions
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import ConcurrentUpdateError, ConfigurationError, StorageError
from limits.storage import storage_from_string

from api.errors import RateLimited, RateLimitUnavailable, TooManyOpenOrders
from ordersaga.runtime.settings import url_for_logs

log = logging.getLogger(__name__)

# The async flavour of a storage URL: "redis://h:p" -> "async+redis://h:p".
_ASYNC_PREFIX = "async+"
_IN_MEMORY = "async+memory://"
STORAGE_URL_SETTING = "ORDERSAGA_RATE_LIMIT_STORAGE_URL"

# coredis, the library's async Redis client, waits without end by default, for
# a connection and for each answer: a Redis that accepts connections but never
# answers (paused, swapping, a half-open connection) would hold every order
# request for good. Redis answers in about a millisecond, so a third of a
# second is ample; the client tries a command three times (its default retry
# policy), so an unresponsive Redis costs an order about 1.5 s before its 503.
REDIS_TIMEOUT_SECONDS = 0.3

# What the storage raises when it cannot count, so the order is refused with a
# 503 rather than let past the limit. Anything else is a bug and a 500.
STORAGE_UNAVAILABLE: tuple[type[Exception], ...] = (
    coredis.exceptions.ConnectionError,  # refused, reset, unknown host, still loading
    coredis.exceptions.TimeoutError,  # REDIS_TIMEOUT_SECONDS passed
    StorageError,  # the library's wrapper of the above, should it ever wrap them
    ConcurrentUpdateError,  # the library gave up on a contended count
    coredis.exceptions.ReadOnlyError,  # a replica, say mid-failover: it cannot count
)
# What Redis says when it will not serve these credentials: the order is refused
# the same way, but this does not pass by itself, so it is an ERROR line that
# names the setting to fix.
STORAGE_REFUSED_CREDENTIALS: tuple[type[Exception], ...] = (
    coredis.exceptions.AuthenticationError,  # wrong user or password, or none given
    coredis.exceptions.AuthorizationError,  # an ACL user without the commands it needs
)


def async_storage_url(url: str) -> str:
    return url if url.startswith(_ASYNC_PREFIX) else _ASYNC_PREFIX + url


class MemorySweptEachSecond(MemoryStorage):
    """The library's in-process storage, sweeping out expired keys at most once a second.

    The library starts a sweep after every hit, and a sweep walks every key it
    holds: every customer of the last two windows. With 4000 of them a hit
    cost 0.37 ms of CPU, against 0.011 ms with this storage
    (docs/performance.md), and the cost grows with the rate of orders. The
    sweep only frees memory: a read drops an expired key itself, so counts are
    the same; memory holds at most a second's more keys.

    It overrides the library's private scheduling method. Should a release
    rename it, the library's own sweep after every hit runs again (counts
    unchanged, the CPU back) and tests/unit/test_rate_limit_storage.py fails.
    """

    SWEEP_EVERY_SECONDS = 1.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._next_sweep = 0.0

    async def _MemoryStorage__schedule_expiry(self) -> None:
        now = self._clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_EVERY_SECONDS
        await super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]


class OrderRateLimit:
    def __init__(self, limit: str, storage_url: str) -> None:
        """Raises ValueError, naming ORDERSAGA_RATE_LIMIT_STORAGE_URL (its
        password hidden), when the library cannot use that storage."""
        self._item: RateLimitItem = parse(limit)
        url = async_storage_url(storage_url)
        try:
            storage = (
                MemorySweptEachSecond()
                if url == _IN_MEMORY
                else storage_from_string(url, **_storage_options(url))
            )
        except ConfigurationError as error:
            raise ValueError(_storage_problem(storage_url, str(error))) from None
        if not isinstance(storage, Storage):
            raise ValueError(_storage_problem(storage_url, "not an async storage"))
        self._storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self.description = str(self._item)

    async def check(self, customer_id: str) -> None:
        """Count one order for the customer, or raise RateLimited with Retry-After
        (RateLimitUnavailable, a 503, when the storage cannot count it)."""
        try:
            if await self._limiter.hit(self._item, "place_order", customer_id):
                return
            stats = await self._limiter.get_window_stats(self._item, "place_order", customer_id)
        except STORAGE_UNAVAILABLE as error:
            # Expected while Redis is down: one line, no traceback.
            log.warning(
                "order rate limit storage unavailable, order refused: %s: %s",
                type(error).__name__,
                error,
                extra={"customer_id": customer_id},
            )
            raise _unavailable() from None
        except STORAGE_REFUSED_CREDENTIALS as error:
            log.error(
                "order rate limit storage refused this API's credentials, order refused; "
                "check the user and password in %s: %s: %s",
                STORAGE_URL_SETTING,
                type(error).__name__,
                error,
                extra={"customer_id": customer_id},
            )
            raise _unavailable() from None
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        log.info("order rate limit reached", extra={"customer_id": customer_id})
        raise RateLimited(
            f"too many orders: at most {self.description} per customer; retry later",
            retry_after_seconds=retry_after,
        )


def _unavailable() -> RateLimitUnavailable:
    # The customer is told no more than that the limit cannot be checked: why
    # is the operator's business, and in the log.
    return RateLimitUnavailable(
        "the order rate limit cannot be checked right now; retry later", retry_after_seconds=1
    )


def _storage_options(url: str) -> dict[str, float]:
    """Bounded waits for a Redis storage (REDIS_TIMEOUT_SECONDS)."""
    scheme = urlsplit(url).scheme.removeprefix(_ASYNC_PREFIX)
    if scheme.partition("+")[0] in ("redis", "rediss"):
        return {"connect_timeout": REDIS_TIMEOUT_SECONDS, "stream_timeout": REDIS_TIMEOUT_SECONDS}
    return {}


def _storage_problem(storage_url: str, reason: str) -> str:
    """One line naming the setting, with the URL's secrets (a password, a
    query) hidden: the library's reason may quote the URL whole."""
    shown = url_for_logs(storage_url)
    if shown != storage_url:
        reason = reason.replace(async_storage_url(storage_url), async_storage_url(shown))
        reason = reason.replace(storage_url, shown)
        if any(secret in reason for secret in _secrets_of(storage_url)):
            reason = "see the library's documentation of storage URLs"
    return (
        f"{STORAGE_URL_SETTING}: cannot use {shown!r} as the order rate limit's storage "
        f"({reason}); use memory:// (one API process) or redis://host:6379 (shared)"
    )


def _secrets_of(url: str) -> list[str]:
    """The parts of `url` that url_for_logs hides: its user, password and query."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    return [part for part in (parts.netloc.rpartition("@")[0], parts.query) if part]


class OpenOrderCap:
    """At most `cap` open orders per customer, without a visibility count per order.

    A count of the customer's open orders is a visibility query, which cost
    the embedded server about 5 ms of CPU per order placed (docs/performance.md).
    So each customer's count is kept for `fresh_for` seconds, and every order
    this process starts for them is added to it: an upper bound, since orders
    that finished meanwhile are still counted. The count is taken again once
    it is older than that, and always before a refusal, so a refusal rests on
    a fresh count. What another API replica placed in the last `fresh_for`
    seconds is missed; the shared rate limit bounds how much that can be.
    """

    def __init__(
        self,
        cap: int,
        *,
        fresh_for: float = 10.0,
        max_customers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cap = cap
        self._fresh_for = fresh_for
        self._max_customers = max_customers
        self._clock = clock
        # customer -> (open orders, when counted); least recently used first.
        self._known: OrderedDict[str, tuple[int, float]] = OrderedDict()

    async def check(self, customer_id: str, count: Callable[[str], Awaitable[int]]) -> None:
        """Raise TooManyOpenOrders when the customer already has `cap` open orders."""
        now = self._clock()
        known = self._known.get(customer_id)
        if known is not None and known[0] < self.cap and now - known[1] < self._fresh_for:
            self._known.move_to_end(customer_id)
            return
        open_orders = await count(customer_id)
        self._remember(customer_id, open_orders, now)
        if open_orders >= self.cap:
            log.info("open-order cap reached", extra={"customer_id": customer_id})
            raise TooManyOpenOrders(
                f"at most {self.cap} open orders per customer; retry when some have finished",
                retry_after_seconds=30,
            )

    def placed(self, customer_id: str) -> None:
        """Count an order this process has just started for the customer."""
        known = self._known.get(customer_id)
        if known is not None:
            self._known[customer_id] = (known[0] + 1, known[1])

    def _remember(self, customer_id: str, open_orders: int, counted_at: float) -> None:
        self._known[customer_id] = (open_orders, counted_at)
        self._known.move_to_end(customer_id)
        while len(self._known) > self._max_customers:
            self._known.popitem(last=False)
