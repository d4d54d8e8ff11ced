"""The one error shape every service answers with, and the status of each code.

Errors are `{"detail": {"code": ..., "message": ...}}`. Request validation
errors are that shape too, code REQUEST_REJECTED with status 422, plus
`fields: [{loc, msg, type}]` so clients get field paths (never the input).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts import errors
from ordersaga.runtime.allowed_methods import headers_of_405
from services.common.domain import DomainError

logger = logging.getLogger(__name__)

# Local to the services: the activities never see them (a worker with a wrong
# credential is a deployment error, retried until an operator fixes it).
UNAUTHORIZED = "UNAUTHORIZED"
FORBIDDEN = "FORBIDDEN"

HTTP_STATUS: Mapping[str, int] = {
    errors.REQUEST_REJECTED: 400,
    UNAUTHORIZED: 401,
    errors.PAYMENT_DECLINED: 402,
    FORBIDDEN: 403,
    errors.NOT_FOUND: 404,
    errors.OUT_OF_STOCK: 409,
    errors.INVALID_STATE: 409,
    errors.REFUND_REFUSED: 409,
    errors.PRICE_CHANGED: 409,
    errors.ORDER_FENCED: 409,
    errors.UNKNOWN_SKU: 422,
    errors.ADDRESS_UNDELIVERABLE: 422,
    errors.IDEMPOTENCY_KEY_REUSED: 422,
    errors.INJECTED_FAULT: 503,
    errors.SERVICE_UNAVAILABLE: 503,
    errors.DEADLINE_EXCEEDED: 504,
}


class ServiceError(Exception):
    """An answer decided by the web layer (auth, headers, faults), not the domain."""

    def __init__(
        self, code: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status_code = HTTP_STATUS[code]
        self.headers = dict(headers or {})


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"detail": {"code": code, "message": message}}


def domain_error_reply(err: DomainError) -> tuple[int, dict[str, Any]]:
    return HTTP_STATUS.get(err.code, 409), error_body(err.code, err.message)


def error_response(
    status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status_code, headers=headers)


async def _on_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status_code, exc.code, exc.message, exc.headers)


async def _on_domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status_code, body = domain_error_reply(exc)
    return JSONResponse(body, status_code=status_code)


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = exc.headers
    if exc.status_code == 404:
        code = errors.NOT_FOUND
    elif exc.status_code >= 500:
        code = errors.SERVICE_UNAVAILABLE
    else:
        code = errors.REQUEST_REJECTED
    if exc.status_code == 405:
        headers = headers_of_405(request, headers)
    return error_response(exc.status_code, code, str(exc.detail), headers)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Pydantic echoes the offending input, which may be a whole body with a
    # payment token or an address in it; the location and reason are enough.
    reported = exc.errors()[:MAX_REPORTED_FIELDS]
    locations = [[_printable(part) for part in error.get("loc", ())] for error in reported]
    fields = [
        {
            "loc": location,
            "msg": _printable(error.get("msg", "")),
            "type": _printable(error.get("type", "")),
        }
        for location, error in zip(locations, reported, strict=True)
    ]
    where = ", ".join(".".join(str(part) for part in location) for location in locations)
    body = error_body(errors.REQUEST_REJECTED, f"the request is not valid ({where})")
    body["detail"]["fields"] = fields
    return JSONResponse(body, status_code=422)


# A body with a thousand bad lines gets its first errors named, not all of them.
MAX_REPORTED_FIELDS = 20
MAX_REPORTED_TEXT = 200


def _printable(value: object) -> str | int:
    """A location part or message that always encodes: ints as they are, any
    text bounded and with lone surrogates escaped (they cannot be UTF-8)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value)[:MAX_REPORTED_TEXT]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def _on_database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    # Retryable for the caller; the type is enough in the log, and the engine
    # hides statement parameters so no request data leaks into the message.
    logger.warning("database unavailable: %s", type(exc).__name__)
    return error_response(
        503, errors.SERVICE_UNAVAILABLE, f"database unavailable ({type(exc).__name__})"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _on_api_error)
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    for unavailable in (OperationalError, InterfaceError, PoolTimeoutError, OSError, TimeoutError):
        app.add_exception_handler(unavailable, _on_database_unavailable)
