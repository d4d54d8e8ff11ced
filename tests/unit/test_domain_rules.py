"""The services' domain rules on in-memory repositories (tests/unit/memory_domain.py):
no oversell, all or nothing, release and commit each once, fences, limits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from contracts.orders import Address
from services.common.domain import InvalidState, Line, NotFound, OrderFenced
from services.inventory import domain as inventory
from services.inventory.domain import (
    InventoryPolicy,
    OutOfStock,
    PriceChanged,
    ReservationState,
    Stock,
    UnknownSku,
)
from services.payments import domain as payments
from services.payments.domain import ChargeState, PaymentDeclined, PaymentPolicy, RefundRefused
from services.shipping import domain as shipping
from services.shipping.domain import AddressUndeliverable, ShipmentState, ShippingPolicy
from tests.unit.memory_domain import (
    MemoryInventory,
    MemoryPayments,
    MemoryShipping,
    refusals_roll_back,
)

EUR = InventoryPolicy(catalog_currency="EUR")


def address(country: str) -> Address:
    return Address("Ada Lovelace", "12 St James's Square", "London", "SW1Y 4JH", country)


async def stocked(**available: int) -> MemoryInventory:
    uow = MemoryInventory()
    for sku, count in available.items():
        await uow.products.add(sku, price_cents=100, available=count)
    return uow


async def reserve(uow: MemoryInventory, order_id: str, *lines: Line) -> inventory.Reservation:
    async with refusals_roll_back(uow):
        return await inventory.reserve(
            uow,
            order_id=order_id,
            lines=lines,
            currency="EUR",
            expected_total_cents=None,
            policy=EUR,
        )


# --- inventory -------------------------------------------------------------------


async def test_stock_is_never_reserved_twice() -> None:
    uow = await stocked(mug=3)
    for order in ("ord_1", "ord_2", "ord_3"):
        await reserve(uow, order, Line("mug", 1))

    with pytest.raises(OutOfStock, match=r"mug \(1 requested, 0 available\)"):
        await reserve(uow, "ord_4", Line("mug", 1))

    assert await uow.products.get("mug") == Stock("mug", available=0, reserved=3)


async def test_a_reservation_is_every_line_or_none() -> None:
    uow = await stocked(mug=5, poster=1)

    with pytest.raises(OutOfStock, match="poster"):
        # Lines of one sku add up: 2 posters are asked for, not 1 twice.
        await reserve(uow, "ord_1", Line("mug", 2), Line("poster", 1), Line("poster", 1))

    assert await uow.products.get("mug") == Stock("mug", available=5, reserved=0)
    assert await uow.reservations.for_order("ord_1") == []


async def test_an_unknown_sku_is_named_before_a_short_one() -> None:
    uow = await stocked(mug=0)
    with pytest.raises(UnknownSku, match="ghost"):
        await reserve(uow, "ord_1", Line("mug", 1), Line("ghost", 1))


async def test_prices_are_fixed_at_reservation_and_checked_against_the_expected_total() -> None:
    uow = await stocked(mug=5)
    reserved = await reserve(uow, "ord_1", Line("mug", 2))
    await inventory.put_product(uow, "mug", price_cents=999, available=None)

    assert (await uow.reservations.for_order("ord_1"))[0].total_cents == 200 == reserved.total_cents
    with pytest.raises(PriceChanged, match="not USD"):
        await inventory.reserve(
            uow, order_id="o2", lines=[Line("mug", 1)], currency="USD",
            expected_total_cents=None, policy=EUR,
        )  # fmt: skip
    with pytest.raises(PriceChanged, match="expected"):
        await inventory.reserve(
            uow, order_id="o3", lines=[Line("mug", 1)], currency="EUR",
            expected_total_cents=100, policy=EUR,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("settle", "undone_by", "state", "available_after", "refusal"),
    [
        (inventory.release, inventory.commit, ReservationState.RELEASED, 5, "released"),
        (inventory.commit, inventory.release, ReservationState.COMMITTED, 3, "committed"),
    ],
    ids=["release", "commit"],
)
async def test_a_reservation_settles_once_and_for_good(
    settle: Callable[[MemoryInventory, str], Awaitable[inventory.Reservation]],
    undone_by: Callable[[MemoryInventory, str], Awaitable[inventory.Reservation]],
    state: ReservationState,
    available_after: int,
    refusal: str,
) -> None:
    """Released stock goes back on sale, committed stock leaves; either once,
    and a settled reservation cannot be settled the other way."""
    uow = await stocked(mug=5)
    reserved = await reserve(uow, "ord_1", Line("mug", 2))

    for _ in range(2):
        assert (await settle(uow, reserved.reservation_id)).state is state

    assert await uow.products.get("mug") == Stock("mug", available=available_after, reserved=0)
    with pytest.raises(InvalidState, match=refusal):
        await undone_by(uow, reserved.reservation_id)
    assert await uow.products.holdings(after=None, limit=10) == [
        inventory.StockHolding("mug", available=available_after, reserved=0, held=0)
    ]


async def test_a_fenced_order_reserves_and_commits_nothing_but_still_releases() -> None:
    uow = await stocked(mug=5)
    reserved = await reserve(uow, "ord_1", Line("mug", 2))
    await uow.fences.fence("ord_1")

    with pytest.raises(OrderFenced):
        await reserve(uow, "ord_1", Line("mug", 1))
    with pytest.raises(OrderFenced):
        await inventory.commit(uow, reserved.reservation_id)
    await inventory.release(uow, reserved.reservation_id)

    assert await uow.products.get("mug") == Stock("mug", available=5, reserved=0)


async def test_a_commit_made_before_the_fence_is_answered_again_after_it() -> None:
    uow = await stocked(mug=5)
    reserved = await reserve(uow, "ord_1", Line("mug", 1))
    await inventory.commit(uow, reserved.reservation_id)
    await uow.fences.fence("ord_1")

    again = await inventory.commit(uow, reserved.reservation_id)

    assert again.state is ReservationState.COMMITTED


async def test_unknown_reservations_and_products_are_not_found() -> None:
    uow = await stocked()
    with pytest.raises(NotFound, match="reservation res_x"):
        await inventory.release(uow, "res_x")
    with pytest.raises(NotFound, match="needs both"):
        await inventory.put_product(uow, "new", price_cents=100, available=None)
    with pytest.raises(NotFound, match="no product new"):
        await inventory.stock_of(uow, "new")


# --- payments --------------------------------------------------------------------


async def charge(
    uow: MemoryPayments, order_id: str, amount: int, token: str = "tok_visa"
) -> payments.Charge:
    async with refusals_roll_back(uow):
        return await payments.charge(
            uow,
            order_id=order_id,
            customer_id="cus_1",
            amount_cents=amount,
            currency="EUR",
            payment_token=token,
            policy=PaymentPolicy(customer_limit_cents=1000),
        )


async def test_a_customer_never_passes_the_limit_and_a_refund_frees_it_once() -> None:
    uow = MemoryPayments()
    first = await charge(uow, "ord_1", 600)
    with pytest.raises(PaymentDeclined, match="limit"):
        await charge(uow, "ord_2", 600)

    for _ in range(2):
        refunded = await payments.refund(uow, first.charge_id)
        assert refunded.state is ChargeState.REFUNDED

    assert uow.exposure.outstanding == {"cus_1": 0}
    await charge(uow, "ord_2", 1000)


async def test_declined_and_unrefundable_tokens() -> None:
    uow = MemoryPayments()
    with pytest.raises(PaymentDeclined, match="declined"):
        await charge(uow, "ord_1", 100, token=payments.DECLINED_TOKEN)
    assert uow.exposure.outstanding == {}

    kept = await charge(uow, "ord_2", 100, token=payments.REFUND_REFUSED_TOKEN)
    with pytest.raises(RefundRefused):
        await payments.refund(uow, kept.charge_id)
    assert (await uow.charges.for_order("ord_2"))[0].state is ChargeState.CAPTURED


async def test_a_fenced_order_is_not_charged() -> None:
    uow = MemoryPayments()
    await uow.fences.fence("ord_1")
    with pytest.raises(OrderFenced):
        await charge(uow, "ord_1", 100)
    assert uow.exposure.outstanding == {}


# --- shipping --------------------------------------------------------------------


async def test_refused_countries_and_fenced_orders_ship_nothing_and_cancel_is_once() -> None:
    uow = MemoryShipping()
    policy = ShippingPolicy.refusing([" aq "])

    with pytest.raises(AddressUndeliverable, match="AQ"):
        await shipping.create_shipment(
            uow, order_id="ord_1", lines=[Line("mug", 1)], address=address("AQ"), policy=policy
        )
    made = await shipping.create_shipment(
        uow,
        order_id="ord_2",
        lines=[Line("mug", 1), Line("mug", 2)],
        address=address("GB"),
        policy=policy,
    )
    assert made.lines == [Line("mug", 3)]
    for _ in range(2):
        assert (await shipping.cancel(uow, made.shipment_id)).state is ShipmentState.CANCELLED

    await uow.fences.fence("ord_3")
    with pytest.raises(OrderFenced):
        await shipping.create_shipment(
            uow, order_id="ord_3", lines=[Line("mug", 1)], address=address("GB"), policy=policy
        )
    assert await uow.shipments.for_order("ord_1") == []
    assert await uow.shipments.for_order("ord_3") == []
