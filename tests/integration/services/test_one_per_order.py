"""An order gets one reservation, one charge and one shipment in each service,
whatever idempotency key asks for another (services.common.domain.admit_once).

The saga asks under one key per order and step, and the key makes its retries
replays. These requests come under fresh keys, as from a worker build that
makes its keys another way while orders retry a step: the same request gets
the resource already made, anything else is refused, and nothing is made,
taken or captured twice. On SQLite and PostgreSQL, also when the requests
race. And the undos take no fields: an undo is always whole.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.services.support import (
    ADMIN,
    Databases,
    charge,
    created,
    inventory_app,
    listed,
    new_key,
    new_order_id,
    payments_app,
    reservation,
    serving,
    shipment,
    shipping_app,
)

STOCK = 10


@dataclass(frozen=True)
class Forward:
    """One service's forward request, and how to undo what it made."""

    service: str
    collection: str
    id_field: str
    undo: str
    undone_state: str
    app: Callable[[str], FastAPI]
    # (order id, stocked sku, other terms?) -> the request's body
    body: Callable[[str, str, bool], dict[str, Any]]


FORWARDS = [
    Forward(
        "inventory",
        "/reservations",
        "reservation_id",
        "release",
        "released",
        inventory_app,
        lambda order, sku, other: reservation(sku, 2 if other else 1, order_id=order),
    ),
    Forward(
        "payments",
        "/charges",
        "charge_id",
        "refund",
        "refunded",
        payments_app,
        lambda order, _sku, other: charge(
            amount_cents=2600 if other else 2500, customer_id=f"cus_{order}", order_id=order
        ),
    ),
    Forward(
        "shipping",
        "/shipments",
        "shipment_id",
        "cancel",
        "cancelled",
        shipping_app,
        lambda order, _sku, other: shipment("FR" if other else "GB", order_id=order),
    ),
]


@dataclass
class Service:
    forward: Forward
    client: httpx.AsyncClient
    sku: str

    def body(self, order_id: str, *, other_terms: bool = False) -> dict[str, Any]:
        return self.forward.body(order_id, self.sku, other_terms)

    async def made_for(self, order_id: str) -> list[dict[str, Any]]:
        return await listed(self.client, self.forward.collection, order_id)

    async def held_stock(self) -> int | None:
        """Units reserved of the test's sku (inventory only)."""
        if self.forward.service != "inventory":
            return None
        response = await self.client.get(f"/stock/{self.sku}")
        assert response.status_code == 200, response.text
        reserved: int = response.json()["reserved"]
        return reserved


@pytest.fixture(params=FORWARDS, ids=[f.service for f in FORWARDS])
async def service(request: pytest.FixtureRequest, databases: Databases) -> AsyncIterator[Service]:
    forward: Forward = request.param
    async with serving(forward.app(await databases.new(forward.service))) as client:
        sku = f"sku_once_{uuid.uuid4().hex[:10]}"
        if forward.service == "inventory":
            stocked = await client.put(
                f"/products/{sku}", json={"available": STOCK, "price_cents": 700}, headers=ADMIN
            )
            assert stocked.status_code == 200, stocked.text
        yield Service(forward, client, sku)


async def test_the_same_request_under_another_key_gets_the_one_made(service: Service) -> None:
    order_id = new_order_id()
    first = await created(service.client, service.forward.collection, service.body(order_id))

    again = await service.client.post(
        service.forward.collection, json=service.body(order_id), headers=new_key()
    )

    assert again.status_code == 201, again.text
    assert again.json() == first
    assert "Idempotent-Replayed" not in again.headers, "another key: not a replay"
    assert [m[service.forward.id_field] for m in await service.made_for(order_id)] == [
        first[service.forward.id_field]
    ]
    assert await service.held_stock() in (None, 1), "the stock is taken once"


async def test_other_terms_under_another_key_are_409_and_make_nothing(service: Service) -> None:
    order_id = new_order_id()
    first = await created(service.client, service.forward.collection, service.body(order_id))

    other = await service.client.post(
        service.forward.collection,
        json=service.body(order_id, other_terms=True),
        headers=new_key(),
    )

    assert other.status_code == 409, other.text
    assert other.json()["detail"]["code"] == "INVALID_STATE"
    assert order_id in other.json()["detail"]["message"]
    assert await service.made_for(order_id) == [first]
    assert await service.held_stock() in (None, 1)


async def test_the_same_request_after_the_undo_is_409_not_a_second_one(
    service: Service,
) -> None:
    # Undone by its id alone, as an operator's tool might: the order is not
    # fenced (the saga's compensation would have fenced it first).
    order_id = new_order_id()
    first = await created(service.client, service.forward.collection, service.body(order_id))
    made_id = first[service.forward.id_field]
    undone = await service.client.post(
        f"{service.forward.collection}/{made_id}/{service.forward.undo}", headers=new_key()
    )
    assert undone.status_code == 200, undone.text

    again = await service.client.post(
        service.forward.collection, json=service.body(order_id), headers=new_key()
    )

    assert again.status_code == 409, again.text
    assert again.json()["detail"]["code"] == "INVALID_STATE"
    made = await service.made_for(order_id)
    assert [(m[service.forward.id_field], m["state"]) for m in made] == [
        (made_id, service.forward.undone_state)
    ]
    assert await service.held_stock() in (None, 0)


async def test_racing_requests_under_different_keys_make_one(service: Service) -> None:
    # They queue on the order's gate row (services.common.fences), so no two
    # both find nothing made and both make one.
    order_id = new_order_id()

    answers = await asyncio.gather(
        *(
            service.client.post(
                service.forward.collection, json=service.body(order_id), headers=new_key()
            )
            for _ in range(12)
        )
    )

    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    assert len({a.json()[service.forward.id_field] for a in answers}) == 1
    assert len(await service.made_for(order_id)) == 1
    assert await service.held_stock() in (None, 1)


@pytest.mark.parametrize("service", [FORWARDS[0]], ids=["inventory"], indirect=True)
async def test_a_reservation_asked_at_another_total_is_409_and_at_its_own_gets_it(
    service: Service,
) -> None:
    order_id = new_order_id()
    first = await created(service.client, service.forward.collection, service.body(order_id))

    elsewhere = await service.client.post(
        "/reservations",
        json={**service.body(order_id), "expected_total_cents": first["total_cents"] + 1},
        headers=new_key(),
    )
    same = await service.client.post(
        "/reservations",
        json={**service.body(order_id), "expected_total_cents": first["total_cents"]},
        headers=new_key(),
    )

    assert elsewhere.status_code == 409, elsewhere.text
    assert elsewhere.json()["detail"]["code"] == "INVALID_STATE"
    assert (same.status_code, same.json()) == (201, first)
    assert await service.held_stock() == 1


@pytest.mark.parametrize("service", [FORWARDS[1]], ids=["payments"], indirect=True)
async def test_a_charge_asked_with_another_card_gets_the_one_captured(service: Service) -> None:
    # The token is never stored, so it cannot be compared: the order is paid.
    order_id = new_order_id()
    first = await created(service.client, "/charges", service.body(order_id))

    again = await service.client.post(
        "/charges",
        json={**service.body(order_id), "payment_token": "tok_chargeDeclined"},
        headers=new_key(),
    )

    assert (again.status_code, again.json()) == (201, first)
    assert [c["state"] for c in await service.made_for(order_id)] == ["captured"]


@pytest.mark.parametrize(
    "body",
    [{"amount_cents": 1}, {"quantity": 1}, [], "all"],
    ids=["amount", "quantity", "list", "str"],
)
async def test_an_undo_with_anything_in_its_body_is_422_and_undoes_nothing(
    service: Service, body: object
) -> None:
    # An undo is always whole: a field must not read as a partial one.
    order_id = new_order_id()
    first = await created(service.client, service.forward.collection, service.body(order_id))
    made_id = first[service.forward.id_field]

    refused = await service.client.post(
        f"{service.forward.collection}/{made_id}/{service.forward.undo}",
        content=json.dumps(body).encode(),
        headers={**new_key(), "Content-Type": "application/json"},
    )

    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"]["code"] == "REQUEST_REJECTED"
    assert await service.made_for(order_id) == [first]
