"""Payments: declines, the customer limit, refunds that are refused, and
charges that happen once however often they are asked for."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from contracts.fields import MAX_CUSTOMER_LIMIT_CENTS, MAX_ORDER_TOTAL_CENTS
from services.payments.app import create_app as create_payments
from tests.integration.services.support import (
    CREDENTIALS,
    CUSTOMER_LIMIT_CENTS,
    Databases,
    charge,
    created,
    listed,
    new_key,
    new_order_id,
    sent_twice,
    serving,
)


async def charges_of(payments: httpx.AsyncClient, order_id: str) -> list[dict[str, Any]]:
    return await listed(payments, "/charges", order_id)


async def make_charge(payments: httpx.AsyncClient, **kwargs: Any) -> dict[str, Any]:
    return await created(payments, "/charges", charge(**kwargs))


# --- refusals -----------------------------------------------------------------


async def test_a_declined_card_is_402_and_charges_nothing(payments: httpx.AsyncClient) -> None:
    body = charge(token="tok_chargeDeclined")

    response = await payments.post("/charges", json=body, headers=new_key())

    assert response.status_code == 402
    assert response.json()["detail"]["code"] == "PAYMENT_DECLINED"
    assert "tok_chargeDeclined" not in response.text
    assert await charges_of(payments, body["order_id"]) == []


async def test_the_customer_limit_counts_open_charges_and_refunds_free_it(
    payments: httpx.AsyncClient,
) -> None:
    customer = "cus_limited"
    first = await make_charge(
        payments, customer_id=customer, amount_cents=CUSTOMER_LIMIT_CENTS - 100
    )

    over = await payments.post(
        "/charges", json=charge(customer_id=customer, amount_cents=101), headers=new_key()
    )
    just_fits = await payments.post(
        "/charges", json=charge(customer_id=customer, amount_cents=100), headers=new_key()
    )
    other_customer = await payments.post(
        "/charges", json=charge(amount_cents=CUSTOMER_LIMIT_CENTS), headers=new_key()
    )

    assert over.status_code == 402
    assert over.json()["detail"]["code"] == "PAYMENT_DECLINED"
    assert "limit" in over.json()["detail"]["message"]
    assert just_fits.status_code == 201
    assert other_customer.status_code == 201
    await payments.post(f"/charges/{first['charge_id']}/refund", headers=new_key())
    again = await payments.post(
        "/charges",
        json=charge(customer_id=customer, amount_cents=CUSTOMER_LIMIT_CENTS - 100),
        headers=new_key(),
    )
    assert again.status_code == 201, again.text


async def test_a_charge_above_the_limit_on_its_own_is_declined(
    payments: httpx.AsyncClient,
) -> None:
    response = await payments.post(
        "/charges", json=charge(amount_cents=CUSTOMER_LIMIT_CENTS + 1), headers=new_key()
    )

    assert response.status_code == 402
    assert response.json()["detail"]["code"] == "PAYMENT_DECLINED"


async def test_the_largest_order_is_charged_and_refunded_under_the_largest_limit(
    databases: Databases,
) -> None:
    """Amounts and limits past 32 bits: PostgreSQL took them as INTEGER and
    answered every charge with a 500 once the limit passed 2^31 - 1 cents."""
    app = create_payments(
        database_url=await databases.new("payments"),
        customer_limit_cents=MAX_CUSTOMER_LIMIT_CENTS,
        **CREDENTIALS,
    )
    async with serving(app) as payments:
        customer = "cus_wholesale"
        first = await make_charge(
            payments, customer_id=customer, amount_cents=MAX_ORDER_TOTAL_CENTS
        )
        second = await make_charge(payments, customer_id=customer, amount_cents=2500)

        refunded = await payments.post(f"/charges/{first['charge_id']}/refund", headers=new_key())

        assert first["amount_cents"] == MAX_ORDER_TOTAL_CENTS
        assert second["state"] == "captured"
        assert refunded.status_code == 200, refunded.text
        assert refunded.json()["state"] == "refunded"


async def test_a_refund_the_issuer_refuses_is_409_and_the_charge_stays_captured(
    payments: httpx.AsyncClient,
) -> None:
    made = await make_charge(payments, token="tok_refundFail")
    assert made["state"] == "captured"

    response = await payments.post(f"/charges/{made['charge_id']}/refund", headers=new_key())

    assert response.status_code == 409
    assert response.json()["detail"]["code"] == "REFUND_REFUSED"
    assert [c["state"] for c in await charges_of(payments, made["order_id"])] == ["captured"]


async def test_refunding_an_unknown_charge_is_404(payments: httpx.AsyncClient) -> None:
    response = await payments.post("/charges/ch_nope/refund", headers=new_key())

    assert response.status_code == 404
    assert response.json()["detail"]["code"] == "NOT_FOUND"


async def test_bad_charges_are_422_and_never_echo_the_token(payments: httpx.AsyncClient) -> None:
    secret = "tok_secret_4242"
    bodies: list[dict[str, Any]] = [
        {**charge(token=secret), "amount_cents": 0},
        {**charge(token=secret), "amount_cents": "lots"},
        {**charge(token=secret), "amount_cents": 12.5},
        {**charge(token=secret), "currency": "EURO"},
        {**charge(token=secret), "currency": "E1R"},
        {**charge(token=secret), "currency": "ZZZ"},  # the right shape, no currency
        {**charge(token=secret), "payment_token": ""},
        {**charge(token=secret), "customer_id": None},
        {k: v for k, v in charge(token=secret).items() if k != "order_id"},
    ]
    for body in bodies:
        response = await payments.post("/charges", json=body, headers=new_key())
        assert response.status_code == 422, (body, response.text)
        assert secret not in response.text
    assert (await payments.post("/charges", json=[secret], headers=new_key())).status_code == 422


async def test_no_answer_carries_the_token(payments: httpx.AsyncClient) -> None:
    body = {**charge(token="tok_visa_9876"), "currency": "eur"}

    created = await payments.post("/charges", json=body, headers=new_key())
    listed = await payments.get("/charges", params={"order_id": body["order_id"]})

    assert created.status_code == 201
    assert set(created.json()) == {
        "charge_id",
        "order_id",
        "customer_id",
        "amount_cents",
        "currency",
        "state",
    }
    assert created.json()["currency"] == "EUR"
    assert listed.json() == {"items": [created.json()]}
    assert "tok_visa_9876" not in created.text + listed.text


# --- idempotency --------------------------------------------------------------


async def test_a_repeated_charge_replays_the_answer_and_charges_once(
    payments: httpx.AsyncClient,
) -> None:
    body = charge(amount_cents=1234)

    first, again = await sent_twice(payments, "/charges", body)

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert first.json()["amount_cents"] == 1234 and first.json()["state"] == "captured"
    assert len(await charges_of(payments, body["order_id"])) == 1


async def test_a_charge_at_the_limit_is_replayed_and_its_repeat_leaves_no_exposure(
    payments: httpx.AsyncClient,
) -> None:
    """A repeat runs the effect again before the key turns it away
    (services.common.idempotency); here the effect would be declined at the
    customer's limit. The answer is the first one, and the repeat adds nothing
    to the customer's open charges: once the charge is refunded, the whole
    limit is free again."""
    customer = "cus_" + new_order_id()
    body, key = charge(customer_id=customer, amount_cents=CUSTOMER_LIMIT_CENTS), new_key()
    first = await payments.post("/charges", json=body, headers=key)

    again = await payments.post("/charges", json=body, headers=key)

    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    await payments.post(f"/charges/{first.json()['charge_id']}/refund", headers=new_key())
    whole_limit = await payments.post(
        "/charges",
        json=charge(customer_id=customer, amount_cents=CUSTOMER_LIMIT_CENTS),
        headers=new_key(),
    )
    assert whole_limit.status_code == 201, whole_limit.text


async def test_a_charge_key_reused_for_another_amount_is_refused(
    payments: httpx.AsyncClient,
) -> None:
    body, key = charge(amount_cents=1000), new_key()
    await payments.post("/charges", json=body, headers=key)

    response = await payments.post("/charges", json={**body, "amount_cents": 2000}, headers=key)

    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert [c["amount_cents"] for c in await charges_of(payments, body["order_id"])] == [1000]


async def test_a_declined_charge_is_replayed_as_declined(payments: httpx.AsyncClient) -> None:
    first, again = await sent_twice(payments, "/charges", charge(token="tok_chargeDeclined"))

    assert first.status_code == again.status_code == 402
    assert again.json() == first.json()


async def test_refunding_twice_refunds_once_and_replays(payments: httpx.AsyncClient) -> None:
    made = await make_charge(payments, amount_cents=CUSTOMER_LIMIT_CENTS)
    path, key = f"/charges/{made['charge_id']}/refund", new_key()

    first = await payments.post(path, headers=key)
    replayed = await payments.post(path, headers=key)
    new_request = await payments.post(path, headers=new_key())

    assert first.status_code == replayed.status_code == new_request.status_code == 200
    assert first.json() == replayed.json() == new_request.json()
    assert first.json()["state"] == "refunded"
    assert [c["state"] for c in await charges_of(payments, made["order_id"])] == ["refunded"]
    # Refunded once: the customer's whole limit is free again, not more.
    fits = await payments.post(
        "/charges",
        json=charge(customer_id=made["customer_id"], amount_cents=CUSTOMER_LIMIT_CENTS),
        headers=new_key(),
    )
    assert fits.status_code == 201
    over = await payments.post(
        "/charges",
        json=charge(customer_id=made["customer_id"], amount_cents=1),
        headers=new_key(),
    )
    assert over.status_code == 402


# --- concurrency --------------------------------------------------------------


async def test_twenty_concurrent_twins_charge_once(payments: httpx.AsyncClient) -> None:
    body, key = charge(amount_cents=500), new_key()

    responses = await asyncio.gather(
        *(payments.post("/charges", json=body, headers=key) for _ in range(20))
    )

    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert len(await charges_of(payments, body["order_id"])) == 1


async def test_concurrent_charges_of_one_customer_keep_to_the_limit(
    payments: httpx.AsyncClient,
) -> None:
    # An order each, so they queue only on the customer's row, which none of
    # them has yet. (Charges of one order are one charge: test_one_per_order.)
    customer = "cus_busy"
    order_ids = [f"ord_busy_{i}" for i in range(12)]
    amount = CUSTOMER_LIMIT_CENTS // 4 + 1

    responses = await asyncio.gather(
        *(
            payments.post(
                "/charges",
                json=charge(customer_id=customer, order_id=order_id, amount_cents=amount),
                headers=new_key(),
            )
            for order_id in order_ids
        )
    )

    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 3 and statuses.count(402) == 9, statuses
    charged = [len(await charges_of(payments, order_id)) for order_id in order_ids]
    assert sum(charged) == 3


async def test_concurrent_refunds_with_different_keys_refund_once(
    payments: httpx.AsyncClient,
) -> None:
    made = await make_charge(payments, amount_cents=CUSTOMER_LIMIT_CENTS)
    path = f"/charges/{made['charge_id']}/refund"

    responses = await asyncio.gather(*(payments.post(path, headers=new_key()) for _ in range(10)))

    assert {r.status_code for r in responses} == {200}
    over = await payments.post(
        "/charges",
        json=charge(customer_id=made["customer_id"], amount_cents=CUSTOMER_LIMIT_CENTS + 1),
        headers=new_key(),
    )
    assert over.status_code == 402
