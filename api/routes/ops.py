"""Liveness, readiness and metrics: for orchestrators and scrapers, not customers."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsDep, TemporalClientDep
from api.schemas import ReadinessReport

log = logging.getLogger(__name__)

router = APIRouter(tags=["ops"])

READINESS_DEADLINE_SECONDS = 2.0


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
async def readyz(*, client: TemporalClientDep) -> ReadinessReport | JSONResponse:
    """Ready when Temporal answers its health check: without it no order can be
    placed or read, so a load balancer should send traffic elsewhere."""
    try:
        async with asyncio.timeout(READINESS_DEADLINE_SECONDS):
            serving = await client.service_client.check_health()
    # A probe reports rather than fails: any error at all means "not ready".
    except Exception as err:
        log.warning("not ready: %s: %s", type(err).__name__, err)
        reason = f"Temporal at {client.service_client.config.target_host} is unreachable"
        return _not_ready(reason)
    if not serving:
        return _not_ready("Temporal reports it is not serving")
    return ReadinessReport(status="ok")


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse(
        ReadinessReport(status="unavailable", reason=reason).model_dump(),
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(*, registry: MetricsDep) -> Response:
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
