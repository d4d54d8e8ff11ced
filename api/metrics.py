"""Prometheus metrics of the API: `ordersaga_api_requests_total` and
`ordersaga_api_request_duration_seconds` (ordersaga.runtime.http_metrics)."""

from __future__ import annotations

from ordersaga.runtime.http_metrics import MetricsMiddleware, RequestMetrics

__all__ = ["ApiMetrics", "MetricsMiddleware"]


class ApiMetrics(RequestMetrics):
    def __init__(self) -> None:
        super().__init__(prefix="ordersaga_api_", answered_by="the API")
