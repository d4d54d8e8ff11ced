"""Orders through the API, the real workflow, real activities and real services,
then the domain state checked at the source: stock, charges, shipments."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ordersaga.histories import IN_FLIGHT_LATENCY_MS
from tests import orders
from tests.integration.stack import Stack, items, module_stack
from tests.tokens import as_customer, new_customer_id

STOCK = 10
# The catalog's price for the test's SKU: every charge must be a multiple of it,
# whatever a client might send.
UNIT_PRICE_CENTS = 1500


stack = module_stack("stack")


@pytest.fixture
async def sku(stack: Stack) -> str:
    """A SKU of this test's own, stocked with STOCK units."""
    return await stack.new_sku("sku_it", STOCK, price_cents=UNIT_PRICE_CENTS)


def order_body(
    sku: str, *, quantity: int = 3, country: str = "DE", token: str = "tok_visa"
) -> dict[str, Any]:
    return orders.order_body(sku=sku, quantity=quantity, country=country, payment_token=token)


def step_states(order: dict[str, Any]) -> list[str]:
    """Each step's state, in saga order."""
    return [step["state"] for step in order["steps"]]


async def stock_of(stack: Stack, sku: str) -> dict[str, Any]:
    response = await stack.inventory.get(f"/stock/{sku}")
    assert response.status_code == 200, response.text
    stock: dict[str, Any] = response.json()
    return stock


async def test_happy_path_ships_charges_once_and_takes_the_stock(stack: Stack, sku: str) -> None:
    order_id = await stack.place(order_body(sku, quantity=3))

    order = await stack.wait_for_status(order_id, "COMPLETED", "FAILED")

    assert order["status"] == "COMPLETED", order
    assert step_states(order) == ["completed"] * 4
    assert await stock_of(stack, sku) == {"sku": sku, "available": STOCK - 3, "reserved": 0}
    (charge,) = await items(stack.payments, "/charges", order_id)
    assert (charge["state"], charge["amount_cents"]) == ("captured", 4500)
    (shipment,) = await items(stack.shipping, "/shipments", order_id)
    assert shipment["state"] == "created"
    (reservation,) = await items(stack.inventory, "/reservations", order_id)
    assert reservation["state"] == "committed"


async def test_undeliverable_address_refunds_and_releases(stack: Stack, sku: str) -> None:
    order_id = await stack.place(order_body(sku, quantity=4, country="AQ"))

    order = await stack.wait_for_status(order_id, "COMPLETED", "FAILED")

    assert order["status"] == "FAILED", order
    assert "ADDRESS_UNDELIVERABLE" in order["failure_reason"]
    assert step_states(order) == ["compensated", "compensated", "failed", "pending"]
    assert await stock_of(stack, sku) == {"sku": sku, "available": STOCK, "reserved": 0}
    (charge,) = await items(stack.payments, "/charges", order_id)
    assert charge["state"] == "refunded"
    assert await items(stack.shipping, "/shipments", order_id) == []
    (reservation,) = await items(stack.inventory, "/reservations", order_id)
    assert reservation["state"] == "released"


async def test_out_of_stock_touches_nothing(stack: Stack, sku: str) -> None:
    order_id = await stack.place(order_body(sku, quantity=STOCK + 1))

    order = await stack.wait_for_status(order_id, "COMPLETED", "FAILED")

    assert order["status"] == "FAILED"
    assert "OUT_OF_STOCK" in order["failure_reason"]
    assert await stock_of(stack, sku) == {"sku": sku, "available": STOCK, "reserved": 0}
    assert await items(stack.payments, "/charges", order_id) == []


async def test_cancel_while_the_shipment_is_being_created_undoes_everything(
    stack: Stack, sku: str
) -> None:
    # Slow shipping down past the local attempt's timeout, so create_shipment
    # goes to the shipping queue and the cancel lands while it is in flight there.
    async with stack.slowed(stack.shipping, IN_FLIGHT_LATENCY_MS):
        customer = new_customer_id()
        order_id = await stack.place(order_body(sku, quantity=2), customer=customer)
        await stack.wait_for_status(order_id, "SHIPPING", within=30)

        cancel = await stack.api.post(
            f"/orders/{order_id}/cancel", json={"reason": "test"}, headers=as_customer(customer)
        )
        assert cancel.status_code == 202, cancel.text
        order = await stack.wait_for_status(order_id, "CANCELLED", "COMPLETED", "FAILED")

    assert order["status"] == "CANCELLED", order
    assert step_states(order) == ["compensated", "compensated", "compensated", "pending"]
    assert await stock_of(stack, sku) == {"sku": sku, "available": STOCK, "reserved": 0}
    (charge,) = await items(stack.payments, "/charges", order_id)
    assert charge["state"] == "refunded"
    (shipment,) = await items(stack.shipping, "/shipments", order_id)
    assert shipment["state"] == "cancelled"


async def test_refund_refused_waits_for_an_operator_who_resolves_it(stack: Stack, sku: str) -> None:
    order_id = await stack.place(order_body(sku, country="AQ", token="tok_refundFail"))

    order = await stack.wait_for_status(order_id, "NEEDS_ATTENTION")
    assert "REFUND_REFUSED" in order["steps"][1]["error"]
    # The stock goes back at once; only the refund waits for the operator. (It
    # used to stay reserved until the refund was settled: a refused refund could
    # hold a product's whole stock indefinitely.)
    assert await stock_of(stack, sku) == {"sku": sku, "available": STOCK, "reserved": 0}
    assert order["steps"][0]["state"] == "compensated"

    resolved = await stack.api.post(
        f"/orders/{order_id}/compensation/resolve", json={"note": "refunded by hand"}
    )
    assert resolved.status_code == 202, resolved.text
    order = await stack.wait_for_status(order_id, "FAILED")

    assert await stock_of(stack, sku) == {"sku": sku, "available": STOCK, "reserved": 0}
    (charge,) = await items(stack.payments, "/charges", order_id)
    assert charge["state"] == "captured"  # the service never refunded it; the operator did


async def test_resubmitting_the_same_order_charges_once(stack: Stack, sku: str) -> None:
    body = order_body(sku, quantity=1)
    headers = as_customer(new_customer_id())
    responses = await asyncio.gather(
        *(stack.api.post("/orders", json=body, headers=headers) for _ in range(5))
    )
    assert {r.status_code for r in responses} == {202}
    assert len({r.text for r in responses}) == 1
    order_id = responses[0].json()["order_id"]

    await stack.wait_for_status(order_id, "COMPLETED")

    assert len(await items(stack.payments, "/charges", order_id)) == 1
    assert (await stock_of(stack, sku))["available"] == STOCK - 1
