"""The log line formats and the fields every line inside a request or activity carries."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import TracerProvider
from temporalio import activity, workflow
from temporalio.testing import ActivityEnvironment

from ordersaga.runtime.logging import (
    MAX_LOGGED_PATH_CHARS,
    AccessLogMiddleware,
    bind_log_fields,
    build_handler,
    log_context,
    loggable_path,
    structured_temporal_loggers,
    use_json,
)

# A provider of the test's own: the global one is not touched.
tracer = TracerProvider().get_tracer("test")


class Captured:
    def __init__(self, log_format: str) -> None:
        self.stream = io.StringIO()
        self.handler = build_handler(log_format, self.stream)  # type: ignore[arg-type]

    @property
    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def captured_json() -> Iterator[Captured]:
    yield from _capture("json")


@pytest.fixture
def captured_text() -> Iterator[Captured]:
    yield from _capture("text")


def _capture(
    log_format: str, logger_name: str = "ordersaga.test", level: int = logging.DEBUG
) -> Iterator[Captured]:
    capture = Captured(log_format)
    logger = logging.getLogger(logger_name)
    logger.addHandler(capture.handler)
    logger.setLevel(level)
    try:
        yield capture
    finally:
        logger.removeHandler(capture.handler)
        logger.setLevel(logging.NOTSET)


log = logging.getLogger("ordersaga.test")


@contextlib.contextmanager
def access_log_captured(log_format: str) -> Iterator[Captured]:
    """What the access log writes meanwhile, in `log_format`."""
    yield from _capture(log_format, "ordersaga.access", logging.INFO)


def test_a_json_line_has_the_event_the_context_and_the_trace(captured_json: Captured) -> None:
    with (
        tracer.start_as_current_span("orders.charge_payment") as span,
        log_context(order_id="ord_abc", workflow_id="ord_abc", step="charge_payment"),
    ):
        log.info("charged %s", "EUR 45.00", extra={"duration_ms": 12.5})
    (line,) = captured_json.records()
    ids = span.get_span_context()
    assert line["message"] == "charged EUR 45.00"
    assert line["level"] == "INFO"
    assert line["logger"] == "ordersaga.test"
    assert line["time"].endswith("+00:00")
    assert line["order_id"] == "ord_abc"
    assert line["workflow_id"] == "ord_abc"
    assert line["step"] == "charge_payment"
    assert line["trace_id"] == f"{ids.trace_id:032x}"
    assert line["span_id"] == f"{ids.span_id:016x}"
    assert line["duration_ms"] == 12.5
    # No standard LogRecord clutter.
    assert not {"args", "msg", "pathname", "levelno", "color_message"} & set(line)


def test_outside_any_request_there_are_no_context_fields(captured_json: Captured) -> None:
    log.warning("starting")
    (line,) = captured_json.records()
    assert not {"order_id", "workflow_id", "step", "trace_id", "span_id"} & set(line)


def test_an_exception_stays_on_one_json_line(captured_json: Captured) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    assert len(captured_json.lines) == 1
    (line,) = captured_json.records()
    assert "ValueError: boom" in line["exc_info"]


def test_baggage_from_the_caller_names_the_order(captured_json: Captured) -> None:
    # What a service sees: the activity's baggage, extracted from the request.
    ctx = baggage.set_baggage("order_id", "ord_from_caller")
    ctx = baggage.set_baggage("step", "reserve_inventory", ctx)
    token = context.attach(ctx)
    try:
        log.info("reserved")
    finally:
        context.detach(token)
    (line,) = captured_json.records()
    assert line["order_id"] == "ord_from_caller"
    assert line["step"] == "reserve_inventory"


def test_temporal_workflow_info_is_flattened(captured_json: Captured) -> None:
    info = {
        "workflow_id": "ord_wf",
        "run_id": "run-1",
        "workflow_type": "OrderWorkflow",
        "task_queue": "orders",
        "namespace": "default",
        "attempt": 1,
    }
    log.info("step refused", extra={"temporal_workflow": info, "step": "create_shipment"})
    (line,) = captured_json.records()
    assert "temporal_workflow" not in line
    assert line["workflow_id"] == "ord_wf"
    assert line["order_id"] == "ord_wf"
    assert line["workflow_run_id"] == "run-1"
    assert line["step"] == "create_shipment"


async def test_temporal_activity_logger_lines_carry_the_activity_fields(
    captured_json: Captured,
) -> None:
    # The real activity.logger inside the SDK's activity test environment.
    logger = logging.getLogger("temporalio.activity")
    logger.addHandler(captured_json.handler)
    logger.setLevel(logging.INFO)
    settings = (activity.logger.activity_info_on_message, workflow.logger.workflow_info_on_message)
    structured_temporal_loggers()

    @activity.defn(name="reserve_inventory")
    async def reserve() -> None:
        activity.logger.info("reserving")

    try:
        environment = ActivityEnvironment()
        environment.info = dataclasses.replace(
            environment.info, activity_type="reserve_inventory", workflow_id="ord_env"
        )
        await environment.run(reserve)
    finally:
        logger.removeHandler(captured_json.handler)
        logger.setLevel(logging.NOTSET)
        activity.logger.activity_info_on_message, workflow.logger.workflow_info_on_message = (
            settings
        )
    (line,) = captured_json.records()
    assert line["message"] == "reserving"  # the info is in fields, not the message
    assert line["step"] == "reserve_inventory"
    assert line["workflow_id"] == line["order_id"] == "ord_env"
    assert "temporal_activity" not in line


def test_a_text_line_is_readable_with_the_fields_after_the_message(
    captured_text: Captured,
) -> None:
    with (
        tracer.start_as_current_span("x"),
        log_context(order_id="ord_abc", workflow_id="ord_abc", step="ship"),
    ):
        log.info("shipped", extra={"duration_ms": 3.2})
    (line,) = captured_text.lines
    assert " INFO    ordersaga.test: shipped order_id=ord_abc step=ship trace_id=" in line
    assert line.endswith(" duration_ms=3.2")
    # Long ids a terminal reader does not need (the workflow id is the order id).
    assert "span_id" not in line
    assert "workflow_id" not in line
    assert not line.startswith("{")


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_means_json_unless_a_terminal_reads_it() -> None:
    assert use_json("auto", io.StringIO())
    assert not use_json("auto", FakeTty())
    assert use_json("json", FakeTty())
    assert not use_json("text", io.StringIO())


def test_bind_outside_a_context_changes_nothing(captured_json: Captured) -> None:
    bind_log_fields(order_id="ord_stray")
    log.info("no context")
    with log_context() as fields:
        bind_log_fields(order_id="ord_bound", step=None)
        log.info("bound")
    assert fields == {"order_id": "ord_bound"}
    first, second = captured_json.records()
    assert "order_id" not in first
    assert second["order_id"] == "ord_bound"


async def test_access_log_one_line_per_request_with_route_status_and_duration() -> None:
    app = FastAPI()
    app.add_middleware(AccessLogMiddleware)

    @app.post("/orders/{order_id}/cancel")
    async def cancel(order_id: str) -> dict[str, str]:
        bind_log_fields(order_id=order_id)
        return {"ok": order_id}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {}

    with access_log_captured("json") as capture:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        ) as client:
            assert (await client.post("/orders/ord_42/cancel?x=1")).status_code == 200
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/nowhere")).status_code == 404
    cancel_line, missing = capture.records()  # /healthz is DEBUG only
    assert cancel_line["http_route"] == "/orders/{order_id}/cancel"
    assert cancel_line["http_path"] == "/orders/ord_42/cancel"  # no query string
    assert cancel_line["http_status"] == 200
    assert cancel_line["order_id"] == "ord_42"
    assert isinstance(cancel_line["duration_ms"], float)
    assert missing["http_status"] == 404
    assert "http_route" not in missing


async def test_the_access_log_bounds_a_long_path_and_says_how_much_it_left_out() -> None:
    """A client chooses the path: a 20 KB one costs the log 0.5 KB, not 40 KB
    (the path is in the message and in a field)."""
    app = FastAPI()
    app.add_middleware(AccessLogMiddleware)
    long_path = "/orders/" + "a" * 20_000
    with access_log_captured("json") as capture:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        ) as client:
            assert (await client.get(long_path)).status_code == 404
    (line,) = capture.records()
    left_out = len(long_path) - MAX_LOGGED_PATH_CHARS
    logged = f"{long_path[:MAX_LOGGED_PATH_CHARS]}...({left_out} more characters)"
    assert line["http_path"] == logged
    assert line["message"] == f"GET {logged} 404"
    assert len(capture.stream.getvalue()) < 2 * MAX_LOGGED_PATH_CHARS + 500


def test_a_path_up_to_the_bound_is_logged_whole() -> None:
    at_bound = "/" + "a" * (MAX_LOGGED_PATH_CHARS - 1)
    assert loggable_path(at_bound) == at_bound
    assert loggable_path(at_bound + "b") == f"{at_bound}...(1 more characters)"


@pytest.mark.parametrize(
    "sent",
    [
        "x\n12:00:00 ERROR   api.errors: FORGED",
        "x\r\n12:00:00 ERROR   api.errors: FORGED",
        "x\x00y",
        "x\x1b[2Jy",
        "x\u2028y",
        "x\x85y",
        "x\u202egnp.exe",
        "x\u2066y\u2069",
    ],
)
def test_a_text_line_stays_one_line_whatever_the_client_sent(
    captured_text: Captured, sent: str
) -> None:
    """A path or id a client chose, in the message or in a field, cannot start
    a log line of its own, drive a terminal, or make the file read as binary."""
    with log_context(order_id=sent):
        log.info("GET %s 404", f"/orders/{sent}", extra={"http_path": sent})
    output = captured_text.stream.getvalue()
    (line,) = output.splitlines()
    assert line.count("FORGED") >= sent.count("FORGED")  # escaped, not dropped
    assert not any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in line)
    assert "\u2028" not in line
    # Nor reorder what a terminal shows after it (bidirectional controls).
    assert not any(0x202A <= ord(char) <= 0x202E or 0x2066 <= ord(char) <= 0x2069 for char in line)
    assert " INFO    ordersaga.test: GET /orders/x" in line


def test_a_traceback_still_follows_its_text_line(captured_text: Captured) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed on\nmany lines")
    head, *traceback = captured_text.lines
    assert head.endswith("failed on\\x0amany lines")
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "ValueError: boom"


async def test_the_access_log_escapes_a_forged_path() -> None:
    app = FastAPI()
    app.add_middleware(AccessLogMiddleware)
    with access_log_captured("text") as capture:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        ) as client:
            forged = "/orders/x%0A18:50:00%20ERROR%20%20%20api.errors:%20FORGED%00"
            assert (await client.get(forged)).status_code == 404
    (line,) = capture.lines
    assert "/orders/x\\x0a18:50:00 ERROR   api.errors: FORGED\\x00 404" in line
