"""POST /orders: the idempotent acceptance of an order. Failure paths first."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.ids import derive_order_id
from contracts.search_attributes import CUSTOMER_ID, ORDER_STATUS, ORDER_TOTAL_CENTS
from tests.fakes import FakeDomainActivities
from tests.integration.api.support import (
    CUSTOMER_NAME,
    PAYMENT_TOKEN,
    STREET,
    NewOrder,
    OrderRequest,
    eventually,
    place,
    place_accepted,
    wait_for_status,
)


async def assert_never_started(client: Client, order_id: str) -> None:
    # Describe is strongly consistent, unlike visibility: NOT_FOUND is proof.
    with pytest.raises(RPCError) as raised:
        await client.get_workflow_handle(order_id).describe()
    assert raised.value.status is RPCStatusCode.NOT_FOUND


# --- the Idempotency-Key -------------------------------------------------------


async def test_missing_idempotency_key_is_400(api: httpx.AsyncClient, new_order: NewOrder) -> None:
    order = new_order()
    response = await api.post("/orders", json=order.body, headers=order.auth)

    assert response.status_code == 400
    assert response.json()["detail"]["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    assert "required" in response.json()["detail"]["message"]


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"k" * 256, "longer than 255", id="too-long"),
        pytest.param("ключ-1".encode(), "visible ASCII", id="non-ascii"),
        pytest.param(b"two words", "visible ASCII", id="inner-space"),
        pytest.param(b"tab\tinside", "visible ASCII", id="control-char"),
    ],
)
async def test_malformed_idempotency_key_is_400_with_a_reason(
    api: httpx.AsyncClient,
    temporal_client: Client,
    new_order: NewOrder,
    key: bytes,
    reason: str,
) -> None:
    order = new_order()
    response = await api.post(
        "/orders", json=order.body, headers={b"Idempotency-Key": key, **order.auth}
    )

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail["code"] == "IDEMPOTENCY_KEY_INVALID"
    assert reason in detail["message"]
    await assert_never_started(
        temporal_client, derive_order_id(order.customer_id, key.decode("latin-1"))
    )


async def test_longest_allowed_idempotency_key_is_accepted(
    api: httpx.AsyncClient, new_order: NewOrder
) -> None:
    order = new_order()
    order.key = "~" + "k" * 253 + "!"

    response = await place(api, order)

    assert response.status_code == 202, response.text


# --- the body --------------------------------------------------------------------


async def test_malformed_json_is_400(api: httpx.AsyncClient, new_order: NewOrder) -> None:
    order = new_order()
    response = await api.post(
        "/orders",
        content=b'{"items": [',
        headers={**order.headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["detail"]["code"] == "MALFORMED_JSON"


# A value that takes its field out of the body.
ABSENT = object()


def _set(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    target: Any = body
    for part in path[:-1]:
        target = target[part]
    if value is ABSENT:
        del target[path[-1]]
    else:
        target[path[-1]] = value


# Each body has one field set to `value`, and is refused on that field.
@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param(("items", 0, "quantity"), "2", id="str-qty"),
        pytest.param(("items", 0, "quantity"), 2.5, id="float"),
        pytest.param(("items", 0, "quantity"), 0, id="qty-0"),
        pytest.param(("items", 0, "quantity"), 1001, id="qty>"),
        # The price attack: a client-set price is not part of an order at all.
        pytest.param(("items", 0, "unit_price_cents"), 1, id="client-price"),
        # The customer is the token's subject, never a body field.
        pytest.param(("customer_id",), "cus_victim", id="body-customer"),
        pytest.param(("items", 0, "sku"), "", id="empty-sku"),
        pytest.param(("items", 0, "sku"), "sku:mug", id="colon-sku"),
        pytest.param(("items",), [], id="no-items"),
        pytest.param(("items",), [{"sku": "s", "quantity": 1}] * 101, id="101-items"),
        pytest.param(("currency",), "eur", id="currency-case"),
        pytest.param(("currency",), "ZZZ", id="currency-not-iso"),
        pytest.param(("expected_total_cents",), 0, id="expected-total-0"),
        pytest.param(("expected_total_cents",), 10**12 + 1, id="expected-total-too-big"),
        pytest.param(("shipping_address", "name"), "   ", id="blank-name"),
        pytest.param(("shipping_address", "name"), "Ada\x07Lovelace", id="control-char-name"),
        pytest.param(("shipping_address", "line1"), "12\u0085St", id="c1-control-line"),
        pytest.param(("shipping_address", "postal_code"), "SW1Y/4JH", id="slash-postal-code"),
        pytest.param(("payment", "token"), "tok visa", id="space-token"),
        pytest.param(("shipping_address", "country"), "DEU", id="country"),
        pytest.param(("shipping_address", "country"), "XX", id="country-no-country"),
        pytest.param(("shipping_address", "country"), "ZZ", id="country-unassigned"),
        pytest.param(("shipping_address", "city"), ABSENT, id="no-city"),
        pytest.param(("payment",), ABSENT, id="no-payment"),
        pytest.param(("payment", "token"), "", id="empty-token"),
        pytest.param(("coupon",), "FREE", id="unknown-field"),
        pytest.param(("items",), "sku_mug", id="items-not-a-list"),
    ],
)
async def test_invalid_body_is_422_with_field_errors(
    api: httpx.AsyncClient,
    temporal_client: Client,
    new_order: NewOrder,
    field: tuple[str | int, ...],
    value: Any,
) -> None:
    order = new_order()
    _set(order.body, field, value)

    response = await place(api, order)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "INVALID_REQUEST"
    errors = detail["fields"]
    assert ["body", *field] in [error["loc"][: len(field) + 1] for error in errors]
    assert all({"loc", "msg", "type"} == set(error) for error in errors)
    await assert_never_started(temporal_client, order.order_id)


async def test_validation_errors_do_not_echo_card_tokens_or_addresses(
    api: httpx.AsyncClient, new_order: NewOrder
) -> None:
    order = new_order()
    order.body["payment"]["token"] = PAYMENT_TOKEN * 20  # over 255 characters
    order.body["shipping_address"]["country"] = CUSTOMER_NAME

    response = await place(api, order)

    assert response.status_code == 422
    assert PAYMENT_TOKEN not in response.text
    assert CUSTOMER_NAME not in response.text


# --- idempotency -----------------------------------------------------------------


async def test_same_key_different_body_is_422_and_leaves_the_order_alone(
    api: httpx.AsyncClient, temporal_client: Client, new_order: NewOrder
) -> None:
    order = new_order()
    await place_accepted(api, order)
    run_id = (await temporal_client.get_workflow_handle(order.order_id).describe()).run_id
    changed = OrderRequest(
        {**order.body, "expected_total_cents": 1}, customer_id=order.customer_id, key=order.key
    )

    response = await place(api, changed)

    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    description = await temporal_client.get_workflow_handle(order.order_id).describe()
    assert description.run_id == run_id


async def test_same_key_for_another_customer_is_another_order(
    api: httpx.AsyncClient, new_order: NewOrder
) -> None:
    first, second = new_order(), new_order()
    second.key = first.key

    first_id = await place_accepted(api, first)
    second_id = await place_accepted(api, second)

    assert first_id != second_id


async def test_replay_returns_the_identical_response_and_starts_one_workflow(
    api: httpx.AsyncClient, temporal_client: Client, new_order: NewOrder
) -> None:
    order = new_order()
    first = await place(api, order)
    assert first.status_code == 202, first.text
    run_id = (await temporal_client.get_workflow_handle(order.order_id).describe()).run_id
    # Same request, other key order and whitespace: the same canonical body.
    reordered = json.dumps(dict(reversed(list(order.body.items()))), indent=2)

    again = await api.post(
        "/orders",
        content=reordered,
        headers={**order.headers, "Content-Type": "application/json"},
    )

    assert again.status_code == 202
    assert again.content == first.content
    assert again.headers["Location"] == first.headers["Location"]
    description = await temporal_client.get_workflow_handle(order.order_id).describe()
    assert description.run_id == run_id


async def test_concurrent_identical_requests_start_exactly_one_order(
    api: httpx.AsyncClient,
    temporal_client: Client,
    fakes: FakeDomainActivities,
    new_order: NewOrder,
) -> None:
    order = new_order()

    responses = await asyncio.gather(*(place(api, order) for _ in range(8)))

    assert {response.status_code for response in responses} == {202}
    assert len({response.content for response in responses}) == 1
    await wait_for_status(api, order.order_id, "COMPLETED")
    assert fakes.calls_for(order.order_id).count("charge_payment") == 1

    async def closed_runs() -> list[WorkflowExecution] | None:
        runs = [
            execution
            async for execution in temporal_client.list_workflows(
                f"WorkflowId = '{order.order_id}' AND ExecutionStatus = 'Completed'"
            )
        ]
        return runs or None

    assert len(await eventually(closed_runs)) == 1


async def test_replay_after_the_order_finished_still_returns_the_original_answer(
    api: httpx.AsyncClient, new_order: NewOrder
) -> None:
    order = new_order()
    first = await place(api, order)
    await wait_for_status(api, order.order_id, "COMPLETED")

    again = await place(api, order)

    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.json()["status"] == "RECEIVED"


# --- acceptance ------------------------------------------------------------------


async def test_accepted_order_is_202_with_location_and_links(
    api: httpx.AsyncClient, new_order: NewOrder
) -> None:
    order = new_order()

    response = await place(api, order)

    assert response.status_code == 202, response.text
    order_id = order.order_id
    assert response.headers["Location"] == f"/orders/{order_id}"
    assert response.json() == {
        "order_id": order_id,
        "status": "RECEIVED",
        "links": {"self": f"/orders/{order_id}", "cancel": f"/orders/{order_id}/cancel"},
    }
    assert order_id.startswith("ord_") and len(order_id) == 4 + 26


async def test_workflow_is_labelled_for_the_web_ui_without_personal_data(
    api: httpx.AsyncClient, temporal_client: Client, new_order: NewOrder
) -> None:
    order = new_order()
    await place_accepted(api, order)

    description = await temporal_client.get_workflow_handle(order.order_id).describe()

    assert description.workflow_type == "OrderWorkflow"
    assert description.task_queue == "orders"
    assert description.status in (
        WorkflowExecutionStatus.RUNNING,
        WorkflowExecutionStatus.COMPLETED,
    )
    summary = await description.static_summary()
    assert summary == f"3 items, customer {order.customer_id}"
    attributes = {
        pair.key.name: pair.value for pair in description.typed_search_attributes.search_attributes
    }
    assert attributes[CUSTOMER_ID] == order.customer_id
    # Priced by the catalog when reserved, never by the client.
    # (tests/fakes.py: 2 x 1250 + 999 at the fake catalog's prices)
    assert attributes.get(ORDER_TOTAL_CENTS) in (None, 3499)
    assert attributes[ORDER_STATUS] in {
        "RECEIVED",
        "RESERVING",
        "CHARGING",
        "SHIPPING",
        "COMPLETED",
    }
    memo = await description.memo()
    assert set(memo) == {"request_fingerprint"}
    labels = json.dumps([summary, attributes, memo, description.id])
    for personal in (PAYMENT_TOKEN, CUSTOMER_NAME, STREET, "SW1Y"):
        assert personal not in labels
