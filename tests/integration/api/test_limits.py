"""The edge's limits: orders per customer per window (shared by replicas through
Redis), open orders per customer, page tokens that cannot be forged, bodies
and currencies the catalog does not sell."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from api.app import create_app
from api.limits import OrderRateLimit
from api.temporal_orders import encode_page_token, visibility_query
from ordersaga.runtime.settings import Settings
from tests.fakes import FakeDomainActivities
from tests.integration.api.support import (
    NewOrder,
    api_process,
    asgi_client,
    bearer,
    customer_token,
    eventually,
    new_customer_id,
    order_body,
    place,
    verifier_for_tests,
)
from tests.rate_windows import clear_of_a_window_edge
from tests.silent_server import silent_server

# Set by .ci/run (which starts Redis when it is not running); a machine without
# Redis skips these two tests and says so, as with ORDERSAGA_TEST_POSTGRES_URL.
REDIS_URL = os.environ.get("ORDERSAGA_TEST_REDIS_URL", "")
needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="ORDERSAGA_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)"
)


def _limited_settings(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update=changes)


async def test_a_customer_over_the_rate_limit_gets_429_with_retry_after(
    settings: Settings, temporal_client: Client, fakes: FakeDomainActivities, new_order: NewOrder
) -> None:
    app = create_app(
        _limited_settings(settings, api_order_rate_limit="2/minute"),
        client=temporal_client,
        verifier=verifier_for_tests(),
    )
    customer = new_customer_id()
    await clear_of_a_window_edge(60)
    async with asgi_client(app) as api:
        answers = [await place(api, new_order(customer_id=customer)) for _ in range(3)]
        other = await place(api, new_order())

    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].json()["detail"]["code"] == "RATE_LIMITED"
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
    assert other.status_code == 202, "one customer's limit must not throttle another"


async def test_a_retry_of_an_order_already_accepted_gets_the_order_not_the_rate_limit(
    settings: Settings, temporal_client: Client, fakes: FakeDomainActivities, new_order: NewOrder
) -> None:
    """The contract: the same key and body again return the same order. A
    client whose first answer was lost retries, perhaps once its customer has
    reached the limit; the retry must not read as a refusal of the order."""
    app = create_app(
        _limited_settings(settings, api_order_rate_limit="2/minute"),
        client=temporal_client,
        verifier=verifier_for_tests(),
    )
    customer = new_customer_id()
    first = new_order(customer_id=customer)
    await clear_of_a_window_edge(60)
    async with asgi_client(app) as api:
        accepted = await place(api, first)
        assert (await place(api, new_order(customer_id=customer))).status_code == 202
        refused = await place(api, new_order(customer_id=customer))
        retried = await place(api, first)
        # The same key with another body is still the key's misuse, limit or not.
        misused = await place(
            api, replace(first, body={**first.body, "items": [{"sku": "sku_mug", "quantity": 3}]})
        )

    assert refused.status_code == 429, refused.text
    assert retried.status_code == 202, retried.text
    assert retried.json() == accepted.json()
    assert retried.headers["Location"] == accepted.headers["Location"]
    assert misused.status_code == 422, misused.text
    assert misused.json()["detail"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_a_customer_with_too_many_open_orders_gets_429(
    settings: Settings, temporal_client: Client, fakes: FakeDomainActivities, new_order: NewOrder
) -> None:
    app = create_app(
        _limited_settings(settings, api_max_open_orders_per_customer=1),
        client=temporal_client,
        verifier=verifier_for_tests(),
    )
    customer = new_customer_id()
    first = new_order(customer_id=customer)
    gate = fakes.hold_calls("reserve_inventory", first.order_id)  # keeps it open
    async with asgi_client(app) as api:
        assert (await place(api, first)).status_code == 202

        async def refused() -> httpx.Response | None:
            response = await place(api, new_order(customer_id=customer))
            return response if response.status_code == 429 else None

        response = await eventually(refused)
        # A retry of the open order itself gets the order, not the cap.
        retried = await place(api, first)
        gate.set()
    assert response.json()["detail"]["code"] == "TOO_MANY_OPEN_ORDERS"
    assert "Retry-After" in response.headers
    assert retried.status_code == 202, retried.text
    assert retried.json()["order_id"] == first.order_id


@needs_redis
async def test_the_rate_limit_counts_in_redis_for_every_replica() -> None:
    """Two limiters (as two replicas would have), one Redis: one count."""
    customer = new_customer_id()
    replicas = [OrderRateLimit("3/minute", REDIS_URL) for _ in range(2)]
    await clear_of_a_window_edge(60)
    for attempt in range(3):
        await replicas[attempt % 2].check(customer)
    from api.errors import RateLimited

    with pytest.raises(RateLimited):
        await replicas[1].check(customer)
    with pytest.raises(RateLimited):
        await replicas[0].check(customer)
    # In memory each would have counted alone and let the fourth through.
    alone = [OrderRateLimit("3/minute", "memory://") for _ in range(2)]
    for attempt in range(4):
        await alone[attempt % 2].check(customer)


@pytest.fixture
def two_api_processes(
    temporal_client: Client, jwks_url: str, tmp_path: Path
) -> Iterator[list[str]]:
    """Two `ordersaga api` processes, as two replicas behind a load balancer,
    sharing one Redis."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                api_process(
                    temporal_client,
                    jwks_url,
                    tmp_path / f"replica-{replica}",
                    ORDERSAGA_RATE_LIMIT_STORAGE_URL=REDIS_URL,
                    ORDERSAGA_API_ORDER_RATE_LIMIT="3/minute",
                )
            )
            for replica in range(2)
        ]


@needs_redis
async def test_the_rate_limit_holds_across_two_api_processes(
    two_api_processes: list[str], fakes: FakeDomainActivities
) -> None:
    customer = new_customer_id()
    headers = bearer(customer_token(customer))
    codes: list[int] = []
    await clear_of_a_window_edge(60)
    async with httpx.AsyncClient(timeout=10) as http:
        for attempt in range(5):
            response = await http.post(
                f"{two_api_processes[attempt % 2]}/orders",
                json=order_body(),
                headers={**headers, "Idempotency-Key": f"replicas-{attempt}"},
            )
            codes.append(response.status_code)
    assert codes == [202, 202, 202, 429, 429], codes


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never answers, as a hung Redis would."""
    async with silent_server() as port:
        yield port


def api_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What this request logged: not the session's shared worker (temporalio),
    which may be retrying another test's order's activity meanwhile, with its
    traceback."""
    return [r for r in caplog.records if r.name.partition(".")[0] != "temporalio"]


@pytest.mark.parametrize("storage", ["refusing", "silent"])
async def test_an_order_while_the_rate_limit_storage_is_unreachable_gets_503_not_a_pass(
    settings: Settings,
    temporal_client: Client,
    new_order: NewOrder,
    silent_port: int,
    storage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fail closed: no order goes past a limit that cannot count it. Redis
    being down is expected, so one WARNING line and no traceback."""
    port = {"refusing": 1, "silent": silent_port}[storage]  # nothing listens on 1
    app = create_app(
        _limited_settings(
            settings, rate_limit_storage_url=SecretStr(f"redis://127.0.0.1:{port}/0")
        ),
        client=temporal_client,
        verifier=verifier_for_tests(),
    )
    started = time.monotonic()
    with caplog.at_level("INFO"):
        async with asgi_client(app) as api:
            response = await asyncio.wait_for(place(api, new_order()), timeout=10)
    assert time.monotonic() - started < 5.0, "a hung Redis must not hold the request"
    assert response.status_code == 503, response.text
    assert response.json()["detail"]["code"] == "RATE_LIMIT_UNAVAILABLE"
    assert int(response.headers["Retry-After"]) >= 1
    assert not [r for r in api_records(caplog) if r.exc_info or r.levelno >= logging.ERROR]
    warnings = [r for r in caplog.records if r.name == "api.limits"]
    assert [r.levelname for r in warnings] == ["WARNING"]


@needs_redis
async def test_an_order_while_redis_refuses_the_apis_credentials_gets_503_and_one_error_line(
    settings: Settings,
    temporal_client: Client,
    new_order: NewOrder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong user or password in the storage URL: the order is refused as
    when Redis is down, never a 500; the operator gets one ERROR line naming
    the setting, without the password and without a traceback."""
    host = REDIS_URL.split("://", 1)[1].rpartition("@")[2]
    wrong = f"redis://ordersaga-no-such-user:wrong-s3cret@{host}"
    app = create_app(
        _limited_settings(settings, rate_limit_storage_url=SecretStr(wrong)),
        client=temporal_client,
        verifier=verifier_for_tests(),
    )
    with caplog.at_level("INFO"):
        async with asgi_client(app) as api:
            response = await asyncio.wait_for(place(api, new_order()), timeout=10)
    assert response.status_code == 503, response.text
    assert response.json()["detail"]["code"] == "RATE_LIMIT_UNAVAILABLE"
    assert "credential" not in response.text, "why is the operator's business"
    assert not [r for r in api_records(caplog) if r.exc_info]
    lines = [r for r in caplog.records if r.name == "api.limits"]
    assert [r.levelname for r in lines] == ["ERROR"]
    assert "ORDERSAGA_RATE_LIMIT_STORAGE_URL" in lines[0].getMessage()
    assert "wrong-s3cret" not in lines[0].getMessage()


def test_a_rate_limit_storage_url_the_library_cannot_use_stops_app_creation(
    settings: Settings,
) -> None:
    for url in ("foo://x", "foo://user:s3cret@x:1"):
        with pytest.raises(ValueError, match="ORDERSAGA_RATE_LIMIT_STORAGE_URL") as refused:
            create_app(
                _limited_settings(settings, rate_limit_storage_url=SecretStr(url)),
                verifier=verifier_for_tests(),
            )
        assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize(
    "forge",
    [
        # The old, unkeyed check: sha256 over the query and the token.
        pytest.param("unkeyed", id="unkeyed-hash"),
        pytest.param("other-key", id="signed-with-another-key"),
        pytest.param("garbage", id="garbage"),
    ],
)
async def test_a_forged_page_token_is_a_fast_400_that_never_reaches_temporal(
    api: httpx.AsyncClient, forge: str
) -> None:
    # `api` checks page tokens with the key api_settings() gives it.
    query = visibility_query(status=None, customer_id=None)
    token = {
        "unkeyed": encode_page_token(b"\x0a\x0bforged", query, b""),
        "other-key": encode_page_token(b"\x0a\x0bforged", query, b"not-the-api-key"),
        "garbage": "!!!not-base64!!!",
    }[forge]
    started = time.monotonic()
    response = await api.get("/orders", params={"next_page_token": token})
    assert response.status_code == 400, response.text
    assert response.json()["detail"]["code"] == "INVALID_PAGE_TOKEN"
    assert time.monotonic() - started < 1.0


async def test_an_order_in_a_currency_the_catalog_does_not_sell_is_refused_at_the_edge(
    api: httpx.AsyncClient, new_order: NewOrder
) -> None:
    for currency, code in (("USD", "CURRENCY_NOT_SOLD"), ("ZZZ", "INVALID_REQUEST")):
        response = await place(api, new_order(currency=currency))
        assert response.status_code == 422, response.text
        assert response.json()["detail"]["code"] == code


async def test_inbound_baggage_never_becomes_log_fields(
    api: httpx.AsyncClient,
    new_order: NewOrder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    order = new_order()
    with caplog.at_level("INFO"):
        response = await api.post(
            "/orders",
            json=order.body,
            headers={**order.headers, "baggage": "order_id=ord_forged,step=refund_payment"},
        )
    assert response.status_code == 202
    await asyncio.sleep(0)
    for record in caplog.records:
        assert getattr(record, "order_id", None) != "ord_forged"
        assert getattr(record, "step", None) != "refund_payment"


def test_settings_for_production_need_an_issuer_and_a_page_token_key(tmp_path: Path) -> None:
    bare = Settings(dev_mode=False, data_dir=tmp_path)
    with pytest.raises(ValueError, match="ORDERSAGA_AUTH_JWKS_URL"):
        create_app(bare)
    with_issuer = bare.model_copy(
        update={
            "auth_jwks_url": "https://issuer.example/jwks",
            "auth_issuer": "https://issuer.example/",
            "auth_audience": "ordersaga",
        }
    )
    with pytest.raises(ValueError, match="ORDERSAGA_API_PAGE_TOKEN_KEY"):
        create_app(with_issuer)
    create_app(with_issuer.model_copy(update={"api_page_token_key": SecretStr("k")}))
