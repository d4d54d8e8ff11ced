"""Plain, readable log lines on stderr for every ordersaga process.

One format for our code, uvicorn and temporalio alike, so that `ordersaga dev`
can interleave its children's output and still be read line by line.
"""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Their INFO lines are per-connection chatter; warnings and errors still show.
    for chatty in ("httpx", "httpcore", "aiosqlite", "alembic.runtime.plugins"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
