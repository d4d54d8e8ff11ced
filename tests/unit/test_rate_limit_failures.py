"""The order rate limit when its storage fails (api/limits.py): a Redis that
refuses connections or never answers refuses the order with a 503 error in
bounded time and one WARNING line; a storage URL the library cannot use is a
ValueError naming the setting, its password hidden."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from api.errors import RateLimitUnavailable
from api.limits import OrderRateLimit
from tests.silent_server import silent_server

# Nothing listens on port 1.
REFUSING_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
async def silent_redis() -> AsyncIterator[str]:
    """A Redis that accepts connections and never answers."""
    async with silent_server() as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize("storage", ["refusing", "silent"])
async def test_an_unreachable_redis_refuses_the_order_quickly_with_one_warning(
    storage: str, silent_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = {"refusing": REFUSING_REDIS, "silent": silent_redis}[storage]
    limit = OrderRateLimit("3/minute", url)
    started = time.monotonic()
    with caplog.at_level(logging.INFO), pytest.raises(RateLimitUnavailable) as refused:
        # Bounded here too, so that a hang fails the test instead of holding it.
        await asyncio.wait_for(limit.check("cus_1"), timeout=10)
    assert time.monotonic() - started < 3.0, "an unanswering Redis must not hold the order"
    assert refused.value.status_code == 503
    assert refused.value.code == "RATE_LIMIT_UNAVAILABLE"
    assert refused.value.headers["Retry-After"] == "1"
    lines = [r for r in caplog.records if r.name == "api.limits"]
    assert [r.levelno for r in lines] == [logging.WARNING]
    assert lines[0].exc_info is None
    assert getattr(lines[0], "customer_id", None) == "cus_1"


@pytest.mark.parametrize(
    "url",
    ["foo://x", "foo://user:s3cret@x:1", "redis://:s3cret@x:99999999/0"],
)
def test_a_storage_url_the_library_cannot_use_is_a_value_error_naming_the_setting(
    url: str,
) -> None:
    with pytest.raises(ValueError, match="ORDERSAGA_RATE_LIMIT_STORAGE_URL") as refused:
        OrderRateLimit("3/minute", url)
    message = str(refused.value)
    assert "s3cret" not in message
    assert "\n" not in message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
