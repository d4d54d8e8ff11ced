"""Prometheus metrics for the API.

Each app has its own registry, so several apps in one process (tests, the dev
stack) never collide on metric names. Labels are route templates, never raw
paths: an order id in a label would create one time series per order.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED_ROUTE = "<unmatched>"


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ordersaga_api_requests",
            "HTTP requests handled, by route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ordersaga_api_request_duration_seconds",
            "Time to answer an HTTP request, by route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )


class MetricsMiddleware:
    """Pure ASGI, so it sees the status the exception handlers chose and the
    route the router matched (FastAPI records it in the shared scope)."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Anything that escapes every handler becomes a 500 further out.
        status_code = 500

        async def record_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            template = (
                getattr(route, "path", UNMATCHED_ROUTE)
                if isinstance(route, BaseRoute)
                else UNMATCHED_ROUTE
            )
            labels = (scope["method"], template, str(status_code))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
