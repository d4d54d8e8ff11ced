"""HEAD answered as the GET it names, without the body (RFC 9110, 9.3.2).

FastAPI routes a path's GET for GET alone, so a HEAD, which load balancers and
uptime checks send, was a 405. HeadAsGet hands the app a GET in its place
(authenticated, limited and answered exactly as one) and passes on the
answer's status and headers, its Content-Length included, with no body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """Innermost of an app's own middlewares: those outside see the HEAD."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # A copy: the server keeps the request's own scope, and tells by its
        # method that no body follows the headers.
        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, send_without_body)
        finally:
            # What the router recorded (the route matched, for the metrics
            # and the access log outside), without the method.
            scope.update((key, value) for key, value in as_get.items() if key != "method")
