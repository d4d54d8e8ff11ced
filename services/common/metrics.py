"""Prometheus metrics of a domain service: `http_requests_total` and
`http_request_duration_seconds` (ordersaga.runtime.http_metrics)."""

from __future__ import annotations

from ordersaga.runtime.http_metrics import MetricsMiddleware, RequestMetrics

__all__ = ["HttpMetrics", "MetricsMiddleware"]


class HttpMetrics(RequestMetrics):
    def __init__(self, service: str) -> None:
        super().__init__(prefix="http_", answered_by=f"the {service} service")
