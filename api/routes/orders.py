"""/orders: place, read, list and cancel orders; operator decisions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from fastapi.types import DecoratedCallable as RouteFn
from temporalio.client import WorkflowExecution

from api.auth import CustomerDep, OperatorDep, ReaderDep, customer_or_operator, operator
from api.deps import (
    IdempotencyKeyDep,
    OpenOrderCapDep,
    OrderIdDep,
    OrderRateLimitDep,
    OrdersDep,
)
from api.errors import (
    CurrencyNotSold,
    Forbidden,
    OrderNotFound,
    RateLimited,
    TooManyOpenOrders,
)
from api.ids import SAFE_ID_PATTERN, derive_order_id, request_fingerprint
from api.schemas import (
    CancelRequest,
    ErrorResponse,
    OperatorActionAcceptedPublic,
    OperatorActionPublic,
    OperatorActionRequest,
    OrderAccepted,
    OrderCancelAccepted,
    OrderCreate,
    OrderLinePublic,
    OrderLinks,
    OrderPage,
    OrderPublic,
    OrderSummary,
    StepPublic,
)
from api.temporal_orders import (
    ABANDONED,
    CANCELLED_BY_OPERATOR,
    PUBLIC_REASON_ABANDONED,
    TemporalOrders,
    order_status_of,
)
from contracts.errors import PUBLIC_REASON_CANCELLED, public_reason
from contracts.orders import CancelOrder, OperatorAction, OperatorRecord, OrderStatus, OrderView
from ordersaga.runtime.auth import Principal
from ordersaga.runtime.logging import bind_log_fields
from ordersaga.runtime.query import QUERY_PARAMETERS_CHECKED
from workflows.search_attributes import CUSTOMER_ID_KEY, ORDER_STATUS_KEY, ORDER_TOTAL_CENTS_KEY

router = APIRouter(prefix="/orders", tags=["orders"])

# ORDER_ID_AFTER_CALLER: a route with an order id in its path names its caller
# first, so that FastAPI, which solves dependencies in order, refuses a wrong
# caller (401, 403) before it looks at the id (404 for a malformed one): a
# stranger learns nothing, not even which ids are well formed.
# tests/integration/api/test_auth.py checks every such route.

Responses = dict[int | str, dict[str, Any]]


def _documented_error(status_code: int, description: str) -> Responses:
    """One error answer as the OpenAPI document shows it: every error has the
    same body (ErrorResponse); only the status and why differ."""
    return {status_code: {"model": ErrorResponse, "description": description}}


_AUTH: Responses = {
    **_documented_error(
        status.HTTP_401_UNAUTHORIZED, "No valid bearer token (code UNAUTHENTICATED)."
    ),
    **_documented_error(
        status.HTTP_403_FORBIDDEN, "The token lacks the scope this route needs (code FORBIDDEN)."
    ),
}
_UNAVAILABLE = _documented_error(
    status.HTTP_503_SERVICE_UNAVAILABLE,
    "Temporal, every worker, or the rate limit's storage is unreachable; safe to retry.",
)
_NOT_FOUND = _documented_error(status.HTTP_404_NOT_FOUND, "No such order.")


def order_path(order_id: str) -> str:
    return f"{router.prefix}/{order_id}"


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderAccepted,
    responses={
        **_documented_error(status.HTTP_400_BAD_REQUEST, "Idempotency-Key missing or malformed."),
        status.HTTP_422_UNPROCESSABLE_CONTENT: {
            "description": "Invalid body (field errors), or the Idempotency-Key was "
            "already used with a different body (code IDEMPOTENCY_KEY_REUSED).",
        },
        **_documented_error(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "Too many orders placed lately (RATE_LIMITED), or too many "
            "still open (TOO_MANY_OPEN_ORDERS); see Retry-After.",
        ),
        **_AUTH,
        **_UNAVAILABLE,
    },
    summary="Place an order",
)
async def place_order(
    *,
    request: Request,
    order: OrderCreate,
    key: IdempotencyKeyDep,
    caller: CustomerDep,
    orders: OrdersDep,
    rate_limit: OrderRateLimitDep,
    open_order_cap: OpenOrderCapDep,
    response: Response,
) -> OrderAccepted:
    """Start fulfilment; the order's progress is at the `self` link.

    The customer is the token's subject. The order id is derived from the
    customer and the Idempotency-Key: keys are scoped per customer (as payment
    APIs scope them per account), so a retried request lands on the same order
    and gets the same answer, while another customer's identical key is another
    order. The same key with a different body is refused with 422
    IDEMPOTENCY_KEY_REUSED. A key stays bound to its order as long as Temporal
    retains the order's history. Prices come from the catalog at reservation."""
    catalog_currency: str = request.app.state.catalog_currency
    if order.currency != catalog_currency:
        raise CurrencyNotSold(f"orders are priced in {catalog_currency}, not {order.currency}")
    customer_id = caller.customer_id
    order_id = derive_order_id(customer_id, key)
    bind_log_fields(order_id=order_id, workflow_id=order_id)
    fingerprint = request_fingerprint(order.canonical())
    try:
        await rate_limit.check(customer_id)
        await open_order_cap.check(customer_id, count=orders.open_orders_of)
    except (RateLimited, TooManyOpenOrders):
        # A retry of an order already accepted gets its answer, not the refusal.
        if not await orders.accepted_before(order_id, fingerprint=fingerprint):
            raise
    else:
        await orders.place(order.to_place_order(order_id, customer_id), fingerprint=fingerprint)
        open_order_cap.placed(customer_id)
    response.headers["Location"] = order_path(order_id)
    return OrderAccepted(
        order_id=order_id,
        status=OrderStatus.RECEIVED,
        links=OrderLinks(self=order_path(order_id), cancel=f"{order_path(order_id)}/cancel"),
    )


@router.get(
    "",
    response_model=OrderPage,
    # The caller first, so a stranger is told to authenticate whatever the
    # query says; `caller` below gets the same answer from FastAPI's cache.
    dependencies=[Depends(customer_or_operator), QUERY_PARAMETERS_CHECKED],
    responses={
        **_documented_error(
            status.HTTP_400_BAD_REQUEST,
            "next_page_token is not one this API issued for these filters.",
        ),
        **_AUTH,
        **_UNAVAILABLE,
    },
    summary="List orders",
)
async def list_orders(
    *,
    caller: ReaderDep,
    orders: OrdersDep,
    order_status: Annotated[OrderStatus | None, Query(alias="status")] = None,
    customer_id: Annotated[str | None, Query(pattern=SAFE_ID_PATTERN)] = None,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    next_page_token: Annotated[str | None, Query(max_length=4096)] = None,
) -> OrderPage:
    """A page of orders from Temporal visibility, newest first. A customer sees
    only their own orders; operators see every customer's. Visibility is
    eventually consistent: an order accepted a moment ago may not be listed
    yet, and a listed status may trail GET /orders/{order_id} briefly."""
    if not caller.is_operator:
        if customer_id is not None and customer_id != caller.customer_id:
            raise Forbidden("customers list only their own orders")
        customer_id = caller.customer_id
    page = await orders.page(
        status=order_status,
        customer_id=customer_id,
        page_size=page_size,
        page_token=next_page_token,
    )
    return OrderPage(
        items=[summary_of(execution) for execution in page.executions],
        next_page_token=page.next_page_token,
    )


@router.get(
    "/{order_id}",
    response_model=OrderPublic,
    responses={**_NOT_FOUND, **_AUTH, **_UNAVAILABLE},
    summary="Read an order",
)
async def get_order(*, caller: ReaderDep, order_id: OrderIdDep, orders: OrdersDep) -> OrderPublic:
    """The order's status, priced items and every saga step. A customer reads
    only their own orders (another's is 404, as if it did not exist); operators
    read all, with the full account of any failure.

    Reading never waits on a worker: a finished order is read from what
    Temporal keeps for it, and one whose workers do not answer within a second
    from its last published state, with `stale: true` (its steps then empty:
    they are not known there). A closed order always has a terminal status: one
    whose workflow was terminated in Temporal before it finished is FAILED with
    failure_code ORDER_ABANDONED (nothing was undone)."""
    reader = None if caller.is_operator else caller.customer_id
    read = await orders.read(order_id, reader=reader)
    return public_view(read.view, for_operator=caller.is_operator, stale=read.stale)


@router.post(
    "/{order_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderCancelAccepted,
    responses={
        **_documented_error(
            status.HTTP_409_CONFLICT,
            "Too late: shipped, compensating, or finished (code TOO_LATE).",
        ),
        **_NOT_FOUND,
        **_AUTH,
        **_UNAVAILABLE,
    },
    summary="Cancel an order",
)
async def cancel_order(
    *,
    caller: CustomerDep,
    order_id: OrderIdDep,
    orders: OrdersDep,
    request: Annotated[CancelRequest | None, Body()] = None,
) -> OrderCancelAccepted:
    """Accepted until the shipment is created; what was done is then undone.
    Cancelling twice is accepted twice and changes nothing. Customers cancel
    only their own orders (another's is 404)."""
    await _require_own_order(orders, order_id, caller)
    cancel = CancelOrder(reason=request.reason) if request else CancelOrder()
    accepted = await orders.cancel(order_id, cancel)
    return OrderCancelAccepted(order_id=accepted.order_id, status=accepted.status)


_OPERATOR_RESPONSES: Responses = {
    **_documented_error(
        status.HTTP_409_CONFLICT,
        "The order is not waiting for an operator (code NOT_NEEDS_ATTENTION).",
    ),
    **_NOT_FOUND,
    **_AUTH,
    **_UNAVAILABLE,
}


# async def: FastAPI runs a plain `def` dependency on its thread pool.
async def operator_action(
    caller: OperatorDep, action: Annotated[OperatorActionRequest | None, Body()] = None
) -> OperatorAction:
    """The decision as the workflow records it: the operator is the token's
    subject, the note (optional body) the operator's own words."""
    return OperatorAction(note=action.note if action else "", operator=caller.safe_subject)


OperatorActionDep = Annotated[OperatorAction, Depends(operator_action)]


def _operator_decision(path: str, *, summary: str) -> Callable[[RouteFn], RouteFn]:
    """The operator decisions differ only in their path, summary and what the
    workflow does; they accept and answer alike."""
    return router.post(
        path,
        status_code=status.HTTP_202_ACCEPTED,
        response_model=OperatorActionAcceptedPublic,
        responses=_OPERATOR_RESPONSES,
        tags=["operator"],
        summary=summary,
        # Before the order's id is looked at (ORDER_ID_AFTER_CALLER, above).
        dependencies=[Depends(operator)],
    )


@_operator_decision("/{order_id}/compensation/retry", summary="Retry the refused compensation")
async def retry_compensation(
    *, order_id: OrderIdDep, action: OperatorActionDep, orders: OrdersDep
) -> OperatorActionAcceptedPublic:
    """Operators only. For an order in NEEDS_ATTENTION: run the refused
    compensation again, as a new request to the service (a new idempotency
    key). The operator (the token's subject) and the note are recorded."""
    accepted = await orders.retry_compensation(order_id, action)
    return OperatorActionAcceptedPublic(order_id=accepted.order_id, status=accepted.status)


@_operator_decision(
    "/{order_id}/compensation/resolve", summary="Mark the refused compensation as resolved by hand"
)
async def resolve_compensation(
    *, order_id: OrderIdDep, action: OperatorActionDep, orders: OrdersDep
) -> OperatorActionAcceptedPublic:
    """Operators only. For an order in NEEDS_ATTENTION: the operator undid the
    step outside the system (say, refunded by hand); the saga carries on
    unwinding. The operator (the token's subject) and the note are recorded."""
    accepted = await orders.resolve_compensation(order_id, action)
    return OperatorActionAcceptedPublic(order_id=accepted.order_id, status=accepted.status)


async def _require_own_order(orders: TemporalOrders, order_id: str, caller: Principal) -> None:
    # Before the update, not after: a cancel must never reach another's order.
    if await orders.customer_of(order_id) != caller.customer_id:
        raise OrderNotFound(f"no order {order_id}")


def public_view(view: OrderView, *, for_operator: bool, stale: bool = False) -> OrderPublic:
    """The order as the caller may see it. Customers get what happened in
    plain words; stock counts, limits and service internals (the steps' error
    texts, the full failure account, operators' notes) are for operators."""
    prices = {line.sku: line.unit_price_cents for line in view.priced_lines}
    return OrderPublic(
        order_id=view.order_id,
        status=view.status,
        customer_id=view.customer_id,
        items=[
            OrderLinePublic(
                sku=line.sku, quantity=line.quantity, unit_price_cents=prices.get(line.sku)
            )
            for line in view.items
        ],
        total_cents=view.total_cents,
        currency=view.currency,
        steps=[
            StepPublic(
                name=step.name,
                state=step.state,
                attempts=step.attempts,
                error=step.error if for_operator else None,
            )
            for step in view.steps
        ],
        failure_code=view.failure_code,
        failure_reason=_failure_reason(view, for_operator=for_operator),
        operator_actions=[_operator_action_public(record) for record in view.operator_actions]
        if for_operator
        else [],
        created_at=_timestamp(view.created_at),
        updated_at=_timestamp(view.updated_at),
        stale=stale,
    )


def _operator_action_public(record: OperatorRecord) -> OperatorActionPublic:
    # The public record is the workflow's, field for field, but for the time,
    # which the workflow keeps as ISO text ("" when unknown).
    return OperatorActionPublic.model_validate({**asdict(record), "at": _timestamp(record.at)})


def _failure_reason(view: OrderView, *, for_operator: bool) -> str | None:
    if view.failure_reason is None or for_operator:
        return view.failure_reason
    if view.status is OrderStatus.CANCELLED:
        # The customer's own words when they cancelled; nothing internal (the
        # workflow's own reason when it was cancelled through Temporal).
        if view.failure_code == CANCELLED_BY_OPERATOR:
            return PUBLIC_REASON_CANCELLED
        return view.failure_reason or PUBLIC_REASON_CANCELLED
    if view.failure_code == ABANDONED:
        return PUBLIC_REASON_ABANDONED
    return public_reason(view.failure_code)


def summary_of(execution: WorkflowExecution) -> OrderSummary:
    attributes = execution.typed_search_attributes
    return OrderSummary(
        order_id=execution.id,
        # As a read shows it: a closed order never as still under way.
        status=order_status_of(attributes.get(ORDER_STATUS_KEY), execution.status),
        customer_id=attributes.get(CUSTOMER_ID_KEY),
        total_cents=attributes.get(ORDER_TOTAL_CENTS_KEY),
        started_at=execution.start_time,
        closed_at=execution.close_time,
    )


def _timestamp(value: str) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
