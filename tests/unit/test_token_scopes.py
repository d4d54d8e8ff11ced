"""Where a token's scopes are read from: `scope` or `scp`, as providers send them."""

from __future__ import annotations

from typing import Any

import pytest

from ordersaga.runtime.auth import scopes_of


@pytest.mark.parametrize(
    ("claims", "scopes"),
    [
        ({"scope": "orders:customer openid"}, {"orders:customer", "openid"}),
        ({"scope": ["orders:operator", "openid"]}, {"orders:operator", "openid"}),
        ({"scp": ["orders:customer"]}, {"orders:customer"}),  # Okta
        ({"scp": "orders:operator profile"}, {"orders:operator", "profile"}),  # Entra ID
        ({"scope": "openid", "scp": ["orders:customer"]}, {"openid", "orders:customer"}),
        ({"scope": "  orders:customer\topenid  "}, {"orders:customer", "openid"}),
    ],
    ids=["scope-string", "scope-list", "scp-list", "scp-string", "both", "extra-whitespace"],
)
def test_scopes_come_from_scope_and_scp_in_either_form(
    claims: dict[str, Any], scopes: set[str]
) -> None:
    assert scopes_of(claims) == scopes


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"scope": None},
        {"scope": 7},
        {"scope": {"orders:customer": True}},
        {"scp": [["orders:customer"]]},
        {"scp": [1, None, ""]},
        {"roles": ["orders:operator"]},
    ],
    ids=["none", "null", "number", "object", "nested-list", "not-strings", "other-claim"],
)
def test_anything_else_grants_no_scope(claims: dict[str, Any]) -> None:
    assert scopes_of(claims) == frozenset()
