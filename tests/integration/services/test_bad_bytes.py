"""Bytes no client should send never get a 5xx, and never cost the connection.

Each service runs under uvicorn, and one raw keep-alive connection carries a
bad request and then a good one: the bad one gets a 4xx in the error shape,
and the good one, on the same connection, still succeeds. (Before the guard, a
lone surrogate was a 500 on every POST, and the server then dropped the
connection under the next request.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI

from tests.integration.services.support import (
    ADMIN_TOKEN,
    WORKER_TOKEN,
    Databases,
    charge,
    inventory_app,
    payments_app,
    reservation,
    serving_over_tcp,
    shipment,
    shipping_app,
)
from tests.raw_http import (
    BAD_REQUESTS,
    JSON_TYPE,
    STRANGERS,
    assert_every_bad_request_is_refused_for_its_caller,
    assert_no_route_answers_by_its_body,
    raw_connection,
)

# Each service's create endpoint, a good body for it, and an action on a resource.
SERVICES: dict[str, tuple[Callable[[str], FastAPI], str, Callable[[], dict[str, Any]], str]] = {
    "inventory": (
        inventory_app,
        "/reservations",
        lambda: reservation("sku_mug"),
        "/reservations/res_x/release",
    ),
    "payments": (payments_app, "/charges", charge, "/charges/ch_x/refund"),
    "shipping": (shipping_app, "/shipments", shipment, "/shipments/shp_x/cancel"),
}


@pytest.fixture(params=sorted(SERVICES))
async def service(
    request: pytest.FixtureRequest, databases: Databases
) -> AsyncIterator[tuple[str, int]]:
    app = SERVICES[request.param][0](await databases.new(request.param))
    async with serving_over_tcp(app) as port:
        yield request.param, port


@pytest.mark.parametrize("bad", sorted(BAD_REQUESTS))
async def test_bad_bytes_get_a_4xx_and_the_connection_lives_on(
    service: tuple[str, int], bad: str
) -> None:
    name, port = service
    _, collection, good_body, action = SERVICES[name]
    body, content_type, expected = BAD_REQUESTS[bad]
    async with raw_connection(port, {"Authorization": f"Bearer {WORKER_TOKEN}"}) as connection:
        for path in (collection, action):
            refused = await connection.request("POST", path, body, content_type)
            assert refused.status == expected, (path, refused.body)
            assert refused.json()["detail"]["code"] in {
                "MALFORMED_JSON",
                "UNSUPPORTED_MEDIA_TYPE",
                "BODY_TOO_LARGE",
            }
            assert isinstance(refused.json()["detail"]["message"], str)
            assert refused.headers.get("connection") != "close"

            good = json.dumps(good_body()).encode()
            made = await connection.request("POST", collection, good, JSON_TYPE)
            assert made.status == 201, made.body


@pytest.mark.parametrize("stranger", sorted(STRANGERS))
async def test_a_stranger_sending_bad_bytes_is_told_to_authenticate(
    service: tuple[str, int], stranger: str
) -> None:
    """Who is calling comes before what was sent: the 401 every route gives a
    stranger, not the body's 400, 413 or 415."""
    name, port = service
    _, collection, _, action = SERVICES[name]
    async with raw_connection(port, STRANGERS[stranger]) as connection:
        await assert_every_bad_request_is_refused_for_its_caller(
            connection, (collection, action), 401, "UNAUTHORIZED", "Bearer"
        )


async def test_a_caller_the_route_does_not_admit_sending_bad_bytes_gets_the_routes_403(
    service: tuple[str, int],
) -> None:
    """The admin token on the workers' writes, and the workers' credential on
    the admin's routes, are told 403, not what the route would accept."""
    name, port = service
    _, collection, _, action = SERVICES[name]
    for credential, paths, method in (
        (ADMIN_TOKEN, (collection, action), "POST"),
        (WORKER_TOKEN, ("/admin/faults",), "PUT"),
    ):
        async with raw_connection(port, {"Authorization": f"Bearer {credential}"}) as connection:
            await assert_every_bad_request_is_refused_for_its_caller(
                connection, paths, 403, "FORBIDDEN", method=method
            )


async def test_a_public_route_refuses_the_bytes_themselves(service: tuple[str, int]) -> None:
    """A route that takes no credential has no caller to refuse: a stranger's
    oversized body there gets the 413."""
    _, port = service
    async with raw_connection(port, {}) as connection:
        body, content_type, status = BAD_REQUESTS["oversize"]
        refused = await connection.request("GET", "/healthz", body, content_type)
        assert refused.status == status == 413, refused.body
        assert refused.json()["detail"]["code"] == "BODY_TOO_LARGE"


@pytest.mark.parametrize("credential", [None, WORKER_TOKEN])
async def test_a_request_no_route_takes_gets_404_or_405_whatever_its_body(
    service: tuple[str, int], credential: str | None
) -> None:
    name, port = service
    _, collection, _, _ = SERVICES[name]
    headers = {} if credential is None else {"Authorization": f"Bearer {credential}"}
    async with raw_connection(port, headers) as connection:
        await assert_no_route_answers_by_its_body(
            connection,
            (("POST", "/healthz", 405), ("POST", "/nope", 404), ("POST", f"{collection}/", 404)),
        )


async def test_two_idempotency_keys_are_refused(service: tuple[str, int]) -> None:
    """Which key would the write be stored under? Neither: 400."""
    name, port = service
    _, collection, good_body, _ = SERVICES[name]
    async with raw_connection(port, {"Authorization": f"Bearer {WORKER_TOKEN}"}) as connection:
        refused = await connection.request(
            "POST",
            collection,
            json.dumps(good_body()).encode(),
            JSON_TYPE,
            extra_headers=(("Idempotency-Key", "a-second-key"),),
        )
        assert refused.status == 400, refused.body
        assert refused.json()["detail"]["code"] == "MALFORMED_REQUEST"
        assert "Idempotency-Key" in refused.json()["detail"]["message"]


def _with_a_number_as_text(body: dict[str, Any]) -> dict[str, Any]:
    if "lines" in body:
        return {**body, "lines": [{**body["lines"][0], "quantity": "1"}]}
    return {**body, "amount_cents": str(body["amount_cents"])}


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(_with_a_number_as_text, id="number-as-text"),
        pytest.param(lambda body: {**body, "price_cents": 1}, id="unknown-field"),
        pytest.param(lambda body: {**body, "order_id": 7}, id="number-for-text"),
    ],
)
async def test_a_body_is_taken_as_sent_never_coerced_nor_padded(
    service: tuple[str, int], mangle: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """As strict as the API (ordersaga.runtime.fields.StrictRequest): what one
    refuses, no service takes in another shape."""
    name, port = service
    _, collection, good_body, _ = SERVICES[name]
    async with raw_connection(port, {"Authorization": f"Bearer {WORKER_TOKEN}"}) as connection:
        refused = await connection.request(
            "POST", collection, json.dumps(mangle(good_body())).encode(), JSON_TYPE
        )
        assert refused.status == 422, refused.body
        assert refused.json()["detail"]["code"] == "REQUEST_REJECTED"
        taken = await connection.request(
            "POST", collection, json.dumps(good_body()).encode(), JSON_TYPE
        )
        assert taken.status == 201, taken.body
