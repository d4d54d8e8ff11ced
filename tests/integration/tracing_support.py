"""Spans of a whole in-process stack, kept in memory, one provider per role.

OpenTelemetry allows one global tracer provider per process, so the worker's
(the global one: the Temporal interceptor, the activities, their httpx
clients) is installed once for the session, through ordersaga.runtime.telemetry like
a real worker's. Its processor keeps spans only while a test records, so the
other tests in the session run as if tracing exported nowhere.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ordersaga.runtime.settings import SERVICES
from ordersaga.runtime.telemetry import build_tracer_provider, configure_tracing


class RecordingGate(SpanProcessor):
    """Passes finished spans to an in-memory exporter while a test records."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self._export = SimpleSpanProcessor(self.exporter)
        self.recording = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording:
            self._export.on_end(span)

    def shutdown(self) -> None:
        self._export.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@dataclass
class Tracing:
    gate: RecordingGate
    worker: TracerProvider
    # api and each service: they would be processes of their own in production.
    providers: dict[str, TracerProvider]

    @contextlib.contextmanager
    def recording(self) -> Iterator[InMemorySpanExporter]:
        self.gate.exporter.clear()
        self.gate.recording = True
        try:
            yield self.gate.exporter
        finally:
            self.gate.recording = False

    def finished_spans(self) -> Sequence[ReadableSpan]:
        return self.gate.exporter.get_finished_spans()


_lock = threading.Lock()
_tracing: Tracing | None = None


def session_tracing() -> Tracing:
    """The process's tracing, installed on first use."""
    global _tracing
    with _lock:
        if _tracing is None:
            gate = RecordingGate()
            worker = configure_tracing("worker", span_processors=[gate])
            providers = {
                role: build_tracer_provider(role, span_processors=[gate])
                for role in ("api", *SERVICES)
            }
            _tracing = Tracing(gate, worker, providers)
        return _tracing


def service_name(span: ReadableSpan) -> str:
    return str(span.resource.attributes.get("service.name"))


def span_tree(spans: Sequence[ReadableSpan]) -> str:
    """The spans as an indented tree, children in start order, with their service."""
    ids = {span.context.span_id for span in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_time or 0):
            lines.append(f"{'  ' * depth}{span.name}  [{service_name(span)}]")
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)
