"""Schema-driven fuzzing of the API (schemathesis), bounded for CI.

The API runs as its own process, configured as production is, on the test
session's Temporal server. Every generated request, valid or not, must get an
answer the OpenAPI document declares: never a 5xx, never an undeclared status
or a body that does not match its schema.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from temporalio.client import Client

from tests.integration.api.support import (
    api_process,
    bearer,
    customer_token,
    operator_token,
)

# Enough to walk every operation's parameters and bodies a little; the whole
# module stays well under a minute on a loaded CI machine.
EXAMPLES_PER_OPERATION = 30


@pytest.fixture(scope="module")
def api_url(
    temporal_client: Client, jwks_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with api_process(
        temporal_client,
        jwks_url,
        tmp_path_factory.mktemp("fuzzed-api"),
        ORDERSAGA_API_ORDER_RATE_LIMIT="100000/minute",
        ORDERSAGA_API_MAX_OPEN_ORDERS_PER_CUSTOMER="100000",
    ) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json")


# Listed rather than discovered: a route added without being listed here fails
# test_every_route_is_fuzzed, so none escapes.
OPERATIONS = [
    ("POST", "/orders"),
    ("GET", "/orders"),
    ("GET", "/orders/{order_id}"),
    ("POST", "/orders/{order_id}/cancel"),
    ("POST", "/orders/{order_id}/compensation/retry"),
    ("POST", "/orders/{order_id}/compensation/resolve"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
]


def test_every_route_is_fuzzed(api_schema: Any) -> None:
    documented = {
        (result.ok().method.upper(), result.ok().path) for result in api_schema.get_all_operations()
    }
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_the_api_answers_every_generated_request_as_documented(
    api_schema: Any, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    token = operator_token() if "/compensation/" in path else customer_token("cus_fuzzer")

    # A page token is opaque: any string fits its schema, and only the API can
    # tell its own (400 otherwise, as documented), so "schema-valid, yet
    # refused" is expected there.
    excluded = [positive_data_acceptance] if path == "/orders" and method == "GET" else []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case: Any) -> None:
        headers = bearer(token)
        if path == "/orders" and method == "POST":
            # A fresh key per case: the generator repeats keys with other bodies,
            # which is rightly a 422 (test_place_order.py tests it), not a finding.
            headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4()}"
        case.call_and_validate(headers=headers, excluded_checks=excluded)

    answers_as_documented()
