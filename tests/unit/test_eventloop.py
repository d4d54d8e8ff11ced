"""The workers' event loop: uvloop where installed, as uvicorn picks for the HTTP processes."""

from __future__ import annotations

import asyncio
import sys

import pytest

from ordersaga.runtime import eventloop


async def running_loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not installed on Windows")
def test_run_uses_uvloop_where_it_is_installed() -> None:
    assert eventloop.run(running_loop_module()).startswith("uvloop")


def test_run_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail

    assert eventloop.loop_factory() is None
    assert eventloop.run(running_loop_module()).startswith("asyncio.")
