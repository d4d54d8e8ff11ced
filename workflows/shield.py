"""Saga calls run to their real outcome, whatever cancels the workflow meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class CancellationShield:
    """Temporal delivers a cancellation once, into whatever the workflow awaits.

    A call in flight must not be abandoned mid-flight (the saga would not know
    whether to undo it), so the shield takes the cancellation and remembers it;
    the workflow unwinds once the call has landed.
    """

    def __init__(self) -> None:
        self.cancelled_through_temporal = False

    async def through(self, awaitable: Awaitable[T]) -> T:
        task = asyncio.ensure_future(awaitable)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled():
                    raise
                self.cancelled_through_temporal = True
