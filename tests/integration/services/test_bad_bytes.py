"""Bytes no client should send never get a 5xx, and never cost the connection.

Each service runs under uvicorn, and one raw keep-alive connection carries a
bad request and then a good one: the bad one gets a 4xx in the error shape,
and the good one, on the same connection, still succeeds. (Before the guard, a
lone surrogate was a 500 on every POST, and the server then dropped the
connection under the next request.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI

from tests.integration.services.support import (
    WORKER_TOKEN,
    Databases,
    charge,
    inventory_app,
    new_key,
    payments_app,
    reservation,
    serving_over_tcp,
    shipment,
    shipping_app,
)

# Each service's create endpoint, a good body for it, and an action on a resource.
SERVICES: dict[str, tuple[Callable[[str], FastAPI], str, Callable[[], dict[str, Any]], str]] = {
    "inventory": (
        inventory_app,
        "/reservations",
        lambda: reservation("sku_mug"),
        "/reservations/res_x/release",
    ),
    "payments": (payments_app, "/charges", charge, "/charges/ch_x/refund"),
    "shipping": (shipping_app, "/shipments", shipment, "/shipments/shp_x/cancel"),
}
JSON_TYPE = "application/json"
OVERSIZE = 64 * 1024 + 1

# name: (body, Content-Type or None, expected status)
BAD_REQUESTS: dict[str, tuple[bytes, str | None, int]] = {
    "invalid-utf8": (b'{"order_id": "ord_\xff\xfe"}', JSON_TYPE, 400),
    "lone-surrogate": (b'{"order_id": "ord_\\ud800", "lines": []}', JSON_TYPE, 400),
    "deep-nesting": (b'{"order_id": ' + b"[" * 200 + b"]" * 200 + b"}", JSON_TYPE, 400),
    "5000-digit-number": (b'{"amount_cents": ' + b"7" * 5000 + b"}", JSON_TYPE, 400),
    "wrong-content-type": (b'{"order_id": "ord_1"}', "text/plain", 415),
    "missing-content-type": (b'{"order_id": "ord_1"}', None, 415),
    "oversize": (b'{"pad": "' + b"x" * OVERSIZE + b'"}', JSON_TYPE, 413),
}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawConnection:
    """One HTTP/1.1 keep-alive connection, byte for byte under the test's control."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str | None = None
    ) -> Response:
        head = [
            f"{method} {path} HTTP/1.1",
            "Host: service.test",
            f"Authorization: Bearer {WORKER_TOKEN}",
            f"Idempotency-Key: {new_key()['Idempotency-Key']}",
            f"Content-Length: {len(body)}",
        ]
        if content_type is not None:
            head.append(f"Content-Type: {content_type}")
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self._writer.drain()
        async with asyncio.timeout(10):
            status_line = await self._reader.readuntil(b"\r\n")
            headers: dict[str, str] = {}
            while (line := await self._reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            content = await self._reader.readexactly(int(headers["content-length"]))
        return Response(int(status_line.split()[1]), headers, content)


@pytest.fixture(params=sorted(SERVICES))
async def service(
    request: pytest.FixtureRequest, databases: Databases
) -> AsyncIterator[tuple[str, int]]:
    app = SERVICES[request.param][0](await databases.new(request.param))
    async with serving_over_tcp(app) as port:
        yield request.param, port


@pytest.mark.parametrize("bad", sorted(BAD_REQUESTS))
async def test_bad_bytes_get_a_4xx_and_the_connection_lives_on(
    service: tuple[str, int], bad: str
) -> None:
    name, port = service
    _, collection, good_body, action = SERVICES[name]
    body, content_type, expected = BAD_REQUESTS[bad]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = RawConnection(reader, writer)
    try:
        for path in (collection, action):
            refused = await connection.request("POST", path, body, content_type)
            assert refused.status == expected, (path, refused.body)
            assert refused.json()["detail"]["code"] in {
                "MALFORMED_JSON",
                "UNSUPPORTED_MEDIA_TYPE",
                "BODY_TOO_LARGE",
            }
            assert isinstance(refused.json()["detail"]["message"], str)
            assert refused.headers.get("connection") != "close"

            good = json.dumps(good_body()).encode()
            made = await connection.request("POST", collection, good, JSON_TYPE)
            assert made.status == 201, made.body
    finally:
        writer.close()
        await writer.wait_closed()
