"""The caller's trace, joined by an HTTP app whose spans nobody records.

Without an exporter the tracer provider samples nothing
(telemetry.build_tracer_provider), yet every log line inside a request should
still carry the trace id that joins it to the caller's lines. OpenTelemetry's
ASGI instrumentation does that too, but it first builds the server span's
attributes, reads every header, wraps `receive` and `send`, and times the
request for its metrics, all for a span that is dropped: about 5-6 % of a
service request's CPU in a profile (docs/performance.md). This middleware does
only the part that is kept: the W3C trace context from the request's headers,
and a current span under it for the request's lines.

When spans are recorded, telemetry.instrument_fastapi installs the full
instrumentation instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import context, propagate, trace
from starlette.types import ASGIApp, Receive, Scope, Send

# What the default propagators (W3C trace context and baggage) read.
_PROPAGATED = frozenset({b"traceparent", b"tracestate", b"baggage"})


def _propagated_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers
        if name.lower() in _PROPAGATED
    }


class UnsampledTraceContext:
    """Pure ASGI: each HTTP request runs in a span (not recorded) under the
    caller's trace when the request names one, else in a new trace."""

    def __init__(self, app: ASGIApp, *, tracer_provider: trace.TracerProvider) -> None:
        self.app = app
        self._tracer = tracer_provider.get_tracer(__name__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = _propagated_headers(scope.get("headers", ()))
        parent = propagate.extract(carrier) if carrier else None
        span = self._tracer.start_span(
            scope.get("method", "HTTP"), context=parent, kind=trace.SpanKind.SERVER
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)
            span.end()
