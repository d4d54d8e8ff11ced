"""The tests' own token issuer: an ES256 key made for this test session.

APIs under test trust it through `verifier_for_tests()` (its JWKS handed over
directly) or through a JWKS served over HTTP (tests/integration/api).
"""

from __future__ import annotations

import uuid
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ordersaga.runtime.auth import DevIssuer, KeySource, StaticKeys, TokenVerifier

TEST_ISSUER = DevIssuer(
    ec.generate_private_key(ec.SECP256R1()),
    issuer="https://issuer.ordersaga.test/",
    audience="ordersaga-api-test",
)
CUSTOMER_SCOPE = "orders:customer"
OPERATOR_SCOPE = "orders:operator"
TEST_OPERATOR = "op_tester"


def verifier_for_tests(keys: KeySource | None = None) -> TokenVerifier:
    return TokenVerifier(
        keys or StaticKeys(TEST_ISSUER.jwks()),
        issuer=TEST_ISSUER.issuer,
        audience=TEST_ISSUER.audience,
        customer_scope=CUSTOMER_SCOPE,
        operator_scope=OPERATOR_SCOPE,
    )


def customer_token(customer_id: str, **claims: Any) -> str:
    return TEST_ISSUER.mint(customer_id, [CUSTOMER_SCOPE], **claims)


def operator_token(subject: str = TEST_OPERATOR) -> str:
    return TEST_ISSUER.mint(subject, [OPERATOR_SCOPE])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_customer_id() -> str:
    return f"cus_{uuid.uuid4().hex[:12]}"


def as_customer(customer_id: str, *, key: str | None = None) -> dict[str, str]:
    """Headers of a customer's POST /orders: their token and an Idempotency-Key."""
    return {"Idempotency-Key": key or uuid.uuid4().hex, **bearer(customer_token(customer_id))}
