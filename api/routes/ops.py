"""Liveness, readiness and metrics: for orchestrators and scrapers, not customers."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsDep, TemporalClientDep
from api.schemas import ReadinessReport
from ordersaga.runtime.temporal_config import missing_search_attributes, search_attributes_problem

log = logging.getLogger(__name__)

router = APIRouter(tags=["ops"])

READINESS_DEADLINE_SECONDS = 2.0
_DEADLINE = timedelta(seconds=READINESS_DEADLINE_SECONDS)
# Set on the app's state once Temporal has listed every search attribute.
_ATTRIBUTES_FOUND = "ordersaga_search_attributes_found"


@router.get("/healthz", response_model=ReadinessReport)
async def healthz() -> ReadinessReport:
    """The process is up. Says nothing about Temporal, on purpose: restarting
    the API would not bring Temporal back."""
    return ReadinessReport(status="ok")


@router.get(
    "/readyz",
    response_model=ReadinessReport,
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": ReadinessReport}},
)
async def readyz(*, request: Request, client: TemporalClientDep) -> ReadinessReport | JSONResponse:
    """Ready when Temporal answers its health check and its namespace has the
    saga's search attributes: without either no order can be placed, so a load
    balancer should send traffic elsewhere. Once the attributes were found,
    they are not asked for again (nobody removes them from a running system)."""
    try:
        async with asyncio.timeout(READINESS_DEADLINE_SECONDS):
            serving = await client.service_client.check_health()
            missing = (
                []
                if not serving or getattr(request.app.state, _ATTRIBUTES_FOUND, False)
                else await missing_search_attributes(client, rpc_timeout=_DEADLINE)
            )
    # A probe reports rather than fails: any error at all means "not ready".
    except Exception as err:
        log.warning("not ready: %s: %s", type(err).__name__, err)
        reason = f"Temporal at {client.service_client.config.target_host} is unreachable"
        return _not_ready(reason)
    if not serving:
        return _not_ready("Temporal reports it is not serving")
    if missing:
        problem = search_attributes_problem(missing, client.namespace)
        log.warning("not ready: %s", problem)
        return _not_ready(problem)
    setattr(request.app.state, _ATTRIBUTES_FOUND, True)
    return ReadinessReport(status="ok")


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse(
        ReadinessReport(status="unavailable", reason=reason).model_dump(),
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(*, registry: MetricsDep) -> Response:
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
