"""Structured logs on stderr for every ordersaga process.

One JSON object per line when stderr is not a terminal (or
ORDERSAGA_LOG_FORMAT=json), so a log pipeline can index fields; readable
lines with the same fields as `key=value` on a terminal and in `ordersaga dev`.
One formatter for our code, uvicorn and temporalio alike.

Every line emitted inside a request or an activity carries `trace_id`,
`span_id` (the current OpenTelemetry span), `order_id`, `workflow_id` and
`step`. They come from, in order of precedence:
- a record's own `extra` (temporalio's workflow/activity loggers put a
  `temporal_workflow` / `temporal_activity` dict there; it is flattened);
- the request's log context (`log_context` / `bind_log_fields`), which the
  API's routes fill in;
- OpenTelemetry baggage: an activity puts the order, workflow and step there,
  and the HTTP instrumentation carries it to the domain service it calls, so the
  service's lines name the order without the service knowing about Temporal.

Nothing here imports temporalio: the domain services use this module too.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Literal, TextIO

from opentelemetry import baggage, trace
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Receive, Scope, Send

from ordersaga.runtime.asgi import ResponseStatus

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
TEXT_DATE_FORMAT = "%H:%M:%S"
# The fields that name where a line happened, in the order a reader wants them.
CONTEXT_FIELDS = ("order_id", "workflow_id", "step", "trace_id", "span_id")
# Propagated as OpenTelemetry baggage from the activity to the service it calls.
BAGGAGE_FIELDS = ("order_id", "workflow_id", "step")
# Useful in a log index, noise on a terminal (or already in the message).
_TEXT_HIDDEN = frozenset(
    {
        "span_id",
        "workflow_run_id",
        "workflow_type",
        "namespace",
        "task_queue",
        "activity_id",
        "http_method",
        "http_path",
        "http_status",
    }
)
# Attributes of a LogRecord that are not fields of the event: the standard
# ones, and uvicorn's coloured copy of the message.
_NOT_FIELDS = frozenset({*RESERVED_ATTRS, "taskName", "color_message"})
# Requests that run every few seconds (probes, scrapes) log at DEBUG only.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Far longer than any route of ordersaga with its ids (a path is at most a few
# hundred characters); the rest of a longer one a client chose is counted, not
# written, so a 60 KB URL cannot make every request of it a 120 KB log line.
MAX_LOGGED_PATH_CHARS = 512

# The request's (or activity's) fields. A dict, so that a route deep inside the
# request can add the order id and the access line logged at the end sees it.
_log_fields: ContextVar[dict[str, Any] | None] = ContextVar("ordersaga_log_fields", default=None)

access_log = logging.getLogger("ordersaga.access")


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Fields for every line logged inside the block (None values are left out)."""
    merged = {**(_log_fields.get() or {}), **_present(fields)}
    token = _log_fields.set(merged)
    try:
        yield merged
    finally:
        _log_fields.reset(token)


def bind_log_fields(**fields: Any) -> None:
    """Add fields to the enclosing log context (the request's), if there is one."""
    current = _log_fields.get()
    if current is not None:
        current.update(_present(fields))


def _present(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


class ContextFilter(logging.Filter):
    """Puts the context fields on each record, where both formatters find them."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        _flatten_temporal(fields)
        for key, value in (_log_fields.get() or {}).items():
            fields.setdefault(key, value)
        for key in BAGGAGE_FIELDS:
            value = baggage.get_baggage(key)
            if value is not None:
                fields.setdefault(key, value)
        if "workflow_id" in fields:
            # An order's workflow id is its order id (DESIGN.md).
            fields.setdefault("order_id", fields["workflow_id"])
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            fields.setdefault("trace_id", trace.format_trace_id(span.trace_id))
            fields.setdefault("span_id", trace.format_span_id(span.span_id))
        return True


# The log fields flattened out of the Temporal SDK's logging extras, in this
# order. Each comes from the SDK's key of the same name but for those renamed
# in _flatten_temporal, so that a workflow's and an activity's lines agree.
_WORKFLOW_EXTRA = ("workflow_id", "workflow_run_id", "workflow_type", "task_queue", "namespace")
_ACTIVITY_EXTRA = (
    "workflow_id",
    "workflow_run_id",
    "workflow_type",
    "step",
    "activity_id",
    "attempt",
    "task_queue",
    "namespace",
)


def _flatten_temporal(fields: dict[str, Any]) -> None:
    _flatten(fields, "temporal_workflow", _WORKFLOW_EXTRA, renamed={"workflow_run_id": "run_id"})
    _flatten(fields, "temporal_activity", _ACTIVITY_EXTRA, renamed={"step": "activity_type"})


def _flatten(
    fields: dict[str, Any], extra: str, names: tuple[str, ...], *, renamed: Mapping[str, str]
) -> None:
    found = fields.pop(extra, None)
    if isinstance(found, Mapping):
        for name in names:
            fields.setdefault(name, found.get(renamed.get(name, name)))


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's fields beyond the standard ones, context fields first."""
    extra = {
        key: value
        for key, value in record.__dict__.items()
        if key not in _NOT_FIELDS and not key.startswith("_") and value is not None
    }
    ordered = {key: extra.pop(key) for key in CONTEXT_FIELDS if key in extra}
    return {**ordered, **extra}


class JsonLineFormatter(JsonFormatter):
    """`{"time", "level", "logger", "message", <context fields>, <extra fields>}`."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            reserved_attrs=sorted(_NOT_FIELDS),
        )

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        fields = {
            key: value
            for key, value in log_data.items()
            if value is not None and not key.startswith("_")
        }
        # The event first, then where it happened, then its own fields.
        log_data.clear()
        for key in ("time", "level", "logger", "message", *CONTEXT_FIELDS):
            if key in fields:
                log_data[key] = fields.pop(key)
        log_data.update(fields)


# Characters that would end a text line or change how a terminal or grep reads
# the file: C0 and C1 controls, DEL, Unicode's line and paragraph separators,
# and its bidirectional controls (an id with U+202E in it would show its tail
# reversed, and what follows it on the line too), each written as its escape
# (a newline as \x0a).
_BIDI_CONTROLS = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_CONTROL_ESCAPES = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *_BIDI_CONTROLS)
}


def loggable_path(path: str) -> str:
    """The request path as a log line shows it: whole up to
    MAX_LOGGED_PATH_CHARS, else its start and how much was left out."""
    if len(path) <= MAX_LOGGED_PATH_CHARS:
        return path
    left_out = len(path) - MAX_LOGGED_PATH_CHARS
    return f"{path[:MAX_LOGGED_PATH_CHARS]}...({left_out} more characters)"


def escape_controls(text: str) -> str:
    """`text` on one line with no control character: what a client sent (a
    request's path, an id) cannot forge a log line of its own, colour a
    terminal, or make grep take the file for binary with a NUL."""
    return text.translate(_CONTROL_ESCAPES)


class TextFormatter(logging.Formatter):
    """`12:00:01 INFO    logger: message order_id=... step=... duration_ms=...`.

    One line per event: the message and the fields have their control
    characters escaped (escape_controls); only a traceback, ours, spans lines.
    (JSON lines escape them anyway.)
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT, TEXT_DATE_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = event_fields(record)
        if fields.get("workflow_id") == fields.get("order_id"):
            fields.pop("workflow_id", None)
        pairs = escape_controls(
            " ".join(f"{key}={value}" for key, value in fields.items() if key not in _TEXT_HIDDEN)
        )
        if not pairs:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the fields
        return f"{head} {pairs}{newline}{rest}"


LogFormat = Literal["auto", "json", "text"]


def use_json(log_format: LogFormat, stream: TextIO) -> bool:
    if log_format == "auto":
        return not stream.isatty()
    return log_format == "json"


def build_handler(log_format: LogFormat = "auto", stream: TextIO | None = None) -> logging.Handler:
    """A stderr handler with the context filter and the formatter for the format."""
    target = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(target)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonLineFormatter() if use_json(log_format, target) else TextFormatter())
    return handler


def configure_logging(level: str, log_format: LogFormat = "auto") -> None:
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(build_handler(log_format))
    root.setLevel(level)
    quiet_chatty_loggers()
    logging.captureWarnings(True)


# Their INFO lines are per-connection chatter, and aiosqlite's DEBUG lines
# print every statement's parameters: a customer's address and payment token.
# Warnings and errors still show, whatever ORDERSAGA_LOG_LEVEL says.
CHATTY_LOGGERS = ("httpx", "httpcore", "aiosqlite", "alembic.runtime.plugins")


def quiet_chatty_loggers() -> None:
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)


def structured_temporal_loggers() -> None:
    """temporalio's workflow and activity loggers append their info to the
    message as a dict; the formatters show it as fields, so leave it out there."""
    from temporalio import activity, workflow

    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False


class AccessLogMiddleware:
    """One line per HTTP request, after it is answered, with its duration.

    It replaces uvicorn's access log: same event, plus the route template,
    status, duration and the request's context fields. Install it inside the
    tracing middleware, so the line carries the request's trace id. Paths
    only: query strings may carry more than a log should keep.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = ResponseStatus(send, scope)
        with log_context():
            try:
                await self.app(scope, receive, status.send)
            finally:
                path = loggable_path(scope.get("path", ""))
                route = getattr(scope.get("route"), "path", None)
                duration_ms = round((time.perf_counter() - started) * 1000, 1)
                level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
                access_log.log(
                    level,
                    "%s %s %d",
                    scope["method"],
                    path,
                    status.code,
                    extra={
                        "http_method": scope["method"],
                        "http_route": route,
                        "http_path": path,
                        "http_status": status.code,
                        "duration_ms": duration_ms,
                    },
                )
