"""Shipping: refused countries, cancellation once, and no name or street in any
answer."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.integration.services.support import (
    NAME,
    STREET,
    created,
    listed,
    new_key,
    sent_twice,
    shipment,
)


async def shipments_of(shipping: httpx.AsyncClient, order_id: str) -> list[dict[str, Any]]:
    return await listed(shipping, "/shipments", order_id)


async def make_shipment(shipping: httpx.AsyncClient) -> dict[str, Any]:
    return await created(shipping, "/shipments", shipment())


# --- refusals -----------------------------------------------------------------


async def test_a_refused_country_is_undeliverable_and_ships_nothing(
    shipping: httpx.AsyncClient,
) -> None:
    for country in ("AQ", "aq", "KP"):
        body = shipment(country=country)

        response = await shipping.post("/shipments", json=body, headers=new_key())

        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert detail["code"] == "ADDRESS_UNDELIVERABLE"
        assert country.upper() in detail["message"]
        assert await shipments_of(shipping, body["order_id"]) == []


async def test_cancelling_an_unknown_shipment_is_404(shipping: httpx.AsyncClient) -> None:
    response = await shipping.post("/shipments/shp_nope/cancel", headers=new_key())

    assert response.status_code == 404
    assert response.json()["detail"]["code"] == "NOT_FOUND"


async def test_bad_shipments_are_422_and_never_echo_the_address(
    shipping: httpx.AsyncClient,
) -> None:
    def with_address(**changes: Any) -> dict[str, Any]:
        body = shipment()
        body["address"] = {**body["address"], **changes}
        return body

    bodies: list[Any] = [
        with_address(country="GBR"),
        with_address(country="G1"),
        with_address(country="XX"),
        with_address(country="zz"),
        with_address(name=""),
        with_address(line1="Bad\x00Street"),
        with_address(postal_code=12345),
        {k: v for k, v in shipment().items() if k != "address"},
        {**shipment(), "lines": []},
        {**shipment(), "lines": [{"sku": "sku_mug", "quantity": -1}]},
        "not an object",
    ]
    for body in bodies:
        response = await shipping.post("/shipments", json=body, headers=new_key())
        assert response.status_code == 422, (body, response.text)
        assert NAME not in response.text and STREET not in response.text


async def test_kosovo_ships_though_its_code_is_user_assigned(
    shipping: httpx.AsyncClient,
) -> None:
    body = shipment(country="xk")

    made = await created(shipping, "/shipments", body)

    assert made["country"] == "XK"


async def test_answers_carry_the_country_but_no_name_or_street(
    shipping: httpx.AsyncClient,
) -> None:
    body = shipment(country="gb")

    created = await shipping.post("/shipments", json=body, headers=new_key())
    listed = await shipping.get("/shipments", params={"order_id": body["order_id"]})

    assert created.status_code == 201
    assert created.json() == {
        "shipment_id": created.json()["shipment_id"],
        "order_id": body["order_id"],
        "state": "created",
        "country": "GB",
    }
    assert listed.json() == {"items": [created.json()]}
    for text in (created.text, listed.text):
        assert NAME not in text and STREET not in text


# --- idempotency --------------------------------------------------------------


async def test_a_repeated_shipment_replays_the_answer_and_ships_once(
    shipping: httpx.AsyncClient,
) -> None:
    body = shipment()

    first, again = await sent_twice(shipping, "/shipments", body)

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert len(await shipments_of(shipping, body["order_id"])) == 1


async def test_an_undeliverable_answer_is_replayed(shipping: httpx.AsyncClient) -> None:
    first, again = await sent_twice(shipping, "/shipments", shipment(country="AQ"))

    assert first.status_code == again.status_code == 422
    assert again.json() == first.json()


async def test_a_shipment_key_reused_for_another_address_is_refused(
    shipping: httpx.AsyncClient,
) -> None:
    body, key = shipment(), new_key()
    await shipping.post("/shipments", json=body, headers=key)
    moved = {**body, "address": {**body["address"], "city": "Bath"}}

    response = await shipping.post("/shipments", json=moved, headers=key)

    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(await shipments_of(shipping, body["order_id"])) == 1


async def test_cancelling_twice_cancels_once_and_replays(shipping: httpx.AsyncClient) -> None:
    made = await make_shipment(shipping)
    path, key = f"/shipments/{made['shipment_id']}/cancel", new_key()

    first = await shipping.post(path, headers=key)
    replayed = await shipping.post(path, headers=key)
    new_request = await shipping.post(path, json={}, headers=new_key())

    assert first.status_code == replayed.status_code == new_request.status_code == 200
    assert first.json() == replayed.json() == new_request.json()
    assert first.json()["state"] == "cancelled"
    assert [s["state"] for s in await shipments_of(shipping, made["order_id"])] == ["cancelled"]


async def test_an_empty_body_and_an_empty_object_are_the_same_request(
    shipping: httpx.AsyncClient,
) -> None:
    made = await make_shipment(shipping)
    path, key = f"/shipments/{made['shipment_id']}/cancel", new_key()

    first = await shipping.post(path, headers=key)
    again = await shipping.post(path, json={}, headers=key)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers.get("Idempotent-Replayed") == "true"


# --- concurrency --------------------------------------------------------------


async def test_twenty_concurrent_twins_ship_once(shipping: httpx.AsyncClient) -> None:
    body, key = shipment(), new_key()

    responses = await asyncio.gather(
        *(shipping.post("/shipments", json=body, headers=key) for _ in range(20))
    )

    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert len(await shipments_of(shipping, body["order_id"])) == 1


async def test_twenty_concurrent_cancel_twins_answer_alike(shipping: httpx.AsyncClient) -> None:
    made = await make_shipment(shipping)
    path, key = f"/shipments/{made['shipment_id']}/cancel", new_key()

    responses = await asyncio.gather(*(shipping.post(path, headers=key) for _ in range(20)))

    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
