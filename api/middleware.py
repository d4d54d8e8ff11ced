"""ASGI middleware of the API's own (the shared ones live in ordersaga/)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_BAGGAGE = b"baggage"


class DropInboundBaggage:
    """Removes OpenTelemetry baggage sent by clients.

    Baggage becomes log fields (order, workflow, step) further in; only our own
    components may set those. Trace context (traceparent) is kept: it only
    links spans, and a client may rightly want its trace continued.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(
            name.lower() == _BAGGAGE for name, _ in scope.get("headers", ())
        ):
            scope = dict(scope)
            scope["headers"] = [
                (name, value) for name, value in scope["headers"] if name.lower() != _BAGGAGE
            ]
        await self.app(scope, receive, send)
