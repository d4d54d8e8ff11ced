"""How the API, the services and the codec server serve HTTP: uvicorn, with
start-up's objects frozen out of the collector's reach before the first request
(ordersaga.runtime.heap), and each request's head bounded (a 431 past
MAX_REQUEST_HEAD_BYTES)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ordersaga.runtime.heap import freeze_startup_objects
from ordersaga.runtime.http_guard import error_bytes

log = logging.getLogger(__name__)

# The request line and headers of one request, together. A bearer token is at
# most 8 KiB (ordersaga.runtime.auth); nginx allows 32 KiB by default, h11 16.
MAX_REQUEST_HEAD_BYTES = 64 * 1024


_HEAD_TOO_LARGE_BODY = error_bytes(
    "HEADERS_TOO_LARGE",
    f"the request line and headers are larger than {MAX_REQUEST_HEAD_BYTES} bytes",
)
_NOT_HTTP_BODY = error_bytes(
    "MALFORMED_REQUEST",
    "the request is not valid HTTP/1.1: its request line, a header or the framing "
    "of its body could not be parsed",
)


class BoundedHeadHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with each request's head bounded and its
    own refusals in the apps' error shape.

    llhttp sets no limit on the request line or the headers, and httptools
    buffers a header until it ends: a client sending one endless header would
    grow the process without bound (200 MB took the API to 400 MB in a probe).
    Past MAX_REQUEST_HEAD_BYTES the request is answered 431, in the error shape
    of every ordersaga HTTP app, and the connection closed."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_open = False
        self._head_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused below: nothing more is read
        super().data_received(data)
        if not self._head_open:
            return
        # The head is still incomplete after this chunk, so all of it belongs
        # to the head (but what ended a message before it, when pipelined).
        self._head_bytes += len(data)
        if self._head_bytes > MAX_REQUEST_HEAD_BYTES:
            self._refuse_head()

    def _refuse_head(self) -> None:
        # No client address: no log line of ordersaga's carries one.
        log.warning("refused a request whose head passed %d bytes", MAX_REQUEST_HEAD_BYTES)
        self._refuse(b"431 Request Header Fields Too Large", _HEAD_TOO_LARGE_BODY)

    def send_400_response(self, msg: str) -> None:
        """What llhttp cannot parse: uvicorn's answer is plain text ("Invalid
        HTTP request received.", already logged as one line); this one has the
        error shape every other refusal has."""
        self._refuse(b"400 Bad Request", _NOT_HTTP_BODY)

    def _refuse(self, status: bytes, body: bytes) -> None:
        """Answer and close: the parser's state says nothing of where the next
        request would start."""
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()


class FreezingServer(uvicorn.Server):
    """uvicorn's server, which freezes start-up's objects once the app's lifespan
    has started (the engine, the migrations, the Temporal client) and the socket
    is bound, before it accepts a request."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            freeze_startup_objects()


def serve(
    app: ASGIApp, *, host: str, port: int, log_level: str, graceful_shutdown_seconds: int
) -> None:
    """Serve `app` until SIGINT/SIGTERM (uvicorn traps both and returns after a
    graceful stop); exit with uvicorn's start-up failure code if it never started."""
    server = FreezingServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            log_level=log_level,
            # ordersaga.runtime.logging's AccessLogMiddleware logs each request, with
            # its duration and the order it belongs to.
            access_log=False,
            timeout_graceful_shutdown=graceful_shutdown_seconds,
            http=BoundedHeadHttpToolsProtocol,
        )
    )
    server.run()
    if not server.started:
        # As uvicorn.run does: the port was taken or the lifespan failed, and
        # uvicorn has logged why.
        sys.exit(STARTUP_FAILURE)
