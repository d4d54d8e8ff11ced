"""The event loop every long-running ordersaga process runs on.

uvicorn already runs the API and the services on uvloop when it is installed;
the workers (the saga's and the benchmark's baseline one) and the benchmark's
load generator run on it through `run`. The worker's hot path is socket I/O
(each step's HTTP call) and wake-ups from other threads (Temporal's core and
the workflow task threads hand results back with `call_soon_threadsafe`),
both cheaper on uvloop.
Where uvloop is not installed (Windows) the standard loop runs instead.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop if it is installed, else None (asyncio's default)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on the loop `loop_factory` picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def exit_without_finalizing(code: int) -> NoReturn:
    """End a process that used a Temporal client now, with everything but
    interpreter teardown (the worker, and tools such as `ordersaga audit`).

    After a clean stop the SDK core's threads can still call into Python
    while the interpreter finalizes, which aborts the process (SIGABRT, exit
    134) instead of exiting `code` (temporalio/sdk-python#300). The atexit
    handlers (span exporters, logging) run first; only the teardown is skipped.
    """
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
