"""POST /orders/{id}/cancel and the operator's compensation decisions.
Failure paths first."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from ordersaga.runtime.auth import customer_id_for
from tests.fakes import FakeDomainActivities
from tests.integration.api.support import (
    TEST_OPERATOR,
    UNKNOWN_ORDER,
    NewOrder,
    OrderRequest,
    bearer,
    customer_token,
    new_customer_id,
    operator_token,
    place_accepted,
    place_held_at,
    terminated_while_shipping,
    wait_for_status,
)
from workflows.runner import LOCAL_ATTEMPT_TIMEOUT

OPERATOR_ACTIONS = ["compensation/retry", "compensation/resolve"]


# --- unknown orders --------------------------------------------------------------


@pytest.mark.parametrize("action", ["cancel", *OPERATOR_ACTIONS])
@pytest.mark.parametrize("order_id", [UNKNOWN_ORDER, "not-an-order"])
async def test_actions_on_unknown_orders_are_404(
    api: httpx.AsyncClient, action: str, order_id: str
) -> None:
    # A customer cancels; operators decide.
    who = bearer(customer_token(new_customer_id())) if action == "cancel" else {}
    response = await api.post(f"/orders/{order_id}/{action}", headers=who)

    assert response.status_code == 404
    assert response.json()["detail"]["code"] == "ORDER_NOT_FOUND"


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("cancel", {"reason": 5}),
        ("cancel", {"reason": ""}),
        ("cancel", {"why": "no"}),
        ("compensation/retry", {"note": ["a"]}),
        ("compensation/resolve", {"note": "n", "force": True}),
    ],
)
async def test_invalid_action_bodies_are_422(
    api: httpx.AsyncClient, action: str, body: dict[str, object]
) -> None:
    who = bearer(customer_token(new_customer_id())) if action == "cancel" else {}
    response = await api.post(f"/orders/{UNKNOWN_ORDER}/{action}", json=body, headers=who)

    assert response.status_code == 422


@pytest.mark.parametrize(
    ("action", "field"),
    [*((action, "note") for action in OPERATOR_ACTIONS), ("cancel", "reason")],
)
@pytest.mark.parametrize(
    "text",
    [
        pytest.param("refunded by hand\x1b[2J", id="escape"),
        pytest.param("refunded\nresolved by operator op_boss: all fine", id="newline"),
        pytest.param("tab\there", id="tab"),
        pytest.param("nul\x00", id="nul"),
        pytest.param("c1\x85control", id="c1"),
        pytest.param("del\x7f", id="del"),
    ],
)
async def test_a_note_or_cancel_reason_with_a_control_character_is_422(
    api: httpx.AsyncClient, action: str, field: str, text: str
) -> None:
    # Found by a tester: stored raw in the order (operator_actions, the
    # customer's reason as failure_reason) and shown back. Refused before the
    # order is looked at, as any invalid body.
    who = bearer(customer_token(new_customer_id())) if action == "cancel" else {}
    response = await api.post(f"/orders/{UNKNOWN_ORDER}/{action}", json={field: text}, headers=who)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "INVALID_REQUEST"
    (error,) = detail["fields"]
    assert error["loc"] == ["body", field]
    assert "control characters" in error["msg"]


# --- too late --------------------------------------------------------------------


def assert_conflict(response: httpx.Response, code: str, *, mentioning: str = "") -> None:
    """A 409 with the error code, its message naming `mentioning`."""
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert detail["code"] == code
    assert mentioning in detail["message"]


async def cancel_held_at(
    api: httpx.AsyncClient,
    fakes: FakeDomainActivities,
    order: OrderRequest,
    step: str,
    *,
    reason: str | None = None,
) -> tuple[str, asyncio.Event, httpx.Response]:
    """Place the order, hold its call to `step` and send its customer's cancel
    (with `reason`, else no body): the order's id, the gate that lets the call
    land, and the answer to the cancel."""
    order_id, gate = await place_held_at(api, fakes, order, step)
    response = await api.post(
        f"/orders/{order_id}/cancel",
        json={"reason": reason} if reason is not None else None,
        headers=order.auth,
    )
    return order_id, gate, response


async def test_cancel_after_completion_is_409_too_late(
    api: httpx.AsyncClient, new_order: NewOrder
) -> None:
    order = new_order()
    order_id = await place_accepted(api, order)
    await wait_for_status(api, order_id, "COMPLETED")

    response = await api.post(
        f"/orders/{order_id}/cancel", json={"reason": "too slow"}, headers=order.auth
    )

    assert_conflict(response, "TOO_LATE", mentioning="COMPLETED")


async def test_cancel_once_the_shipment_exists_is_409_too_late(
    api: httpx.AsyncClient, fakes: FakeDomainActivities, new_order: NewOrder
) -> None:
    order_id, gate, response = await cancel_held_at(api, fakes, new_order(), "commit_reservation")

    assert_conflict(response, "TOO_LATE", mentioning="shipment")
    gate.set()
    await wait_for_status(api, order_id, "COMPLETED")


async def test_cancel_of_an_order_terminated_in_temporal_is_409_naming_it_failed(
    api: httpx.AsyncClient,
    fakes: FakeDomainActivities,
    temporal_client: Client,
    new_order: NewOrder,
) -> None:
    # Found by a tester: the refusal said "the order is closed (SHIPPING)".
    order = new_order()
    order_id = await terminated_while_shipping(api, fakes, temporal_client, order)

    response = await api.post(f"/orders/{order_id}/cancel", headers=order.auth)

    assert_conflict(response, "TOO_LATE", mentioning="the order is closed (FAILED)")


@pytest.mark.parametrize("action", OPERATOR_ACTIONS)
async def test_operator_action_on_a_running_order_is_409(
    api: httpx.AsyncClient, fakes: FakeDomainActivities, new_order: NewOrder, action: str
) -> None:
    order = new_order()
    order_id, gate = await place_held_at(api, fakes, order, "charge_payment")

    response = await api.post(f"/orders/{order_id}/{action}", json={"note": "why not"})

    assert_conflict(response, "NOT_NEEDS_ATTENTION", mentioning="CHARGING")
    gate.set()
    await wait_for_status(api, order_id, "COMPLETED")


@pytest.mark.parametrize("action", OPERATOR_ACTIONS)
async def test_operator_action_on_a_completed_order_is_409(
    api: httpx.AsyncClient, new_order: NewOrder, action: str
) -> None:
    order = new_order()
    order_id = await place_accepted(api, order)
    await wait_for_status(api, order_id, "COMPLETED")

    response = await api.post(f"/orders/{order_id}/{action}")

    assert_conflict(response, "NOT_NEEDS_ATTENTION")


# --- cancelling ------------------------------------------------------------------


async def test_cancel_before_shipping_is_202_and_the_order_ends_cancelled(
    api: httpx.AsyncClient, fakes: FakeDomainActivities, new_order: NewOrder
) -> None:
    order = new_order()
    order_id, gate, response = await cancel_held_at(
        api, fakes, order, "create_shipment", reason="changed my mind"
    )

    assert response.status_code == 202, response.text
    assert response.json() == {"order_id": order_id, "status": "COMPENSATING"}
    # A second cancel while the first is under way is accepted and changes nothing.
    again = await api.post(f"/orders/{order_id}/cancel", headers=order.auth)
    assert again.status_code == 202
    gate.set()
    body = await wait_for_status(api, order_id, "CANCELLED")
    assert body["failure_reason"] == "changed my mind"
    assert {step["name"]: step["state"] for step in body["steps"]} == {
        "reserve_inventory": "compensated",
        "charge_payment": "compensated",
        "create_shipment": "compensated",
        "commit_reservation": "pending",
    }
    assert fakes.calls_for(order_id)[-3:] == [
        "cancel_shipment",
        "refund_payment",
        "release_inventory",
    ]
    late = await api.post(f"/orders/{order_id}/cancel", headers=order.auth)
    assert late.status_code == 409


# A healthy but slow call: over the local attempt's budget, so it goes on on
# the domain's queue. (Before the budget was cut from 3 s, such a call held
# the task to its end, the order completed, and the cancel got 409.)
SLOW_CALL_SECONDS = 2 * LOCAL_ATTEMPT_TIMEOUT.total_seconds()
assert SLOW_CALL_SECONDS < 3.0


@pytest.mark.parametrize(
    ("step", "undone"),
    [
        ("reserve_inventory", ["release_inventory"]),
        ("charge_payment", ["refund_payment", "release_inventory"]),
        ("create_shipment", ["cancel_shipment", "refund_payment", "release_inventory"]),
    ],
)
async def test_cancel_while_a_local_attempt_is_slow_is_accepted_and_the_order_ends_cancelled(
    api: httpx.AsyncClient,
    fakes: FakeDomainActivities,
    new_order: NewOrder,
    step: str,
    undone: list[str],
) -> None:
    # The step's first attempt, in the workflow's own task, is slow: it lands
    # a while after the cancel was sent. The cancel is decided by the contract
    # (accepted until the shipment exists), not by when that call returns: the
    # attempt gives way to the domain's queue, the task ends, the cancel is
    # taken, and the step is undone with the others once it lands.
    order = new_order()
    order_id, gate = await place_held_at(api, fakes, order, step, on_queue=False)
    lands = asyncio.get_running_loop().call_later(SLOW_CALL_SECONDS, gate.set)

    response = await api.post(f"/orders/{order_id}/cancel", headers=order.auth)

    assert response.status_code == 202, response.text
    await asyncio.sleep(SLOW_CALL_SECONDS)
    lands.cancel()
    gate.set()
    body = await wait_for_status(api, order_id, "CANCELLED")
    assert body["steps"][[s["name"] for s in body["steps"]].index(step)]["state"] == "compensated"
    assert fakes.calls_for(order_id)[-len(undone) :] == undone
    assert "commit_reservation" not in fakes.calls_for(order_id)


async def test_cancel_without_a_body_uses_the_default_reason(
    api: httpx.AsyncClient, fakes: FakeDomainActivities, new_order: NewOrder
) -> None:
    order_id, gate, response = await cancel_held_at(api, fakes, new_order(), "reserve_inventory")

    assert response.status_code == 202
    gate.set()
    body = await wait_for_status(api, order_id, "CANCELLED")
    assert body["failure_reason"] == "cancelled by customer"


# --- an order waiting for an operator --------------------------------------------


async def needs_attention(
    api: httpx.AsyncClient, fakes: FakeDomainActivities, order: OrderRequest
) -> str:
    """Shipping refuses the address, then the card issuer refuses the refund."""
    fakes.refuse("create_shipment", order.order_id, "ADDRESS_UNDELIVERABLE")
    fakes.refuse("refund_payment", order.order_id, "REFUND_REFUSED")
    order_id = await place_accepted(api, order)
    body = await wait_for_status(api, order_id, "NEEDS_ATTENTION")
    steps = {step["name"]: step for step in body["steps"]}
    assert "REFUND_REFUSED" in steps["charge_payment"]["error"]
    # The refund is outstanding, not the charge failed: the card was charged.
    assert steps["charge_payment"]["state"] == "compensating"
    # Only the refund is outstanding: the stock went back before the order parked.
    assert steps["reserve_inventory"]["state"] == "compensated"
    assert "release_inventory" in fakes.calls_for(order_id)
    return order_id


@pytest.fixture
async def parked(api: httpx.AsyncClient, fakes: FakeDomainActivities, new_order: NewOrder) -> str:
    """The id of an order waiting for an operator (see needs_attention)."""
    return await needs_attention(api, fakes, new_order())


async def decided(
    api: httpx.AsyncClient,
    order_id: str,
    decision: str,
    *,
    note: str,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The order once an operator's decision on it (retry or resolve) was
    accepted (202) and the unwinding it let go on ended it FAILED."""
    response = await api.post(
        f"/orders/{order_id}/compensation/{decision}", json={"note": note}, headers=headers
    )
    assert response.status_code == 202, response.text
    assert response.json()["order_id"] == order_id
    return await wait_for_status(api, order_id, "FAILED")


async def test_cancel_while_waiting_for_an_operator_is_409(
    api: httpx.AsyncClient, fakes: FakeDomainActivities, new_order: NewOrder
) -> None:
    order = new_order()
    order_id = await needs_attention(api, fakes, order)

    response = await api.post(f"/orders/{order_id}/cancel", headers=order.auth)

    assert_conflict(response, "TOO_LATE")
    await api.post(f"/orders/{order_id}/compensation/resolve")
    await wait_for_status(api, order_id, "FAILED")


async def test_operator_retry_is_202_and_the_compensation_runs_again(
    api: httpx.AsyncClient, fakes: FakeDomainActivities, parked: str
) -> None:
    body = await decided(api, parked, "retry", note="issuer fixed")

    assert fakes.calls_for(parked).count("refund_payment") == 2
    states = {step["name"]: step["state"] for step in body["steps"]}
    assert states["charge_payment"] == "compensated"
    assert states["reserve_inventory"] == "compensated"


async def test_operator_resolve_is_202_and_unwinding_carries_on(
    api: httpx.AsyncClient, fakes: FakeDomainActivities, parked: str
) -> None:
    body = await decided(api, parked, "resolve", note="refunded by hand")

    assert fakes.calls_for(parked).count("refund_payment") == 1
    charge = next(step for step in body["steps"] if step["name"] == "charge_payment")
    assert f"resolved by operator {TEST_OPERATOR}: refunded by hand" in charge["error"]
    (record,) = body["operator_actions"]
    assert (record["operator"], record["decision"], record["note"]) == (
        TEST_OPERATOR,
        "resolve",
        "refunded by hand",
    )


async def test_an_operator_known_by_e_mail_is_recorded_by_a_hash_of_it(
    api: httpx.AsyncClient, parked: str
) -> None:
    """A provider's subject may be an e-mail address: it never reaches the
    order's view, its history or a log line as such."""
    body = await decided(
        api,
        parked,
        "resolve",
        note="refunded by hand",
        headers=bearer(operator_token("grace@example.com")),
    )

    (record,) = body["operator_actions"]
    assert record["operator"] == customer_id_for("grace@example.com")
    assert record["operator"].startswith("sub_")
    assert "grace@example.com" not in str(body)
