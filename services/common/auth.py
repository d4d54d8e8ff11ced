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
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.types import Scope

from ordersaga.runtime.http_guard import CallerCheck, Refusal, authorization_of
from ordersaga.runtime.route_dependencies import Dependencies, check_caller_by_route
from services.common.errors import FORBIDDEN, UNAUTHORIZED, ServiceError
from services.common.runtime import ServiceRuntime, runtime_of

F = TypeVar("F", bound=Callable[..., Any])


class Caller(StrEnum):
    WORKER = "worker"
    ADMIN = "admin"


# auto_error=False: a missing or malformed header gets our error shape, not
# FastAPI's. The scheme name is what each protected route declares in OpenAPI.
bearer_scheme = HTTPBearer(
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
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Caller:
    """The caller the bearer credential names; 401 when it names none."""
    presented = credentials.credentials.encode() if credentials else b""
    caller = _caller_named_by(runtime_of(request), presented)
    if caller is None:
        raise ServiceError(UNAUTHORIZED, _CREDENTIAL_REQUIRED, headers=_CHALLENGE)
    return caller


def caller_of_scope(runtime: ServiceRuntime, scope: Scope) -> Caller | None:
    """The caller a request's `Authorization: Bearer` names, read from its
    scope as `bearer_scheme` reads it (scheme in any case); None when it names none."""
    scheme, token = get_authorization_scheme_param(authorization_of(scope))
    presented = token.encode() if scheme.lower() == "bearer" and token else b""
    return _caller_named_by(runtime, presented)


def refuse_unadmitted(runtime: ServiceRuntime, app: Starlette) -> CallerCheck:
    """The HTTP guard's question before it refuses a request: the 401 or 403
    the route it asks for would answer, or None. A public route (health,
    metrics, the catalogue) leaves the guard's refusal standing. Only a refused
    request pays."""

    async def refusal_of_caller(scope: Scope, required: Dependencies) -> Refusal | None:
        caller = caller_of_scope(runtime, scope)
        if caller is None:
            return Refusal(401, UNAUTHORIZED, _CREDENTIAL_REQUIRED, headers=_CHALLENGE)
        for admission in _ADMITTED.keys() & required:
            try:
                check_admitted(caller, _ADMITTED[admission])
            except ServiceError as err:
                return Refusal(err.status_code, err.code, err.message)
        return None

    return check_caller_by_route(app, authentication=authenticate, refuse=refusal_of_caller)


AuthenticatedCaller = Annotated[Caller, Depends(authenticate)]


def check_admitted(caller: Caller, admitted: frozenset[Caller]) -> None:
    """403 for a known caller the route does not admit."""
    if caller not in admitted:
        names = " or ".join(sorted(admitted))
        raise ServiceError(FORBIDDEN, f"this endpoint is for the {names} only, not {caller}")


# Which callers each admitting dependency admits, for `refuse_unadmitted`,
# which asks before the route runs. Filled as the routes are declared.
_ADMITTED: dict[Callable[..., Any], frozenset[Caller]] = {}


def declare_admitted(dependency: F, admitted: frozenset[Caller]) -> F:
    """Record that `dependency` admits only `admitted` (it must check that
    itself, with `check_admitted`), so a refused request is refused the same."""
    _ADMITTED[dependency] = admitted
    return dependency


def admitting(*callers: Caller) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency that admits only these callers (403 for another known one)."""
    admitted = frozenset(callers)

    async def admit(caller: AuthenticatedCaller) -> Caller:
        check_admitted(caller, admitted)
        return caller

    return declare_admitted(admit, admitted)


# Route dependencies: the saga's writes, reads (the saga and an audit), operators.
WorkerOnly = Depends(admitting(Caller.WORKER))
WorkerOrAdmin = Depends(admitting(Caller.WORKER, Caller.ADMIN))
AdminOnly = Depends(admitting(Caller.ADMIN))
