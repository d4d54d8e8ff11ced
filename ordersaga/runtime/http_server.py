"""How the API, the services and the codec server serve HTTP: uvicorn, with
start-up's objects frozen out of the collector's reach before the first request
(ordersaga.runtime.heap)."""

from __future__ import annotations

import socket
import sys

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import STARTUP_FAILURE

from ordersaga.runtime.heap import freeze_startup_objects


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
        )
    )
    server.run()
    if not server.started:
        # As uvicorn.run does: the port was taken or the lifespan failed, and
        # uvicorn has logged why.
        sys.exit(STARTUP_FAILURE)
