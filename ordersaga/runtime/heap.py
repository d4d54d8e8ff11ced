"""What a long-running process does with its heap once it has started.

CPython's cyclic collector walks every tracked object of the oldest
generation in a full collection: in the API, a service or the worker that is
everything imported and built at start-up, 90,000 to 130,000 objects, which
took 40 to 100 ms of one core per full collection on the bench's machine
(docs/performance.md, round 8). A full collection runs whenever enough
objects have outlived two younger collections, and under load those include
the requests in flight at that moment, so it came again and again (in the
API about once in 500 requests) and stopped whatever request was running for
that long. Start-up's objects live as long as the process: walking them finds
nothing to free.

Freezing them (`gc.freeze`) moves them where the collector never looks; later
full collections walk only what was made since. Garbage already made
is collected first, so none of it is frozen for good. An object frozen here
that becomes cyclic garbage later is never freed; start-up's objects do not
(they are the modules, the app, the engine, the Temporal client).
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def freeze_startup_objects() -> None:
    """Collect start-up's garbage, then keep the collector off everything alive now.

    Call it once, when the process is ready to serve and before it serves.
    """
    began = time.perf_counter()
    gc.collect()
    gc.freeze()
    # One line per process, at start-up: what the collector will no longer walk.
    log.info(
        "froze %d start-up objects out of the collector's reach in %.0f ms",
        gc.get_freeze_count(),
        (time.perf_counter() - began) * 1000,
    )
