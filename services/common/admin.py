"""Operator endpoints shared by every service, behind the admin bearer token."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.common.errors import UNAUTHORIZED, ApiError
from services.common.faults import FaultsPublic, FaultsUpdate
from services.common.runtime import Runtime
from services.common.schemas import error_responses

# auto_error=False: a missing or malformed header gets our error shape, not FastAPI's.
_bearer = HTTPBearer(auto_error=False, description="The operator's admin token")


async def require_admin(
    runtime: Runtime,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    presented = credentials.credentials if credentials else ""
    # Constant-time comparison: response timing must not reveal the token.
    if not presented or not secrets.compare_digest(
        presented.encode(), runtime.admin_token.encode()
    ):
        raise ApiError(
            UNAUTHORIZED,
            "a valid admin token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


AdminOnly = Depends(require_admin)

faults_router = APIRouter(
    prefix="/admin/faults",
    tags=["admin"],
    dependencies=[AdminOnly],
    responses=error_responses(UNAUTHORIZED),
)


@faults_router.put("", response_model=FaultsPublic)
async def set_faults(*, update: FaultsUpdate, runtime: Runtime) -> FaultsPublic:
    runtime.faults.configure(update)
    return runtime.faults.public()


@faults_router.delete("", status_code=status.HTTP_204_NO_CONTENT)
async def clear_faults(*, runtime: Runtime) -> None:
    runtime.faults.clear()
