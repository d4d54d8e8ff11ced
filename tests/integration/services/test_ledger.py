"""The admin ledger listings a reconciliation audit reads: every charge,
shipment and reservation a page at a time, and inventory's stock beside what
its open reservations hold. Admin only (tests/integration/services/test_auth.py
checks who may call them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from tests.integration.services.support import (
    ADMIN,
    charge,
    created,
    new_key,
    reservation,
    shipment,
)


async def ledger(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/admin/ledger", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def every_page(client: httpx.AsyncClient, path: str, limit: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        response = await client.get(path, params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        found.extend(page["items"])
        after = page["next_after"]
        if after is None:
            return found


async def test_the_charge_ledger_lists_every_charge_a_page_at_a_time(
    payments: httpx.AsyncClient,
) -> None:
    made = [await created(payments, "/charges", charge()) for _ in range(5)]
    refunded = made[0]
    await payments.post(f"/charges/{refunded['charge_id']}/refund", headers=new_key())

    listed = await every_page(payments, "/admin/ledger", limit=2)

    assert [c["charge_id"] for c in listed] == sorted(c["charge_id"] for c in made)
    by_id = {c["charge_id"]: c for c in listed}
    assert by_id[refunded["charge_id"]]["state"] == "refunded"
    entry = by_id[made[1]["charge_id"]]
    assert {k: entry[k] for k in made[1]} == made[1]
    assert datetime.fromisoformat(entry["created_at"]) <= datetime.fromisoformat(
        entry["updated_at"]
    )
    assert "payment_token" not in str(listed) and "tok_visa" not in str(listed)


async def test_changed_since_lists_only_rows_changed_at_or_after_it(
    payments: httpx.AsyncClient,
) -> None:
    old = await created(payments, "/charges", charge())
    cut = datetime.now(UTC)
    new = await created(payments, "/charges", charge())

    recent = await ledger(payments, changed_since=cut.isoformat())
    in_other_zone = await ledger(
        payments, changed_since=cut.astimezone(timezone(timedelta(hours=2))).isoformat()
    )
    await payments.post(f"/charges/{old['charge_id']}/refund", headers=new_key())
    after_refund = await ledger(payments, changed_since=cut.isoformat())
    future = await ledger(payments, changed_since=(cut + timedelta(days=1)).isoformat())

    assert [c["charge_id"] for c in recent["items"]] == [new["charge_id"]]
    assert in_other_zone == recent
    assert {c["charge_id"] for c in after_refund["items"]} == {
        old["charge_id"],
        new["charge_id"],
    }
    assert future == {"items": [], "next_after": None}


async def test_the_shipment_ledger_shows_the_country_never_the_address(
    shipping: httpx.AsyncClient,
) -> None:
    made = await created(shipping, "/shipments", shipment("FR"))
    await shipping.post(f"/shipments/{made['shipment_id']}/cancel", headers=new_key())

    page = await ledger(shipping)

    (entry,) = page["items"]
    assert (entry["shipment_id"], entry["state"], entry["country"]) == (
        made["shipment_id"],
        "cancelled",
        "FR",
    )
    assert page["next_after"] is None
    assert "Lovelace" not in str(page) and "James" not in str(page)


async def test_the_reservation_ledger_carries_lines_and_totals(
    inventory: httpx.AsyncClient,
) -> None:
    made = await created(inventory, "/reservations", reservation("sku_mug", 2))

    (entry,) = (await ledger(inventory))["items"]

    assert {k: entry[k] for k in made} == made
    assert entry["state"] == "reserved"


async def test_stock_holdings_put_reserved_beside_what_reservations_hold(
    inventory: httpx.AsyncClient,
) -> None:
    await inventory.put(
        "/products/sku_audit_a", json={"price_cents": 100, "available": 10}, headers=ADMIN
    )
    await created(inventory, "/reservations", reservation("sku_audit_a", 2))
    await created(inventory, "/reservations", reservation("sku_audit_a", 3))
    released = await created(inventory, "/reservations", reservation("sku_audit_a", 1))
    committed = await created(inventory, "/reservations", reservation("sku_audit_a", 4))
    await inventory.post(f"/reservations/{released['reservation_id']}/release", headers=new_key())
    await inventory.post(f"/reservations/{committed['reservation_id']}/commit", headers=new_key())

    holdings = await every_page(inventory, "/admin/stock", limit=3)

    by_sku = {h["sku"]: h for h in holdings}
    assert by_sku["sku_audit_a"] == {"sku": "sku_audit_a", "available": 1, "reserved": 5, "held": 5}
    assert [h["sku"] for h in holdings] == sorted(by_sku)
    assert all(h["reserved"] == h["held"] for h in holdings)


async def test_a_page_limit_out_of_bounds_is_the_usual_422(payments: httpx.AsyncClient) -> None:
    for limit in (0, 1001):
        response = await payments.get("/admin/ledger", params={"limit": limit}, headers=ADMIN)
        assert response.status_code == 422
        assert response.json()["detail"]["code"] == "REQUEST_REJECTED"


async def test_a_page_parameter_given_twice_is_a_422_naming_it(
    payments: httpx.AsyncClient, inventory: httpx.AsyncClient
) -> None:
    for client, path in ((payments, "/admin/ledger"), (inventory, "/admin/stock")):
        response = await client.get(
            path, params=[("limit", 5), ("limit", 1000), ("after", "a")], headers=ADMIN
        )

        assert response.status_code == 422, path
        detail = response.json()["detail"]
        assert detail["code"] == "REQUEST_REJECTED"
        assert detail["fields"] == [
            {"loc": ["query", "limit"], "msg": "give this parameter once", "type": "repeated"}
        ]
