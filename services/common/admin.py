"""Operator endpoints shared by every service, behind the admin bearer token."""

from __future__ import annotations

from fastapi import APIRouter, status

from services.common.auth import AdminOnly
from services.common.errors import FORBIDDEN, UNAUTHORIZED
from services.common.faults import FaultsPublic, FaultsUpdate
from services.common.runtime import ServiceRuntimeDep
from services.common.schemas import error_responses

faults_router = APIRouter(
    prefix="/admin/faults",
    tags=["admin"],
    dependencies=[AdminOnly],
    responses=error_responses(UNAUTHORIZED, FORBIDDEN),
)


@faults_router.get("", response_model=FaultsPublic)
async def get_faults(*, runtime: ServiceRuntimeDep) -> FaultsPublic:
    """The faults injected now (both 0: none)."""
    return runtime.faults.public()


@faults_router.put("", response_model=FaultsPublic)
async def set_faults(*, update: FaultsUpdate, runtime: ServiceRuntimeDep) -> FaultsPublic:
    """Change what the body names (`error_rate` 0..1, `latency_ms`); the other stays."""
    runtime.faults.configure(update)
    return runtime.faults.public()


@faults_router.delete("", status_code=status.HTTP_204_NO_CONTENT)
async def clear_faults(*, runtime: ServiceRuntimeDep) -> None:
    runtime.faults.clear()
