"""Where the audit reads an operator's resolve of an order cancelled through
Temporal (no result): its status query, answered by a worker. A stub stands in
for Temporal's client: only the status query is asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from temporalio.client import Client

from contracts.orders import OperatorRecord, OrderStatus, OrderView
from ordersaga.audit.collect import Sources, with_resolutions
from ordersaga.audit.rules import Order, Resolution

CANCELLED_THROUGH_TEMPORAL = Order(
    "ord_ui", "CANCELED", "CANCELLED", datetime(2025, 3, 1, tzinfo=UTC)
)


class StatusQueryOnly:
    """A Temporal client whose workflows answer the status query with `view`,
    or (view None) never answer, as with no worker running."""

    def __init__(self, view: OrderView | None) -> None:
        self.view = view
        self.asked: list[str] = []

    def get_workflow_handle(self, workflow_id: str, **_: Any) -> StatusQueryOnly:
        self.asked.append(workflow_id)
        return self

    async def query(self, _query: str, **_: Any) -> OrderView:
        if self.view is None:
            await asyncio.Event().wait()  # no worker: the answer never comes
        assert self.view is not None
        return self.view


@pytest.fixture
async def services() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as unused:  # the ledgers are not read here
        yield unused


def sources(temporal: StatusQueryOnly, unused: httpx.AsyncClient) -> Sources:
    return Sources(
        cast(Client, temporal), unused, unused, unused, query_timeout=timedelta(seconds=0.1)
    )


async def test_a_resolve_is_read_from_the_status_query_when_there_is_no_result(
    services: httpx.AsyncClient,
) -> None:
    resolved = OperatorRecord("op_ada", "resolve", "refund_payment", "by hand", "2025-03-01")
    retried = OperatorRecord("op_ada", "retry", "refund_payment", "", "2025-03-01")
    view = OrderView(
        "ord_ui", OrderStatus.CANCELLED, "cus_x", [], None, "EUR",
        operator_actions=[retried, resolved],
    )  # fmt: skip
    temporal = StatusQueryOnly(view)

    order = await with_resolutions(sources(temporal, services), CANCELLED_THROUGH_TEMPORAL)

    assert temporal.asked == ["ord_ui"]
    assert order.resolutions == (Resolution("refund_payment", "op_ada", "by hand", "2025-03-01"),)
    assert order.resolutions_unread is None


async def test_with_no_worker_answering_the_order_says_why_its_resolve_is_unread(
    services: httpx.AsyncClient,
) -> None:
    order = await with_resolutions(
        sources(StatusQueryOnly(None), services), CANCELLED_THROUGH_TEMPORAL
    )

    assert order.resolutions == ()
    assert order.resolutions_unread is not None
    assert "no worker answered its status query within 0.1 s" in order.resolutions_unread
