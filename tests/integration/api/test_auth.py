"""Who may call what: every route against every kind of wrong caller.

The API runs with real JWT checks (PyJWT) against the test issuer's keys,
once given directly and once fetched as a JWKS over HTTP from a real server.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from temporalio.client import Client

from api.app import create_app
from ordersaga.runtime.auth import MAX_TOKEN_BYTES, DevIssuer, RemoteJwks, TokenVerifier
from ordersaga.runtime.settings import Settings
from tests.fakes import FakeDomainActivities
from tests.integration.api.support import (
    CUSTOMER_SCOPE,
    OPERATOR_SCOPE,
    TEST_ISSUER,
    UNKNOWN_ORDER,
    JwksHandler,
    NewOrder,
    bearer,
    customer_token,
    eventually,
    new_customer_id,
    operator_token,
    order_body,
    place_accepted,
    verifier_for_tests,
    wait_for_status,
)

# An issuer nobody configured: its tokens carry the test issuer's name and
# kid, so only the signature gives them away.
IMPOSTOR = DevIssuer(
    ec.generate_private_key(ec.SECP256R1()),
    issuer=TEST_ISSUER.issuer,
    audience=TEST_ISSUER.audience,
)
IMPOSTOR.kid = TEST_ISSUER.kid


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    body: dict[str, Any] | None = None
    # What the route needs: "customer", "operator", or "either".
    needs: str = "either"

    def request(self, api: httpx.AsyncClient, order_id: str, headers: dict[str, str]) -> Any:
        return api.request(
            self.method,
            self.path.format(order_id=order_id),
            json=self.body,
            headers={"Idempotency-Key": f"auth-{time.monotonic_ns()}", **headers},
        )


ROUTES = [
    Route("POST", "/orders", order_body(), needs="customer"),
    Route("GET", "/orders"),
    Route("GET", "/orders/{order_id}"),
    Route("POST", "/orders/{order_id}/cancel", {"reason": "no"}, needs="customer"),
    Route("POST", "/orders/{order_id}/compensation/retry", {"note": "n"}, needs="operator"),
    Route("POST", "/orders/{order_id}/compensation/resolve", {"note": "n"}, needs="operator"),
]
ROUTE_IDS = [f"{route.method} {route.path}" for route in ROUTES]


def _tampered_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0x01
    return f"{header}.{payload}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"


def _forged_claims(token: str) -> str:
    """The payload swapped for another customer's, the signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "cus_victim"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


INVALID_TOKENS: dict[str, Callable[[], dict[str, str]]] = {
    "no-token": lambda: {},
    "not-bearer": lambda: {"Authorization": f"Basic {customer_token('cus_x')}"},
    "empty-bearer": lambda: {"Authorization": "Bearer "},
    "garbage": lambda: bearer("not.a.jwt"),
    "bad-signature": lambda: bearer(_tampered_signature(customer_token("cus_x"))),
    "forged-claims": lambda: bearer(_forged_claims(customer_token("cus_x"))),
    "impostor-key": lambda: bearer(IMPOSTOR.mint("cus_x", [CUSTOMER_SCOPE, OPERATOR_SCOPE])),
    "expired": lambda: bearer(
        TEST_ISSUER.mint("cus_x", [CUSTOMER_SCOPE], now=time.time() - 7200, ttl_seconds=600)
    ),
    "not-yet-valid": lambda: bearer(
        TEST_ISSUER.mint("cus_x", [CUSTOMER_SCOPE], now=time.time() + 3600)
    ),
    "wrong-audience": lambda: bearer(
        TEST_ISSUER.mint("cus_x", [CUSTOMER_SCOPE], audience="another-api")
    ),
    "wrong-issuer": lambda: bearer(
        TEST_ISSUER.mint("cus_x", [CUSTOMER_SCOPE], issuer="https://evil.example/")
    ),
    "alg-none": lambda: bearer(
        base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
        + "."
        + base64.urlsafe_b64encode(
            json.dumps(
                {
                    "sub": "cus_x",
                    "iss": TEST_ISSUER.issuer,
                    "aud": TEST_ISSUER.audience,
                    "exp": time.time() + 600,
                    "scope": f"{CUSTOMER_SCOPE} {OPERATOR_SCOPE}",
                }
            ).encode()
        )
        .decode()
        .rstrip("=")
        + "."
    ),
}


@pytest.fixture(params=["static-keys", "jwks-over-http"])
async def auth_api(
    request: pytest.FixtureRequest,
    settings: Settings,
    temporal_client: Client,
    fakes: FakeDomainActivities,
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with no default token: each request says who it is."""
    verifier: TokenVerifier = verifier_for_tests()
    if request.param == "jwks-over-http":
        verifier = verifier_for_tests(RemoteJwks(request.getfixturevalue("jwks_url")))
    app = create_app(settings, client=temporal_client, verifier=verifier)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:
        yield http


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("case", list(INVALID_TOKENS), ids=list(INVALID_TOKENS))
async def test_every_route_refuses_a_caller_without_a_valid_token(
    auth_api: httpx.AsyncClient, route: Route, case: str
) -> None:
    response = await route.request(auth_api, UNKNOWN_ORDER, INVALID_TOKENS[case]())
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["detail"]["code"] == "UNAUTHENTICATED"


async def test_an_oversized_token_is_refused_for_its_size_before_it_is_parsed(
    auth_api: httpx.AsyncClient,
) -> None:
    # A real token padded past the bound: refused for its length, not its contents.
    oversized = customer_token("cus_x") + "A" * MAX_TOKEN_BYTES
    response = await auth_api.get(f"/orders/{UNKNOWN_ORDER}", headers=bearer(oversized))
    assert response.status_code == 401, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "UNAUTHENTICATED"
    assert f"longer than {MAX_TOKEN_BYTES} bytes" in detail["message"], detail


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_a_valid_token_without_any_scope_is_forbidden(
    auth_api: httpx.AsyncClient, route: Route
) -> None:
    token = TEST_ISSUER.mint("cus_noscope", ["profile", "email"])
    response = await route.request(auth_api, UNKNOWN_ORDER, bearer(token))
    assert response.status_code == 403, response.text
    assert response.json()["detail"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.needs == "operator"], ids=lambda r: r.path
)
async def test_customers_may_not_act_as_operators(
    auth_api: httpx.AsyncClient, route: Route
) -> None:
    response = await route.request(auth_api, UNKNOWN_ORDER, bearer(customer_token("cus_x")))
    assert response.status_code == 403, response.text


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.needs == "customer"], ids=lambda r: r.path
)
async def test_operators_may_not_place_or_cancel_as_customers(
    auth_api: httpx.AsyncClient, route: Route
) -> None:
    response = await route.request(auth_api, UNKNOWN_ORDER, bearer(operator_token()))
    assert response.status_code == 403, response.text


# Not an order id this API could issue: were it looked at first, it would be 404.
MALFORMED_ORDER_ID = "nonsense"


def _wrong_callers(route: Route) -> list[tuple[str, dict[str, str], int]]:
    callers = [
        ("no-token", {}, 401),
        ("no-scope", bearer(TEST_ISSUER.mint("cus_noscope", ["profile"])), 403),
    ]
    if route.needs == "operator":
        callers.append(("a-customer", bearer(customer_token("cus_x")), 403))
    if route.needs == "customer":
        callers.append(("an-operator", bearer(operator_token()), 403))
    return callers


@pytest.mark.parametrize(
    ("route", "caller", "headers", "expected"),
    [
        pytest.param(route, caller, headers, expected, id=f"{route.path} {caller}")
        for route in ROUTES
        if "{order_id}" in route.path
        for caller, headers, expected in _wrong_callers(route)
    ],
)
async def test_a_wrong_caller_is_refused_before_the_order_id_is_looked_at(
    auth_api: httpx.AsyncClient, route: Route, caller: str, headers: dict[str, str], expected: int
) -> None:
    """A stranger learns nothing from an order route, not even which ids are
    well formed: the caller is checked before the id (api/routes/orders.py)."""
    response = await route.request(auth_api, MALFORMED_ORDER_ID, headers)
    assert response.status_code == expected, response.text


async def test_another_customers_order_is_not_found_for_reading_or_cancelling(
    auth_api: httpx.AsyncClient, new_order: NewOrder
) -> None:
    order = new_order()
    order_id = await place_accepted(auth_api, order)
    await wait_for_status(auth_api, order_id, "COMPLETED", headers=order.auth)
    intruder = bearer(customer_token(new_customer_id()))

    read = await auth_api.get(f"/orders/{order_id}", headers=intruder)
    cancel = await auth_api.post(f"/orders/{order_id}/cancel", json={}, headers=intruder)
    unknown = await auth_api.get(f"/orders/{UNKNOWN_ORDER}", headers=intruder)

    assert read.status_code == cancel.status_code == unknown.status_code == 404
    # Nothing tells an existing order of another from one that does not exist.
    assert read.json()["detail"]["code"] == unknown.json()["detail"]["code"]
    owner = await auth_api.get(f"/orders/{order_id}", headers=order.auth)
    assert owner.status_code == 200
    assert owner.json()["customer_id"] == order.customer_id


async def test_a_customer_lists_only_their_own_orders(
    auth_api: httpx.AsyncClient, new_order: NewOrder
) -> None:
    mine, theirs = new_order(), new_order()
    for order in (mine, theirs):
        await wait_for_status(
            auth_api, await place_accepted(auth_api, order), "COMPLETED", headers=order.auth
        )

    async def listed(headers: dict[str, str], query: str = "") -> set[str] | None:
        response = await auth_api.get(f"/orders{query}", headers=headers)
        assert response.status_code == 200, response.text
        ids = {row["order_id"] for row in response.json()["items"]}
        return ids if mine.order_id in ids or theirs.order_id in ids else None

    seen_by_mine = await eventually(lambda: listed(mine.auth))
    assert mine.order_id in seen_by_mine and theirs.order_id not in seen_by_mine
    # Asking for another customer's orders by filter is refused outright.
    snooping = await auth_api.get(f"/orders?customer_id={theirs.customer_id}", headers=mine.auth)
    assert snooping.status_code == 403
    by_status = await auth_api.get("/orders?status=COMPLETED", headers=mine.auth)
    assert theirs.order_id not in {row["order_id"] for row in by_status.json()["items"]}
    # Operators see both.
    seen_by_operator = await eventually(
        lambda: listed(bearer(operator_token()), f"?customer_id={theirs.customer_id}")
    )
    assert theirs.order_id in seen_by_operator


async def test_a_customer_cannot_resolve_or_retry_anyones_order(
    auth_api: httpx.AsyncClient, new_order: NewOrder
) -> None:
    """The attack: resolving another customer's parked order to keep their money."""
    order = new_order()
    order_id = await place_accepted(auth_api, order)
    for path in ("compensation/resolve", "compensation/retry"):
        for who in (order.auth, bearer(customer_token(new_customer_id())), {}):
            response = await auth_api.post(f"/orders/{order_id}/{path}", json={}, headers=who)
            assert response.status_code in (401, 403), (path, response.text)


async def test_jwks_is_fetched_once_and_refetched_for_a_rotated_key(jwks_url: str) -> None:
    """A provider rotating its key: a token with a new kid makes the verifier
    fetch the JWKS again (once), and then it verifies."""
    rotated = DevIssuer(
        ec.generate_private_key(ec.SECP256R1()),
        issuer=TEST_ISSUER.issuer,
        audience=TEST_ISSUER.audience,
    )
    keys = RemoteJwks(jwks_url, min_refresh_seconds=0.0)
    verifier = verifier_for_tests(keys)
    JwksHandler.fetches = 0
    await verifier.verify(customer_token("cus_a"))
    await verifier.verify(customer_token("cus_b"))
    assert JwksHandler.fetches == 1
    JwksHandler.jwks = {"keys": TEST_ISSUER.jwks()["keys"] + rotated.jwks()["keys"]}
    try:
        principal = await verifier.verify(rotated.mint("cus_c", [CUSTOMER_SCOPE]))
    finally:
        JwksHandler.jwks = TEST_ISSUER.jwks()
    assert principal.customer_id == "cus_c"
    assert JwksHandler.fetches == 2
