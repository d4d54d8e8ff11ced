"""Inventory: reservations never oversell, and every POST is idempotent."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.integration.services.support import (
    ADMIN,
    Databases,
    created,
    inventory_app,
    new_key,
    new_order_id,
    reservation,
    sent_twice,
    serving,
)

PRICE_CENTS = 700


async def stocked_sku(
    inventory: httpx.AsyncClient, available: int, price_cents: int = PRICE_CENTS
) -> str:
    sku = f"sku_test_{uuid.uuid4().hex[:10]}"
    response = await inventory.put(
        f"/products/{sku}", json={"available": available, "price_cents": price_cents}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    return sku


async def stock(inventory: httpx.AsyncClient, sku: str) -> dict[str, Any]:
    response = await inventory.get(f"/stock/{sku}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def reserve(inventory: httpx.AsyncClient, sku: str, quantity: int = 1) -> dict[str, Any]:
    return await created(inventory, "/reservations", reservation(sku, quantity))


def path_of(made: dict[str, Any], action: str) -> str:
    """Where to POST an action (release, commit) on a reservation."""
    return f"/reservations/{made['reservation_id']}/{action}"


# --- refusals -----------------------------------------------------------------


async def test_a_short_line_reserves_nothing_and_names_the_sku(
    inventory: httpx.AsyncClient,
) -> None:
    plenty = await stocked_sku(inventory, 10)
    scarce = await stocked_sku(inventory, 2)

    response = await inventory.post(
        "/reservations",
        json={
            "order_id": "ord_short",
            "lines": [{"sku": plenty, "quantity": 5}, {"sku": scarce, "quantity": 3}],
            "currency": "EUR",
        },
        headers=new_key(),
    )

    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "OUT_OF_STOCK"
    assert scarce in detail["message"] and plenty not in detail["message"]
    assert await stock(inventory, plenty) == {"sku": plenty, "available": 10, "reserved": 0}
    assert await stock(inventory, scarce) == {"sku": scarce, "available": 2, "reserved": 0}
    listed = await inventory.get("/reservations", params={"order_id": "ord_short"})
    assert listed.json() == {"items": []}


async def test_an_unknown_sku_is_refused(inventory: httpx.AsyncClient) -> None:
    response = await inventory.post(
        "/reservations", json=reservation("sku_does_not_exist"), headers=new_key()
    )

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["code"] == "UNKNOWN_SKU"
    assert "sku_does_not_exist" in detail["message"]


async def test_an_unknown_sku_beside_a_short_line_is_unknown_and_takes_nothing(
    inventory: httpx.AsyncClient,
) -> None:
    plenty = await stocked_sku(inventory, 10)
    scarce = await stocked_sku(inventory, 2)
    lines = [
        {"sku": plenty, "quantity": 5},
        {"sku": "sku_does_not_exist", "quantity": 1},
        {"sku": scarce, "quantity": 3},
    ]

    response = await inventory.post(
        "/reservations",
        json={"order_id": "ord_mixed", "lines": lines, "currency": "EUR"},
        headers=new_key(),
    )

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "UNKNOWN_SKU"
    assert "sku_does_not_exist" in detail["message"] and scarce not in detail["message"]
    assert await stock(inventory, plenty) == {"sku": plenty, "available": 10, "reserved": 0}
    assert await stock(inventory, scarce) == {"sku": scarce, "available": 2, "reserved": 0}


async def test_a_refusal_is_replayed_even_after_restocking(inventory: httpx.AsyncClient) -> None:
    sku = await stocked_sku(inventory, 1)
    body, key = reservation(sku, quantity=2), new_key()
    refused = await inventory.post("/reservations", json=body, headers=key)
    await inventory.put(f"/products/{sku}", json={"available": 5, "price_cents": 1}, headers=ADMIN)

    again = await inventory.post("/reservations", json=body, headers=key)

    assert refused.status_code == again.status_code == 409
    assert again.json() == refused.json()
    assert await stock(inventory, sku) == {"sku": sku, "available": 5, "reserved": 0}


async def test_commit_after_release_and_release_after_commit_are_refused(
    inventory: httpx.AsyncClient,
) -> None:
    sku = await stocked_sku(inventory, 5)
    released = await reserve(inventory, sku, 1)
    committed = await reserve(inventory, sku, 1)
    await inventory.post(path_of(released, "release"), headers=new_key())
    await inventory.post(path_of(committed, "commit"), headers=new_key())

    late_commit = await inventory.post(path_of(released, "commit"), headers=new_key())
    late_release = await inventory.post(path_of(committed, "release"), headers=new_key())

    for response in (late_commit, late_release):
        assert response.status_code == 409, response.text
        assert response.json()["detail"]["code"] == "INVALID_STATE"
    # One unit left with the committed order; the released one is back on sale.
    assert await stock(inventory, sku) == {"sku": sku, "available": 4, "reserved": 0}


async def test_unknown_reservation_and_product_are_404(inventory: httpx.AsyncClient) -> None:
    for action in ("release", "commit"):
        response = await inventory.post(f"/reservations/res_nope/{action}", headers=new_key())
        assert response.status_code == 404
        assert response.json()["detail"]["code"] == "NOT_FOUND"
    response = await inventory.get("/stock/sku_nope")
    assert response.status_code == 404
    assert response.json()["detail"]["code"] == "NOT_FOUND"


async def test_bad_reservation_bodies_are_422_not_500(inventory: httpx.AsyncClient) -> None:
    sku = await stocked_sku(inventory, 5)
    bodies: list[Any] = [
        {"order_id": "o", "lines": []},
        {"order_id": "o", "lines": [{"sku": sku, "quantity": 0}]},
        {"order_id": "o", "lines": [{"sku": sku, "quantity": "many"}]},
        {"order_id": "o", "lines": [{"sku": sku, "quantity": 10**30}]},
        {"order_id": "o\x00", "lines": [{"sku": sku, "quantity": 1}]},
        {"order_id": "o", "lines": [{"sku": "bad sku!", "quantity": 1}]},
        {"lines": [{"sku": sku, "quantity": 1}]},
        ["not", "an", "object"],
    ]
    for body in bodies:
        response = await inventory.post("/reservations", json=body, headers=new_key())
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"]["code"] == "REQUEST_REJECTED"
    malformed = await inventory.post(
        "/reservations",
        content=b'{"order_id": ',
        headers={**new_key(), "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    assert malformed.json()["detail"]["code"] == "MALFORMED_JSON"
    odd_id = await inventory.post("/reservations/res%00x/release", headers=new_key())
    assert odd_id.status_code == 422
    assert await stock(inventory, sku) == {"sku": sku, "available": 5, "reserved": 0}


async def test_restocking_needs_the_admin_token(inventory: httpx.AsyncClient) -> None:
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        response = await inventory.put("/products/sku_mug", json={"available": 1}, headers=headers)
        assert response.status_code == 401
        assert response.json()["detail"]["code"] == "UNAUTHORIZED"
    # The client's own credential is the workers': not an operator's.
    response = await inventory.put("/products/sku_mug", json={"available": 1})
    assert response.status_code == 403
    assert response.json()["detail"]["code"] == "FORBIDDEN"
    assert (await stock(inventory, "sku_mug"))["available"] == 100


# --- idempotency --------------------------------------------------------------


async def test_a_repeated_reservation_replays_the_answer_and_reserves_once(
    inventory: httpx.AsyncClient,
) -> None:
    sku = await stocked_sku(inventory, 10)
    first, again = await sent_twice(inventory, "/reservations", reservation(sku, quantity=3))

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.content == first.content
    assert first.json()["state"] == "reserved"
    assert first.json()["lines"] == [{"sku": sku, "quantity": 3, "unit_price_cents": PRICE_CENTS}]
    assert await stock(inventory, sku) == {"sku": sku, "available": 7, "reserved": 3}


async def test_a_reservation_is_replayed_even_once_the_stock_has_run_out(
    inventory: httpx.AsyncClient,
) -> None:
    """The key is written after the effect (services.common.idempotency): a
    repeat runs the effect again, here into OUT_OF_STOCK, and the key must
    still decide, with the repeat's own refusal thrown away."""
    sku = await stocked_sku(inventory, 3)
    body, key = reservation(sku, quantity=3), new_key()
    first = await inventory.post("/reservations", json=body, headers=key)

    again = await inventory.post("/reservations", json=body, headers=key)

    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await stock(inventory, sku) == {"sku": sku, "available": 0, "reserved": 3}


async def test_a_key_reused_for_another_request_is_refused(inventory: httpx.AsyncClient) -> None:
    sku = await stocked_sku(inventory, 10)
    key = new_key()
    await inventory.post("/reservations", json=reservation(sku, 1, "ord_a"), headers=key)

    other_body = await inventory.post(
        "/reservations", json=reservation(sku, 2, "ord_a"), headers=key
    )
    other_path = await inventory.post("/reservations/res_x/release", headers=key)

    for response in (other_body, other_path):
        assert response.status_code == 422
        assert response.json()["detail"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await stock(inventory, sku) == {"sku": sku, "available": 9, "reserved": 1}


async def test_key_order_and_spacing_do_not_make_another_request(
    inventory: httpx.AsyncClient,
) -> None:
    sku = await stocked_sku(inventory, 10)
    key = new_key()
    compact = f'{{"order_id":"ord_k","lines":[{{"sku":"{sku}","quantity":1}}],"currency":"EUR"}}'
    spaced = (
        f'{{ "currency": "EUR", "lines": [ {{ "quantity": 1, "sku": "{sku}" }} ], '
        '"order_id": "ord_k" }'
    )
    json_headers = {**key, "Content-Type": "application/json"}

    first = await inventory.post("/reservations", content=compact, headers=json_headers)
    again = await inventory.post("/reservations", content=spaced, headers=json_headers)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert await stock(inventory, sku) == {"sku": sku, "available": 9, "reserved": 1}


async def test_release_and_commit_replay_and_take_effect_once(
    inventory: httpx.AsyncClient,
) -> None:
    sku = await stocked_sku(inventory, 10)
    released = await reserve(inventory, sku, 4)
    committed = await reserve(inventory, sku, 3)
    release_path = path_of(released, "release")
    commit_path = path_of(committed, "commit")

    release, release_replayed = await sent_twice(inventory, release_path)
    release_new_key = await inventory.post(release_path, headers=new_key())
    commit, commit_replayed = await sent_twice(inventory, commit_path)
    commit_new_key = await inventory.post(commit_path, headers=new_key())

    for first, again, other in (
        (release, release_replayed, release_new_key),
        (commit, commit_replayed, commit_new_key),
    ):
        assert first.status_code == again.status_code == other.status_code == 200
        assert again.json() == first.json() == other.json()
    assert release.json()["state"] == "released"
    assert commit.json()["state"] == "committed"
    assert await stock(inventory, sku) == {"sku": sku, "available": 7, "reserved": 0}


async def test_the_idempotency_key_is_required_and_checked(inventory: httpx.AsyncClient) -> None:
    sku = await stocked_sku(inventory, 10)
    for headers in (
        {},
        {"Idempotency-Key": ""},
        {"Idempotency-Key": "has space"},
        {"Idempotency-Key": "k" * 256},
    ):
        response = await inventory.post("/reservations", json=reservation(sku), headers=headers)
        assert response.status_code == 400, headers
        detail = response.json()["detail"]
        assert detail["code"] == "REQUEST_REJECTED"
        assert "Idempotency-Key" in detail["message"]
    ok = await inventory.post(
        "/reservations", json=reservation(sku), headers={"Idempotency-Key": "k" * 255}
    )
    assert ok.status_code == 201
    assert await stock(inventory, sku) == {"sku": sku, "available": 9, "reserved": 1}


# --- concurrency --------------------------------------------------------------


async def test_twenty_concurrent_twins_reserve_once(inventory: httpx.AsyncClient) -> None:
    sku = await stocked_sku(inventory, 100)
    body, key = reservation(sku, quantity=2, order_id="ord_twins"), new_key()

    responses = await asyncio.gather(
        *(inventory.post("/reservations", json=body, headers=key) for _ in range(20))
    )

    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert await stock(inventory, sku) == {"sku": sku, "available": 98, "reserved": 2}
    listed = await inventory.get("/reservations", params={"order_id": "ord_twins"})
    assert len(listed.json()["items"]) == 1


async def test_concurrent_reservations_never_oversell(inventory: httpx.AsyncClient) -> None:
    sku = await stocked_sku(inventory, 10)

    responses = await asyncio.gather(
        *(
            inventory.post("/reservations", json=reservation(sku), headers=new_key())
            for _ in range(30)
        )
    )

    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 10 and statuses.count(409) == 20, statuses
    assert all(
        r.json()["detail"]["code"] == "OUT_OF_STOCK" for r in responses if r.status_code == 409
    )
    assert await stock(inventory, sku) == {"sku": sku, "available": 0, "reserved": 10}


async def test_concurrent_multi_line_reservations_in_any_order_neither_oversell_nor_deadlock(
    inventory: httpx.AsyncClient,
) -> None:
    first, second = await stocked_sku(inventory, 8), await stocked_sku(inventory, 8)

    def crossed(i: int) -> dict[str, Any]:
        lines = [{"sku": first, "quantity": 1}, {"sku": second, "quantity": 1}]
        return {
            "order_id": f"ord_{i}",
            "lines": lines if i % 2 else lines[::-1],
            "currency": "EUR",
        }

    responses = await asyncio.gather(
        *(inventory.post("/reservations", json=crossed(i), headers=new_key()) for i in range(12))
    )

    assert sorted(r.status_code for r in responses) == [201] * 8 + [409] * 4
    for sku in (first, second):
        assert await stock(inventory, sku) == {"sku": sku, "available": 0, "reserved": 8}


async def test_concurrent_releases_with_different_keys_release_once(
    inventory: httpx.AsyncClient,
) -> None:
    sku = await stocked_sku(inventory, 10)
    made = await reserve(inventory, sku, 4)
    path = path_of(made, "release")

    responses = await asyncio.gather(*(inventory.post(path, headers=new_key()) for _ in range(10)))

    assert {r.status_code for r in responses} == {200}
    assert await stock(inventory, sku) == {"sku": sku, "available": 10, "reserved": 0}


# --- stock and catalog ----------------------------------------------------------


async def test_restocking_keeps_what_is_reserved(inventory: httpx.AsyncClient) -> None:
    sku = await stocked_sku(inventory, 10)
    await reserve(inventory, sku, 4)

    response = await inventory.put(f"/products/{sku}", json={"available": 50}, headers=ADMIN)

    assert response.status_code == 200
    assert response.json() == {
        "sku": sku,
        "price_cents": PRICE_CENTS,
        "currency": "EUR",
        "available": 50,
        "reserved": 4,
    }
    for bad in ({"available": -1}, {"available": "lots"}, {}):
        refused = await inventory.put(f"/products/{sku}", json=bad, headers=ADMIN)
        assert refused.status_code == 422


async def test_the_catalog_is_seeded_once_and_a_restart_keeps_the_stock(
    databases: Databases,
) -> None:
    url = await databases.new("inventory")
    async with serving(inventory_app(url)) as inventory:
        assert await stock(inventory, "sku_hoodie") == {
            "sku": "sku_hoodie",
            "available": 25,
            "reserved": 0,
        }
        made = await reserve(inventory, "sku_hoodie", 5)
        await inventory.post(path_of(made, "commit"), headers=new_key())

    async with serving(inventory_app(url)) as restarted:
        assert await stock(restarted, "sku_hoodie") == {
            "sku": "sku_hoodie",
            "available": 20,
            "reserved": 0,
        }
        assert (await stock(restarted, "sku_sticker"))["available"] == 1000
        listed = await restarted.get("/reservations", params={"order_id": made["order_id"]})
        assert [r["state"] for r in listed.json()["items"]] == ["committed"]


async def test_duplicate_lines_of_one_sku_are_merged(inventory: httpx.AsyncClient) -> None:
    sku = await stocked_sku(inventory, 10)
    body = {"order_id": "ord_dup", "lines": [{"sku": sku, "quantity": 2}] * 3, "currency": "EUR"}

    response = await inventory.post("/reservations", json=body, headers=new_key())

    assert response.status_code == 201
    assert response.json()["lines"] == [
        {"sku": sku, "quantity": 6, "unit_price_cents": PRICE_CENTS}
    ]
    assert response.json()["total_cents"] == 6 * PRICE_CENTS
    assert await stock(inventory, sku) == {"sku": sku, "available": 4, "reserved": 6}


async def test_two_replicas_on_one_database_never_oversell(databases: Databases) -> None:
    """Like two processes: each app has its own engine, so only the database
    (BEGIN IMMEDIATE and busy_timeout on SQLite, row locks on PostgreSQL)
    keeps them apart."""
    url = await databases.new("inventory")
    async with serving(inventory_app(url)) as one, serving(inventory_app(url)) as two:
        sku = await stocked_sku(one, 10)

        responses = await asyncio.gather(
            *(
                (one if i % 2 else two).post(
                    "/reservations", json=reservation(sku), headers=new_key()
                )
                for i in range(30)
            )
        )

        statuses = [r.status_code for r in responses]
        assert statuses.count(201) == 10 and statuses.count(409) == 20, statuses
        assert await stock(two, sku) == {"sku": sku, "available": 0, "reserved": 10}


# --- prices -------------------------------------------------------------------


async def test_the_seed_catalogue_is_public_with_its_prices(inventory: httpx.AsyncClient) -> None:
    response = await inventory.get("/products", headers={"Authorization": ""})

    assert response.status_code == 200
    items = {item["sku"]: item for item in response.json()["items"]}
    assert {sku: item["price_cents"] for sku, item in items.items()} == {
        "sku_hoodie": 4500,
        "sku_mug": 1250,
        "sku_poster": 1500,
        "sku_sticker": 300,
        "sku_tshirt": 2000,
    }
    assert items["sku_mug"] == {
        "sku": "sku_mug",
        "price_cents": 1250,
        "currency": "EUR",
        "available": 100,
    }


async def test_a_reservation_fixes_the_catalogs_prices(inventory: httpx.AsyncClient) -> None:
    cheap = await stocked_sku(inventory, 10, price_cents=250)
    dear = await stocked_sku(inventory, 10, price_cents=9999)
    order_id = new_order_id()
    body = {
        "order_id": order_id,
        "lines": [{"sku": dear, "quantity": 1}, {"sku": cheap, "quantity": 3}],
        "currency": "EUR",
        "expected_total_cents": 3 * 250 + 9999,
    }

    made = await created(inventory, "/reservations", body)
    listed = await inventory.get("/reservations", params={"order_id": order_id})

    assert sorted(made["lines"], key=lambda line: line["quantity"]) == [
        {"sku": dear, "quantity": 1, "unit_price_cents": 9999},
        {"sku": cheap, "quantity": 3, "unit_price_cents": 250},
    ]
    assert (made["total_cents"], made["currency"]) == (10749, "EUR")
    assert listed.json() == {"items": [made]}


async def test_a_price_change_after_reserving_leaves_the_reservation_alone(
    inventory: httpx.AsyncClient,
) -> None:
    sku = await stocked_sku(inventory, 10, price_cents=1000)
    body, key = reservation(sku, 2), new_key()
    first = await inventory.post("/reservations", json=body, headers=key)

    repriced = await inventory.put(f"/products/{sku}", json={"price_cents": 5000}, headers=ADMIN)
    replayed = await inventory.post("/reservations", json=body, headers=key)
    listed = await inventory.get("/reservations", params={"order_id": body["order_id"]})
    later = await reserve(inventory, sku, 2)

    assert repriced.status_code == 200
    assert repriced.json()["price_cents"] == 5000
    assert repriced.json()["available"] == 8  # the stock was not touched
    assert first.json()["total_cents"] == replayed.json()["total_cents"] == 2000
    assert listed.json()["items"][0]["lines"][0]["unit_price_cents"] == 1000
    assert listed.json()["items"][0]["total_cents"] == 2000
    assert later["total_cents"] == 10000


async def test_another_currency_is_refused_and_reserves_nothing(
    inventory: httpx.AsyncClient,
) -> None:
    sku = await stocked_sku(inventory, 10)
    body, key = {**reservation(sku, 1), "currency": "USD"}, new_key()

    refused = await inventory.post("/reservations", json=body, headers=key)
    again = await inventory.post("/reservations", json=body, headers=key)

    assert refused.status_code == 409
    assert refused.json()["detail"] == {
        "code": "PRICE_CHANGED",
        "message": "prices are in EUR, not USD",
    }
    assert (again.status_code, again.json()) == (409, refused.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await stock(inventory, sku) == {"sku": sku, "available": 10, "reserved": 0}
    listed = await inventory.get("/reservations", params={"order_id": body["order_id"]})
    assert listed.json() == {"items": []}


async def test_an_unexpected_total_is_refused_and_reserves_nothing(
    inventory: httpx.AsyncClient,
) -> None:
    sku = await stocked_sku(inventory, 10, price_cents=1250)
    body, key = {**reservation(sku, 2), "expected_total_cents": 2000}, new_key()

    refused = await inventory.post("/reservations", json=body, headers=key)
    again = await inventory.post("/reservations", json=body, headers=key)
    expected = await inventory.post(
        "/reservations", json={**body, "expected_total_cents": 2500}, headers=new_key()
    )

    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert detail["code"] == "PRICE_CHANGED"
    assert "25.00 EUR" in detail["message"] and "20.00 EUR" in detail["message"]
    assert (again.status_code, again.json()) == (409, refused.json())
    assert expected.status_code == 201, expected.text
    assert await stock(inventory, sku) == {"sku": sku, "available": 8, "reserved": 2}
    listed = await inventory.get("/reservations", params={"order_id": body["order_id"]})
    assert [r["total_cents"] for r in listed.json()["items"]] == [2500]


async def test_put_product_sets_price_and_or_stock_within_bounds(
    inventory: httpx.AsyncClient,
) -> None:
    sku = f"sku_new_{uuid.uuid4().hex[:8]}"
    invalid = [
        {},
        {"price_cents": 0},
        {"price_cents": 10_000_001},
        {"price_cents": 12.5},
        {"available": -1},
        {"price_cents": 100, "available": 1, "reserved": 5},
    ]
    for body in invalid:
        response = await inventory.put(f"/products/{sku}", json=body, headers=ADMIN)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"]["code"] == "REQUEST_REJECTED"
    for half in ({"price_cents": 100}, {"available": 5}):
        response = await inventory.put(f"/products/{sku}", json=half, headers=ADMIN)
        assert response.status_code == 404, (half, response.text)
        assert "needs both" in response.json()["detail"]["message"]

    made = await inventory.put(
        f"/products/{sku}", json={"price_cents": 10_000_000, "available": 5}, headers=ADMIN
    )
    restocked = await inventory.put(f"/products/{sku}", json={"available": 7}, headers=ADMIN)

    assert made.status_code == 200
    assert made.json() == {
        "sku": sku,
        "price_cents": 10_000_000,
        "currency": "EUR",
        "available": 5,
        "reserved": 0,
    }
    assert restocked.json()["price_cents"] == 10_000_000
    assert restocked.json()["available"] == 7
