"""The API's answer to the HTTP guard before it refuses a request: who is
calling, and whether the route asked for admits them."""

from __future__ import annotations

import jwt
import pytest
from fastapi import FastAPI
from starlette.types import Scope

from api.auth import CustomerDep, OperatorDep, ReaderDep, refuse_unadmitted
from ordersaga.runtime.auth import AuthError
from ordersaga.runtime.http_guard import UNROUTED
from tests.tokens import TEST_ISSUER, customer_token, operator_token, verifier_for_tests


class UnreachableIssuer:
    """A JWKS that cannot be fetched: the verifier answers 503 AUTH_UNAVAILABLE."""

    async def key_for(self, kid: str | None) -> jwt.PyJWK:
        raise AuthError(503, "AUTH_UNAVAILABLE", "the issuer's keys cannot be fetched")


def routes() -> FastAPI:
    """One route per kind of caller the API's routes admit, and a public one."""
    app = FastAPI()

    @app.post("/orders")
    async def place(caller: CustomerDep) -> None: ...

    @app.post("/orders/{order_id}/compensation/resolve")
    async def resolve(order_id: str, caller: OperatorDep) -> None: ...

    @app.get("/orders/{order_id}")
    async def read(order_id: str, caller: ReaderDep) -> None: ...

    @app.get("/healthz")
    async def healthz() -> None: ...

    return app


def request(method: str, path: str, authorization: str | None) -> Scope:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": headers}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer ",
        "Basic d29ya2VyOnNlY3JldA==",
        "Bearer not.a.jwt",
        f"Bearer {TEST_ISSUER.mint('cus_x', ['orders:customer'], audience='someone-else')}",
    ],
    ids=["none", "empty", "bearer-without-token", "basic", "garbage", "wrong-audience"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/orders"),
        ("POST", "/orders/ord_x/compensation/resolve"),
        ("GET", "/orders/ord_x"),
    ],
)
async def test_a_caller_without_a_valid_token_gets_the_apis_401(
    authorization: str | None, method: str, path: str
) -> None:
    check = refuse_unadmitted(verifier_for_tests(), routes())
    refusal = await check(request(method, path, authorization))

    assert refusal is not None
    assert (refusal.status, refusal.code) == (401, "UNAUTHENTICATED")
    assert refusal.headers == {"WWW-Authenticate": 'Bearer realm="ordersaga"'}


@pytest.mark.parametrize(
    ("method", "path", "token", "lacking"),
    [
        ("POST", "/orders", operator_token("op_x"), "customer"),
        ("POST", "/orders/ord_x/compensation/resolve", customer_token("cus_x"), "operator"),
        ("GET", "/orders/ord_x", TEST_ISSUER.mint("cus_x", ["profile"]), "neither"),
    ],
    ids=["operator-places", "customer-resolves", "no-scope-reads"],
)
async def test_a_valid_token_without_the_routes_scope_gets_its_403(
    method: str, path: str, token: str, lacking: str
) -> None:
    check = refuse_unadmitted(verifier_for_tests(), routes())
    refusal = await check(request(method, path, f"Bearer {token}"))

    assert refusal is not None
    assert (refusal.status, refusal.code) == (403, "FORBIDDEN")
    assert lacking in refusal.message
    assert refusal.headers == {}


@pytest.mark.parametrize(
    ("method", "path", "token"),
    [
        ("POST", "/orders", customer_token("cus_x")),
        ("POST", "/orders/ord_x/compensation/resolve", operator_token("op_x")),
        ("GET", "/orders/ord_x", customer_token("cus_x")),
        ("GET", "/orders/ord_x", operator_token("op_x")),
    ],
)
async def test_an_admitted_caller_leaves_the_refusal_standing(
    method: str, path: str, token: str
) -> None:
    check = refuse_unadmitted(verifier_for_tests(), routes())
    assert await check(request(method, path, f"Bearer {token}")) is None


@pytest.mark.parametrize(
    ("method", "path"), [("PATCH", "/no/such/route"), ("POST", "/healthz"), ("DELETE", "/orders")]
)
@pytest.mark.parametrize("authorization", [None, f"Bearer {customer_token('cus_x')}"])
async def test_a_request_no_route_takes_is_unrouted_whoever_sends_it(
    method: str, path: str, authorization: str | None
) -> None:
    check = refuse_unadmitted(verifier_for_tests(), routes())
    assert await check(request(method, path, authorization)) is UNROUTED


@pytest.mark.parametrize("authorization", [None, "Bearer not.a.jwt"])
async def test_a_route_that_takes_no_token_leaves_the_refusal_standing(
    authorization: str | None,
) -> None:
    check = refuse_unadmitted(verifier_for_tests(), routes())
    assert await check(request("GET", "/healthz", authorization)) is None


async def test_with_the_issuer_unreachable_the_refusal_stands_not_a_503() -> None:
    check = refuse_unadmitted(verifier_for_tests(UnreachableIssuer()), routes())

    assert await check(request("POST", "/orders", f"Bearer {customer_token('cus_x')}")) is None
