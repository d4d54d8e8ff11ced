"""Request deadlines: a write its caller has stopped waiting for commits nothing.

A caller (an activity) sends `Request-Timeout: <seconds>`, how long it will
still wait for the answer once it has sent the request. The service counts
from when the request reached it, on its own monotonic clock, and an
idempotent POST whose time is up by the moment it would commit rolls back
and answers 504 DEADLINE_EXCEEDED instead (services.common.idempotency).

Relative, not an absolute timestamp: the two hosts' clocks never meet, so
clock skew cannot make a service refuse requests its callers still wait for.
Counted from arrival, the service's deadline falls a little after the caller's
(by the time the request took to arrive), so it errs on the side of letting a
request through.

Retryable, not a refusal: it says the caller stopped waiting, not that the
order gave up (a retry under the same key runs the request again and does get
an answer). Deadlines only trim the window in which an abandoned request can
still take effect; a stall between the check and the commit can outlast them.
The guarantee that a request landing after its order gave up leaves no
effect is the fence (services.common.fences).
"""

from __future__ import annotations

import math
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts import errors
from services.common.errors import ServiceError

HEADER = "Request-Timeout"
# Where the arrival time is kept, in the request's state.
_RECEIVED_AT = "ordersaga_received_at"


class ArrivalTime:
    """Note when each request arrived, before anything (faults, queues) delays it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[_RECEIVED_AT] = time.monotonic()
        await self.app(scope, receive, send)


def deadline_of(request: Request) -> float | None:
    """When, on time.monotonic(), the caller stops waiting; None when it did not say."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ServiceError(
            errors.REQUEST_REJECTED,
            f"the {HEADER} header must be a number of seconds, 0 or more",
        )
    received_at = getattr(request.state, _RECEIVED_AT, None)
    return (received_at if received_at is not None else time.monotonic()) + seconds


def check(deadline: float | None) -> None:
    """Refuse to go on (and so to commit) once the caller has stopped waiting."""
    if deadline is not None and time.monotonic() > deadline:
        raise ServiceError(
            errors.DEADLINE_EXCEEDED,
            f"the caller's {HEADER} ran out before this request could commit; nothing was done",
        )
