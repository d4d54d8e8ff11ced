"""Issue 15: a service hangs, then recovers. Every forward call times out on the
workers' side, the order gives up and compensates (finding nothing), and only
then do the calls still running in the service land. They must leave nothing:
no captured charge, no live shipment, no stock held.

The whole stack in one process (tests/integration/stack.py), with a short HTTP
read timeout so the order runs out of retries in seconds. Each case runs twice:
as shipped, and with the workers sending no Request-Timeout, so the fence
alone is what stops the late requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from activities.http import ServiceClient
from tests import orders
from tests.integration.stack import Stack, items, module_stack

STOCK = 10
UNIT_PRICE_CENTS = 1500
# Far below the service's hang, so every attempt times out on the workers' side.
READ_TIMEOUT_SECONDS = 0.5
# Longer than the forward step's whole retry budget (about 10 s at this read
# timeout) and the compensation's look-up: every request held in the service
# lands after the order has given up and compensated.
HANG_MS = 14_000


stack = module_stack("late-requests", http_read_timeout_seconds=READ_TIMEOUT_SECONDS)


@pytest.fixture(params=["with-deadlines", "fence-only"])
def deadlines(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "fence-only":
        # No Request-Timeout: the services cannot tell the calls were abandoned.
        monkeypatch.setattr(ServiceClient, "_wait_budget", lambda _self: None)
    yield str(request.param)


@pytest.fixture
async def sku(stack: Stack) -> str:
    return await stack.new_sku("sku_late", STOCK, price_cents=UNIT_PRICE_CENTS)


async def hang_then_recover(stack: Stack, service: httpx.AsyncClient, step: str, sku: str) -> str:
    """Place an order while `service` hangs; once the order has given up on the
    `step` and is compensating, the service recovers; return when the order has
    ended, failed with `step` failed (its look-up by order found nothing to
    undo), and every request that was held in the service has landed."""
    hang = await service.put(
        "/admin/faults", json={"error_rate": 0, "latency_ms": HANG_MS}, headers=stack.admin
    )
    assert hang.status_code == 200, hang.text
    try:
        order_id = await stack.place(orders.order_body(sku=sku, quantity=2, country="DE"))
        await stack.wait_for_status(order_id, "COMPENSATING", within=60)
    finally:
        recovered_at = time.monotonic()
        await service.delete("/admin/faults", headers=stack.admin)
    order = await stack.wait_for_status(order_id, "FAILED", "NEEDS_ATTENTION", within=60)
    assert order["status"] == "FAILED", order
    # Every held request arrived before the recovery and sleeps HANG_MS from
    # its arrival: all have landed (and done whatever they do) after this.
    await asyncio.sleep(max(0.0, recovered_at + HANG_MS / 1000 + 1.5 - time.monotonic()))
    order = await stack.order(order_id)
    states = {each["name"]: each["state"] for each in order["steps"]}
    assert states[step] == "failed", order
    return order_id


async def test_a_charge_landing_after_the_order_failed_captures_nothing(
    stack: Stack, sku: str, deadlines: str
) -> None:
    order_id = await hang_then_recover(stack, stack.payments, "charge_payment", sku)

    charges = await items(stack.payments, "/charges", order_id)
    assert [c for c in charges if c["state"] == "captured"] == [], charges
    stock = (await stack.inventory.get(f"/stock/{sku}")).json()
    assert (stock["available"], stock["reserved"]) == (STOCK, 0)
    reservations = await items(stack.inventory, "/reservations", order_id)
    assert [r["state"] for r in reservations] == ["released"]


async def test_a_shipment_landing_after_the_order_failed_ships_nothing(
    stack: Stack, sku: str, deadlines: str
) -> None:
    order_id = await hang_then_recover(stack, stack.shipping, "create_shipment", sku)

    shipments = await items(stack.shipping, "/shipments", order_id)
    assert [s for s in shipments if s["state"] != "cancelled"] == [], shipments
    charges = await items(stack.payments, "/charges", order_id)
    assert [c["state"] for c in charges] == ["refunded"]
    stock = (await stack.inventory.get(f"/stock/{sku}")).json()
    assert (stock["available"], stock["reserved"]) == (STOCK, 0)
