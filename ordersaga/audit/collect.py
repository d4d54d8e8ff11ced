"""Read what the audit checks: orders from Temporal's visibility, rows from the
services' admin listings (GET /admin/ledger, inventory's GET /admin/stock).

Temporal is read first, the ledgers after. An order closed in Temporal has a
final ledger, so reading it later cannot make a false finding; an order still
open is only checked for how long it has been open. A ledger row whose order
is not in the visibility read (started since, or closed before --since) is
looked up by id (DescribeWorkflowExecution: consistent, unlike visibility)
before it is called an orphan. A FAILED or CANCELLED order that kept an effect
has its final view read too, which lists the operators' decisions: an undo an
operator resolved is theirs to have settled by hand. The view is the order's
result, or for one cancelled through Temporal (no result) its status query.

With --since, only orders open or closed since then are checked, and only rows
changed since then are listed; an order that started before it gets its whole
ledger read by order id, so a shipment made before the window still counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from contracts.orders import STATUS_QUERY, WORKFLOW_TYPE, OrderResult, OrderStatus, OrderView
from ordersaga.audit.rules import (
    Charge,
    Ledger,
    Order,
    Reservation,
    Resolution,
    Shipment,
    Snapshot,
    StockLevel,
    orders_that_kept_an_effect,
)
from ordersaga.runtime.settings import SERVICES
from workflows.search_attributes import FAILED_STEP_KEY, ORDER_STATUS_KEY, ORDER_TOTAL_CENTS_KEY

# Rows per page of the services' listings (their maximum is 1000).
PAGE_SIZE = 500
# Requests in flight to one service at a time, for the per-order reads.
SERVICE_CONCURRENCY = 8
# Final views read from Temporal at a time (orders that kept an effect).
RESULT_CONCURRENCY = 8


class AuditUnavailable(Exception):
    """Temporal or a service could not be read: retry later."""


class AuditConfigError(Exception):
    """A service refused the audit's credential, or lacks its listing: fix the setup."""


@dataclass
class Sources:
    """Where to read. The clients are the caller's to open and close: the
    Temporal client with the payload codec (a parked order's reason is an
    encrypted query result), each service's with the admin credential."""

    temporal: Client
    inventory: httpx.AsyncClient
    payments: httpx.AsyncClient
    shipping: httpx.AsyncClient
    # How long a worker has to answer an order's status query (a parked order's,
    # or a closed one's that has no result).
    query_timeout: timedelta = timedelta(seconds=5)


async def collect(sources: Sources, *, since: datetime | None) -> Snapshot:
    taken_at = datetime.now(UTC)
    orders = await _orders(sources.temporal, since)
    charges, shipments, reservations, stock = await asyncio.gather(
        _listing(sources.payments, "payments", "/admin/ledger", _charge, since),
        _listing(sources.shipping, "shipping", "/admin/ledger", _shipment, since),
        _listing(sources.inventory, "inventory", "/admin/ledger", _reservation, since),
        _listing(sources.inventory, "inventory", "/admin/stock", _stock_level, None),
    )
    ledger = Ledger(charges, shipments, reservations)
    # Orders whose rows may predate the listing's window: read them whole.
    partial = {o.order_id for o in orders.values() if since is not None and o.started_at < since}
    known_elsewhere: set[str] = set()
    for order_id in sorted(ledger.order_ids() - orders.keys()):
        found = await _describe(sources.temporal, order_id)
        if found is None:
            continue  # an orphan: the rules say so
        if found.is_open:
            known_elsewhere.add(order_id)  # started while we read: in flight
        else:
            orders[order_id] = found  # closed before the window, changed in it
            partial.add(order_id)
    if partial:
        ledger = _merged(ledger, await _ledgers_of(sources, sorted(partial)))
    parked = [
        o for o in orders.values() if o.is_open and o.order_status == OrderStatus.NEEDS_ATTENTION
    ]
    for order in parked:
        orders[order.order_id] = replace(
            order, parked_reason=await _parked_reason(sources, order.order_id)
        )
    kept = orders_that_kept_an_effect(orders.values(), ledger)
    gate = asyncio.Semaphore(RESULT_CONCURRENCY)

    async def gated(order: Order) -> Order:
        async with gate:
            return await with_resolutions(sources, order)

    for order in await _all(gated(orders[order_id]) for order_id in kept):
        orders[order.order_id] = order
    return Snapshot(
        taken_at=taken_at,
        orders=sorted(orders.values(), key=lambda o: o.order_id),
        charges=ledger.charges,
        shipments=ledger.shipments,
        reservations=ledger.reservations,
        stock=stock,
        known_order_ids=frozenset(known_elsewhere),
    )


def visibility_query(since: datetime | None) -> str:
    """Every order workflow; with `since`, the open ones and those closed since."""
    query = f"WorkflowType = '{WORKFLOW_TYPE}'"
    if since is None:
        return query
    moment = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{query} AND (ExecutionStatus = 'Running' OR CloseTime >= '{moment}')"


# --- Temporal ----------------------------------------------------------------------


async def _orders(client: Client, since: datetime | None) -> dict[str, Order]:
    orders: dict[str, Order] = {}
    try:
        async for execution in client.list_workflows(visibility_query(since)):
            order = _order(execution)
            # Several runs of one id: the latest is the order.
            if order.order_id not in orders or orders[order.order_id].started_at < order.started_at:
                orders[order.order_id] = order
    except RPCError as error:
        raise AuditUnavailable(f"Temporal refused to list orders: {error.message}") from None
    return orders


async def _describe(client: Client, order_id: str) -> Order | None:
    try:
        description = await client.get_workflow_handle(order_id).describe()
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return None
        raise AuditUnavailable(
            f"Temporal refused to describe {order_id}: {error.message}"
        ) from None
    if description.workflow_type != WORKFLOW_TYPE:
        return None  # not an order: its id merely matches one
    return _order(description)


def _order(execution: WorkflowExecution) -> Order:
    attributes = execution.typed_search_attributes
    status = execution.status
    return Order(
        order_id=execution.id,
        execution_status=status.name if isinstance(status, WorkflowExecutionStatus) else "UNKNOWN",
        order_status=attributes.get(ORDER_STATUS_KEY),
        started_at=execution.start_time,
        closed_at=execution.close_time,
        total_cents=attributes.get(ORDER_TOTAL_CENTS_KEY),
        failed_step=attributes.get(FAILED_STEP_KEY),
    )


async def _parked_reason(sources: Sources, order_id: str) -> str | None:
    """The order's failure reason, as its status query tells it; None when no
    worker answers in time (the audit reads Temporal, not the workers)."""
    view = await _queried_view(sources, order_id)
    return None if view is None else view.failure_reason


async def _queried_view(sources: Sources, order_id: str) -> OrderView | None:
    """The order's view from its status query; None when no worker answers in
    time, or its answer cannot be read. A closed order's is answered too: a
    worker replays its history."""
    handle = sources.temporal.get_workflow_handle(order_id)
    try:
        async with asyncio.timeout(sources.query_timeout.total_seconds()):
            view: OrderView = await handle.query(STATUS_QUERY, result_type=OrderView)
    except (TimeoutError, RPCError, ValueError, TypeError):
        # ValueError/TypeError: a payload this keyring or converter cannot read.
        return None
    return view


async def with_resolutions(sources: Sources, order: Order) -> Order:
    """The order with the calls operators resolved, and why they could not be
    read if they could not (the finding then stays an error, the safe side).

    From the closed order's result (one history read: its close event), which
    keeps its final view. An order cancelled through Temporal has no result:
    its view then comes from its status query, which a worker answers by
    replaying its history."""
    view: OrderView | None
    if order.has_result:
        view, unread = await _final_view(sources.temporal, order.order_id)
    else:
        view = await _queried_view(sources, order.order_id)
        unread = (
            None
            if view is not None
            else "cancelled through Temporal, it has no result, and no worker answered "
            f"its status query within {sources.query_timeout.total_seconds():g} s"
        )
    if view is None:
        return replace(order, resolutions_unread=unread)
    return replace(
        order,
        resolutions=tuple(
            Resolution(step=action.step, operator=action.operator, note=action.note, at=action.at)
            for action in view.operator_actions
            if action.decision == "resolve"
        ),
    )


async def _final_view(client: Client, order_id: str) -> tuple[OrderView | None, str | None]:
    """The closed order's final view from its result, or why there is none."""
    handle = client.get_workflow_handle(order_id, result_type=OrderResult)
    try:
        result = await handle.result(follow_runs=False)
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return None, "its history is gone (retention)"
        raise AuditUnavailable(
            f"Temporal refused the result of {order_id}: {error.message}"
        ) from None
    except (ValueError, TypeError):
        return None, "its result cannot be read with this keyring"
    if not isinstance(result, OrderResult) or result.view is None:
        return None, "its result holds no view (an order from before the view)"
    return result.view, None


# --- the services ------------------------------------------------------------------


def _merged(first: Ledger, second: Ledger) -> Ledger:
    return Ledger(
        _unique(first.charges, second.charges, key=lambda c: c.charge_id),
        _unique(first.shipments, second.shipments, key=lambda s: s.shipment_id),
        _unique(first.reservations, second.reservations, key=lambda r: r.reservation_id),
    )


RowT = TypeVar("RowT")


def _unique(
    first: Iterable[RowT], second: Iterable[RowT], *, key: Callable[[RowT], str]
) -> list[RowT]:
    by_id = {key(row): row for row in first}
    for row in second:
        by_id.setdefault(key(row), row)
    return [by_id[row_id] for row_id in sorted(by_id)]


async def _listing(
    client: httpx.AsyncClient,
    service: str,
    path: str,
    parse: Callable[[Mapping[str, Any]], RowT],
    since: datetime | None,
) -> list[RowT]:
    rows: list[RowT] = []
    after: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": PAGE_SIZE}
        if after is not None:
            params["after"] = after
        if since is not None:
            params["changed_since"] = since.isoformat()
        page = await _get(client, service, path, params)
        rows.extend(parse(item) for item in page["items"])
        after = page["next_after"]
        if after is None:
            return rows


async def _ledgers_of(sources: Sources, order_ids: Sequence[str]) -> Ledger:
    """Each order's whole ledger, by the services' per-order reads."""
    gates = {name: asyncio.Semaphore(SERVICE_CONCURRENCY) for name in SERVICES}

    async def items(
        client: httpx.AsyncClient, service: str, path: str, order_id: str
    ) -> list[Mapping[str, Any]]:
        async with gates[service]:
            found: list[Mapping[str, Any]] = (
                await _get(client, service, path, {"order_id": order_id})
            )["items"]
        return found

    async def gather(client: httpx.AsyncClient, service: str, path: str) -> list[Mapping[str, Any]]:
        pages: list[list[Mapping[str, Any]]] = await _all(
            items(client, service, path, order_id) for order_id in order_ids
        )
        return [item for page in pages for item in page]

    charges, shipments, reservations = await asyncio.gather(
        gather(sources.payments, "payments", "/charges"),
        gather(sources.shipping, "shipping", "/shipments"),
        gather(sources.inventory, "inventory", "/reservations"),
    )
    return Ledger(
        [_charge(c) for c in charges],
        [_shipment(s) for s in shipments],
        [_reservation(r) for r in reservations],
    )


T = TypeVar("T")


async def _all(calls: Iterable[Awaitable[T]]) -> list[T]:
    return list(await asyncio.gather(*calls))


async def _get(
    client: httpx.AsyncClient, service: str, path: str, params: Mapping[str, str | int]
) -> dict[str, Any]:
    where = f"the {service} service ({client.base_url})"
    try:
        response = await client.get(path, params=params)
    except httpx.HTTPError as error:
        raise AuditUnavailable(f"{where} did not answer: {error or type(error).__name__}") from None
    if response.status_code in (401, 403):
        raise AuditConfigError(
            f"{where} refused the admin credential ({response.status_code}); "
            "set ORDERSAGA_ADMIN_TOKEN to the services' admin token"
        )
    if response.status_code == 404 and path.startswith("/admin/"):
        raise AuditConfigError(f"{where} has no {path}: it predates the audit, upgrade it")
    if not response.is_success:
        raise AuditUnavailable(f"{where} answered {response.status_code} to GET {path}")
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        raise AuditUnavailable(f"{where} answered GET {path} with something not JSON") from None
    return body


ParsedT = TypeVar("ParsedT", Charge, Shipment, Reservation, StockLevel)


def _row_parser(row_type: type[ParsedT]) -> Callable[[Mapping[str, Any]], ParsedT]:
    """How a service's JSON item becomes a row: each of the row's fields by its
    name, other keys ignored. A field with a default may be missing (a service
    older than Shipment.country does not send it); any other is a KeyError."""
    required = {f.name for f in fields(row_type) if f.default is MISSING}
    names = [f.name for f in fields(row_type)]

    def parse(item: Mapping[str, Any]) -> ParsedT:
        return row_type(**{name: item[name] for name in names if name in item or name in required})

    return parse


_charge = _row_parser(Charge)
_shipment = _row_parser(Shipment)
_reservation = _row_parser(Reservation)
_stock_level = _row_parser(StockLevel)
