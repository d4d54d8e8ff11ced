"""Real HTTP servers on loopback ports, for tests that need one: a plain one
in a thread, or an ASGI app under uvicorn on the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn


@contextlib.contextmanager
def serving_in_a_thread(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` from a daemon thread; yields the server's base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def serving_with_uvicorn(app: Any, port: int) -> AsyncIterator[None]:
    """Serve the ASGI app (lifespan and all) on the loopback port, as in production."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    # Signals belong to pytest; uvicorn must not take them over.
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError(f"server on port {port} exited during start-up")
            await asyncio.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        await task
