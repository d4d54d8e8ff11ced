"""The HTTP middlewares when the app answers, and when an exception escapes it."""

from __future__ import annotations

import logging

import pytest
from starlette.types import Message, Receive, Scope, Send

from ordersaga.runtime import http_metrics
from ordersaga.runtime.asgi import ResponseStatus
from ordersaga.runtime.http_guard import HttpGuard
from ordersaga.runtime.http_metrics import UNMATCHED_ROUTE, MetricsMiddleware, RequestMetrics
from ordersaga.runtime.logging import AccessLogMiddleware

SCOPE: Scope = {"type": "http", "method": "POST", "path": "/orders"}


async def nothing_received() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def crashing_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("boom before any response")


async def test_the_status_is_the_one_the_app_answered_with_and_every_message_goes_on() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    status = ResponseStatus(send)
    await status.send({"type": "http.response.start", "status": 201, "headers": []})
    await status.send({"type": "http.response.body", "body": b"{}"})

    assert status.code == 201
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]


async def test_metrics_count_an_escaped_exception_as_the_500_the_server_answers() -> None:
    metrics = RequestMetrics(prefix="test_", answered_by="a test app")
    middleware = MetricsMiddleware(crashing_app, metrics=metrics)

    async def send(message: Message) -> None:
        raise AssertionError("no response was started")

    with pytest.raises(RuntimeError, match="boom"):
        await middleware(dict(SCOPE), nothing_received, send)

    counted = metrics.registry.get_sample_value(
        "test_requests_total", {"method": "POST", "route": UNMATCHED_ROUTE, "status": "500"}
    )
    assert counted == 1


async def test_the_access_log_shows_an_escaped_exception_as_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    middleware = AccessLogMiddleware(crashing_app)

    async def send(message: Message) -> None:
        raise AssertionError("no response was started")

    with (
        caplog.at_level(logging.INFO, logger="ordersaga.access"),
        pytest.raises(RuntimeError, match="boom"),
    ):
        await middleware(dict(SCOPE), nothing_received, send)

    (line,) = [record for record in caplog.records if record.name == "ordersaga.access"]
    assert line.getMessage() == "POST /orders 500"
    assert line.__dict__["http_status"] == 500


async def test_a_client_gone_mid_body_is_a_499_in_metrics_and_log_not_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client hung up while sending its body: nobody to answer, and no server error."""
    metrics = RequestMetrics(prefix="test_", answered_by="a test app")
    reached: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope)

    guarded = HttpGuard(app, max_body_bytes=1024)
    stack = AccessLogMiddleware(MetricsMiddleware(guarded, metrics=metrics))
    parts: list[Message] = [
        {"type": "http.request", "body": b'{"items": [', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return parts.pop(0)

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent to a client that went away")

    scope = {**SCOPE, "headers": [(b"content-type", b"application/json")]}
    with caplog.at_level(logging.INFO):
        await stack(scope, receive, send)

    assert reached == []
    counted = metrics.registry.get_sample_value(
        "test_requests_total", {"method": "POST", "route": UNMATCHED_ROUTE, "status": "499"}
    )
    assert counted == 1
    (line,) = [r for r in caplog.records if r.name == "ordersaga.access"]
    assert line.levelno == logging.INFO and line.http_status == 499


def test_metrics_count_each_label_set_apart_also_past_the_cached_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_metrics, "MAX_CACHED_LABEL_SETS", 2)
    metrics = RequestMetrics(prefix="test_", answered_by="a test app")
    observed = [
        ("POST", "/charges", 201),
        ("POST", "/charges", 201),
        ("POST", "/charges", 409),
        ("GET", "/charges", 200),  # past the cache: asked of prometheus_client each time
        ("GET", "/charges", 200),
        ("POST", "/charges", 201),
    ]
    for method, route, status in observed:
        metrics.observe(method=method, route=route, status=status, seconds=0.25)

    def sample(name: str, method: str, status: str) -> float | None:
        labels = {"method": method, "route": "/charges", "status": status}
        return metrics.registry.get_sample_value(name, labels)

    assert sample("test_requests_total", "POST", "201") == 3
    assert sample("test_requests_total", "POST", "409") == 1
    assert sample("test_requests_total", "GET", "200") == 2
    assert sample("test_request_duration_seconds_count", "GET", "200") == 2
    assert sample("test_request_duration_seconds_sum", "POST", "201") == 0.75
    # The cache stopped at its bound; the third label set was never kept.
    assert len(metrics._children) == 2
