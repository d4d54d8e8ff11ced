"""Who may call which route: the bearer token's subject and scopes.

Every route but health, readiness, metrics, docs and the dev issuer's JWKS
declares one of these dependencies, so the OpenAPI document shows the bearer
scheme on each and "Authorize" in /docs works:

- `CustomerDep`: a token with the customer scope; the customer is its subject.
- `OperatorDep`: a token with the operator scope.
- `CallerDep`: either; routes then narrow what a customer may see to their own.

A missing or invalid token is 401 with `WWW-Authenticate: Bearer`; a valid
token without the scope is 403.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.applications import Starlette
from starlette.types import Scope

from api.errors import ApiError, Forbidden, Unauthenticated
from ordersaga.runtime.auth import AuthError, Principal, TokenVerifier, bearer_token
from ordersaga.runtime.http_guard import CallerCheck, Refusal, authorization_of
from ordersaga.runtime.logging import bind_log_fields
from ordersaga.runtime.route_dependencies import Dependencies, check_caller_by_route

# auto_error=False: a missing header gets our error body, not FastAPI's.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="An OAuth 2.0 access token (JWT) from the configured issuer.",
)


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("a bearer token is required (Authorization: Bearer <token>)")
    verifier: TokenVerifier = request.app.state.verifier
    try:
        principal = await verifier.verify(credentials.credentials)
    except AuthError as err:
        if err.status_code == 401:
            raise Unauthenticated(err.message) from None
        raise
    # The subject's derived id only: a subject may be an e-mail address.
    bind_log_fields(customer_id=principal.customer_id)
    return principal


CallerDep = Annotated[Principal, Depends(authenticated)]


def refuse_unadmitted(verifier: TokenVerifier, app: Starlette) -> CallerCheck:
    """The HTTP guard's question before it refuses a request: the 401 or 403
    the route it asks for would answer, or None. A route that takes no token
    (health, metrics, docs) leaves the guard's refusal standing, and so does an
    issuer whose keys cannot be had (503). Only a refused request pays."""

    async def refusal_of_caller(scope: Scope, required: Dependencies) -> Refusal | None:
        try:
            principal = await verifier.verify(bearer_token(authorization_of(scope)))
        except AuthError as err:
            if err.status_code == 401:
                return _refusal(Unauthenticated(err.message))
            return None
        for admit in _SCOPE_CHECKS.intersection(required):
            try:
                await admit(principal)
            except Forbidden as err:
                return _refusal(err)
        return None

    return check_caller_by_route(app, authentication=authenticated, refuse=refusal_of_caller)


def _refusal(error: ApiError) -> Refusal:
    return Refusal(error.status_code, error.code, error.message, headers=error.headers)


async def customer(principal: CallerDep) -> Principal:
    if not principal.is_customer:
        raise Forbidden("this token lacks the customer scope")
    return principal


async def operator(principal: CallerDep) -> Principal:
    if not principal.is_operator:
        raise Forbidden("this token lacks the operator scope")
    return principal


async def customer_or_operator(principal: CallerDep) -> Principal:
    if not (principal.is_customer or principal.is_operator):
        raise Forbidden("this token has neither the customer nor the operator scope")
    return principal


CustomerDep = Annotated[Principal, Depends(customer)]
OperatorDep = Annotated[Principal, Depends(operator)]
ReaderDep = Annotated[Principal, Depends(customer_or_operator)]

# What a route may require of a caller's scopes, asked by `refuse_unadmitted`.
_SCOPE_CHECKS = frozenset({customer, operator, customer_or_operator})
