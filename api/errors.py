"""The API's errors and the one place exceptions become HTTP responses.

Routes and the Temporal gateway raise; nothing else catches. Every error body
has the same shape, `{"detail": {"code", "message"}}`; request validation adds
the field errors as `fields: [{"loc", "msg", "type"}]`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from api.ids import IDEMPOTENCY_KEY_HEADER, idempotency_key_problem
from ordersaga.runtime.allowed_methods import headers_of_405
from ordersaga.runtime.auth import AuthError
from ordersaga.runtime.codec import PayloadDecryptionError
from ordersaga.runtime.logging import loggable_path

log = logging.getLogger(__name__)

TEMPORAL_UNAVAILABLE = "TEMPORAL_UNAVAILABLE"
KEY_LOCATION = ("header", IDEMPOTENCY_KEY_HEADER)


class ApiError(Exception):
    """An error the API answers with. Each subclass names its HTTP status and
    its code once, in its class line: `class X(ApiError, status_code=..., code=...)`;
    either may be left out to keep the parent's (TooManyOpenOrders is still a 429)."""

    status_code: ClassVar[int]
    code: ClassVar[str]

    def __init_subclass__(
        cls, *, status_code: int | None = None, code: str | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if status_code is not None:
            cls.status_code = status_code
        if code is not None:
            cls.code = code

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class Unauthenticated(ApiError, status_code=401, code="UNAUTHENTICATED"):
    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="ordersaga"'})


class RateLimited(ApiError, status_code=429, code="RATE_LIMITED"):
    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(retry_after_seconds, 1))})


class TooManyOpenOrders(RateLimited, code="TOO_MANY_OPEN_ORDERS"): ...


class RateLimitUnavailable(RateLimited, status_code=503, code="RATE_LIMIT_UNAVAILABLE"):
    """The rate limit's shared storage (Redis) did not answer, so the order is
    refused rather than let past an uncounted limit. A refusal like the others:
    a retry of an order already accepted still gets its order."""


class Forbidden(ApiError, status_code=403, code="FORBIDDEN"): ...


class CurrencyNotSold(ApiError, status_code=422, code="CURRENCY_NOT_SOLD"): ...


class IdempotencyKeyRequired(ApiError, status_code=400, code="IDEMPOTENCY_KEY_REQUIRED"): ...


class IdempotencyKeyInvalid(ApiError, status_code=400, code="IDEMPOTENCY_KEY_INVALID"): ...


class IdempotencyKeyReused(ApiError, status_code=422, code="IDEMPOTENCY_KEY_REUSED"): ...


class InvalidPageToken(ApiError, status_code=400, code="INVALID_PAGE_TOKEN"): ...


class OrderNotFound(ApiError, status_code=404, code="ORDER_NOT_FOUND"): ...


class TooLate(ApiError, status_code=409, code="TOO_LATE"): ...


class NotNeedsAttention(ApiError, status_code=409, code="NOT_NEEDS_ATTENTION"): ...


class TemporalUnavailable(ApiError, status_code=503, code=TEMPORAL_UNAVAILABLE): ...


class WorkersUnavailable(ApiError, status_code=503, code="WORKERS_UNAVAILABLE"):
    """Temporal answered, but no worker did: cancels and operator decisions are
    carried out by the order's workflow, so they wait for a worker."""


def is_connect_failure(exc: BaseException) -> bool:
    """A lazily connected client that has never reached the server raises a
    bare RuntimeError from the SDK's core bridge, not an RPCError."""
    return isinstance(exc, RuntimeError) and str(exc).startswith("Failed client connect")


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"detail": {"code": code, "message": message, **extra}}


def _error(
    status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    all_headers = dict(headers or {})
    if status_code == status.HTTP_503_SERVICE_UNAVAILABLE:
        all_headers.setdefault("Retry-After", "1")
    return JSONResponse(error_body(code, message), status_code=status_code, headers=all_headers)


async def _coded_error(request: Request, exc: Exception) -> JSONResponse:
    # Ours, and what a verifier raises beyond 401 (mapped in api.auth): 403, or
    # 503 when the issuer's keys cannot be fetched. Both carry their status,
    # code and message; only ours carry headers.
    assert isinstance(exc, ApiError | AuthError)
    headers = exc.headers if isinstance(exc, ApiError) else None
    return _error(exc.status_code, exc.code, exc.message, headers)


def _temporal_unavailable(message: str) -> JSONResponse:
    return _error(status.HTTP_503_SERVICE_UNAVAILABLE, TEMPORAL_UNAVAILABLE, message)


async def _rpc_error(request: Request, exc: Exception) -> JSONResponse:
    # Whatever Temporal answered (down, overloaded, timed out, refused), the
    # order was either started whole or not at all, so retrying with the same
    # Idempotency-Key is safe: 503 tells the client exactly that.
    assert isinstance(exc, RPCError)
    log.warning("temporal call failed: %s %s", exc.status.name, exc.message)
    return _temporal_unavailable(f"Temporal did not answer ({exc.status.name}); retry later")


async def _runtime_error(request: Request, exc: Exception) -> JSONResponse:
    if is_connect_failure(exc):
        log.warning("temporal unreachable: %s", exc)
        return _temporal_unavailable("cannot connect to Temporal; retry later")
    return await _unexpected(request, exc)


async def _undecryptable(request: Request, exc: Exception) -> JSONResponse:
    """What Temporal holds for this order was encrypted with a key this API's
    keyring cannot use: a keyring out of step with another process's (a
    rotation done in one step, say). Nothing the client can fix, and not a
    bug: one ERROR line naming the key id (the codec's message) for the
    operator, and a 503, since the same request succeeds once the keyring is
    fixed."""
    log.error(
        "cannot decrypt a payload for %s %s: %s; every process needs every key in "
        "ORDERSAGA_CODEC_KEYS that another may encrypt with",
        request.method,
        loggable_path(request.url.path),
        exc,
    )
    return _error(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "PAYLOAD_UNDECRYPTABLE",
        "the order's data cannot be decrypted by this server right now; retry later",
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception(
        "unhandled error on %s %s", request.method, loggable_path(request.url.path), exc_info=exc
    )
    return _error(
        status.HTTP_500_INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "internal error; it was logged"
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    key_problem = _idempotency_key_problem(request, exc)
    if key_problem is not None:
        return _error(status.HTTP_400_BAD_REQUEST, *key_problem)
    # Only where and why: pydantic's "input" would echo the rejected values
    # back, addresses and card tokens included, into whatever logs responses.
    fields = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]
    return JSONResponse(
        jsonable_encoder(
            error_body("INVALID_REQUEST", "the request does not match the schema", fields=fields)
        ),
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def _idempotency_key_problem(
    request: Request, exc: RequestValidationError
) -> tuple[str, str] | None:
    """A missing or malformed Idempotency-Key is a 400 with a reason, checked
    before the body: without a usable key the request cannot be placed at all."""
    if not any(tuple(error.get("loc", ()))[:2] == KEY_LOCATION for error in exc.errors()):
        return None
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if key is None:
        return IdempotencyKeyRequired.code, f"the {IDEMPOTENCY_KEY_HEADER} header is required"
    return IdempotencyKeyInvalid.code, idempotency_key_problem(key) or "invalid Idempotency-Key"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {
        status.HTTP_404_NOT_FOUND: "NOT_FOUND",
        status.HTTP_405_METHOD_NOT_ALLOWED: "METHOD_NOT_ALLOWED",
    }.get(exc.status_code, "HTTP_ERROR")
    headers = exc.headers
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        headers = headers_of_405(request, headers)
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _coded_error)
    app.add_exception_handler(AuthError, _coded_error)
    app.add_exception_handler(RPCError, _rpc_error)
    app.add_exception_handler(RuntimeError, _runtime_error)
    app.add_exception_handler(PayloadDecryptionError, _undecryptable)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
