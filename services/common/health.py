"""Liveness, readiness and metrics: the endpoints operators and orchestrators poll."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from contracts import errors
from services.common.db import transaction
from services.common.errors import ServiceError
from services.common.runtime import ServiceRuntimeDep
from services.common.schemas import error_responses

READINESS_TIMEOUT_SECONDS = 2.0

router = APIRouter(tags=["health"])


class HealthPublic(BaseModel):
    status: str


@router.get("/healthz", response_model=HealthPublic)
async def healthz() -> HealthPublic:
    """The process is alive and serving; says nothing about the database."""
    return HealthPublic(status="ok")


@router.get(
    "/readyz",
    response_model=HealthPublic,
    responses=error_responses(errors.SERVICE_UNAVAILABLE),
)
async def readyz(*, runtime: ServiceRuntimeDep) -> HealthPublic:
    """Ready for traffic: the database answers."""
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            async with transaction(runtime.engine, write=False) as connection:
                await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as err:
        raise ServiceError(
            errors.SERVICE_UNAVAILABLE, f"database not reachable: {type(err).__name__}"
        ) from err
    return HealthPublic(status="ok")


@router.get("/metrics", include_in_schema=False)
async def metrics(*, runtime: ServiceRuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
