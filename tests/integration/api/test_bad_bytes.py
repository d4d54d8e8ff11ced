"""Bytes no client should send never get a 5xx from the API, and never cost the
connection: a real `ordersaga api` process, one raw keep-alive connection, a bad
request and then a good one on it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.fakes import FakeDomainActivities
from tests.integration.api.support import (
    api_process,
    bearer,
    customer_token,
    operator_token,
    order_body,
)
from tests.raw_http import (
    BAD_REQUESTS,
    JSON_TYPE,
    STRANGERS,
    assert_every_bad_request_is_refused_for_its_caller,
    assert_no_route_answers_by_its_body,
    raw_connection,
)


@pytest.fixture(scope="module")
def api_port(
    temporal_client: Client, jwks_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    data_dir: Path = tmp_path_factory.mktemp("bad-bytes-api")
    with api_process(
        temporal_client, jwks_url, data_dir, ORDERSAGA_API_ORDER_RATE_LIMIT="1000/minute"
    ) as url:
        yield int(url.rpartition(":")[2])


@pytest.mark.parametrize("bad", sorted(BAD_REQUESTS))
async def test_bad_bytes_get_a_4xx_and_the_connection_lives_on(
    api_port: int, fakes: FakeDomainActivities, bad: str
) -> None:
    body, content_type, expected = BAD_REQUESTS[bad]
    async with raw_connection(api_port, bearer(customer_token("cus_bad_bytes"))) as connection:
        refused = await connection.request("POST", "/orders", body, content_type)
        assert refused.status == expected, refused.body
        detail = refused.json()["detail"]
        assert detail["code"] in {"MALFORMED_JSON", "UNSUPPORTED_MEDIA_TYPE", "BODY_TOO_LARGE"}
        assert isinstance(detail["message"], str)
        assert refused.headers.get("connection") != "close"

        good = json.dumps(order_body()).encode()
        placed = await connection.request("POST", "/orders", good, JSON_TYPE)
        assert placed.status == 202, placed.body


@pytest.mark.parametrize("stranger", sorted(STRANGERS))
async def test_a_stranger_sending_bad_bytes_is_told_to_authenticate(
    api_port: int, stranger: str
) -> None:
    """Who is calling comes before what was sent: the 401 of a request without
    a valid token, not the body's 400, 413 or 415."""
    async with raw_connection(api_port, STRANGERS[stranger]) as connection:
        await assert_every_bad_request_is_refused_for_its_caller(
            connection,
            ("/orders", "/orders/ord_x/cancel", "/orders/ord_x/compensation/resolve"),
            401,
            "UNAUTHENTICATED",
            'Bearer realm="ordersaga"',
        )


@pytest.mark.parametrize(
    ("token", "paths"),
    [
        (
            lambda: customer_token("cus_bad_bytes"),
            ("/orders/ord_x/compensation/resolve", "/orders/ord_x/compensation/retry"),
        ),
        (lambda: operator_token(), ("/orders", "/orders/ord_x/cancel")),
    ],
    ids=["customer-on-operator-routes", "operator-on-customer-routes"],
)
async def test_a_caller_the_route_does_not_admit_sending_bad_bytes_gets_the_routes_403(
    api_port: int, token: Callable[[], str], paths: tuple[str, ...]
) -> None:
    """A valid token without the route's scope is told that, not what the
    route would accept from those who have it."""
    async with raw_connection(api_port, bearer(token())) as connection:
        await assert_every_bad_request_is_refused_for_its_caller(
            connection, paths, 403, "FORBIDDEN"
        )


@pytest.mark.parametrize("caller", ["stranger", "customer"])
async def test_a_request_no_route_takes_gets_404_or_405_whatever_its_body(
    api_port: int, caller: str
) -> None:
    """The body of a request no route takes is nobody's business: the same 404
    or 405 for a good one and each bad one, from anyone; a trailing slash is
    no route either (no redirect built from the client's Host header)."""
    headers = {} if caller == "stranger" else bearer(customer_token("cus_bad_bytes"))
    async with raw_connection(api_port, headers) as connection:
        await assert_no_route_answers_by_its_body(
            connection,
            (
                ("POST", "/healthz", 405),
                ("POST", "/nope", 404),
                ("POST", "/orders/", 404),
                ("GET", "/orders/ord_x/", 404),
            ),
        )


async def test_two_authorization_headers_are_refused_whichever_comes_first(api_port: int) -> None:
    """The guard would read one, the route the other: neither may decide."""
    customer, operator = customer_token("cus_bad_bytes"), operator_token()
    async with raw_connection(api_port, {}) as connection:
        for first, second in ((customer, operator), (operator, customer)):
            for body in (b"{", json.dumps(order_body()).encode()):
                refused = await connection.request(
                    "POST",
                    "/orders",
                    body,
                    JSON_TYPE,
                    extra_headers=(
                        ("Authorization", f"Bearer {first}"),
                        ("Authorization", f"Bearer {second}"),
                    ),
                )
                assert refused.status == 400, refused.body
                assert refused.json()["detail"]["code"] == "MALFORMED_REQUEST"


async def test_a_request_head_past_64_kib_is_refused_431_and_the_connection_closed(
    api_port: int,
) -> None:
    """llhttp sets no limit on headers: unbounded, one endless header grew the
    API by hundreds of megabytes. A head that big never ends here, and is
    refused as soon as it passes the limit; a large one within it is served."""
    answer = await _answer_until_closed(
        api_port, b"GET /orders HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * (70 * 1024)
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), head
    assert b"connection: close" in head
    assert json.loads(body)["detail"]["code"] == "HEADERS_TOO_LARGE"

    async with raw_connection(api_port, {"X-Pad": "a" * (20 * 1024)}) as connection:
        served = await connection.request("GET", "/orders")
        assert served.status == 401, served.body  # routed and answered: no token


@pytest.mark.parametrize(
    "head",
    [
        b"GET /orders HTTP/1.1\r\nHost: t\r\nX-Key: a\x7fb\r\n\r\n",
        b"GET /orders HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n",
        b"GET /or ders HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /orders HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["control-character-in-a-header", "header-without-colon", "space-in-path", "bad-chunk"],
)
async def test_bytes_that_are_not_http_get_a_400_in_the_error_shape(
    api_port: int, head: bytes
) -> None:
    """What the HTTP parser refuses never reaches the app; uvicorn's own answer
    was plain text, unlike every other refusal."""
    answer = await _answer_until_closed(api_port, head)
    status_line, _, body = answer.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 400 "), answer
    assert b"content-type: application/json" in status_line
    assert b"connection: close" in status_line
    detail = json.loads(body)["detail"]
    assert detail["code"] == "MALFORMED_REQUEST"
    assert "not valid HTTP/1.1" in detail["message"]


async def _answer_until_closed(port: int, sent: bytes) -> bytes:
    """Everything the server answers `sent` with, until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(sent)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()
