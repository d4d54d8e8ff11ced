"""How activities turn service answers into Temporal outcomes.

The service is stubbed with httpx.MockTransport: these are unit tests of the
mapping. The integration tests run the same activities against real services.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment

from activities.http import ServiceClient
from activities.inventory import InventoryActivities
from activities.payments import PaymentActivities
from activities.shipping import ShippingActivities
from contracts import errors
from contracts.activities import (
    CancelShipmentInput,
    ChargePaymentInput,
    CommitReservationInput,
    CreateShipmentInput,
    FindCommittedReservationInput,
    RefundPaymentInput,
    ReleaseInventoryInput,
    ReserveInventoryInput,
)
from contracts.orders import Address, OrderLine, PricedLine

Handler = Callable[[httpx.Request], httpx.Response]


# httpx's own default.
DEFAULT_TIMEOUT = httpx.Timeout(5.0)


def stub_service(
    handler: Handler,
    seen: list[httpx.Request] | None = None,
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    client_spans: bool = True,
) -> ServiceClient:
    def record(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return handler(request)

    http = httpx.AsyncClient(
        base_url="http://stub", transport=httpx.MockTransport(record), timeout=timeout
    )
    return ServiceClient(http, "stub", token=WORKER_TOKEN, client_spans=client_spans)


def lists_then_undoes(id_field: str, resource_id: str, state: str) -> Handler:
    """A service that lists one row of the order (GET) and undoes it (any other
    method), answering the row in `state`."""

    def service(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"items": [{id_field: resource_id}]})
        return httpx.Response(200, json={id_field: resource_id, "state": state})

    return service


WORKER_TOKEN = SecretStr("the-workers-credential")


def refusal(status: int, code: str) -> Handler:
    return lambda _: httpx.Response(status, json={"detail": {"code": code, "message": "no"}})


RESERVE = ReserveInventoryInput(
    "ord_1", [OrderLine("sku_mug", 2)], "ord_1:reserve_inventory", currency="EUR"
)
RESERVED = {
    "reservation_id": "res_9",
    "order_id": "ord_1",
    "state": "reserved",
    "lines": [{"sku": "sku_mug", "quantity": 2, "unit_price_cents": 1250}],
    "total_cents": 2500,
    "currency": "EUR",
}
CHARGE = ChargePaymentInput("ord_1", "cus_1", 200, "EUR", "tok_visa", "ord_1:charge_payment")


async def test_created_resource_becomes_the_outcome_and_the_key_is_sent() -> None:
    seen: list[httpx.Request] = []
    client = stub_service(lambda _: httpx.Response(201, json=RESERVED), seen)
    outcome = await ActivityEnvironment().run(
        InventoryActivities(client).reserve_inventory, RESERVE
    )

    assert outcome.resource_id == "res_9"
    assert outcome.attempt == 1
    assert seen[0].headers["Idempotency-Key"] == "ord_1:reserve_inventory"


# The order's trace, as the activity's caller (the workflow's trace context) hands it on.
ORDER_TRACE = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
)


@pytest.mark.parametrize("client_spans", [True, False], ids=["client-span", "headers-only"])
async def test_a_call_carries_the_orders_trace_and_baggage_to_the_service(
    client_spans: bool,
) -> None:
    # Without client spans the headers are written by hand: they must say
    # what the instrumentation's would, so the service's log lines still name
    # the order's trace, the order and the step.
    seen: list[httpx.Request] = []
    client = stub_service(
        lambda _: httpx.Response(201, json=RESERVED), seen, client_spans=client_spans
    )
    with trace.use_span(NonRecordingSpan(ORDER_TRACE)):
        await ActivityEnvironment().run(InventoryActivities(client).reserve_inventory, RESERVE)

    headers = seen[0].headers
    assert headers["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert {
        "order_id=ord_1",
        "step=reserve_inventory",
    } <= set(headers["baggage"].split(","))
    assert getattr(client._http, "_is_instrumented_by_opentelemetry", False) is client_spans


async def test_the_reservation_fixes_the_prices_the_order_is_charged() -> None:
    seen: list[httpx.Request] = []
    client = stub_service(lambda _: httpx.Response(201, json=RESERVED), seen)
    expecting = ReserveInventoryInput(
        "ord_1", [OrderLine("sku_mug", 2)], "ord_1:reserve_inventory", "EUR", 2500
    )
    outcome = await ActivityEnvironment().run(
        InventoryActivities(client).reserve_inventory, expecting
    )

    assert outcome.priced_lines == [PricedLine("sku_mug", 2, 1250)]
    assert (outcome.total_cents, outcome.currency) == (2500, "EUR")
    assert json.loads(seen[0].content) == {
        "order_id": "ord_1",
        "lines": [{"sku": "sku_mug", "quantity": 2}],
        "currency": "EUR",
        "expected_total_cents": 2500,
    }


async def test_without_an_expected_total_none_is_sent() -> None:
    seen: list[httpx.Request] = []
    client = stub_service(lambda _: httpx.Response(201, json=RESERVED), seen)
    await ActivityEnvironment().run(InventoryActivities(client).reserve_inventory, RESERVE)

    assert "expected_total_cents" not in json.loads(seen[0].content)


async def test_every_request_carries_the_workers_credential() -> None:
    seen: list[httpx.Request] = []
    client = stub_service(lists_then_undoes("reservation_id", "res_9", "released"), seen)
    await ActivityEnvironment().run(
        InventoryActivities(client).release_inventory,
        ReleaseInventoryInput("ord_1", None, "ord_1:release_inventory"),
    )

    assert [r.method for r in seen] == ["PUT", "GET", "POST"]
    assert {r.headers["Authorization"] for r in seen} == {"Bearer the-workers-credential"}


def test_a_client_is_not_built_without_a_credential() -> None:
    with pytest.raises(ValueError, match="credential"):
        ServiceClient(httpx.AsyncClient(), "stub", token=SecretStr(""))


async def test_a_validation_error_in_the_error_shape_is_a_rejected_request() -> None:
    body = {
        "detail": {
            "code": "REQUEST_REJECTED",
            "message": "the request is not valid (body.amount_cents)",
            "fields": [{"loc": ["body", "amount_cents"], "msg": "too big", "type": "less_than"}],
        }
    }
    client = stub_service(lambda _: httpx.Response(422, json=body))
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(PaymentActivities(client).charge_payment, CHARGE)
    assert (raised.value.type, raised.value.non_retryable) == ("REQUEST_REJECTED", True)
    assert "body.amount_cents" in str(raised.value)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (409, "OUT_OF_STOCK"),
        (422, "UNKNOWN_SKU"),
        (422, "IDEMPOTENCY_KEY_REUSED"),
        # A price change is a business refusal too.
        (409, "PRICE_CHANGED"),
    ],
)
async def test_refusals_are_non_retryable_with_the_service_code(status: int, code: str) -> None:
    client = stub_service(refusal(status, code))
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(InventoryActivities(client).reserve_inventory, RESERVE)
    assert raised.value.type == code
    assert raised.value.non_retryable


async def test_declined_payment_is_non_retryable() -> None:
    client = stub_service(refusal(402, "PAYMENT_DECLINED"))
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(PaymentActivities(client).charge_payment, CHARGE)
    assert (raised.value.type, raised.value.non_retryable) == ("PAYMENT_DECLINED", True)


async def test_validation_error_without_a_code_is_a_rejected_request() -> None:
    client = stub_service(lambda _: httpx.Response(422, json={"detail": [{"loc": ["body"]}]}))
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(PaymentActivities(client).charge_payment, CHARGE)
    assert (raised.value.type, raised.value.non_retryable) == ("REQUEST_REJECTED", True)


@pytest.mark.parametrize(
    "handler",
    [
        lambda _: httpx.Response(503, json={"detail": {"code": "INJECTED_FAULT", "message": "x"}}),
        lambda _: httpx.Response(500, text="boom"),
    ],
)
async def test_server_errors_are_retryable(handler: Handler) -> None:
    client = stub_service(handler)
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(PaymentActivities(client).charge_payment, CHARGE)
    assert not raised.value.non_retryable
    assert raised.value.details == (1,)


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")], ids=["connect", "timeout"]
)
async def test_transport_failures_are_retryable(error: Exception) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    client = stub_service(fail)
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(PaymentActivities(client).charge_payment, CHARGE)
    assert raised.value.type == "SERVICE_UNAVAILABLE"
    assert not raised.value.non_retryable


async def test_compensation_without_an_id_looks_the_order_up_and_undoes_it() -> None:
    seen: list[httpx.Request] = []
    client = stub_service(lists_then_undoes("charge_id", "ch_7", "refunded"), seen)
    outcome = await ActivityEnvironment().run(
        PaymentActivities(client).refund_payment,
        RefundPaymentInput("ord_1", None, "ord_1:refund_payment"),
    )

    assert outcome.resource_id == "ch_7"
    assert not outcome.nothing_to_undo
    # Fenced first: the look-up then sees every charge the order will ever have.
    assert [(r.method, r.url.path) for r in seen] == [
        ("PUT", "/fences/ord_1"),
        ("GET", "/charges"),
        ("POST", "/charges/ch_7/refund"),
    ]
    assert seen[1].url.params["order_id"] == "ord_1"


async def test_compensation_with_nothing_to_undo_fences_and_succeeds() -> None:
    seen: list[httpx.Request] = []
    client = stub_service(lambda _: httpx.Response(200, json={"items": []}), seen)
    outcome = await ActivityEnvironment().run(
        InventoryActivities(client).release_inventory,
        ReleaseInventoryInput("ord_1", None, "ord_1:release_inventory"),
    )
    assert outcome.nothing_to_undo
    assert outcome.resource_id is None
    assert [(r.method, r.url.path) for r in seen] == [
        ("PUT", "/fences/ord_1"),
        ("GET", "/reservations"),
    ]


async def test_compensation_with_an_id_fences_then_undoes_it() -> None:
    seen: list[httpx.Request] = []
    client = stub_service(fenced_then(lambda _: httpx.Response(200, json={})), seen)
    outcome = await ActivityEnvironment().run(
        ShippingActivities(client).cancel_shipment,
        CancelShipmentInput("ord_1", "shp_3", "ord_1:cancel_shipment"),
    )
    assert outcome.resource_id == "shp_3"
    assert [(r.method, r.url.path) for r in seen] == [
        ("PUT", "/fences/ord_1"),
        ("POST", "/shipments/shp_3/cancel"),
    ]


@pytest.mark.parametrize(
    "fence",
    [
        # A service from before fences: wait (retried) until it is upgraded.
        lambda _: httpx.Response(404, json={"detail": {"code": "NOT_FOUND", "message": "x"}}),
        lambda _: httpx.Response(503, json={"detail": {"code": "INJECTED_FAULT", "message": "x"}}),
    ],
    ids=["no-fences-yet", "unavailable"],
)
async def test_a_fence_that_fails_is_retried_and_nothing_is_undone_before_it(
    fence: Handler,
) -> None:
    seen: list[httpx.Request] = []
    client = stub_service(fence, seen)
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(
            PaymentActivities(client).refund_payment,
            RefundPaymentInput("ord_1", None, "ord_1:refund_payment"),
        )
    assert raised.value.non_retryable is False
    assert [r.method for r in seen] == ["PUT"]


def fenced_then(handler: Handler) -> Handler:
    """A service that fences whatever it is asked to, and answers the rest with `handler`."""

    def service(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and request.url.path.startswith("/fences/"):
            order_id = request.url.path.rsplit("/", 1)[1]
            return httpx.Response(
                200, json={"order_id": order_id, "fenced_at": "2025-03-01T00:00:00Z"}
            )
        return handler(request)

    return service


FORWARD_STEPS = [
    pytest.param(lambda c: InventoryActivities(c).reserve_inventory, RESERVE, id="reserve"),
    pytest.param(lambda c: PaymentActivities(c).charge_payment, CHARGE, id="charge"),
    pytest.param(
        lambda c: ShippingActivities(c).create_shipment,
        CreateShipmentInput(
            "ord_1",
            [OrderLine("sku_mug", 2)],
            Address("A", "1 Street", "Berlin", "10115", "DE"),
            "ord_1:create_shipment",
        ),
        id="ship",
    ),
    pytest.param(
        lambda c: InventoryActivities(c).commit_reservation,
        CommitReservationInput("ord_1", "res_9", "ord_1:commit_reservation"),
        id="commit",
    ),
]


@pytest.mark.parametrize(("step", "request_"), FORWARD_STEPS)
async def test_a_fenced_forward_step_is_a_non_retryable_order_fenced_error(
    step: Callable[[ServiceClient], Any], request_: Any
) -> None:
    client = stub_service(refusal(409, "ORDER_FENCED"))
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(step(client), request_)
    assert (raised.value.type, raised.value.non_retryable) == (errors.ORDER_FENCED, True)
    # An answer the service chose: BENIGN to the SDK (no traceback); saga_step's
    # own line for it is a WARNING, since a live order meeting a fence is
    # worth a look (test_an_expected_failure_is_one_line_without_a_traceback).
    assert raised.value.category is ApplicationErrorCategory.BENIGN
    assert raised.value.details == (1,)


def test_order_fenced_is_non_retryable_and_no_business_refusal() -> None:
    assert errors.ORDER_FENCED in errors.NON_RETRYABLE
    assert errors.ORDER_FENCED not in errors.BUSINESS_REFUSALS
    assert errors.DEADLINE_EXCEEDED not in errors.NON_RETRYABLE


async def test_a_missed_deadline_is_retryable() -> None:
    client = stub_service(refusal(504, "DEADLINE_EXCEEDED"))
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(PaymentActivities(client).charge_payment, CHARGE)
    assert (raised.value.type, raised.value.non_retryable) == (errors.DEADLINE_EXCEEDED, False)


async def test_writes_say_how_long_they_wait_and_reads_do_not() -> None:
    seen: list[httpx.Request] = []
    client = stub_service(
        lists_then_undoes("reservation_id", "res_9", "released"),
        seen,
        timeout=httpx.Timeout(5.0, read=4.0),
    )
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, start_to_close_timeout=timedelta(seconds=30))
    await env.run(
        InventoryActivities(client).release_inventory,
        ReleaseInventoryInput("ord_1", None, "ord_1:release_inventory"),
    )
    # A local attempt's timeout is shorter than the read timeout: it bounds the wait.
    local = ActivityEnvironment()
    local.info = dataclasses.replace(local.info, start_to_close_timeout=timedelta(seconds=3))
    await local.run(
        InventoryActivities(client).commit_reservation,
        CommitReservationInput("ord_1", "res_9", "ord_1:commit_reservation"),
    )

    assert [(r.method, r.headers.get("Request-Timeout")) for r in seen] == [
        ("PUT", "4.000"),
        ("GET", None),
        ("POST", "4.000"),
        ("POST", "3.000"),
    ]
    # The call itself gives up before its attempt does, so a local attempt is
    # never timed out by the SDK while its call still runs (the cause of
    # "Tried to complete untracked local activity").
    read_timeouts = [r.extensions["timeout"]["read"] for r in seen]
    assert read_timeouts[:3] == [4.0, 4.0, 4.0]
    assert read_timeouts[3] < 3.0


async def test_refused_refund_is_non_retryable() -> None:
    client = stub_service(fenced_then(refusal(409, "REFUND_REFUSED")))
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(
            PaymentActivities(client).refund_payment,
            RefundPaymentInput("ord_1", "ch_1", "ord_1:refund_payment"),
        )
    assert (raised.value.type, raised.value.non_retryable) == ("REFUND_REFUSED", True)


async def test_commit_posts_to_the_reservation_and_returns_it() -> None:
    seen: list[httpx.Request] = []
    client = stub_service(lambda _: httpx.Response(200, json={"state": "committed"}), seen)
    outcome = await ActivityEnvironment().run(
        InventoryActivities(client).commit_reservation,
        CommitReservationInput("ord_1", "res_9", "ord_1:commit_reservation"),
    )
    assert outcome.resource_id == "res_9"
    assert (seen[0].method, seen[0].url.path) == ("POST", "/reservations/res_9/commit")
    assert seen[0].headers["Idempotency-Key"] == "ord_1:commit_reservation"


async def test_commit_of_a_released_reservation_is_refused() -> None:
    client = stub_service(refusal(409, "INVALID_STATE"))
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(
            InventoryActivities(client).commit_reservation,
            CommitReservationInput("ord_1", "res_9", "ord_1:commit_reservation"),
        )
    assert (raised.value.type, raised.value.non_retryable) == ("INVALID_STATE", True)


def reservations(*states: str) -> Handler:
    items = [
        {"reservation_id": f"res_{n}", "order_id": "ord_1", "state": state, "lines": []}
        for n, state in enumerate(states)
    ]
    return lambda _: httpx.Response(200, json={"items": items})


async def test_the_commit_lookup_finds_the_orders_committed_reservation() -> None:
    seen: list[httpx.Request] = []
    client = stub_service(reservations("released", "committed"), seen)
    found = await ActivityEnvironment().run(
        InventoryActivities(client).find_committed_reservation,
        FindCommittedReservationInput("ord_1"),
    )
    assert found == "res_1"
    assert (seen[0].method, seen[0].url.path) == ("GET", "/reservations")
    assert seen[0].url.params["order_id"] == "ord_1"


@pytest.mark.parametrize("states", [(), ("reserved",), ("released",)])
async def test_the_commit_lookup_finds_nothing_while_no_reservation_is_committed(
    states: tuple[str, ...],
) -> None:
    client = stub_service(reservations(*states))
    found = await ActivityEnvironment().run(
        InventoryActivities(client).find_committed_reservation,
        FindCommittedReservationInput("ord_1"),
    )
    assert found is None


async def test_the_commit_lookup_refused_is_non_retryable_and_an_outage_retryable() -> None:
    lookup = FindCommittedReservationInput("ord_1")
    refusing = InventoryActivities(stub_service(refusal(400, "REQUEST_REJECTED")))
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(refusing.find_committed_reservation, lookup)
    failing = InventoryActivities(stub_service(lambda _: httpx.Response(503)))
    with pytest.raises(ApplicationError) as unavailable:
        await ActivityEnvironment().run(failing.find_committed_reservation, lookup)

    assert (refused.value.type, refused.value.non_retryable) == ("REQUEST_REJECTED", True)
    assert unavailable.value.non_retryable is False


@pytest.mark.parametrize(
    ("handler", "level"),
    [
        pytest.param(refusal(402, "PAYMENT_DECLINED"), logging.INFO, id="business-refusal"),
        pytest.param(refusal(409, "REFUND_REFUSED"), logging.WARNING, id="refusal-for-operators"),
        pytest.param(lambda _: httpx.Response(503), logging.WARNING, id="retryable-fault"),
    ],
)
async def test_an_expected_failure_is_one_line_without_a_traceback(
    handler: Handler, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Logs are for people: a refusal or a retried fault is one structured line
    (code, attempt; the trace id comes from the log context), and the SDK is
    told it is expected (BENIGN), so it adds no traceback of its own."""
    with caplog.at_level(logging.DEBUG), pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(
            PaymentActivities(stub_service(handler)).charge_payment, CHARGE
        )

    assert raised.value.category is ApplicationErrorCategory.BENIGN
    (line,) = [record for record in caplog.records if record.name == "activities.http"]
    assert line.levelno == level
    assert line.exc_info is None
    assert line.outcome == raised.value.type
    assert line.attempt == 1
