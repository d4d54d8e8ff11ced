"""Prometheus request metrics, labelled by route template so ids never become
label values (one time series per id would grow without bound)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Requests no route matched share one label, for the same reason.
UNMATCHED_ROUTE = "<unmatched>"


class HttpMetrics:
    """Metrics of one app, on a registry of its own: several apps can share a
    process (tests, the one-process dev stack) without colliding."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("method", "route", "status")
        self.requests = Counter(
            "http_requests",
            f"HTTP requests answered by the {service} service.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            f"Time the {service} service took to answer, by route.",
            labels,
            registry=self.registry,
        )

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        labels = {"method": method, "route": route, "status": str(status)}
        self.requests.labels(**labels).inc()
        self.latency.labels(**labels).observe(seconds)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        # Unless a response starts, an exception escaped: the server answers 500.
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        try:
            await self._app(scope, receive, send_and_record_status)
        finally:
            # The router puts the matched route into the (shared) scope.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            self._metrics.observe(
                method=scope["method"],
                route=str(route),
                status=status,
                seconds=time.perf_counter() - started,
            )
