"""The HTTP guard on its own, in front of a tiny ASGI app that echoes what it got."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from ordersaga.runtime.http_guard import (
    UNROUTED,
    HttpGuard,
    Refusal,
    Unrouted,
    authorization_of,
    parsed_body,
)
from ordersaga.runtime.logging import MAX_LOGGED_PATH_CHARS, loggable_path

MAX_BODY = 1024


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 200 with the body it received, or raises when the path says so."""
    if scope["path"] == "/boom":
        raise RuntimeError("a bug with a secret in its message: tok_4242")
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def client(app: Any = echo, **options: Any) -> httpx.AsyncClient:
    guarded = HttpGuard(app, max_body_bytes=MAX_BODY, **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://t")


JSON = {"Content-Type": "application/json"}


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"]["code"] == code
    assert isinstance(response.json()["detail"]["message"], str)


async def test_a_good_json_body_reaches_the_app_unchanged() -> None:
    body = json.dumps({"name": "Zoë 😀", "n": [1, 2.5, None, True], "deep": [[[1]]]}).encode()
    async with client() as http:
        response = await http.post("/", content=body, headers=JSON)
    assert response.status_code == 200
    assert response.content == body


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/problem+json"],
)
async def test_json_media_types_are_accepted(content_type: str) -> None:
    async with client() as http:
        response = await http.put("/", content=b"{}", headers={"Content-Type": content_type})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Content-Type": "text/plain"}, {"Content-Type": "application/json; charset=latin-1"}],
    ids=["missing", "text", "latin-1"],
)
async def test_a_body_that_is_not_declared_json_is_415(headers: dict[str, str]) -> None:
    async with client() as http:
        response = await http.post("/", content=b"{}", headers=headers)
    assert_refused(response, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "\xff"}',
        b'{"name": "\xed\xa0\x80"}',  # a surrogate encoded as if it were UTF-8
        b'{"name": "\\ud800"}',
        b'{"\\udfff": 1}',
        b"[" * 33 + b"]" * 33,
        b"[" * 100_000,
        b'{"n": ' + b"9" * 5000 + b"}",
        b'{"n": ' + b"1" * 41 + b"}",
        b'{"n": 1.' + b"5" * 60 + b"}",
        b'{"n": NaN}',
        b'{"n": Infinity}',
        b'{"n": 1e999}',
        b'{"n": -1E400}',
        b'{"n": ',
        b"\xef\xbb\xbf{}",
        b'{"amount_cents": 1, "amount_cents": 100000}',
        b'{"items": [{"sku": "a", "quantity": 1, "quantity": 9}]}',
        b'{"\\u0061": 1, "a": 2}',  # the same key, escaped once
    ],
    ids=[
        "invalid-utf8",
        "encoded-surrogate",
        "lone-surrogate",
        "surrogate-key",
        "too-deep",
        "absurdly-deep",
        "5000-digits",
        "41-digits",
        "long-float",
        "nan",
        "infinity",
        "float-overflow",
        "negative-float-overflow",
        "truncated",
        "bom",
        "duplicate-key",
        "nested-duplicate-key",
        "escaped-duplicate-key",
    ],
)
async def test_bodies_that_are_not_plain_json_are_400(body: bytes) -> None:
    async with client(max_number_digits=40) as http:
        response = await http.post("/", content=body[:MAX_BODY], headers=JSON)
    assert_refused(response, 400, "MALFORMED_JSON")


async def test_a_duplicate_key_is_named_and_bounded_in_the_refusal() -> None:
    long_key = "k" * 400
    async with client() as http:
        named = await http.post("/", content=b'{"a": {"b": 1, "b": 2}}', headers=JSON)
        bounded = await http.post(
            "/", content=f'{{"{long_key}": 1, "{long_key}": 2}}'.encode(), headers=JSON
        )
    assert_refused(named, 400, "MALFORMED_JSON")
    assert named.json()["detail"]["message"] == 'the body has the key "b" twice in one object'
    assert_refused(bounded, 400, "MALFORMED_JSON")
    shown = '"' + "k" * 63 + "..."
    expected = f"the body has the key {shown} twice in one object"
    assert bounded.json()["detail"]["message"] == expected


async def test_the_same_key_in_different_objects_is_fine() -> None:
    body = b'{"a": {"id": 1}, "b": {"id": 2}, "items": [{"id": 3}, {"id": 4}]}'
    async with client() as http:
        response = await http.post("/", content=body, headers=JSON)
    assert response.status_code == 200
    assert response.content == body


async def test_nesting_up_to_the_limit_is_fine() -> None:
    async with client(max_json_depth=32) as http:
        response = await http.post("/", content=b"[" * 32 + b"]" * 32, headers=JSON)
    assert response.status_code == 200


async def test_a_declared_oversize_body_is_413_without_reading_it() -> None:
    async with client() as http:
        response = await http.post("/", content=b"[" + b"0," * MAX_BODY + b"0]", headers=JSON)
    assert_refused(response, 413, "BODY_TOO_LARGE")


async def test_a_streamed_oversize_body_is_413() -> None:
    async def chunks() -> Any:
        for _ in range(3):
            yield b" " * (MAX_BODY // 2)

    async with client() as http:
        response = await http.post("/", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_refused(response, 413, "BODY_TOO_LARGE")


async def test_a_body_on_a_get_is_size_capped_only() -> None:
    async with client() as http:
        small = await http.request("GET", "/", content=b"not json")
        large = await http.request("GET", "/", content=b"x" * (MAX_BODY + 1))
    assert small.status_code == 200 and small.content == b"not json"
    assert_refused(large, 413, "BODY_TOO_LARGE")


async def test_bodyless_requests_pass() -> None:
    async with client() as http:
        get = await http.get("/")
        post = await http.post("/")
    assert (get.status_code, post.status_code) == (200, 200)


async def test_an_unhandled_error_is_a_logged_500_that_leaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="ordersaga.runtime.http_guard"):
        async with client() as http:
            response = await http.get("/boom")
    assert_refused(response, 500, "INTERNAL_ERROR")
    assert "tok_4242" not in response.text
    assert any(record.exc_info for record in caplog.records)


async def test_the_error_line_bounds_a_long_path(caplog: pytest.LogCaptureFixture) -> None:
    async def crashing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("a bug")

    with caplog.at_level(logging.ERROR, logger="ordersaga.runtime.http_guard"):
        async with client(crashing) as http:
            response = await http.get("/" + "a" * 20_000)
    assert_refused(response, 500, "INTERNAL_ERROR")
    (record,) = caplog.records
    assert (
        record.getMessage() == f"unhandled error answering GET {loggable_path('/' + 'a' * 20_000)}"
    )
    assert len(record.getMessage()) < MAX_LOGGED_PATH_CHARS + 100


async def test_an_error_after_the_response_started_is_not_answered_twice() -> None:
    async def half(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("midway")

    with pytest.raises(RuntimeError, match="midway"):
        async with client(half) as http:
            await http.get("/")


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        HttpGuard(echo, max_body_bytes=0)


# --- a caller the route refuses is told so, not what the route would accept ---


class Callers:
    """An app's `check_caller`: knows one token, admits it everywhere but
    /operators-only, and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    async def __call__(self, scope: Scope) -> Refusal | None:
        authorization = authorization_of(scope)
        self.asked.append((scope["path"], authorization))
        if authorization != "Bearer known":
            return Refusal(
                401, "UNAUTHORIZED", "who are you?", headers={"WWW-Authenticate": "Bearer"}
            )
        if scope["path"] == "/operators-only":
            return Refusal(403, "FORBIDDEN", "not for you")
        return None


BAD_BODIES = {
    "not-json": (b"{", JSON),
    "wrong-type": (b"{}", {"Content-Type": "text/plain"}),
    "too-large": (b"[" + b"1," * MAX_BODY + b"1]", JSON),
}


@pytest.mark.parametrize("bad", sorted(BAD_BODIES))
@pytest.mark.parametrize("authorization", [None, "Bearer forged", "Basic a25vd24="])
async def test_a_bad_body_from_a_stranger_gets_the_apps_401(
    bad: str, authorization: str | None
) -> None:
    callers = Callers()
    body, headers = BAD_BODIES[bad]
    if authorization is not None:
        headers = {**headers, "Authorization": authorization}
    async with client(check_caller=callers) as http:
        response = await http.post("/", content=body, headers=headers)

    assert_refused(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == "Bearer"
    assert callers.asked == [("/", authorization)]


@pytest.mark.parametrize("bad", sorted(BAD_BODIES))
async def test_a_bad_body_from_a_caller_the_route_does_not_admit_gets_its_403(bad: str) -> None:
    body, headers = BAD_BODIES[bad]
    async with client(check_caller=Callers()) as http:
        response = await http.post(
            "/operators-only", content=body, headers={**headers, "Authorization": "Bearer known"}
        )

    assert_refused(response, 403, "FORBIDDEN")
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize(
    ("bad", "status"), [("not-json", 400), ("wrong-type", 415), ("too-large", 413)]
)
async def test_a_bad_body_from_an_admitted_caller_gets_its_own_refusal(
    bad: str, status: int
) -> None:
    body, headers = BAD_BODIES[bad]
    async with client(check_caller=Callers()) as http:
        response = await http.post(
            "/", content=body, headers={**headers, "Authorization": "Bearer known"}
        )

    assert response.status_code == status, response.text
    assert "www-authenticate" not in response.headers


async def test_every_method_asks_who_is_calling_before_refusing() -> None:
    """An oversized body on a GET or DELETE is refused like a POST's: the
    caller's refusal first (where the app's check answers None, as on a public
    route, the 413 stands)."""
    callers = Callers()
    async with client(check_caller=callers) as http:
        stranger = await http.request("GET", "/", content=b"x" * (MAX_BODY + 1))
        known = await http.request(
            "DELETE", "/", content=b"x" * (MAX_BODY + 1), headers={"Authorization": "Bearer known"}
        )

    assert_refused(stranger, 401, "UNAUTHORIZED")
    assert_refused(known, 413, "BODY_TOO_LARGE")
    assert callers.asked == [("/", None), ("/", "Bearer known")]


async def test_only_a_refusal_asks_who_is_calling() -> None:
    """A good body costs nothing more, nor does a GET without a body."""
    callers = Callers()
    async with client(check_caller=callers) as http:
        good = await http.post("/", content=b"{}", headers=JSON)
        read = await http.get("/")

    assert good.status_code == 200
    assert read.status_code == 200
    assert callers.asked == []


async def test_a_request_no_route_takes_reaches_the_app_without_its_body() -> None:
    """For the app's own 404 or 405, whatever was sent: the refusal of the
    body is not told for a route that does not exist."""

    async def unrouted(scope: Scope) -> Refusal | Unrouted | None:
        return UNROUTED

    for body, headers in BAD_BODIES.values():
        async with client(check_caller=unrouted) as http:
            response = await http.post("/nope", content=body, headers=headers)

        assert response.status_code == 200, response.text  # the echo app answered
        assert response.content == b""


# --- a body that never finishes -------------------------------------------------


async def send_and_stall(scope: Scope, guarded: HttpGuard) -> list[Message]:
    """Drive the guard by hand: the first piece of a body, then nothing."""
    sent: list[Message] = []
    pieces = [{"type": "http.request", "body": b'{"items": [', "more_body": True}]

    async def receive() -> Message:
        if pieces:
            return pieces.pop()
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(guarded(scope, receive, send), timeout=5)
    return sent


def post_scope(authorization: str | None) -> Scope:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"1000")]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    return {"type": "http", "method": "POST", "path": "/", "headers": headers}


async def test_a_body_that_stops_arriving_is_refused_408_and_the_connection_closed() -> None:
    guarded = HttpGuard(echo, max_body_bytes=MAX_BODY, body_timeout_seconds=0.2)

    sent = await send_and_stall(post_scope("Bearer known"), guarded)

    start = sent[0]
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert json.loads(sent[1]["body"])["detail"]["code"] == "REQUEST_TIMEOUT"


async def test_a_stranger_whose_body_stops_arriving_is_told_to_authenticate() -> None:
    guarded = HttpGuard(
        echo, max_body_bytes=MAX_BODY, body_timeout_seconds=0.2, check_caller=Callers()
    )

    sent = await send_and_stall(post_scope(None), guarded)

    assert sent[0]["status"] == 401
    assert json.loads(sent[1]["body"])["detail"]["code"] == "UNAUTHORIZED"


# --- headers named twice ----------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Authorization", "Content-Type", "Content-Length", "Idempotency-Key"]
)
async def test_a_header_that_may_be_named_once_named_twice_is_refused(name: str) -> None:
    values = {
        "Authorization": ("Bearer known", "Bearer other"),
        "Content-Type": ("text/plain", "application/json"),
        "Content-Length": ("2", "2"),
        "Idempotency-Key": ("k1", "k2"),
    }[name]
    headers = [("Content-Type", "application/json"), *((name, value) for value in values)]
    if name == "Content-Type":
        headers = [(name, value) for value in values]
    callers = Callers()
    async with client(check_caller=callers) as http:
        response = await http.post("/", content=b"{}", headers=headers)

    assert_refused(response, 400, "MALFORMED_REQUEST")
    assert f"the {name} header is given more than once" in response.json()["detail"]["message"]
    # Who is calling is itself in doubt: the caller is not asked.
    assert callers.asked == []


async def test_headers_that_may_repeat_pass() -> None:
    async with client() as http:
        response = await http.post(
            "/",
            content=b"{}",
            headers=[("Content-Type", "application/json"), ("Accept", "a/b"), ("Accept", "c/d")],
        )

    assert response.status_code == 200, response.text


# --- the parsed body the guard hands on (http_guard.parsed_body) --------------------


def parsing_app(seen: list[Any]) -> Any:
    """An app that reads the body and records what parsed_body gives for it,
    and for bytes the guard did not read."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        body = message.get("body", b"")
        seen.append(
            (
                parsed_body(scope, body),
                parsed_body(scope, body),
                parsed_body(scope, b'{"other": 1}'),
            )
        )
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.text(max_size=20)
    # Finite floats: the guard refuses what parses to infinity.
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(value=JSON_VALUES)
async def test_the_body_the_guard_parsed_is_what_json_loads_makes_of_it(value: Any) -> None:
    body = json.dumps(value).encode()
    seen: list[Any] = []
    async with client(parsing_app(seen)) as http:
        response = await http.post("/", content=body, headers=JSON)
    assert response.status_code == 204
    [(parsed, again, other)] = seen
    assert parsed == json.loads(body)
    if isinstance(value, dict | list):
        # The guard's own parse, not a fresh one each time.
        assert again is parsed
    # Other bytes than the guard read are parsed afresh, never mistaken for its parse.
    assert other == {"other": 1}


def test_without_the_guard_the_body_is_parsed_afresh() -> None:
    scope: Scope = {"type": "http"}
    assert parsed_body(scope, b'[1, "a"]') == [1, "a"]
    with pytest.raises(ValueError):
        parsed_body(scope, b"{not json")
