"""Prometheus request metrics for the HTTP apps (the API and every service).

Labels are route templates, never raw paths: an order id in a label would make
one time series per order. Each app has a registry of its own, so several apps
in one process (tests, the in-process stack) never collide on metric names.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send

from ordersaga.runtime.asgi import ResponseStatus

# Requests no route matched share one label, for the same reason.
UNMATCHED_ROUTE = "<unmatched>"
LABELS = ("method", "route", "status")
# How many label sets RequestMetrics keeps its children of at hand. Routes are
# templates and statuses few, so an app has a few dozen; past this (methods
# are the client's to choose) it asks prometheus_client each time.
MAX_CACHED_LABEL_SETS = 1024


class RequestMetrics:
    """`{prefix}requests_total` and `{prefix}request_duration_seconds` of one app."""

    def __init__(self, *, prefix: str, answered_by: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{prefix}requests",
            f"HTTP requests answered by {answered_by}, by route template and status code.",
            LABELS,
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{prefix}request_duration_seconds",
            f"Time {answered_by} took to answer, by route template and status code.",
            LABELS,
            registry=self.registry,
        )

        # The series of each label set, found once: `labels()` checks and
        # joins its arguments and takes a lock on every call, a few per cent
        # of a service request's CPU (docs/performance.md, round 21).
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        children = self._children.get((method, route, status))
        if children is None:
            values = (method, route, str(status))
            children = (self.requests.labels(*values), self.latency.labels(*values))
            if len(self._children) < MAX_CACHED_LABEL_SETS:
                self._children[method, route, status] = children
        requests, latency = children
        requests.inc()
        latency.observe(seconds)


class MetricsMiddleware:
    """Pure ASGI, so it sees the status the exception handlers chose and the
    route the router matched (recorded in the shared scope)."""

    def __init__(self, app: ASGIApp, *, metrics: RequestMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status = ResponseStatus(send, scope)
        started = time.perf_counter()
        try:
            await self._app(scope, receive, status.send)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            self._metrics.observe(
                method=scope["method"],
                route=str(route),
                status=status.code,
                seconds=time.perf_counter() - started,
            )
