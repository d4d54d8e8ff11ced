"""Counting hits of a rate limit without straddling the edge of its window.

The API's limiter is the `limits` library's sliding window counter. Its windows
start at whole multiples of their length since the epoch, and a hit weighs the
previous window's count by the share of that window still to run, then floors
the sum: just past an edge, two hits of a 2-per-minute limit weigh 1.99, which
floors to 1, and a third is let through. That is the library's documented
approximation, not ordersaga's; a test that counts hits to the limit must run
them inside one window, or it fails now and then, at random.
"""

from __future__ import annotations

import asyncio
import time

# The longest a test's burst of hits takes on a loaded machine, with room to spare.
BURST_SECONDS = 10.0


async def clear_of_a_window_edge(
    window_seconds: float, burst_seconds: float = BURST_SECONDS
) -> None:
    """Return when at least `burst_seconds` are left before the next edge of a
    window `window_seconds` long (at once, unless the edge is nearer)."""
    if burst_seconds >= window_seconds:
        raise ValueError("a burst that long straddles an edge whatever the start")
    left = window_seconds - time.time() % window_seconds
    if left < burst_seconds:
        # Just past the edge: the fresh key's previous window holds nothing.
        await asyncio.sleep(left + 0.01)
