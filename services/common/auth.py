"""Who is calling a service: the workers (the saga) or an operator (admin).

Every service endpoint but health, metrics and inventory's public catalogue
takes `Authorization: Bearer <credential>`. The workers' credential makes the
caller `worker`, the admin token makes it `admin`; anything else is a 401. Each
route then says which callers it admits, and a known caller it does not admit
gets a 403: the saga's writes are the workers' alone, the reads are also open
to an operator's audit, and the admin endpoints are the operator's alone.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import SecretStr

from ordersaga.runtime.http_guard import Authenticate, Refusal
from services.common.errors import FORBIDDEN, UNAUTHORIZED, ServiceError
from services.common.runtime import ServiceRuntime, runtime_of


class Caller(StrEnum):
    WORKER = "worker"
    ADMIN = "admin"


# auto_error=False: a missing or malformed header gets our error shape, not
# FastAPI's. The scheme name is what each protected route declares in OpenAPI.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ServiceCredential",
    description="The workers' credential (ORDERSAGA_WORKER_TOKEN) or the admin token",
)


def _matches(presented: bytes, expected: SecretStr) -> bool:
    # Constant-time: how long the comparison takes must not reveal the token.
    return secrets.compare_digest(presented, expected.get_secret_value().encode())


_CREDENTIAL_REQUIRED = "a valid credential is required (Authorization: Bearer <token>)"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _caller_named_by(runtime: ServiceRuntime, presented: bytes) -> Caller | None:
    # Both comparisons always run, so timing does not tell which one matched.
    is_worker = _matches(presented, runtime.worker_token)
    is_admin = _matches(presented, runtime.admin_token)
    if presented and is_worker:
        return Caller.WORKER
    if presented and is_admin:
        return Caller.ADMIN
    return None


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller the bearer credential names; 401 when it names none."""
    presented = credentials.credentials.encode() if credentials else b""
    caller = _caller_named_by(runtime_of(request), presented)
    if caller is None:
        raise ServiceError(UNAUTHORIZED, _CREDENTIAL_REQUIRED, headers=_CHALLENGE)
    return caller


def refuse_strangers(runtime: ServiceRuntime) -> Authenticate:
    """The HTTP guard's question before it refuses a body: the same 401 as
    `authenticate`, read from the header as HTTPBearer reads it."""

    async def unknown_caller(authorization: str | None) -> Refusal | None:
        scheme, token = get_authorization_scheme_param(authorization)
        presented = token.encode() if scheme.lower() == "bearer" and token else b""
        if _caller_named_by(runtime, presented) is not None:
            return None
        return Refusal(401, UNAUTHORIZED, _CREDENTIAL_REQUIRED, headers=_CHALLENGE)

    return unknown_caller


AuthenticatedCaller = Annotated[Caller, Depends(authenticate)]


def check_admitted(caller: Caller, admitted: frozenset[Caller]) -> None:
    """403 for a known caller the route does not admit."""
    if caller not in admitted:
        names = " or ".join(sorted(admitted))
        raise ServiceError(FORBIDDEN, f"this endpoint is for the {names} only, not {caller}")


def admitting(*callers: Caller) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency that admits only these callers (403 for another known one)."""
    admitted = frozenset(callers)

    async def admit(caller: AuthenticatedCaller) -> Caller:
        check_admitted(caller, admitted)
        return caller

    return admit


# Route dependencies: the saga's writes, reads (the saga and an audit), operators.
WorkerOnly = Depends(admitting(Caller.WORKER))
WorkerOrAdmin = Depends(admitting(Caller.WORKER, Caller.ADMIN))
AdminOnly = Depends(admitting(Caller.ADMIN))
