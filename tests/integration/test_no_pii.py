"""A customer's name, street address and payment token never leave the order.

Full runs (one order that completes, one that is refused by shipping and
compensated) through the real API, worker and services, with everything an
operator could read captured: every log line (at DEBUG, with the chatty
libraries at the WARNING floor every process gives them, through the real JSON
formatter, uvicorn's and temporalio's loggers included), every span (names,
attributes, events, statuses, resources), every search attribute, the
workflows' summaries and details, and the summaries of every event in their
histories. None of them may contain the customer's personal data.

The capture is checked first with a canary that *is* logged and traced, so the
test fails if the capture ever stops seeing what it is meant to scan.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ordersaga.runtime.logging import CHATTY_LOGGERS, build_handler, quiet_chatty_loggers
from tests import orders
from tests.integration.stack import running_stack
from tests.integration.tracing_support import session_tracing
from tests.tokens import as_customer

NAME = "Zebulon Quattlebaum-Pryce"
LINE1 = "742 Evergreen Terrace Apt 9Z"
LINE2 = "Rear Entrance Kxq"
TOKEN = "tok_piiCanary7Hq2Wd"
SECRETS = (NAME, LINE1, LINE2, TOKEN)
CANARY = "tok_selfCheck4Pz1"


def leaks(texts: Iterable[str], secrets: Iterable[str]) -> dict[str, list[str]]:
    """Each secret that occurs in any text, with (the start of) where it occurs."""
    found: dict[str, list[str]] = {}
    for text in texts:
        for secret in secrets:
            if secret.lower() in text.lower():
                found.setdefault(secret, []).append(text[:300])
    return found


def test_the_scanner_finds_a_secret_wherever_it_hides() -> None:
    assert leaks(['{"extra": "x tok_piicanary7hq2wd y"}'], [TOKEN]) == {
        TOKEN: ['{"extra": "x tok_piicanary7hq2wd y"}']
    }
    assert leaks(["nothing here"], SECRETS) == {}


@pytest.fixture
def every_log_line() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = build_handler("json", stream)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", *CHATTY_LOGGERS)}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # As every ordersaga process sets them (aiosqlite's DEBUG prints SQL parameters).
    quiet_chatty_loggers()
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def order_body(sku: str, country: str) -> dict[str, Any]:
    body = orders.order_body(sku=sku, country=country, payment_token=TOKEN)
    body["shipping_address"].update({"name": NAME, "line1": LINE1, "line2": LINE2})
    return body


def payload_texts(payloads: Iterable[Payload]) -> list[str]:
    return [payload.data.decode("utf-8", errors="replace") for payload in payloads]


async def decrypted_texts(client: Client, payloads: Iterable[Payload]) -> list[str]:
    """Payloads as an operator with the key reads them: summaries, memo and
    inputs are encrypted like every payload, and must carry no PII even so."""
    present = [payload for payload in payloads if payload.ByteSize()]
    codec = client.data_converter.payload_codec
    assert codec is not None, "the client must have the stack's codec"
    return payload_texts(await codec.decode(present))


async def operator_views(client: Client, order_id: str) -> tuple[list[str], list[str]]:
    """(search attributes, summaries, details and memo) of the order, as Temporal keeps them."""
    handle = client.get_workflow_handle(order_id)
    description = await handle.describe()
    # Search attributes are never encrypted: what they carry is readable to anyone.
    attributes = payload_texts(
        description.raw_description.workflow_execution_info.search_attributes.indexed_fields.values()
    )
    static_summary = await description.static_summary()
    # The API gives every order a summary: an empty one would scan nothing.
    assert static_summary, f"{order_id} has no summary"
    summaries = [static_summary, await description.static_details() or ""]
    memo = description.raw_description.workflow_execution_info.memo.fields
    summaries += await decrypted_texts(client, memo.values())
    async for event in handle.fetch_history_events():
        summaries += await decrypted_texts(
            client, [event.user_metadata.summary, event.user_metadata.details]
        )
        upserted = event.upsert_workflow_search_attributes_event_attributes
        attributes += payload_texts(upserted.search_attributes.indexed_fields.values())
    return attributes, [text for text in summaries if text]


async def history_input(client: Client, order_id: str) -> str:
    async for event in client.get_workflow_handle(order_id).fetch_history_events():
        started = event.workflow_execution_started_event_attributes
        return "".join(await decrypted_texts(client, started.input.payloads))
    return ""


async def test_no_name_address_or_token_in_logs_spans_search_attributes_or_summaries(
    dev_server_env: WorkflowEnvironment, tmp_path: Path, every_log_line: io.StringIO
) -> None:
    client = dev_server_env.client
    tracing = session_tracing()
    with tracing.recording():
        # The canary goes everywhere the scan looks, through the same pipeline.
        logging.getLogger("ordersaga.pii_check").info("canary", extra={"token": CANARY})
        with tracing.worker.get_tracer("pii_check").start_as_current_span(
            "pii_check", attributes={"token": CANARY}
        ):
            pass
        async with running_stack(client, tmp_path, tracer_providers=tracing.providers) as stack:
            # The stack's codec: everything below reads payloads as an operator would.
            client = stack.temporal
            sku = f"sku_pii_{uuid.uuid4().hex[:8]}"
            await stack.stock(sku, 5)
            order_ids = []
            for country in ("DE", "AQ"):
                placed = await stack.api.post(
                    "/orders",
                    json=order_body(sku, country),
                    headers=as_customer(f"cus_pii_{uuid.uuid4().hex[:8]}"),
                )
                assert placed.status_code == 202, placed.text
                order_ids.append(placed.json()["order_id"])
            statuses = []
            for order_id in order_ids:
                await stack.temporal.get_workflow_handle(order_id).result()
                read = await stack.api.get(f"/orders/{order_id}")
                statuses.append(read.json()["status"])
            listed = await stack.api.get("/orders", params={"page_size": 5})
            assert listed.status_code == 200
    assert statuses == ["COMPLETED", "FAILED"]

    log_lines = every_log_line.getvalue().splitlines()
    span_texts = []
    for span in tracing.finished_spans():
        span_texts += [span.name, str(span.status.description or "")]
        span_texts += [str(value) for value in (span.attributes or {}).values()]
        span_texts += [str(value) for value in span.resource.attributes.values()]
        for event in span.events:
            span_texts += [event.name, *(str(v) for v in (event.attributes or {}).values())]
    search_attributes: list[str] = []
    summaries: list[str] = []
    for order_id in order_ids:
        attributes, texts = await operator_views(client, order_id)
        search_attributes += attributes
        summaries += texts

    # The capture is live: it saw the canary, the orders' own lines and spans,
    # their search attributes and their activities' summaries.
    assert CANARY in leaks(log_lines, [CANARY])
    assert CANARY in leaks(span_texts, [CANARY])
    assert all(leaks(log_lines, [order_id]) for order_id in order_ids)
    assert leaks(span_texts, ["orders.create_shipment", "orders.refund_payment"]).keys() == {
        "orders.create_shipment",
        "orders.refund_payment",
    }
    assert leaks(search_attributes, ["COMPLETED", "FAILED", "cus_pii_"]).keys() == {
        "COMPLETED",
        "FAILED",
        "cus_pii_",
    }
    assert any("undo" in text for text in summaries), summaries
    # ... and the secrets really went through the system: they are in the order.
    started_with = await history_input(client, order_ids[1])
    assert [secret for secret in SECRETS if secret in started_with] == list(SECRETS)

    assert leaks(log_lines, SECRETS) == {}
    assert leaks(span_texts, SECRETS) == {}
    assert leaks(search_attributes, SECRETS) == {}
    assert leaks(summaries, SECRETS) == {}
