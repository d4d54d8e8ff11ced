"""The API's answer to the HTTP guard before it refuses a body: who is calling."""

from __future__ import annotations

import jwt
import pytest

from api.auth import refuse_strangers
from ordersaga.runtime.auth import AuthError
from tests.tokens import TEST_ISSUER, customer_token, verifier_for_tests


class UnreachableIssuer:
    """A JWKS that cannot be fetched: the verifier answers 503 AUTH_UNAVAILABLE."""

    async def key_for(self, kid: str | None) -> jwt.PyJWK:
        raise AuthError(503, "AUTH_UNAVAILABLE", "the issuer's keys cannot be fetched")


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
async def test_a_caller_without_a_valid_token_gets_the_apis_401(
    authorization: str | None,
) -> None:
    refusal = await refuse_strangers(verifier_for_tests())(authorization)

    assert refusal is not None
    assert (refusal.status, refusal.code) == (401, "UNAUTHENTICATED")
    assert refusal.headers == {"WWW-Authenticate": 'Bearer realm="ordersaga"'}


async def test_a_valid_token_leaves_the_body_refusal_standing() -> None:
    # Scope is the route's business: a token without it is still a known caller.
    token = TEST_ISSUER.mint("cus_x", ["profile"])
    assert await refuse_strangers(verifier_for_tests())(f"Bearer {customer_token('cus_x')}") is None
    assert await refuse_strangers(verifier_for_tests())(f"Bearer {token}") is None


async def test_with_the_issuer_unreachable_the_body_refusal_stands_not_a_503() -> None:
    check = refuse_strangers(verifier_for_tests(UnreachableIssuer()))

    assert await check(f"Bearer {customer_token('cus_x')}") is None
