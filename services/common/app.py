"""The app factory the three services are built with.

Nothing happens at import or in `create_service_app` beyond wiring: the engine is
created, the schema migrated and the service's start-up hook run in the lifespan,
and the engine is disposed of when the app stops.

A database the service cannot use at start-up (none at that address, a role or
database missing) stops it with one line naming
the setting and the cause, not a traceback. It does not wait for the database to
come up: docker-compose.yml starts the services once PostgreSQL is healthy and
restarts one that exits, as an orchestrator does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Required, TypedDict

from fastapi import APIRouter, Depends, FastAPI
from opentelemetry.trace import TracerProvider
from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordersaga.runtime.head_requests import HeadAsGet
from ordersaga.runtime.http_guard import HttpGuard
from ordersaga.runtime.logging import AccessLogMiddleware
from ordersaga.runtime.settings import DEFAULT_SERVICE_DATABASE_POOL_SIZE, env_var_name
from ordersaga.runtime.telemetry import (
    FASTAPI_OWN_TELEMETRY_OFF,
    instrument_engine,
    instrument_fastapi,
)
from services.common import direct_writes, driver_sql, health
from services.common.admin import faults_router
from services.common.auth import AdminOnly, authenticate, refuse_unadmitted
from services.common.db import create_engine, database_error_text, redacted_database_url
from services.common.deadlines import ArrivalTime
from services.common.errors import install_error_handlers
from services.common.fences import fences_router
from services.common.idempotency import document_idempotency_key
from services.common.metrics import HttpMetrics, MetricsMiddleware
from services.common.migrations import upgrade_to_head
from services.common.runtime import ServiceRuntime, inject_faults
from services.common.schemas import edge_responses


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    description: str
    # The service's Alembic folder (env.py + versions/).
    migrations: Path
    # The domain's routes: faults apply to these, not to health, metrics or admin.
    routers: Sequence[APIRouter]
    # Operator routes of the service itself, behind the admin token, fault-free.
    admin_routers: Sequence[APIRouter] = ()
    # Routes anyone may call, without a credential, fault-free (inventory's catalogue).
    public_routers: Sequence[APIRouter] = ()
    # Runs after the migrations, before the first request (e.g. seeding).
    on_startup: Callable[[AsyncEngine], Awaitable[None]] | None = None


# Service requests are an order's lines and an address: far below this.
SERVICE_MAX_BODY_BYTES = 64 * 1024


class StartupFailure(Exception):
    """Start-up cannot go ahead for a reason the operator fixes; the message,
    one line, says which setting and why."""


class OneLineStartupFailure:
    """Reports a StartupFailure to the server as its message alone.

    Starlette reports a lifespan that raised with its whole traceback, which
    uvicorn logs (a hundred lines for a database that is not there). A
    StartupFailure already says what to fix; any other exception is a bug and
    keeps its traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold_startup_failure(message: Message) -> None:
            # Held until the exception behind it reaches this middleware.
            if message["type"] == "lifespan.startup.failed":
                held.append(message)
            else:
                await send(message)

        try:
            await self.app(scope, receive, hold_startup_failure)
        except StartupFailure as failure:
            # The server logs the message, then sees the failure reported
            # already and says nothing of the exception.
            held[:] = [{**message, "message": str(failure)} for message in held]
            raise
        finally:
            for message in held:
                await send(message)


class ServiceArguments(TypedDict, total=False):
    """What every service's `create_app` takes besides its own policy."""

    database_url: Required[str]
    database_pool_size: int
    admin_token: Required[SecretStr]
    worker_token: Required[SecretStr]
    tracer_provider: TracerProvider | None


def create_service_app(
    spec: ServiceSpec,
    *,
    database_url: str,
    database_pool_size: int = DEFAULT_SERVICE_DATABASE_POOL_SIZE,
    admin_token: SecretStr,
    worker_token: SecretStr,
    config: object = None,
    tracer_provider: TracerProvider | None = None,
    max_body_bytes: int = SERVICE_MAX_BODY_BYTES,
) -> FastAPI:
    """The service's app; its spans go to `tracer_provider` (default: the global one)."""
    if not admin_token.get_secret_value():
        raise ValueError(f"the {spec.name} service needs a non-empty admin token")
    if not worker_token.get_secret_value():
        raise ValueError(f"the {spec.name} service needs a non-empty worker token")
    if admin_token.get_secret_value() == worker_token.get_secret_value():
        # One credential for both would make every worker an operator.
        raise ValueError(f"the {spec.name} service needs a worker token unlike the admin token")
    runtime = ServiceRuntime(
        name=spec.name,
        admin_token=admin_token,
        worker_token=worker_token,
        config=config,
        metrics=HttpMetrics(spec.name),
    )

    def unusable_database(cause: str) -> StartupFailure:
        setting = env_var_name(f"{spec.name}_database_url")
        return StartupFailure(
            f"cannot start the {spec.name} service: {setting} "
            f"({redacted_database_url(database_url)}): {cause}"
        )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(database_url, pool_size=database_pool_size)
        instrument_engine(engine, tracer_provider)  # SQLAlchemy's own statements
        driver_sql.trace_statements(engine, tracer_provider)  # the units of work's
        try:
            try:
                await upgrade_to_head(engine, spec.migrations, lock_name=spec.name)
                if spec.on_startup is not None:
                    await spec.on_startup(engine)
            except (DBAPIError, OSError) as error:
                # Refused, unreachable, or no such role or database: the
                # operator's to fix, so the cause alone, no traceback. An
                # OSError is the connection's (asyncpg lets those through).
                raise unusable_database(database_error_text(error)) from None
            runtime.started_engine = engine
            yield
        finally:
            runtime.started_engine = None
            await engine.dispose()

    app = FastAPI(
        title=f"ordersaga {spec.name} service",
        description=spec.description,
        lifespan=lifespan,
        telemetry=FASTAPI_OWN_TELEMETRY_OFF,
        # No 307 to the path without its slash: it would skip authentication
        # and build its Location from the client's Host header.
        redirect_slashes=False,
    )
    app.state.runtime = runtime
    document_idempotency_key(app)
    install_error_handlers(app)
    app.add_middleware(HeadAsGet)
    # Rewrites lifespan messages only; a request goes straight through.
    app.add_middleware(OneLineStartupFailure)
    # Inside the metrics and access log, so they count its refusals and its 500s.
    app.add_middleware(
        HttpGuard, max_body_bytes=max_body_bytes, check_caller=refuse_unadmitted(runtime, app)
    )
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics)
    app.add_middleware(AccessLogMiddleware)
    # Outermost: a request's deadline counts from its arrival (services.common.deadlines).
    app.add_middleware(ArrivalTime)
    instrument_fastapi(app, tracer_provider)
    app.include_router(health.router)
    app.include_router(faults_router, responses=edge_responses())
    for router in spec.admin_routers:
        app.include_router(router, dependencies=[AdminOnly], responses=edge_responses())
    for router in spec.public_routers:
        app.include_router(router, responses=edge_responses())
    # Authenticated before faults apply: a stranger learns nothing, not even
    # that faults are on. Each route then admits its own callers. Every
    # service fences orders whose compensation has run (services.common.fences).
    for router in (*spec.routers, fences_router):
        app.include_router(
            router,
            dependencies=[Depends(authenticate), Depends(inject_faults)],
            responses=edge_responses(),
        )
    # The saga's writes, answered by their endpoints without FastAPI's
    # per-request work when nothing about them needs it (the module says when).
    direct_writes.install(app)
    return app
