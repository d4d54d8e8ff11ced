"""Which exporters the OTEL_* variables choose, and the service name per role.

Installing a global tracer provider is once per process, so the end-to-end
cases run `configure_tracing` in a child interpreter: console output there, and
a real OTLP/HTTP request to a receiver in this test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ordersaga.runtime.telemetry import (
    TelemetryConfigError,
    build_tracer_provider,
    exporter_names,
    service_resource,
    span_exporters,
)

ENDPOINT = "http://collector.example:4318"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ["otlp_proto_http"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT}, ["otlp_proto_http"]),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            ["otlp_proto_grpc"],
        ),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "console, otlp"}, ["console", "otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, []),
        # An explicit choice wins over the endpoint's implied OTLP.
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ["console"]),
    ],
)
def test_exporters_follow_the_standard_variables(
    environ: dict[str, str], expected: list[str]
) -> None:
    assert exporter_names(environ) == expected


def test_an_unknown_otlp_protocol_is_refused_with_the_choices() -> None:
    with pytest.raises(TelemetryConfigError, match=r"'http/json'.*http/protobuf, grpc"):
        exporter_names({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_an_exporter_that_is_not_installed_is_refused_with_what_is() -> None:
    with pytest.raises(TelemetryConfigError, match=r"'zipkin'.*available: .*console"):
        span_exporters({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_no_exporter_by_default() -> None:
    assert span_exporters({}) == []


def test_console_and_otlp_are_the_sdk_exporters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    console, otlp = span_exporters()
    assert isinstance(console, ConsoleSpanExporter)
    assert isinstance(otlp, OTLPSpanExporter)
    # The exporter read its endpoint itself, with the signal path added.
    assert otlp._endpoint == f"{ENDPOINT}/v1/traces"
    otlp.shutdown()  # type: ignore[no-untyped-call]


def test_service_name_is_the_role_unless_otel_service_name_says_otherwise() -> None:
    assert service_resource("api", {}).attributes["service.name"] == "ordersaga-api"
    named = service_resource("worker", {"OTEL_SERVICE_NAME": "orders-eu-worker"})
    assert named.attributes["service.name"] == "orders-eu-worker"


def test_a_provider_built_for_a_role_carries_its_name() -> None:
    provider = build_tracer_provider("inventory", span_processors=[], environ={})
    assert provider.resource.attributes["service.name"] == "ordersaga-inventory"
    provider.shutdown()


def test_without_an_exporter_spans_are_not_recorded_but_ids_still_join_logs() -> None:
    silent = build_tracer_provider("api", environ={})
    with silent.get_tracer("t").start_as_current_span("orders.reserve_inventory") as span:
        assert not span.is_recording()
        assert span.get_span_context().is_valid  # trace_id/span_id for the log lines
    silent.shutdown()

    exporter = InMemorySpanExporter()
    recorded = build_tracer_provider(
        "api", span_processors=[SimpleSpanProcessor(exporter)], environ={}
    )
    with recorded.get_tracer("t").start_as_current_span("orders.reserve_inventory") as span:
        assert span.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == ["orders.reserve_inventory"]
    recorded.shutdown()

    # With OTEL_TRACES_SAMPLER set, the SDK's own sampler handling decides, not us.
    chosen = build_tracer_provider("api", environ={"OTEL_TRACES_SAMPLER": "always_on"})
    with chosen.get_tracer("t").start_as_current_span("x") as span:
        assert span.is_recording()
    chosen.shutdown()


_CHILD = """
from opentelemetry import trace
from ordersaga.runtime.telemetry import configure_tracing
provider = configure_tracing("worker")
with trace.get_tracer("check").start_as_current_span("orders.check_span"):
    pass
try:
    configure_tracing("api")
except Exception as error:
    print("second:", type(error).__name__, error)
provider.shutdown()
"""


def _child(extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-c", _CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_console_exporter_prints_spans_with_the_role_name() -> None:
    result = _child({"OTEL_TRACES_EXPORTER": "console"})
    assert '"name": "orders.check_span"' in result.stdout
    assert '"service.name": "ordersaga-worker"' in result.stdout
    # A second global provider would be silently ignored by OpenTelemetry.
    assert "second: TelemetryConfigError" in result.stdout


def test_nothing_is_exported_by_default() -> None:
    result = _child({})
    assert "orders.check_span" not in result.stdout + result.stderr


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_otlp_endpoint_alone_sends_spans_over_otlp_http(
    otlp_receiver: tuple[str, list[tuple[str, bytes]]],
) -> None:
    endpoint, received = otlp_receiver
    result = _child({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert "orders.check_span" not in result.stdout  # not on the console
    paths = [path for path, _ in received]
    assert paths and set(paths) == {"/v1/traces"}
    body = b"".join(payload for _, payload in received)
    assert b"orders.check_span" in body
    assert b"ordersaga-worker" in body


@pytest.mark.parametrize("command", [["api"], ["worker"], ["service", "inventory"]])
def test_a_process_refuses_to_start_with_an_exporter_it_does_not_have(
    command: list[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ORDERSAGA_"))}
    env.update(
        OTEL_TRACES_EXPORTER="zipkin", ORDERSAGA_DEV_MODE="true", ORDERSAGA_DATA_DIR=str(tmp_path)
    )
    result = subprocess.run(
        [sys.executable, "-m", "ordersaga.cli", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "'zipkin', which is not installed" in result.stderr
    assert "Traceback" not in result.stderr
