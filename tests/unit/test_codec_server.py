"""The codec server: operators only, one namespace, CORS for the Web UI alone,
and an operator's browser session that only the Web UI can use."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from ordersaga.codec_server import (
    MAX_BODY_BYTES,
    MAX_LOGIN_BODY_BYTES,
    MAX_SESSION_SECONDS,
    SESSION_COOKIE,
    create_codec_app,
)
from ordersaga.runtime.auth import DevIssuer, Principal, StaticKeys, TokenVerifier
from ordersaga.runtime.codec import EncryptionCodec
from tests.keys import TEST_KEY_ID, TEST_KEYRING

UI_ORIGIN = "http://127.0.0.1:8233"
SECRET = "tok_visa_4242 at 12 St James Sq"
CUSTOMER_SCOPE = "orders:customer"
OPERATOR_SCOPE = "orders:operator"


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer.in_data_dir(tmp_path)


def codec_client(issuer: DevIssuer, base_url: str) -> httpx.AsyncClient:
    verifier = TokenVerifier(
        StaticKeys(issuer.jwks()),
        issuer=issuer.issuer,
        audience=issuer.audience,
        customer_scope=CUSTOMER_SCOPE,
        operator_scope=OPERATOR_SCOPE,
    )
    app = create_codec_app(
        codec=EncryptionCodec(TEST_KEYRING),
        verifier=verifier,
        namespace="default",
        cors_origins=[UI_ORIGIN, "http://localhost:8233"],
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def http(issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
    async with codec_client(issuer, "http://codec") as client:
        yield client


def operator(issuer: DevIssuer) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.mint('ops-1', [OPERATOR_SCOPE])}"}


def body(*texts: str) -> str:
    payloads = Payloads(
        payloads=[
            Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())
            for text in texts
        ]
    )
    return json_format.MessageToJson(payloads)


def secrets_in(response: httpx.Response) -> bool:
    return "tok_visa" in response.text or "St James" in response.text


async def encrypted_body(http: httpx.AsyncClient, issuer: DevIssuer) -> str:
    response = await http.post("/encode", content=body(SECRET), headers=operator(issuer))
    assert response.status_code == 200, response.text
    return response.text


async def test_encode_then_decode_round_trips_for_an_operator(
    http: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    encoded = await encrypted_body(http, issuer)
    (payload,) = json.loads(encoded)["payloads"]
    assert payload["metadata"]["encoding"] == "YmluYXJ5L2VuY3J5cHRlZA=="  # binary/encrypted
    assert "tok_visa" not in encoded

    decoded = await http.post(
        "/decode", content=encoded, headers={**operator(issuer), "X-Namespace": "default"}
    )
    assert decoded.status_code == 200
    parsed = json_format.Parse(decoded.text, Payloads())
    assert json.loads(parsed.payloads[0].data) == SECRET


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer not-a-jwt"}, 401),
        ({"Authorization": "Basic b3BzOnB3"}, 401),
    ],
)
async def test_without_a_valid_token_nothing_is_decoded(
    http: httpx.AsyncClient, issuer: DevIssuer, headers: dict[str, str], status: int
) -> None:
    encoded = await encrypted_body(http, issuer)
    response = await http.post("/decode", content=encoded, headers=headers)
    assert response.status_code == status
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert not secrets_in(response)
    assert "payloads" not in response.json()


async def test_a_token_from_another_issuer_is_refused(
    http: httpx.AsyncClient, issuer: DevIssuer, tmp_path: Path
) -> None:
    stranger = DevIssuer.in_data_dir(tmp_path / "elsewhere")
    encoded = await encrypted_body(http, issuer)
    token = stranger.mint("ops-1", [OPERATOR_SCOPE])
    response = await http.post(
        "/decode", content=encoded, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401 and not secrets_in(response)


async def test_a_customer_token_is_forbidden(http: httpx.AsyncClient, issuer: DevIssuer) -> None:
    encoded = await encrypted_body(http, issuer)
    token = issuer.mint("cus_1", [CUSTOMER_SCOPE])
    for path in ("/decode", "/encode"):
        response = await http.post(
            path, content=encoded, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 403, path
        assert not secrets_in(response)


async def test_another_namespace_is_refused(http: httpx.AsyncClient, issuer: DevIssuer) -> None:
    encoded = await encrypted_body(http, issuer)
    response = await http.post(
        "/decode", content=encoded, headers={**operator(issuer), "X-Namespace": "payroll"}
    )
    assert response.status_code == 403 and not secrets_in(response)


@pytest.mark.parametrize(
    "content",
    [
        b"{nope",
        b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"payloads": [], "payloads": []}',
        b'{"payloads": [{"data": "e30=", "data": "e30="}]}',
        b'{"payloads": {"data": "e30="}}',
    ],
    ids=[
        "not-json",
        "not-utf-8",
        "nested-past-recursion",
        "key-twice",
        "key-twice-inside",
        "not-payloads",
    ],
)
async def test_a_malformed_body_is_a_400(
    http: httpx.AsyncClient, issuer: DevIssuer, content: bytes
) -> None:
    response = await http.post("/decode", content=content, headers=operator(issuer))
    assert response.status_code == 400


@pytest.mark.parametrize("path", ["/decode", "/encode"])
@pytest.mark.parametrize(
    "payload",
    [
        {"metadata": {"encoding": "!!"}, "data": "e30="},
        {"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "@@"},
        {"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "e3 0="},
        {"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "e30==" + "="},
    ],
    ids=["metadata-not-base64", "data-not-base64", "a-space-inside", "too-much-padding"],
)
async def test_bytes_that_are_not_base64_are_a_400_not_read_as_whatever_is_left(
    http: httpx.AsyncClient, issuer: DevIssuer, path: str, payload: dict[str, object]
) -> None:
    response = await http.post(path, json={"payloads": [payload]}, headers=operator(issuer))
    assert response.status_code == 400, response.text
    assert response.json()["detail"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    "data", ["e30=", "e30", "-_8=", "+/8="], ids=["padded", "unpadded", "url-safe", "standard"]
)
async def test_every_base64_protobuf_accepts_is_still_read(
    http: httpx.AsyncClient, issuer: DevIssuer, data: str
) -> None:
    payload = {"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": data}
    response = await http.post("/decode", json={"payloads": [payload]}, headers=operator(issuer))
    assert response.status_code == 200, response.text
    (echoed,) = response.json()["payloads"]
    assert base64.b64decode(echoed["data"]) == base64.urlsafe_b64decode(
        data.replace("+", "-").replace("/", "_") + "=" * (-len(data) % 4)
    )


async def test_an_undecryptable_payload_names_its_key_and_leaks_nothing(
    http: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    other = EncryptionCodec(type(TEST_KEYRING)("gone", {"gone": bytes(32)}))
    (sealed,) = await other.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
    content = json_format.MessageToJson(Payloads(payloads=[sealed]))
    response = await http.post("/decode", content=content, headers=operator(issuer))
    assert response.status_code == 422
    assert "'gone'" in response.json()["detail"]["message"]


@pytest.mark.parametrize("size", [0, 5])
async def test_encrypted_data_too_short_for_a_nonce_is_a_422_not_a_500(
    http: httpx.AsyncClient, issuer: DevIssuer, size: int
) -> None:
    # As the Web UI sends it: metadata values and data in base64.
    payload = {
        "metadata": {
            "encoding": "YmluYXJ5L2VuY3J5cHRlZA==",  # binary/encrypted
            "encryption-key-id": base64.b64encode(TEST_KEY_ID.encode()).decode(),
        },
        "data": base64.b64encode(b"x" * size).decode(),
    }
    response = await http.post(
        "/decode", content=json.dumps({"payloads": [payload]}), headers=operator(issuer)
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "UNDECRYPTABLE"
    assert f"too short: its data is {size} bytes" in detail["message"]


async def preflight(
    http: httpx.AsyncClient, origin: str, method: str, headers: str
) -> httpx.Response:
    """The OPTIONS a browser sends before a cross-origin POST to /decode."""
    return await http.options(
        "/decode",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


@pytest.mark.parametrize("origin", [UI_ORIGIN, "http://localhost:8233"])
async def test_preflight_from_the_web_ui_is_allowed(http: httpx.AsyncClient, origin: str) -> None:
    response = await preflight(http, origin, "POST", "authorization,content-type,x-namespace")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "x-namespace"):
        assert header in allowed


async def test_any_other_origin_gets_no_cors_allowance(
    http: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    refused = await preflight(http, "https://evil.example", "POST", "authorization")
    assert "access-control-allow-origin" not in refused.headers
    assert refused.status_code == 400
    assert refused.json()["detail"] == {
        "code": "CORS_REFUSED",
        "message": "a browser may not call this server so (refused: origin)",
    }
    encoded = await encrypted_body(http, issuer)
    response = await http.post(
        "/decode",
        content=encoded,
        headers={**operator(issuer), "Origin": "https://evil.example"},
    )
    assert "access-control-allow-origin" not in response.headers


async def test_a_preflight_for_a_method_or_header_not_allowed_is_refused_in_the_error_shape(
    http: httpx.AsyncClient,
) -> None:
    refused = await preflight(http, UI_ORIGIN, "DELETE", "x-evil")
    assert refused.status_code == 400
    assert refused.json()["detail"]["message"].endswith("(refused: method, headers)")
    # The Web UI's origin is still named, so its browser can show the refusal.
    assert refused.headers["access-control-allow-origin"] == UI_ORIGIN


async def test_the_web_ui_can_read_a_refusal(http: httpx.AsyncClient) -> None:
    # CORS headers on the 401 too, so the UI can tell the operator why.
    response = await http.post("/decode", content=body("x"), headers={"Origin": UI_ORIGIN})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == UI_ORIGIN


# --- the operator's browser session -------------------------------------------

# What a browser sends with a POST from the codec server's own login page.
OWN_PAGE = {"Origin": "http://codec", "Sec-Fetch-Site": "same-origin"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TTL_SECONDS = 3600


def operator_token(issuer: DevIssuer) -> str:
    return issuer.mint("ops-1", [OPERATOR_SCOPE], ttl_seconds=TTL_SECONDS)


def session(token: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={token}"}


def set_cookie(response: httpx.Response) -> dict[str, str]:
    """The session cookie's Set-Cookie attributes (lower-cased names), {} if none."""
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name == SESSION_COOKIE:
            value, *attributes = rest.split(";")
            parsed = {"value": value}
            for attribute in attributes:
                key, _, val = attribute.strip().partition("=")
                parsed[key.lower()] = val
            return parsed
    return {}


async def test_login_page_is_a_self_contained_form(http: httpx.AsyncClient) -> None:
    response = await http.get("/login")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<form method="post" action="login">' in page and 'name="token"' in page
    assert not re.search(r"(src|href)=", page), "no outside assets"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("as_form", [False, True])
async def test_an_operator_token_opens_a_session_cookie(
    http: httpx.AsyncClient, issuer: DevIssuer, as_form: bool
) -> None:
    token = operator_token(issuer)
    if as_form:
        response = await http.post("/login", content=f"token={token}", headers={**OWN_PAGE, **FORM})
        assert response.status_code == 303
        assert response.headers["location"] == "login"
    else:
        response = await http.post("/login", json={"token": token}, headers=OWN_PAGE)
        assert response.status_code == 200
        assert response.json()["subject"] == "ops-1"
    cookie = set_cookie(response)
    assert cookie["value"] == token
    assert "httponly" in cookie
    assert cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/"
    assert TTL_SECONDS - 60 <= int(cookie["max-age"]) <= TTL_SECONDS
    assert "secure" not in cookie  # plain http: a Secure cookie would never come back
    assert token not in response.text

    signed_in = await http.get("/login", headers=session(token))
    assert "Signed in as <strong>ops-1</strong>" in signed_in.text


async def test_sec_fetch_site_is_decisive_when_sent(
    http: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    # Chromium posts a form with "Origin: null" under some referrer policies.
    response = await http.post(
        "/login",
        json={"token": operator_token(issuer)},
        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
    )
    assert response.status_code == 200
    assert set_cookie(response)["value"]


async def test_the_cookie_is_secure_over_https(issuer: DevIssuer) -> None:
    async with codec_client(issuer, "https://codec") as http:
        response = await http.post(
            "/login",
            json={"token": operator_token(issuer)},
            headers={"Origin": "https://codec", "Sec-Fetch-Site": "same-origin"},
        )
    assert response.status_code == 200
    assert "secure" in set_cookie(response)


@pytest.mark.parametrize("as_form", [False, True])
async def test_a_session_lasts_no_longer_than_its_limit_whatever_the_token_says(
    http: httpx.AsyncClient, issuer: DevIssuer, as_form: bool
) -> None:
    # Found by a tester: `ordersaga token --ttl 99999999999999999999` (exp about
    # 1e20) got a session cookie with Max-Age=1e20.
    token = issuer.mint("ops-1", [OPERATOR_SCOPE], ttl_seconds=99999999999999999999)
    if as_form:
        response = await http.post("/login", content=f"token={token}", headers={**OWN_PAGE, **FORM})
        assert response.status_code == 303
    else:
        response = await http.post("/login", json={"token": token}, headers=OWN_PAGE)
        assert response.status_code == 200
        assert response.json()["expires_in_seconds"] == MAX_SESSION_SECONDS
    assert int(set_cookie(response)["max-age"]) == MAX_SESSION_SECONDS

    signed_in = await http.get("/login", headers=session(token))
    assert signed_in.status_code == 200
    shown = re.search(r"until\s+(\S+ \S+) UTC at the latest", signed_in.text)
    assert shown, signed_in.text
    until = datetime.strptime(shown.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert until.timestamp() <= time.time() + MAX_SESSION_SECONDS + 1


def refused_tokens(issuer: DevIssuer, elsewhere: DevIssuer) -> dict[str, tuple[str, int]]:
    long_ago = time.time() - 2 * TTL_SECONDS
    return {
        "customer": (issuer.mint("cus_1", [CUSTOMER_SCOPE]), 403),
        "garbage": ("not-a-jwt", 401),
        "expired": (issuer.mint("ops-1", [OPERATOR_SCOPE], ttl_seconds=60, now=long_ago), 401),
        "other issuer": (elsewhere.mint("ops-1", [OPERATOR_SCOPE]), 401),
        "empty": ("", 400),
    }


@pytest.mark.parametrize("kind", ["customer", "garbage", "expired", "other issuer", "empty"])
@pytest.mark.parametrize("as_form", [False, True])
async def test_no_session_for_anything_but_a_valid_operator_token(
    http: httpx.AsyncClient, issuer: DevIssuer, tmp_path: Path, kind: str, as_form: bool
) -> None:
    token, status = refused_tokens(issuer, DevIssuer.in_data_dir(tmp_path / "x"))[kind]
    if as_form:
        response = await http.post("/login", content=f"token={token}", headers={**OWN_PAGE, **FORM})
        assert 'class="error"' in response.text and "<form" in response.text
    else:
        response = await http.post("/login", json={"token": token}, headers=OWN_PAGE)
    assert response.status_code == status
    assert set_cookie(response) == {}
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        # The Web UI itself has no business signing anyone in.
        {"Origin": UI_ORIGIN, "Sec-Fetch-Site": "same-site"},
        {"Origin": "http://codec", "Sec-Fetch-Site": "same-site"},
        {"Origin": "null"},
        {"Origin": "http://codec", "Sec-Fetch-Site": "cross-site"},
        {},  # no browser: it needs no session, it has its bearer token
    ],
)
async def test_login_is_refused_unless_posted_from_its_own_page(
    http: httpx.AsyncClient, issuer: DevIssuer, headers: dict[str, str]
) -> None:
    """Login CSRF: another site must not plant its token in the victim's browser."""
    token = operator_token(issuer)
    for content, extra in ((json.dumps({"token": token}), {}), (f"token={token}", FORM)):
        response = await http.post("/login", content=content, headers={**headers, **extra})
        assert response.status_code == 403, headers
        assert set_cookie(response) == {}


@pytest.mark.parametrize("origin", [UI_ORIGIN, "http://localhost:8233"])
async def test_the_web_ui_decodes_with_the_session_cookie(
    http: httpx.AsyncClient, issuer: DevIssuer, origin: str
) -> None:
    encoded = await encrypted_body(http, issuer)
    response = await http.post(
        "/decode?preserveStorageRefs=true",
        content=encoded,
        headers={**session(operator_token(issuer)), "Origin": origin, "X-Namespace": "default"},
    )
    assert response.status_code == 200, response.text
    parsed = json_format.Parse(response.text, Payloads())
    assert json.loads(parsed.payloads[0].data) == SECRET
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://127.0.0.1:9999", "http://codec", "null", None]
)
async def test_the_session_cookie_alone_is_refused_from_any_other_origin(
    http: httpx.AsyncClient, issuer: DevIssuer, origin: str | None
) -> None:
    encoded = await encrypted_body(http, issuer)
    headers = session(operator_token(issuer))
    if origin is not None:
        headers["Origin"] = origin
    for path in ("/decode", "/encode"):
        response = await http.post(path, content=encoded, headers=headers)
        assert response.status_code == 403, (path, origin)
        assert not secrets_in(response) and "payloads" not in response.json()


async def test_a_session_is_verified_on_every_request(
    http: httpx.AsyncClient, issuer: DevIssuer, tmp_path: Path
) -> None:
    encoded = await encrypted_body(http, issuer)
    for kind in ("customer", "garbage", "expired", "other issuer"):
        token, status = refused_tokens(issuer, DevIssuer.in_data_dir(tmp_path / "x"))[kind]
        response = await http.post(
            "/decode", content=encoded, headers={**session(token), "Origin": UI_ORIGIN}
        )
        assert response.status_code == status, kind
        assert not secrets_in(response)


async def test_an_authorization_header_wins_over_the_cookie(
    http: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    encoded = await encrypted_body(http, issuer)
    response = await http.post(
        "/decode",
        content=encoded,
        headers={
            **session(operator_token(issuer)),
            "Origin": UI_ORIGIN,
            "Authorization": "Bearer not-a-jwt",
        },
    )
    assert response.status_code == 401 and not secrets_in(response)


async def test_the_bearer_header_needs_no_origin(
    http: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    # The CLI sends no Origin: the header path is what it was before sessions.
    encoded = await encrypted_body(http, issuer)
    response = await http.post("/decode", content=encoded, headers=operator(issuer))
    assert response.status_code == 200
    assert SECRET in json.loads(json_format.Parse(response.text, Payloads()).payloads[0].data)


@pytest.mark.parametrize("as_form", [False, True])
async def test_logout_clears_the_cookie(
    http: httpx.AsyncClient, issuer: DevIssuer, as_form: bool
) -> None:
    headers = {**OWN_PAGE, **session(operator_token(issuer)), **(FORM if as_form else {})}
    response = await http.post("/logout", headers=headers)
    assert response.status_code == (303 if as_form else 204)
    cookie = set_cookie(response)
    assert cookie["value"] in ("", '""')
    assert cookie["max-age"] == "0"
    assert cookie["path"] == "/"


async def test_logout_from_another_site_is_refused(
    http: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    response = await http.post(
        "/logout",
        headers={**session(operator_token(issuer)), "Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert set_cookie(response) == {}


async def test_metrics_count_decodes_and_refusals_by_status(
    http: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    encoded = await encrypted_body(http, issuer)
    await http.post("/decode", content=encoded, headers=operator(issuer))
    await http.post("/decode", content=encoded)

    scrape = (await http.get("/metrics")).text

    assert 'codec_requests_total{method="POST",route="/decode",status="200"} 1.0' in scrape
    assert 'codec_requests_total{method="POST",route="/decode",status="401"} 1.0' in scrape


# --- the error shape ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "NOT_FOUND"),
        ("POST", "/decode/more", 404, "NOT_FOUND"),
        ("GET", "/decode", 405, "METHOD_NOT_ALLOWED"),
        ("PUT", "/login", 405, "METHOD_NOT_ALLOWED"),
        ("DELETE", "/metrics", 405, "METHOD_NOT_ALLOWED"),
    ],
)
async def test_unknown_paths_and_methods_are_refused_in_the_one_error_shape(
    http: httpx.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    # Found by a tester: FastAPI's {"detail": "Not Found"}, unlike every other
    # refusal here and in the API and the services.
    response = await http.request(method, path)

    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert set(detail) == {"code", "message"}
    assert detail["code"] == code and detail["message"]
    if status == 405:
        assert response.headers["allow"]


class BrokenVerifier:
    async def verify(self, token: str) -> Principal:
        raise RuntimeError("a bug, with a secret in it: tok_visa")


async def test_an_unexpected_error_is_a_500_in_the_one_error_shape() -> None:
    app = create_codec_app(
        codec=EncryptionCodec(TEST_KEYRING), verifier=BrokenVerifier(), namespace="default"
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as http:
        response = await http.post(
            "/decode", content=body("x"), headers={"Authorization": "Bearer x"}
        )

    assert response.status_code == 500
    assert response.json()["detail"]["code"] == "INTERNAL_ERROR"
    assert "tok_visa" not in response.text


# --- bodies over the limits: refused, never buffered --------------------------


class CountedBody:
    """A request body streamed in `chunk`-byte pieces up to `total` bytes,
    counting what the server pulled from it."""

    def __init__(self, chunk: int, total: int) -> None:
        self.chunk = chunk
        self.total = total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            piece = min(self.chunk, self.total - self.sent)
            self.sent += piece
            yield b"x" * piece


def login_headers(as_form: bool) -> dict[str, str]:
    return {**OWN_PAGE, **(FORM if as_form else {"Content-Type": "application/json"})}


def assert_too_large(response: httpx.Response, limit: int, as_form: bool = False) -> None:
    assert response.status_code == 413, response.text
    message = f"the request body is larger than {limit} bytes"
    if as_form:  # the login page again, saying why
        assert message in response.text and "<form" in response.text
    else:
        assert response.json() == {"detail": {"code": "BODY_TOO_LARGE", "message": message}}
    assert set_cookie(response) == {}


@pytest.mark.parametrize("as_form", [False, True])
async def test_login_refuses_a_declared_length_over_the_limit_unread(
    http: httpx.AsyncClient, as_form: bool
) -> None:
    limit = MAX_LOGIN_BODY_BYTES
    streamed = CountedBody(chunk=1024, total=limit + 1)
    response = await http.post(
        "/login",
        content=streamed,
        headers={**login_headers(as_form), "Content-Length": str(limit + 1)},
    )
    assert_too_large(response, limit, as_form)
    assert streamed.sent == 0  # refused on the header alone


@pytest.mark.parametrize("as_form", [False, True])
async def test_login_stops_reading_a_streamed_body_past_the_limit(
    http: httpx.AsyncClient, as_form: bool
) -> None:
    limit = MAX_LOGIN_BODY_BYTES
    streamed = CountedBody(chunk=1024, total=1024 * limit)  # 16 MiB if drained
    response = await http.post("/login", content=streamed, headers=login_headers(as_form))
    assert "content-length" not in response.request.headers
    assert_too_large(response, limit, as_form)
    assert limit < streamed.sent <= limit + streamed.chunk


@pytest.mark.parametrize("path", ["/decode", "/encode"])
async def test_an_operator_body_over_the_declared_limit_is_refused_unread(
    http: httpx.AsyncClient, issuer: DevIssuer, path: str
) -> None:
    streamed = CountedBody(chunk=1024 * 1024, total=MAX_BODY_BYTES + 1)
    response = await http.post(
        path,
        content=streamed,
        headers={**operator(issuer), "Content-Length": str(MAX_BODY_BYTES + 1)},
    )
    assert_too_large(response, MAX_BODY_BYTES)
    assert streamed.sent == 0


@pytest.mark.parametrize("path", ["/decode", "/encode"])
async def test_an_operator_streamed_body_is_read_no_further_than_the_limit(
    http: httpx.AsyncClient, issuer: DevIssuer, path: str
) -> None:
    streamed = CountedBody(chunk=1024 * 1024, total=4 * MAX_BODY_BYTES)  # 64 MiB if drained
    response = await http.post(path, content=streamed, headers=operator(issuer))
    assert "content-length" not in response.request.headers
    assert_too_large(response, MAX_BODY_BYTES)
    assert MAX_BODY_BYTES < streamed.sent <= MAX_BODY_BYTES + streamed.chunk


async def test_a_body_at_the_login_limit_is_still_read(http: httpx.AsyncClient) -> None:
    # Exactly at the limit is not over it: the form is parsed (and has no token).
    content = "x" * MAX_LOGIN_BODY_BYTES
    response = await http.post("/login", content=content, headers=login_headers(as_form=True))
    assert response.status_code == 400 and "<form" in response.text
