"""`ordersaga codec-server`: Temporal's remote codec endpoints for the Web UI and CLI.

`POST /encode` and `POST /decode` take and answer `{"payloads": [...]}` in the
protobuf JSON form of temporal.api.common.v1.Payloads, as the Web UI and
`temporal ... --codec-endpoint` send it. Decoding hands out plaintext, so every
call needs an operator's bearer token (the same JWTs the API accepts): none or
an invalid one is 401, a valid one without the operator scope 403, and neither
carries a byte of any payload. A request for another namespace (X-Namespace)
is refused.

Browsers reach it only from the configured Web UI origins (CORS, credentials
and the Authorization header allowed); any other origin gets no CORS headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from ordersaga.auth import AuthError, Principal, bearer_token, forbidden
from ordersaga.codec import EncryptionCodec, PayloadDecryptionError

NAMESPACE_HEADER = "X-Namespace"
# A page of history the UI decodes at once; Temporal's own limit is 2 MiB a
# payload and 4 MiB a gRPC message.
MAX_BODY_BYTES = 16 * 1024 * 1024
CORS_MAX_AGE_SECONDS = 600


class Verifier(Protocol):
    async def verify(self, token: str) -> Principal: ...


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"detail": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def create_codec_app(
    *,
    codec: EncryptionCodec,
    verifier: Verifier,
    namespace: str,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    app = FastAPI(title="ordersaga codec server", docs_url=None, redoc_url=None, openapi_url=None)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_credentials=True,
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", NAMESPACE_HEADER],
            max_age=CORS_MAX_AGE_SECONDS,
        )

    async def authorized(request: Request) -> Response | None:
        """None when an operator calls for our namespace, else the refusal."""
        try:
            principal = await verifier.verify(bearer_token(request.headers.get("authorization")))
            if not principal.is_operator:
                raise forbidden("decoding payloads needs an operator token")
        except AuthError as error:
            headers = (
                {"WWW-Authenticate": 'Bearer realm="ordersaga"'}
                if error.status_code == 401
                else None
            )
            return _error(error.status_code, error.code, error.message, headers)
        asked = request.headers.get(NAMESPACE_HEADER)
        if asked is not None and asked != namespace:
            message = f"this codec server serves namespace {namespace!r} only"
            return _error(403, "FORBIDDEN", message)
        return None

    async def transform(
        request: Request, apply: Callable[[list[Payload]], Awaitable[list[Payload]]]
    ) -> Response:
        refusal = await authorized(request)
        if refusal is not None:
            return refusal
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "TOO_LARGE", f"the body exceeds {MAX_BODY_BYTES} bytes")
        try:
            payloads = json_format.Parse(body, Payloads())
        except (json_format.ParseError, UnicodeDecodeError):
            return _error(400, "BAD_REQUEST", 'expected {"payloads": [...]} (Payloads as JSON)')
        try:
            result = Payloads(payloads=await apply(list(payloads.payloads)))
        except PayloadDecryptionError as error:
            return _error(422, "UNDECRYPTABLE", str(error))
        content: dict[str, Any] = json_format.MessageToDict(result)
        content.setdefault("payloads", [])
        return JSONResponse(content)

    @app.post("/encode")
    async def encode(request: Request) -> Response:
        return await transform(request, codec.encode)

    @app.post("/decode")
    async def decode(request: Request) -> Response:
        return await transform(request, codec.decode)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    return app
