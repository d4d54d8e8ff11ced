"""One trace per order, from POST /orders down to the services' SQL.

A real order that compensates (the shipping service refuses country AQ, so
the payment is refunded and the stock released) runs through the real API,
the real worker on the dev server and the real services over HTTP, every role
tracing to its own provider with its own service name, all into one in-memory
exporter.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.integration.stack import running_stack
from tests.integration.tracing_support import service_name, session_tracing, span_tree
from tests.orders import order_body
from tests.tokens import as_customer, new_customer_id

FORWARD = ("reserve_inventory", "charge_payment", "create_shipment")
COMPENSATIONS = ("refund_payment", "release_inventory")
SERVICE_OF_STEP = {
    "reserve_inventory": "inventory",
    "release_inventory": "inventory",
    "charge_payment": "payments",
    "refund_payment": "payments",
    "create_shipment": "shipping",
}


def mentions(span: ReadableSpan, text: str) -> bool:
    return any(text in str(value) for value in (span.attributes or {}).values())


def children_of(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == span.context.span_id]


def descendants_of(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    found: list[ReadableSpan] = []
    for child in children_of(span, spans):
        found += [child, *descendants_of(child, spans)]
    return found


def is_sql(span: ReadableSpan) -> bool:
    attributes = span.attributes or {}
    return "db.system" in attributes or "db.system.name" in attributes


async def test_a_compensated_order_is_one_trace_across_every_process(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    tracing = session_tracing()
    with tracing.recording():
        async with running_stack(
            dev_server_env.client, tmp_path, tracer_providers=tracing.providers
        ) as stack:
            sku = f"sku_trace_{uuid.uuid4().hex[:8]}"
            await stack.stock(sku, 5)
            placed = await stack.api.post(
                "/orders",
                json=order_body(sku=sku, quantity=2, country="AQ"),
                headers=as_customer(new_customer_id()),
            )
            assert placed.status_code == 202, placed.text
            order_id = placed.json()["order_id"]
            # Untraced: a client without the tracing interceptor (but the codec).
            untraced = Client(
                dev_server_env.client.service_client,
                namespace=dev_server_env.client.namespace,
                data_converter=stack.temporal.data_converter,
            )
            await untraced.get_workflow_handle(order_id).result()
            order = (await stack.api.get(f"/orders/{order_id}")).json()
    assert order["status"] == "FAILED", order
    spans = tracing.finished_spans()

    roots = [
        s
        for s in spans
        if s.kind == SpanKind.SERVER
        and service_name(s) == "ordersaga-api"
        and s.name == "POST /orders"
    ]
    assert len(roots) == 1, [s.name for s in spans if service_name(s) == "ordersaga-api"]
    root = roots[0]
    trace_id = root.context.trace_id
    trace = [s for s in spans if s.context.trace_id == trace_id]
    print(f"\nspan tree of compensated order {order_id}:\n{span_tree(trace)}")

    # Joined: every span of the trace hangs from the API's server span, and
    # nothing that names this order was recorded in another trace.
    assert root.parent is None
    ids = {s.context.span_id for s in trace}
    orphans = [
        s.name for s in trace if s is not root and (s.parent is None or s.parent.span_id not in ids)
    ]
    assert orphans == []
    elsewhere = [
        (s.name, service_name(s))
        for s in spans
        if s.context.trace_id != trace_id
        and mentions(s, order_id)
        # Reading the order back is its own request, with its own trace.
        and not s.name.startswith(("GET /orders", "QueryWorkflow", "HandleQuery"))
    ]
    assert elsewhere == []

    names = {(s.name, service_name(s)) for s in trace}
    assert ("StartWorkflow:OrderWorkflow", "ordersaga-api") in names
    assert ("RunWorkflow:OrderWorkflow", "ordersaga-worker") in names
    for step in (*FORWARD, *COMPENSATIONS):
        assert (f"StartActivity:{step}", "ordersaga-worker") in names, step
        assert (f"RunActivity:{step}", "ordersaga-worker") in names, step
        # One span per attempt: one, unless a local attempt outlived its
        # budget on a loaded machine and the step went on on its queue.
        steps = [s for s in trace if s.name == f"orders.{step}"]
        assert steps, f"no orders.{step} span"
        for step_span in steps:
            assert service_name(step_span) == "ordersaga-worker"
            assert step_span.attributes is not None
            assert step_span.attributes["ordersaga.order_id"] == order_id
        # orders.<step> -> httpx client span -> the service's server span -> SQL.
        clients = [
            c
            for step_span in steps
            for c in children_of(step_span, trace)
            if c.kind == SpanKind.CLIENT
        ]
        assert clients, f"no HTTP client span under orders.{step}"
        service = f"ordersaga-{SERVICE_OF_STEP[step]}"
        servers = [
            s
            for c in clients
            for s in children_of(c, trace)
            if s.kind == SpanKind.SERVER and service_name(s) == service
        ]
        assert servers, f"no {service} server span under orders.{step}"
        sql = [s for server in servers for s in descendants_of(server, trace) if is_sql(s)]
        assert sql, f"no SQL span under {service} for {step}"
        assert all(service_name(s) == service for s in sql)

    # The refusal that started the compensation is on its step's span.
    shipments = [s for s in trace if s.name == "orders.create_shipment"]
    assert not shipments[-1].status.is_ok

    # Meaningful names everywhere: no generic handler names, no raw ids.
    generic = [s.name for s in trace if s.name.lower() in {"handle", "execute", "run", "call"}]
    assert generic == []
    assert not [s.name for s in trace if order_id in s.name]
