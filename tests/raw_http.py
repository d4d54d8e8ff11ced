"""Bytes no client should send, over one raw HTTP/1.1 keep-alive connection.

The API and every service must answer each with a 4xx in their error shape and
keep the connection usable for the next, good request.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

JSON_TYPE = "application/json"
OVERSIZE = 64 * 1024 + 1

# name: (body, Content-Type or None, expected status)
BAD_REQUESTS: dict[str, tuple[bytes, str | None, int]] = {
    "invalid-utf8": (b'{"order_id": "ord_\xff\xfe"}', JSON_TYPE, 400),
    "lone-surrogate": (b'{"order_id": "ord_\\ud800", "lines": []}', JSON_TYPE, 400),
    "deep-nesting": (b'{"order_id": ' + b"[" * 200 + b"]" * 200 + b"}", JSON_TYPE, 400),
    "5000-digit-number": (b'{"amount_cents": ' + b"7" * 5000 + b"}", JSON_TYPE, 400),
    "duplicate-key": (b'{"amount_cents": 1, "amount_cents": 100000}', JSON_TYPE, 400),
    "wrong-content-type": (b'{"order_id": "ord_1"}', "text/plain", 415),
    "missing-content-type": (b'{"order_id": "ord_1"}', None, 415),
    "oversize": (b'{"pad": "' + b"x" * OVERSIZE + b'"}', JSON_TYPE, 413),
}

# Callers no app knows: each bad request above must get the app's 401 from them,
# not the refusal of its body (and a known caller a route does not admit, its 403).
STRANGERS: dict[str, dict[str, str]] = {
    "no-credential": {},
    "unknown-token": {"Authorization": "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln"},
    "basic-scheme": {"Authorization": "Basic d29ya2VyOnNlY3JldA=="},
}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawConnection:
    """One HTTP/1.1 keep-alive connection, byte for byte under the test's control;
    `headers` go with every request (credentials), with a fresh Idempotency-Key."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: dict[str, str],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._headers = headers

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = None,
        *,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> Response:
        head = [
            f"{method} {path} HTTP/1.1",
            "Host: ordersaga.test",
            *(f"{name}: {value}" for name, value in self._headers.items()),
            *(f"{name}: {value}" for name, value in extra_headers),
            f"Idempotency-Key: {uuid.uuid4().hex}",
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


@asynccontextmanager
async def raw_connection(port: int, headers: dict[str, str]) -> AsyncIterator[RawConnection]:
    """A RawConnection to 127.0.0.1:port, closed after."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield RawConnection(reader, writer, headers)
    finally:
        writer.close()
        await writer.wait_closed()


async def assert_every_bad_request_is_refused_for_its_caller(
    connection: RawConnection,
    paths: tuple[str, ...],
    status: int,
    code: str,
    challenge: str | None = None,
    *,
    method: str = "POST",
) -> None:
    """Each of BAD_REQUESTS, sent to each path by a caller the route refuses,
    gets the route's own refusal of that caller (a stranger's 401 with its
    WWW-Authenticate, or the 403 of a caller it does not admit), not the body's,
    and the connection lives on."""
    for bad, (body, content_type, _) in sorted(BAD_REQUESTS.items()):
        for path in paths:
            refused = await connection.request(method, path, body, content_type)
            assert refused.status == status, (bad, path, refused.body)
            assert refused.json()["detail"]["code"] == code
            assert refused.headers.get("www-authenticate") == challenge
            assert refused.headers.get("connection") != "close"


async def assert_no_route_answers_by_its_body(
    connection: RawConnection, requests: tuple[tuple[str, str, int], ...]
) -> None:
    """Each (method, path, status) no route takes gets the app's own 404 or 405
    whatever the body, bad or good, and never a redirect."""
    bodies = {"good": (b"{}", JSON_TYPE), **{b: (r[0], r[1]) for b, r in BAD_REQUESTS.items()}}
    for method, path, status in requests:
        for name, (body, content_type) in sorted(bodies.items()):
            answered = await connection.request(method, path, body, content_type)
            assert answered.status == status, (method, path, name, answered.body)
            assert "location" not in answered.headers
            assert isinstance(answered.json()["detail"]["code"], str)
