"""The API's composition root: create_app(settings) builds one FastAPI app.

It keeps no state but a Temporal client. When none is injected (tests inject
theirs), it connects lazily, so the API starts and answers /healthz while
Temporal is still down, and every Temporal call answers 503 until it is back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from opentelemetry.trace import TracerProvider
from temporalio.client import Client
from temporalio.service import RetryConfig

from api.auth import refuse_unadmitted
from api.errors import install_error_handlers
from api.limits import OpenOrderCap, OrderRateLimit
from api.metrics import ApiMetrics, MetricsMiddleware
from api.middleware import DropInboundBaggage
from api.routes import ops, orders
from api.routes.dev_issuer import dev_issuer_router
from ordersaga.runtime.auth import DevIssuer, TokenVerifier
from ordersaga.runtime.codec import payload_keyring
from ordersaga.runtime.head_requests import HeadAsGet
from ordersaga.runtime.http_guard import HttpGuard
from ordersaga.runtime.logging import AccessLogMiddleware
from ordersaga.runtime.settings import Settings
from ordersaga.runtime.telemetry import FASTAPI_OWN_TELEMETRY_OFF, instrument_fastapi
from ordersaga.runtime.temporal_config import data_converter, temporal_interceptors
from ordersaga.runtime.version import package_version

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    client: Client | None = None,
    tracer_provider: TracerProvider | None = None,
    verifier: TokenVerifier | None = None,
) -> FastAPI:
    """The API; its spans, and those of the Temporal client it connects, go to
    `tracer_provider` (default: the global one).

    Raises ValueError (with the variable to set) when the settings cannot
    authenticate anyone or lack a secret outside dev mode.
    """
    verifier = verifier or TokenVerifier.from_settings(settings)
    page_token_key = settings.page_token_key_value().encode()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.temporal_client is None:
            keyring = payload_keyring(settings)
            if keyring is None:
                log.warning("payload codec OFF (benchmark, dev mode): payloads are not encrypted")
            app.state.temporal_client = await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=data_converter(keyring),
                retry_config=api_retry_config(settings),
                interceptors=temporal_interceptors(tracer_provider),
                lazy=True,
            )
            log.info(
                "API using Temporal at %s, namespace %s",
                settings.temporal_address,
                settings.temporal_namespace,
            )
        yield

    app = FastAPI(
        title="ordersaga API",
        version=package_version(),
        description=(
            "Places orders as Temporal workflows (reserve, charge, ship, with every "
            "done step undone on failure or cancel) and reads them back. No database: "
            "Temporal holds every order."
        ),
        lifespan=lifespan,
        telemetry=FASTAPI_OWN_TELEMETRY_OFF,
        # A 307 to the path without its slash, before any route checks who is
        # calling, would build its Location from the client's Host header.
        redirect_slashes=False,
    )
    # Set here rather than in the lifespan so that an injected client also
    # works under transports that never run the lifespan (httpx.ASGITransport).
    app.state.temporal_client = client
    app.state.metrics = ApiMetrics()
    app.state.verifier = verifier
    app.state.page_token_key = page_token_key
    app.state.rpc_timeout = timedelta(seconds=settings.api_temporal_rpc_timeout_seconds)
    app.state.order_rate_limit = OrderRateLimit(
        settings.api_order_rate_limit, settings.rate_limit_storage_url.get_secret_value()
    )
    app.state.open_order_cap = OpenOrderCap(settings.api_max_open_orders_per_customer)
    app.state.catalog_currency = settings.catalog_currency
    app.add_middleware(HeadAsGet)
    # Inside metrics and the access log, so refused bodies are counted and logged.
    app.add_middleware(
        HttpGuard,
        max_body_bytes=settings.api_max_body_bytes,
        check_caller=refuse_unadmitted(verifier, app),
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(AccessLogMiddleware)
    instrument_fastapi(app, tracer_provider)
    # Outermost, so the tracing middleware never sees it: baggage from outside
    # would otherwise turn into log fields (order_id, step) anyone could forge.
    app.add_middleware(DropInboundBaggage)
    install_error_handlers(app)
    app.include_router(orders.router)
    app.include_router(ops.router)
    if settings.dev_mode and not settings.auth_jwks_url:
        app.include_router(dev_issuer_router(DevIssuer.from_settings(settings)))
    _document_catalog_currency(app, settings.catalog_currency)
    return app


def api_retry_config(settings: Settings) -> RetryConfig:
    """The SDK retries a failed call for up to 10 s by default: a request the API
    already answered 503 could then still start an order seconds later, with
    no retry from the client. The API's calls retry only within its deadline."""
    deadline_ms = int(settings.api_temporal_rpc_timeout_seconds * 1000)
    return RetryConfig(
        initial_interval_millis=50,
        max_interval_millis=max(deadline_ms // 2, 50),
        max_elapsed_time_millis=deadline_ms,
        max_retries=3,
    )


def _document_catalog_currency(app: FastAPI, currency: str) -> None:
    """The OpenAPI document names the one currency orders are priced in, so
    what it declares valid is what the API accepts (the code checks the same)."""
    build_default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build_default()
            order = document["components"]["schemas"]["OrderCreate"]
            order["properties"]["currency"]["enum"] = [currency]
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
