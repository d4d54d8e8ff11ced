"""What the HTTP middlewares (metrics, access log) learn from an ASGI response."""

from __future__ import annotations

from starlette.types import Message, Send

# Unless a response starts, an exception escaped: the server answers 500.
STATUS_WHEN_NO_RESPONSE = 500


class ResponseStatus:
    """Passes an app's messages on to `send`, keeping the status it answered with."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.code = STATUS_WHEN_NO_RESPONSE

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.code = int(message["status"])
        await self._send(message)
