"""The edge every HTTP app of ordersaga stands behind: bounded, well-formed
bodies in, and never a bare 500 or a dropped connection out.

`HttpGuard` is a pure ASGI middleware, shared by the API and the services (so
it imports neither). For each HTTP request it

- refuses a body over `max_body_bytes`: at once when `Content-Length` says so,
  or as soon as a streamed body passes it (413 BODY_TOO_LARGE);
- on POST, PUT and PATCH with a body, requires a JSON media type (415
  UNSUPPORTED_MEDIA_TYPE) and a body that is JSON a Python app can hold
  without surprises: valid UTF-8, no lone UTF-16 surrogate (`"\\ud800"` is
  valid JSON text, but no string with one can be encoded again, so a later
  `json.dumps(...).encode()` raises), nesting at most `max_json_depth` deep,
  number literals at most `max_number_digits` long (Python refuses to parse
  integers past 4300 digits with a ValueError, and far smaller ones are already
  absurd), no NaN or Infinity, and no object with a key twice (400
  MALFORMED_JSON). JSON leaves duplicate keys to the reader: Python keeps the
  last, other readers the first, so a proxy or firewall in front could check
  one amount while the app takes another;
- refuses a body that has not all arrived within `body_timeout_seconds` (408
  REQUEST_TIMEOUT, and the connection is closed): a client trickling bytes
  cannot hold a request, and its connection, open for ever;
- refuses a request that names a header twice that may be named only once
  (Authorization, Content-Type, Content-Length, Host, Idempotency-Key,
  Request-Timeout: 400 MALFORMED_REQUEST), first of all: this guard would
  read the last, Starlette reads the first, and two readers must never
  disagree on who is calling or which key a write has;
- asks the app's `check_caller`, when it gave one, before it refuses a
  request: a caller the route would refuse gets the route's own answer
  instead, 401 for a stranger and 403 for a known caller the route does not
  admit. So a caller is told who may call, never what the route would accept
  from those who may. The app reads the route from the request
  (ordersaga.runtime.route_dependencies), so a public route's refusal stands,
  and a request no route takes (UNROUTED) goes on to the app without its
  body, for the app's own 404 or 405 whatever was sent. Only a refusal pays
  for the question;
- answers 500 INTERNAL_ERROR, with the traceback logged, for an exception
  that escapes the app before it responded. Starlette's own last resort sends
  its 500 and then re-raises, and the server then closes the connection; this
  one answers and the keep-alive connection lives on.

Every refusal is `{"detail": {"code": ..., "message": ...}}`, the error shape
of every ordersaga HTTP app. A small body costs one UTF-8 decode, one
`json.loads` and one walk over what it parsed.

Add it inside the metrics and access-log middlewares, so they count its answers:

    app.add_middleware(HttpGuard, max_body_bytes=64 * 1024)
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordersaga.runtime.asgi import mark_client_gone
from ordersaga.runtime.logging import loggable_path

log = logging.getLogger(__name__)

BODY_TOO_LARGE = "BODY_TOO_LARGE"
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
MALFORMED_JSON = "MALFORMED_JSON"
MALFORMED_REQUEST = "MALFORMED_REQUEST"
REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
INTERNAL_ERROR = "INTERNAL_ERROR"

DEFAULT_MAX_JSON_DEPTH = 32
DEFAULT_MAX_NUMBER_DIGITS = 40
# Ample for the largest body any route takes (64 KiB) over a slow link.
DEFAULT_BODY_TIMEOUT_SECONDS = 10.0
# Headers a request may name once only (RFC 9110 singletons, and ours): read
# here and by the framework, a second value could mean two different things.
SINGLETON_HEADERS = frozenset(
    {
        b"authorization",
        b"content-length",
        b"content-type",
        b"host",
        b"idempotency-key",
        b"request-timeout",
    }
)
# The methods whose bodies must be JSON; a body on any other is only size-capped.
JSON_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Refusal(Exception):
    """A request the guard answers itself, with a status and the error shape."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class Unrouted:
    """A CallerCheck's answer for a request no route of the app takes."""


UNROUTED = Unrouted()

# The app's answer to who sent a request, for the route it asks for: that
# route's 401 (a stranger) or 403 (a caller it does not admit); UNROUTED when
# no route takes the request; else None.
CallerCheck = Callable[[Scope], Awaitable[Refusal | Unrouted | None]]


def authorization_of(scope: Scope) -> str | None:
    """The request's Authorization header, or None when it has none."""
    value = _headers(scope.get("headers", ())).get(b"authorization")
    return None if value is None else value.decode("latin-1")


class _NumberTooLong(ValueError):
    pass


class _DuplicateKey(ValueError):
    pass


class HttpGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
        max_number_digits: int = DEFAULT_MAX_NUMBER_DIGITS,
        body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS,
        check_caller: CallerCheck | None = None,
    ) -> None:
        limits = (max_body_bytes, max_json_depth, max_number_digits, body_timeout_seconds)
        if min(limits) <= 0:
            raise ValueError("the guard's limits must be positive")
        self.app = app
        self.check_caller = check_caller
        self.body_timeout_seconds = body_timeout_seconds
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.max_number_digits = max_number_digits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            # Before the caller is asked about anything: with two Authorization
            # headers, who is calling is itself in doubt.
            _refuse_repeated_singletons(scope.get("headers", ()))
            try:
                screened = await self._screen(scope, receive)
            except Refusal as refusal:
                answer = await self._unless_the_caller_is_refused(scope, refusal)
                if isinstance(answer, Refusal):
                    raise answer from None
                # No route takes it: the app answers 404 or 405, reading no body.
                screened = replaying(b"", _nothing_more)
            if screened is None:  # the client went away while sending
                mark_client_gone(scope)
                return
            await self.app(scope, screened, send_tracked)
        except Refusal as refusal:
            await send_error(
                send, refusal.status, refusal.code, refusal.message, headers=refusal.headers
            )
        except Exception:
            if started:
                raise  # half an answer is out: nothing left but to drop it
            # A bug: the traceback goes to the log, never to the client.
            log.exception(
                "unhandled error answering %s %s",
                scope.get("method"),
                loggable_path(scope.get("path", "")),
            )
            await send_error(
                send, 500, INTERNAL_ERROR, "the server failed to answer; the error has been logged"
            )

    async def _screen(self, scope: Scope, receive: Receive) -> Receive | None:
        """The request's `receive`, its body read and checked when it has one."""
        headers = _headers(scope.get("headers", ()))
        declared = _content_length(headers.get(b"content-length"))
        if declared is not None and declared > self.max_body_bytes:
            raise self._too_large()
        method = str(scope.get("method", "")).upper()
        has_body = (declared or 0) > 0 or b"transfer-encoding" in headers
        if not has_body and method not in JSON_METHODS:
            return receive  # the common GET: nothing to read, nothing to check
        body = await self._read(receive)
        if body is None:
            return None
        if body and method in JSON_METHODS:
            _require_json_media_type(headers.get(b"content-type"))
            scope[_PARSED_BODY] = (body, self.check_json(body))
        return replaying(body, receive)

    async def _unless_the_caller_is_refused(
        self, scope: Scope, refusal: Refusal
    ) -> Refusal | Unrouted:
        """The request's refusal, or the route's own 401 or 403 for its caller,
        or UNROUTED when no route takes the request."""
        if self.check_caller is None:
            return refusal
        return await self.check_caller(scope) or refusal

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        raise self._too_large()
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise Refusal(
                408,
                REQUEST_TIMEOUT,
                f"the request body did not arrive within {self.body_timeout_seconds:g} s",
                # The rest of it may still come: the connection cannot be reused.
                headers={"Connection": "close"},
            ) from None

    def _too_large(self) -> Refusal:
        return Refusal(
            413, BODY_TOO_LARGE, f"the request body is larger than {self.max_body_bytes} bytes"
        )

    def check_json(self, body: bytes) -> Any:
        """The parsed body; Refusal (400 MALFORMED_JSON) when it is not JSON we accept."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise _malformed(f"the body is not valid UTF-8 (byte {err.start})") from None
        try:
            value = json.loads(
                text,
                parse_int=self._parse_int,
                parse_float=self._parse_float,
                parse_constant=_refuse_constant,
                object_pairs_hook=object_with_unique_keys,
            )
        except RecursionError:
            raise _malformed(f"the body nests deeper than {self.max_json_depth} levels") from None
        except (_NumberTooLong, _DuplicateKey) as err:
            raise _malformed(str(err)) from None
        except json.JSONDecodeError as err:
            raise _malformed(f"the body is not valid JSON ({err.msg} at {err.pos})") from None
        except ValueError as err:
            raise _malformed(f"the body is not valid JSON ({err})") from None
        self._check_parsed(value)
        return value

    def _parse_int(self, literal: str) -> int:
        self._check_length(literal)
        return int(literal)

    def _parse_float(self, literal: str) -> float:
        self._check_length(literal)
        value = float(literal)
        if not math.isfinite(value):
            # 1e999 is a valid JSON number that Python reads as infinity.
            raise _NumberTooLong(f"the body has a number past a float's range ({literal})")
        return value

    def _check_length(self, literal: str) -> None:
        if len(literal) > self.max_number_digits:
            raise _NumberTooLong(
                f"the body has a number of {len(literal)} characters; "
                f"at most {self.max_number_digits} are accepted"
            )

    def _check_parsed(self, value: Any) -> None:
        """Nesting depth and strings, over the parsed value without recursion."""
        pending: list[tuple[Any, int]] = [(value, 0)]
        while pending:
            item, depth = pending.pop()
            if isinstance(item, str):
                _require_encodable(item)
            elif isinstance(item, dict | list):
                if depth + 1 > self.max_json_depth:
                    raise _malformed(f"the body nests deeper than {self.max_json_depth} levels")
                if isinstance(item, dict):
                    for key, child in item.items():
                        _require_encodable(key)
                        pending.append((child, depth + 1))
                else:
                    pending.extend((child, depth + 1) for child in item)


def _malformed(message: str) -> Refusal:
    return Refusal(400, MALFORMED_JSON, message)


def object_with_unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object_pairs_hook for every JSON body ordersaga reads: a key
    twice in one object is a ValueError, since JSON readers resolve it
    differently (the first, the last, or an error)."""
    parsed = dict(pairs)
    if len(parsed) < len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                # ASCII-escaped (a lone surrogate stays printable) and bounded.
                shown = json.dumps(key)
                shown = shown if len(shown) <= 66 else f"{shown[:64]}..."
                raise _DuplicateKey(f"the body has the key {shown} twice in one object")
            seen.add(key)
    return parsed


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _require_encodable(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _malformed("the body has a string with a lone UTF-16 surrogate") from None


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    # ASGI servers give header names in lower case.
    return {name: value for name, value in raw}


def _refuse_repeated_singletons(raw: Sequence[tuple[bytes, bytes]]) -> None:
    if len({name for name, _value in raw}) == len(raw):
        return  # the common case: no header named twice
    seen: set[bytes] = set()
    for name, _value in raw:
        if name in seen and name in SINGLETON_HEADERS:
            raise Refusal(
                400,
                MALFORMED_REQUEST,
                f"the {name.decode('latin-1').title()} header is given more than once",
            )
        seen.add(name)


async def _nothing_more() -> Message:
    # A request's body was refused, so the app, answering 404 or 405, never
    # waits on it; asked anyway, the client is as good as gone.
    return {"type": "http.disconnect"}


def _content_length(value: bytes | None) -> int | None:
    if value is None:
        return None
    # The server has parsed it already; a value it let through that is not a
    # plain number is still refused rather than guessed at.
    if not value.isdigit() or len(value) > 18:
        raise Refusal(400, MALFORMED_REQUEST, "the Content-Length header is not a number")
    return int(value)


def _require_json_media_type(value: bytes | None) -> None:
    """application/json or application/<anything>+json, in UTF-8 if a charset is named."""
    media_type, _, parameters = (value or b"").decode("latin-1").partition(";")
    media_type = media_type.strip().lower()
    kind, _, subtype = media_type.partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        raise Refusal(
            415,
            UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON (Content-Type: application/json)",
        )
    for parameter in parameters.split(";"):
        name, _, charset = parameter.partition("=")
        if name.strip().lower() == "charset" and charset.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise Refusal(415, UNSUPPORTED_MEDIA_TYPE, "a JSON body must be UTF-8")


# Where the guard leaves a JSON body it parsed, with the bytes it parsed.
_PARSED_BODY = "ordersaga.http_guard.parsed_body"


def parsed_body(scope: Scope, body: bytes) -> Any:
    """`json.loads(body)`, from the guard's own parse when it read these bytes.

    The guard parses every JSON body it lets through, and what it accepts
    parses to the same value under plain `json.loads` (its hooks only refuse).
    The value is shared: a reader must not change it. ValueError (as from
    `json.loads`) when the bytes are not JSON.
    """
    parsed = scope.get(_PARSED_BODY)
    if parsed is not None and parsed[0] == body:
        return parsed[1]
    return json.loads(body)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then the real one."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def error_bytes(code: str, message: str) -> bytes:
    """A refusal's body in the error shape of every ordersaga HTTP app, encoded:
    for answers written before any app sees the request (here, and the
    server's own in ordersaga.runtime.http_server)."""
    return json.dumps({"detail": {"code": code, "message": message}}).encode()


async def send_error(
    send: Send, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> None:
    body = error_bytes(code, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(
                    # ASGI header names are lower case.
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in (headers or {}).items()
                ),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
