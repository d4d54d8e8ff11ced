"""The codec server: operators only, one namespace, CORS for the Web UI alone."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from ordersaga.auth import DevIssuer, StaticKeys, TokenVerifier
from ordersaga.codec import EncryptionCodec
from ordersaga.codec_server import create_codec_app
from tests.keys import TEST_KEYRING

UI_ORIGIN = "http://127.0.0.1:8233"
SECRET = "tok_visa_4242 at 12 St James Sq"
CUSTOMER_SCOPE = "orders:customer"
OPERATOR_SCOPE = "orders:operator"


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer.in_data_dir(tmp_path)


@pytest.fixture
async def http(issuer: DevIssuer) -> AsyncIterator[httpx.AsyncClient]:
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
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as client:
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


async def test_a_malformed_body_is_a_400(http: httpx.AsyncClient, issuer: DevIssuer) -> None:
    response = await http.post("/decode", content="{nope", headers=operator(issuer))
    assert response.status_code == 400


async def test_an_undecryptable_payload_names_its_key_and_leaks_nothing(
    http: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    other = EncryptionCodec(type(TEST_KEYRING)("gone", {"gone": bytes(32)}))
    (sealed,) = await other.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
    content = json_format.MessageToJson(Payloads(payloads=[sealed]))
    response = await http.post("/decode", content=content, headers=operator(issuer))
    assert response.status_code == 422
    assert "'gone'" in response.json()["detail"]["message"]


@pytest.mark.parametrize("origin", [UI_ORIGIN, "http://localhost:8233"])
async def test_preflight_from_the_web_ui_is_allowed(http: httpx.AsyncClient, origin: str) -> None:
    response = await http.options(
        "/decode",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "x-namespace"):
        assert header in allowed


async def test_any_other_origin_gets_no_cors_allowance(
    http: httpx.AsyncClient, issuer: DevIssuer
) -> None:
    preflight = await http.options(
        "/decode",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    encoded = await encrypted_body(http, issuer)
    response = await http.post(
        "/decode",
        content=encoded,
        headers={**operator(issuer), "Origin": "https://evil.example"},
    )
    assert "access-control-allow-origin" not in response.headers


async def test_the_web_ui_can_read_a_refusal(http: httpx.AsyncClient) -> None:
    # CORS headers on the 401 too, so the UI can tell the operator why.
    response = await http.post("/decode", content=body("x"), headers={"Origin": UI_ORIGIN})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == UI_ORIGIN
