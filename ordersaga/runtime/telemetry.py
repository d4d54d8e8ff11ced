"""Tracing for every ordersaga process: one tracer provider per process role.

Which exporters run is decided by the standard OpenTelemetry variables, so the
same image runs traced or untraced without a code change:

- `OTEL_TRACES_EXPORTER` (comma-separated `otlp`, `console`, `none`) when set;
  otherwise `otlp` when `OTEL_EXPORTER_OTLP_ENDPOINT` (or its `_TRACES_`
  variant) is set, and nothing at all by default.
- `otlp` speaks `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`, `http/protobuf` by
  default (the specification's default; Jaeger and the collector take it on 4318).

Everything else is the SDK's own environment handling, not repeated here: the
exporter reads its endpoint, headers, timeout and compression; the provider its
sampler (`OTEL_TRACES_SAMPLER`) and `OTEL_SDK_DISABLED`; the batch processor its
`OTEL_BSP_*` limits; the resource `OTEL_RESOURCE_ATTRIBUTES`. `OTEL_SERVICE_NAME` overrides
the role's default service name (ordersaga-api, ordersaga-worker, ...).

Without an exporter spans are still created (never sent), so every log line
inside a request or an activity carries the trace id that joins it to the
other processes' lines.

Nothing here imports temporalio: the domain services use this module too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from fastapi.telemetry import TelemetryConfig
from opentelemetry import metrics, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from ordersaga.runtime.trace_context import UnsampledTraceContext

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

SERVICE_NAME_PREFIX = "ordersaga-"
EXPORTER_ENTRY_POINTS = "opentelemetry_traces_exporter"
# The `otlp` exporter name, by OTLP protocol, as the exporter packages register it.
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
# Probes and scrapes every few seconds would bury the orders' traces.
UNTRACED_URLS = "/healthz,/readyz,/metrics"


class TelemetryConfigError(ValueError):
    """An OTEL_* variable names something this process cannot do."""


def role_service_name(role: str) -> str:
    """The default `service.name` of a process role: api, worker, inventory, ..."""
    return f"{SERVICE_NAME_PREFIX}{role}"


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters the environment asks for, `otlp` resolved to its protocol."""
    requested = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if requested:
        names = [name.strip().lower() for name in requested.split(",") if name.strip()]
    elif environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    ):
        names = ["otlp"]
    else:
        names = []
    if "none" in names:
        return []
    resolved: list[str] = []
    for name in names:
        if name == "otlp":
            protocol = (
                environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            ).strip()
            if protocol not in _OTLP_BY_PROTOCOL:
                raise TelemetryConfigError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not supported; "
                    f"choose from {', '.join(_OTLP_BY_PROTOCOL)}"
                )
            name = _OTLP_BY_PROTOCOL[protocol]
        resolved.append(name)
    return list(dict.fromkeys(resolved))


def span_exporters(environ: Mapping[str, str] | None = None) -> list[SpanExporter]:
    """Exporter instances for `exporter_names`, found through the SDK's entry points."""
    names = exporter_names(os.environ if environ is None else environ)
    available = {ep.name: ep for ep in entry_points(group=EXPORTER_ENTRY_POINTS)}
    exporters: list[SpanExporter] = []
    for name in names:
        if name not in available:
            raise TelemetryConfigError(
                f"OTEL_TRACES_EXPORTER asks for {name!r}, which is not installed; "
                f"available: {', '.join(sorted(available)) or 'none'}"
            )
        exporter_class = available[name].load()
        exporters.append(exporter_class())
    return exporters


def service_resource(role: str, environ: Mapping[str, str] | None = None) -> Resource:
    """The resource of a process role; OTEL_SERVICE_NAME wins over the role's name."""
    env = os.environ if environ is None else environ
    name = env.get("OTEL_SERVICE_NAME", "").strip() or role_service_name(role)
    return Resource.create({SERVICE_NAME: name})


def build_tracer_provider(
    role: str,
    *,
    span_processors: Sequence[SpanProcessor] | None = None,
    environ: Mapping[str, str] | None = None,
) -> TracerProvider:
    """A provider for the role, exporting as the environment says unless
    `span_processors` are given (tests pass an in-memory exporter's)."""
    env = os.environ if environ is None else environ
    if span_processors is None:
        span_processors = [BatchSpanProcessor(exporter) for exporter in span_exporters(env)]
    sampler = None  # the SDK's default, or OTEL_TRACES_SAMPLER when set
    if not span_processors and not env.get("OTEL_TRACES_SAMPLER"):
        # Nobody reads the spans: don't record them. Trace and span ids are
        # still made and propagated, so log lines stay joined across processes.
        sampler = ALWAYS_OFF
    provider = TracerProvider(resource=service_resource(role, env), sampler=sampler)
    for processor in span_processors:
        provider.add_span_processor(processor)
    return provider


def configure_tracing(
    role: str, *, span_processors: Sequence[SpanProcessor] | None = None
) -> TracerProvider:
    """Install the role's provider as this process's global one.

    Call it once, before any Temporal client, app or engine is built; the SDK
    flushes pending spans when the process exits. OpenTelemetry allows one
    global provider per process: a second call raises rather than leave spans
    going where nobody looks.
    """
    provider = build_tracer_provider(role, span_processors=span_processors)
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        provider.shutdown()
        raise TelemetryConfigError("a global tracer provider was already set in this process")
    log.debug("tracing as %s, exporters: %s", role, ", ".join(exporter_names(os.environ)) or "none")
    return provider


def records_spans(provider: trace.TracerProvider | None = None) -> bool:
    """Whether the provider (default: the global one) may record a span at all:
    not when build_tracer_provider gave it the ALWAYS_OFF sampler. Where it
    records none, the instrumentation below and the worker's interceptors keep
    only the trace context."""
    provider = provider or trace.get_tracer_provider()
    return getattr(provider, "sampler", None) is not ALWAYS_OFF


# --- instrumentation of the libraries the processes use -------------------------
#
# Each takes an optional provider (the global one by default), so that tests can
# run every role in one process and still tell the roles apart by service name.


# FastAPI (0.165+) has OpenTelemetry spans, metrics and logs of its own, on
# whenever a provider is configured, unless the contrib instrumentation is
# installed. Ours (instrument_fastapi) is the one place that decides: a recorded
# span per request with the instrumentation, or the trace context alone. Pass
# this to FastAPI(telemetry=...) so the two never both run.
FASTAPI_OWN_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def instrument_fastapi(app: FastAPI, tracer_provider: trace.TracerProvider | None = None) -> None:
    """A server span per request, joined to the caller's trace (traceparent)."""
    if not records_spans(tracer_provider):
        # Nothing is recorded: only the trace context, for the log lines.
        provider = tracer_provider or trace.get_tracer_provider()
        app.add_middleware(UnsampledTraceContext, tracer_provider=provider)
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        excluded_urls=UNTRACED_URLS,
        # One span per request, not one more per ASGI message.
        exclude_spans=["receive", "send"],
    )


def instrument_engine(
    engine: AsyncEngine, tracer_provider: trace.TracerProvider | None = None
) -> None:
    """A span per SQL statement (the statement's text only; parameters never),
    when the provider records spans at all.

    Without an exporter the provider samples nothing (build_tracer_provider),
    and a statement's span would be made and dropped with nothing logged
    inside it: about 6 % of a service request's CPU in a profile, for
    nothing. The request's own span stays, for its trace id.
    """
    if not records_spans(tracer_provider):
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__ as version

    # SQLAlchemyInstrumentor.instrument() works once per process and patches
    # every engine; a tracer per engine lets one process hold several services.
    tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", version, tracer_provider)
    connections = metrics.get_meter(
        "opentelemetry.instrumentation.sqlalchemy"
    ).create_up_down_counter("db.client.connections.usage", unit="connections")
    EngineTracer(tracer, engine.sync_engine, connections)  # type: ignore[no-untyped-call]
