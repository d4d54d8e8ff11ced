"""The provider's JWKS while the provider fails (ordersaga.runtime.auth.RemoteJwks):
with no keys cached, requests are refused with 503 AUTH_UNAVAILABLE in the time
of one fetch, not one fetch each; each failed fetch is one log line naming the
URL and the cause."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from ordersaga.runtime.auth import AuthError, DevIssuer, RemoteJwks
from tests.silent_server import silent_server

# A fetch timeout short enough for tests; the default is 5 s.
TIMEOUT = 0.5
CONCURRENT = 8
# Parts of the URL that may be credentials: the log line must leave them out.
PASSWORD, QUERY_KEY = "hunter2-password", "sekrit-query-key"


@pytest.fixture
async def hung_issuer() -> AsyncIterator[str]:
    """A JWKS URL whose server accepts connections and never answers."""
    async with silent_server() as port:
        yield f"http://jwks:{PASSWORD}@127.0.0.1:{port}/jwks.json?key={QUERY_KEY}"


def _client(answer: Callable[[], httpx.Response], fetches: list[float]) -> httpx.AsyncClient:
    def handle(_request: httpx.Request) -> httpx.Response:
        fetches.append(time.monotonic())
        return answer()

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


def _assert_unavailable(outcome: BaseException | object) -> None:
    assert isinstance(outcome, AuthError), outcome
    assert (outcome.status_code, outcome.code) == (503, "AUTH_UNAVAILABLE")


async def test_requests_queued_behind_a_hung_issuer_fail_with_its_fetch_not_one_fetch_each(
    hung_issuer: str,
) -> None:
    keys = RemoteJwks(hung_issuer, timeout_seconds=TIMEOUT)
    started = time.monotonic()
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(keys.key_for("k1") for _ in range(CONCURRENT)), return_exceptions=True),
        timeout=CONCURRENT * TIMEOUT + 5,
    )
    elapsed = time.monotonic() - started
    for outcome in outcomes:
        _assert_unavailable(outcome)
    # One fetch timeout for all of them; each waiting its turn took CONCURRENT of them.
    assert elapsed < 3 * TIMEOUT, f"{CONCURRENT} requests took {elapsed:.1f} s"


async def test_after_a_failed_fetch_requests_fail_at_once_until_the_backoff_ends() -> None:
    fetches: list[float] = []
    async with _client(lambda: httpx.Response(503), fetches) as http:
        keys = RemoteJwks("http://idp.test/jwks.json", http=http, failure_backoff_seconds=0.5)
        for _ in range(3):
            with pytest.raises(AuthError) as refused:
                await keys.key_for("k1")
            _assert_unavailable(refused.value)
        assert len(fetches) == 1, "within the backoff no request asks the provider again"
        await asyncio.sleep(0.6)
        with pytest.raises(AuthError) as refused:
            await keys.key_for("k1")
        _assert_unavailable(refused.value)
        assert len(fetches) == 2, "after the backoff a request asks again"


async def test_a_failed_fetch_is_one_error_line_naming_the_url_and_the_cause(
    hung_issuer: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = RemoteJwks(hung_issuer, timeout_seconds=TIMEOUT)
    with caplog.at_level(logging.INFO):
        await asyncio.wait_for(
            asyncio.gather(
                *(keys.key_for("k1") for _ in range(CONCURRENT)), return_exceptions=True
            ),
            timeout=CONCURRENT * TIMEOUT + 5,
        )
    lines = [r for r in caplog.records if r.name == "ordersaga.runtime.auth"]
    assert [r.levelname for r in lines] == ["ERROR"], [r.getMessage() for r in lines]
    message = lines[0].getMessage()
    port = httpx.URL(hung_issuer).port
    assert f"http://127.0.0.1:{port}/jwks.json" in message, message
    assert f"no answer within {TIMEOUT:g} s" in message, message
    assert "\n" not in message and lines[0].exc_info is None
    assert PASSWORD not in message and QUERY_KEY not in message, message


async def test_a_failed_refresh_with_cached_keys_is_one_warning_naming_the_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jwks = DevIssuer.in_data_dir(tmp_path).jwks()
    answers = iter([httpx.Response(200, json=jwks), httpx.Response(500)])
    fetches: list[float] = []
    async with _client(lambda: next(answers), fetches) as http:
        keys = RemoteJwks("http://idp.test/jwks.json", http=http, min_refresh_seconds=0.0)
        kid = jwks["keys"][0]["kid"]
        assert (await keys.key_for(kid)).key_id == kid
        with caplog.at_level(logging.INFO), pytest.raises(AuthError) as refused:
            await keys.key_for("rotated-kid")  # unknown: refetched, and that fails
    # The cached keys still answer; the unknown kid is refused as before.
    assert refused.value.status_code == 401
    lines = [r for r in caplog.records if r.name == "ordersaga.runtime.auth"]
    assert [r.levelname for r in lines] == ["WARNING"]
    message = lines[0].getMessage()
    assert "http://idp.test/jwks.json" in message, message
    assert "HTTP 500 Internal Server Error" in message, message
    assert "\n" not in message


async def test_an_answer_that_is_not_a_json_object_is_unavailable_not_a_crash() -> None:
    fetches: list[float] = []
    async with _client(lambda: httpx.Response(200, json=["not", "a", "jwks"]), fetches) as http:
        keys = RemoteJwks("http://idp.test/jwks.json", http=http)
        with pytest.raises(AuthError) as refused:
            await keys.key_for("k1")
    _assert_unavailable(refused.value)
