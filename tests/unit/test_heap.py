"""Start-up's objects leave the collector's reach once a process is ready to
serve (ordersaga.runtime.heap), and its garbage does not go with them."""

from __future__ import annotations

import asyncio
import gc
import socket
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from ordersaga.ports import free_port
from ordersaga.runtime.heap import freeze_startup_objects
from ordersaga.runtime.http_server import FreezingServer


class Node:
    """A container the collector tracks, that can form a cycle and be weakly referenced."""

    def __init__(self) -> None:
        self.other: Any = None


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    # The test process itself must not keep what these tests freeze.
    gc.unfreeze()
    yield
    gc.unfreeze()


def walked_by_the_collector(target: object) -> bool:
    """Whether a full collection would walk `target` (frozen objects are in none
    of the three generations gc.get_objects lists)."""
    return any(candidate is target for candidate in gc.get_objects())


def test_what_is_alive_is_frozen_and_still_alive() -> None:
    kept = Node()
    assert walked_by_the_collector(kept)

    freeze_startup_objects()

    assert not walked_by_the_collector(kept)
    assert gc.is_tracked(kept)
    assert gc.get_freeze_count() > 0


def test_start_up_garbage_is_collected_not_frozen() -> None:
    # A cycle nothing refers to: only the collector can free it.
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    gc.disable()  # no automatic collection may free it before the call does
    try:
        assert gone() is not None
        freeze_startup_objects()
    finally:
        gc.enable()

    assert gone() is None


def test_what_is_made_after_the_freeze_is_walked_as_before() -> None:
    freeze_startup_objects()
    later = Node()

    assert walked_by_the_collector(later)


class ObservedServer(FreezingServer):
    """FreezingServer, saying when its start-up (the freeze included) is over."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


async def test_the_server_freezes_after_the_lifespan_started_and_before_it_serves() -> None:
    made_at_startup: list[Node] = []
    frozen_when_serving: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    # What a lifespan builds: an engine, a client.
                    made_at_startup.append(Node())
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        frozen_when_serving.append(not walked_by_the_collector(made_at_startup[0]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    port = free_port()
    server = ObservedServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            await server.ready.wait()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
    finally:
        server.should_exit = True
        await serving

    assert answer.startswith(b"HTTP/1.1 204"), answer
    assert frozen_when_serving == [True]


def test_a_server_that_cannot_bind_exits_with_uvicorns_start_up_failure() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        script = textwrap.dedent(
            f"""
            from ordersaga.runtime.http_server import serve

            async def app(scope, receive, send):
                pass

            serve(app, host="127.0.0.1", port={port}, log_level="warning",
                  graceful_shutdown_seconds=1)
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )

    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "address already in use" in result.stderr.lower(), result.stderr
