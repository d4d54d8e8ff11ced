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

The Web UI of `temporal server start-dev` has no login, so it has no access
token to pass. For it, an operator opens a browser session here: `GET /login`
is a form where they paste their operator token, `POST /login` verifies it
like any bearer token and keeps it in an HttpOnly, SameSite=Strict cookie that
lives as long as the token does, MAX_SESSION_SECONDS at most; `POST /logout`
drops it. `/encode` and `/decode` take the token from `Authorization: Bearer`
or from that cookie and verify it on every call. Because a browser attaches a cookie on its own, a
request authenticated by the cookie alone is honoured only with an `Origin`
that is one of the Web UI origins (403 otherwise, missing Origin included),
and `/login` and `/logout` only from this server's own page, so another site
can neither read payloads with an operator's session nor plant its own token
in a victim's browser (login CSRF).

Every error is the API's `{"detail": {"code", "message"}}`, an unknown path
(404) or method (405) included.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers
from temporalio.api.common.v1 import Payload, Payloads

from api.errors import error_body, install_error_handlers
from ordersaga.runtime.auth import AuthError, Principal, bearer_token, forbidden, unauthenticated
from ordersaga.runtime.codec import EncryptionCodec, PayloadDecryptionError
from ordersaga.runtime.head_requests import HeadAsGet
from ordersaga.runtime.http_guard import BODY_TOO_LARGE, object_with_unique_keys
from ordersaga.runtime.http_metrics import MetricsMiddleware, RequestMetrics

log = logging.getLogger(__name__)

NAMESPACE_HEADER = "X-Namespace"
SESSION_COOKIE = "ordersaga_codec_session"
# The largest bodies read, never buffered past (413 BODY_TOO_LARGE).
# A pasted token (at most auth.MAX_TOKEN_BYTES) with its form or JSON wrapping:
MAX_LOGIN_BODY_BYTES = 16 * 1024
# A page of history the UI decodes at once; Temporal's own limit is 2 MiB a
# payload and 4 MiB a gRPC message:
MAX_BODY_BYTES = 16 * 1024 * 1024
CORS_MAX_AGE_SECONDS = 600
# The longest a browser session lasts, whatever the token's own expiry: a token
# from a provider (or `ordersaga token`) may live far longer than a working
# day, and the cookie that carries it should not.
MAX_SESSION_SECONDS = 12 * 3600


# Bytes in protobuf's JSON form: base64, standard or URL-safe, padded or not.
# Python's protobuf decodes it leniently, dropping what is not in the alphabet,
# so `"data": "!!"` would be read as no bytes and echoed back as such.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def _bytes_fields_are_base64(document: Any) -> bool:
    """Whether every bytes field of a Payloads document (each payload's data and
    metadata values) is base64; the document's shape is Parse's to check."""
    payloads = document.get("payloads") if isinstance(document, dict) else None
    for payload in payloads if isinstance(payloads, list) else ():
        if not isinstance(payload, dict):
            continue
        metadata = payload.get("metadata")
        values = [payload.get("data"), *(metadata.values() if isinstance(metadata, dict) else ())]
        if any(isinstance(value, str) and not _BASE64.fullmatch(value) for value in values):
            return False
    return True


class WebUiCors(CORSMiddleware):
    """Starlette's CORS, with a refused preflight (another origin, method or
    header) answered in the one error shape rather than plain text. It still
    carries no `Access-Control-Allow-Origin`, so no other site reads it."""

    def preflight_response(self, request_headers: Headers) -> Response:
        answer = super().preflight_response(request_headers)
        if answer.status_code != 400:
            return answer
        # Starlette says which: "Disallowed CORS origin, headers".
        refused = bytes(answer.body).decode().removeprefix("Disallowed CORS ")
        refusal = _error(
            400, "CORS_REFUSED", f"a browser may not call this server so (refused: {refused})"
        )
        for name, value in answer.headers.items():
            if name not in ("content-type", "content-length"):
                refusal.headers[name] = value
        return refusal


class Verifier(Protocol):
    async def verify(self, token: str) -> Principal: ...


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _auth_error(error: AuthError) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="ordersaga"'} if error.status_code == 401 else None
    return _error(error.status_code, error.code, error.message, headers)


def _too_large(limit: int) -> Response:
    return _error(413, BODY_TOO_LARGE, _too_large_message(limit))


def _too_large_message(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed `limit` bytes.

    A Content-Length over the limit is refused before a byte is read; a streamed
    body is read chunk by chunk and abandoned once the running total passes the
    limit, so at most `limit` bytes (and one chunk) are ever held. The API and
    the services have this from ordersaga.runtime.http_guard, but its one limit
    for every route and its JSON-only bodies fit neither the login form nor
    /encode and /decode beside it.
    """
    declared = request.headers.get("content-length", "").strip()
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# --- the operator's browser session -------------------------------------------

# The login page is served by this server to this server: it needs no script,
# no outside asset, and no frame may hold it (clickjacking of the form).
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    # Not no-referrer: under it Chromium posts the form with "Origin: null".
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ordersaga codec server: operator session</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 44rem; margin: 3rem auto;
       padding: 0 1rem; line-height: 1.5; }}
textarea {{ width: 100%; font-family: monospace; }}
.error {{ color: #a00; }}
.ok {{ color: #060; }}
code {{ background: #eee; padding: 0 .2em; }}
</style>
</head>
<body>
<h1>Operator session for the Temporal Web UI</h1>
{body}
</body>
</html>
"""

_LOGIN_FORM = f"""<p>Payloads are encrypted. Paste an operator token to let this browser's
Temporal Web UI decode them through this codec server; it is kept in an
HttpOnly cookie until the token expires ({MAX_SESSION_SECONDS // 3600} hours at most), and
checked again on every request.</p>
<p>In dev mode: <code>.venv/bin/ordersaga token --operator</code>.</p>
<form method="post" action="login">
<p><label for="token">Operator token</label><br>
<textarea id="token" name="token" rows="6" required autocomplete="off"
 spellcheck="false"></textarea></p>
<p><button type="submit">Sign in</button></p>
</form>
"""

_SIGNED_IN = """<p class="ok" role="status">Signed in as <strong>{subject}</strong> until
{until} at the latest.</p>
<p>The Temporal Web UI decodes payloads through this server once its codec
settings include cross-origin credentials (see the README, "Encrypted payloads").</p>
<form method="post" action="logout"><p><button type="submit">Sign out</button></p></form>
"""


def _page(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(body=body), status_code=status, headers=_PAGE_HEADERS)


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _session_end_at_latest(expires_at: float) -> float:
    """When a session on a token with this expiry ends at the latest.

    The cookie does not say when it was set, so this is the token's expiry or
    a whole MAX_SESSION_SECONDS from now, whichever comes first: never earlier
    than the browser drops it. Bounded, too, so a token claiming to live for
    ages (exp 1e20) cannot push the date past what a datetime holds.
    """
    return min(expires_at, time.time() + MAX_SESSION_SECONDS)


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}".lower()


def _from_own_page(request: Request) -> bool:
    """Whether a POST comes from a page of this very server.

    Sec-Fetch-Site, which every current browser sends and no page can set, is
    decisive when present (it also sees through redirects). Else Origin, sent
    by browsers with every POST, must be ours. A request with neither is no
    browser, and needs no session: it sends its bearer token.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    return origin is not None and origin.lower() == _own_origin(request)


def _is_form(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded"


def _submitted_token(request: Request, body: bytes) -> str | None:
    """The token of a login form or of `{"token": "..."}`; None when malformed."""
    try:
        text = body.decode("utf-8")
        if _is_form(request):
            values = parse_qs(text, max_num_fields=4).get("token", [])
            token: object = values[0] if len(values) == 1 else None
        else:
            parsed = json.loads(text)
            token = parsed.get("token") if isinstance(parsed, dict) else None
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return token.strip() if isinstance(token, str) else None


def create_codec_app(
    *,
    codec: EncryptionCodec,
    verifier: Verifier,
    namespace: str,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    app = FastAPI(
        title="ordersaga codec server",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # No 307 built from the client's Host header: a wrong path is a 404.
        redirect_slashes=False,
    )
    # The API's handlers, so that what FastAPI answers by itself (unknown path,
    # wrong method) and anything unexpected have the body every refusal here
    # has, not FastAPI's bare {"detail": "Not Found"}.
    install_error_handlers(app)
    ui_origins = frozenset(origin.rstrip("/").lower() for origin in cors_origins)
    app.add_middleware(HeadAsGet)
    if cors_origins:
        app.add_middleware(
            WebUiCors,
            allow_origins=list(cors_origins),
            allow_credentials=True,
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", NAMESPACE_HEADER],
            max_age=CORS_MAX_AGE_SECONDS,
        )
    # Who decrypts how often, and how many are refused: an operator's audit
    # signal (a run of 401s is someone trying tokens).
    metrics = RequestMetrics(prefix="codec_", answered_by="the codec server")
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def presented_token(request: Request) -> str:
        """The caller's token: its Authorization header, else its session cookie.

        An explicit header always wins, so the CLI and a UI that passes its
        access token behave exactly as without sessions. The cookie alone
        counts only from a Web UI origin: the browser attaches it to requests
        of any page on this host (cookies ignore ports), which must not be able
        to read payloads with the operator's session.
        """
        authorization = request.headers.get("authorization")
        if authorization is not None:
            return bearer_token(authorization)
        session = request.cookies.get(SESSION_COOKIE)
        if not session:
            return bearer_token(None)
        origin = request.headers.get("origin")
        if origin is None or origin.rstrip("/").lower() not in ui_origins:
            raise forbidden("the session cookie is accepted only from the Temporal Web UI")
        return session

    async def operator(token: str) -> Principal:
        principal = await verifier.verify(token)
        if not principal.is_operator:
            raise forbidden("decoding payloads needs an operator token")
        return principal

    async def authorized(request: Request) -> Response | None:
        """None when an operator calls for our namespace, else the refusal."""
        try:
            await operator(presented_token(request))
        except AuthError as error:
            return _auth_error(error)
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
        body = await _bounded_body(request, MAX_BODY_BYTES)
        if body is None:
            return _too_large(MAX_BODY_BYTES)
        # Read once, and checked as JSON (ordersaga's rule for a key given
        # twice) and as base64 before protobuf reads it into Payloads.
        try:
            document = json.loads(body, object_pairs_hook=object_with_unique_keys)
            payloads = json_format.ParseDict(document, Payloads())
        except (json_format.ParseError, ValueError, RecursionError):
            return _error(400, "BAD_REQUEST", 'expected {"payloads": [...]} (Payloads as JSON)')
        if not _bytes_fields_are_base64(document):
            return _error(400, "BAD_REQUEST", "a payload's data or metadata is not base64")
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

    async def current_session(request: Request) -> Principal | None:
        session = request.cookies.get(SESSION_COOKIE)
        if not session:
            return None
        try:
            return await operator(session)
        except AuthError:
            return None  # expired or revoked: the form is shown again

    @app.get("/login")
    async def login_page(request: Request) -> Response:
        principal = await current_session(request)
        if principal is None or principal.expires_at is None:
            return _page(_LOGIN_FORM)
        until = _utc(_session_end_at_latest(principal.expires_at))
        return _page(_SIGNED_IN.format(subject=html.escape(principal.subject), until=until))

    def login_refused(request: Request, error: AuthError) -> Response:
        if _is_form(request):
            message = f'<p class="error" role="alert">{html.escape(error.message)}</p>'
            return _page(message + _LOGIN_FORM, status=error.status_code)
        return _auth_error(error)

    @app.post("/login")
    async def login(request: Request) -> Response:
        if not _from_own_page(request):
            # Else another site could sign the victim's browser in with the
            # attacker's token and see what the victim then looks at.
            return login_refused(request, forbidden("sign in from this server's own login page"))
        body = await _bounded_body(request, MAX_LOGIN_BODY_BYTES)
        if body is None:
            too_large = AuthError(413, BODY_TOO_LARGE, _too_large_message(MAX_LOGIN_BODY_BYTES))
            return login_refused(request, too_large)
        token = _submitted_token(request, body)
        if not token:
            return login_refused(
                request,
                AuthError(400, "BAD_REQUEST", 'expected a form field or {"token": "..."}'),
            )
        try:
            principal = await operator(token)
        except AuthError as error:
            return login_refused(request, error)
        # The cookie dies with the token, or MAX_SESSION_SECONDS from now if
        # that is sooner; a token without an expiry gets no session.
        remaining = int((principal.expires_at or 0.0) - time.time())
        if remaining <= 0:
            return login_refused(request, unauthenticated("the token has expired"))
        lifetime = min(remaining, MAX_SESSION_SECONDS)
        response: Response
        if _is_form(request):
            # Post/Redirect/Get: reloading the page does not post the token again.
            response = RedirectResponse("login", status_code=303)
        else:
            response = JSONResponse({"subject": principal.subject, "expires_in_seconds": lifetime})
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=lifetime,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            # The UI and this server share a site (ports do not count), so
            # Strict still lets the UI's credentialed fetch carry the cookie
            # while every other site's requests go without it.
            samesite="strict",
        )
        response.headers["Cache-Control"] = "no-store"
        log.info("codec server: operator %s opened a browser session", principal.safe_subject)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        if not _from_own_page(request):
            return login_refused(request, forbidden("sign out from this server's own page"))
        response: Response = (
            RedirectResponse("login", status_code=303)
            if _is_form(request)
            else Response(status_code=204)
        )
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
