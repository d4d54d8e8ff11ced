"""What the HTTP middlewares (metrics, access log) learn from an ASGI response."""

from __future__ import annotations

from starlette.types import Message, Scope, Send

# Unless a response starts, an exception escaped: the server answers 500.
STATUS_WHEN_NO_RESPONSE = 500
# ... or the client went away before its request was whole: nobody to answer,
# and no server error either (nginx's "client closed request").
CLIENT_CLOSED_REQUEST = 499
_CLIENT_GONE = "ordersaga.client_gone"


def mark_client_gone(scope: Scope) -> None:
    """Say, for the middlewares outside, that the client disconnected mid-request."""
    scope[_CLIENT_GONE] = True


class ResponseStatus:
    """Passes an app's messages on to `send`, keeping the status it answered with."""

    def __init__(self, send: Send, scope: Scope | None = None) -> None:
        self._send = send
        self._scope = scope
        self._answered: int | None = None

    @property
    def code(self) -> int:
        if self._answered is not None:
            return self._answered
        if self._scope is not None and self._scope.get(_CLIENT_GONE):
            return CLIENT_CLOSED_REQUEST
        return STATUS_WHEN_NO_RESPONSE

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._answered = int(message["status"])
        await self._send(message)
