"""Orders as Temporal sees them: start, query, update, describe, list.

This is the only module that talks to Temporal. It turns the SDK's outcomes
into the API's own errors where their meaning depends on the operation (a
rejected update, an unknown workflow); connectivity failures are left to
propagate and become 503 in api.errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import (
    ApiError,
    IdempotencyKeyReused,
    InvalidPageToken,
    NotNeedsAttention,
    OrderNotFound,
    TemporalUnavailable,
    TooLate,
    WorkersUnavailable,
)
from api.ids import is_safe_id
from contracts import task_queues
from contracts.orders import (
    CANCEL_UPDATE,
    RESOLVE_COMPENSATION_UPDATE,
    RETRY_COMPENSATION_UPDATE,
    STATUS_QUERY,
    TERMINAL_STATUSES,
    WORKFLOW_TYPE,
    CancelAccepted,
    CancelOrder,
    OperatorAction,
    OperatorActionAccepted,
    OrderResult,
    OrderStatus,
    OrderView,
    PlaceOrder,
)
from contracts.search_attributes import CUSTOMER_ID, ORDER_STATUS
from workflows.search_attributes import CUSTOMER_ID_KEY, ORDER_STATUS_KEY, ORDER_TOTAL_CENTS_KEY

log = logging.getLogger(__name__)


FINGERPRINT_MEMO = "request_fingerprint"

# Queries and updates are answered by a worker, not by the server: with every
# worker down the SDK would wait indefinitely. An HTTP client should not.
WORKER_ANSWER_DEADLINE = timedelta(seconds=10)
# A read falls back to the order's last published state after this: reading
# never waits on a worker (a status query waits for any workflow task in flight).
READ_QUERY_DEADLINE = timedelta(seconds=1)
DEFAULT_RPC_TIMEOUT = timedelta(seconds=2)

ResultT = TypeVar("ResultT")


# The failure_code of an order whose workflow was closed in Temporal itself
# (terminated, timed out, failed) before the saga reached a terminal status: the
# saga undid nothing, so neither "completed" nor "failed and undone" is true.
ABANDONED = "ORDER_ABANDONED"
# What a customer is told of it: not the usual "nothing was charged or
# shipped", which may be false here.
PUBLIC_REASON_ABANDONED = (
    "the order was stopped before it could be completed; our team will check "
    "what was charged or shipped"
)
# The failure_code of an order cancelled through Temporal (the Web UI, `temporal
# workflow cancel`) rather than by its customer: the saga undid it as for a
# customer's cancel, but its reason is the workflow's, not the customer's words.
CANCELLED_BY_OPERATOR = "CANCELLED_BY_OPERATOR"


@dataclass(frozen=True)
class OrderRead:
    view: OrderView
    # Read from the order's last published state because no worker answered:
    # its steps and prices are not known, and an open order's status may
    # already have moved on.
    stale: bool


@dataclass(frozen=True)
class OrderPageResult:
    executions: Sequence[WorkflowExecution]
    next_page_token: str | None


class TemporalOrders:
    """rpc_timeout bounds every call that only the server answers; page_token_key
    signs list page tokens (HMAC), so a forged one never reaches Temporal."""

    def __init__(
        self,
        client: Client,
        *,
        page_token_key: bytes,
        rpc_timeout: timedelta = DEFAULT_RPC_TIMEOUT,
    ) -> None:
        self._client = client
        self._page_token_key = page_token_key
        self._rpc_timeout = rpc_timeout

    async def place(self, order: PlaceOrder, *, fingerprint: str) -> None:
        """Start the order's workflow, or accept a replay of the same request.

        The server lets exactly one start per id win (REJECT_DUPLICATE covers
        closed runs, FAIL covers the running one), so two concurrent requests
        with one key cannot both start an order, and no lookup-then-start race
        exists.
        """
        try:
            async with self._server_deadline():
                await self._client.start_workflow(
                    WORKFLOW_TYPE,
                    order,
                    id=order.order_id,
                    task_queue=task_queues.ORDERS,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    memo={FINGERPRINT_MEMO: fingerprint},
                    # The total is unknown until the catalog prices the
                    # reservation; the workflow sets OrderTotalCents then.
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(ORDER_STATUS_KEY, OrderStatus.RECEIVED.value),
                            SearchAttributePair(CUSTOMER_ID_KEY, order.customer_id),
                        ]
                    ),
                    static_summary=order_summary(order),
                    rpc_timeout=self._rpc_timeout,
                )
        except WorkflowAlreadyStartedError:
            original = await self._original_fingerprint(order.order_id)
            if original != fingerprint:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was already used for a different request"
                ) from None
            log.info("replayed order %s for a repeated request", order.order_id)
            return
        log.info("accepted order %s for customer %s", order.order_id, order.customer_id)

    async def accepted_before(self, order_id: str, *, fingerprint: str) -> bool:
        """Whether this very request was accepted before: its order exists, started
        by a request with this fingerprint. Raises IdempotencyKeyReused when the
        order was started by a different request.

        For a request a limit has refused: a retry of an order already accepted
        gets the order, as the contract promises, not the limit's refusal. Only
        refused requests ask, so an order placed within the limits costs no
        look-up.
        """
        try:
            async with self._server_deadline():
                original = await self._stored_fingerprint(order_id)
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        if original != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different request"
            )
        log.info("replayed order %s for a repeated request past a limit", order_id)
        return True

    async def _original_fingerprint(self, order_id: str) -> str | None:
        # NOT_FOUND: removed between our start and this look-up (its retention
        # just expired); a retry will find the id free and start anew.
        with _not_found_as(
            TemporalUnavailable("the earlier order under this key is being removed; retry")
        ):
            return await self._stored_fingerprint(order_id)

    async def _stored_fingerprint(self, order_id: str) -> str | None:
        description = await self._client.get_workflow_handle(order_id).describe(
            rpc_timeout=self._rpc_timeout
        )
        fingerprint = await description.memo_value(FINGERPRINT_MEMO, None, type_hint=str)
        return fingerprint if isinstance(fingerprint, str) else None

    async def open_orders_of(self, customer_id: str) -> int:
        """How many of the customer's orders are still open (visibility: may
        trail by a moment, so a burst can pass the cap by a few; the rate limit
        bounds the burst)."""
        query = visibility_query(status=None, customer_id=customer_id)
        async with self._server_deadline():
            count = await self._client.count_workflows(
                f"{query} AND ExecutionStatus = 'Running'", rpc_timeout=self._rpc_timeout
            )
        return count.count

    async def customer_of(self, order_id: str) -> str | None:
        """Whose order this is (its CustomerId), or OrderNotFound."""
        handle = self._client.get_workflow_handle(order_id)
        with _not_found_as(OrderNotFound(f"no order {order_id}")):
            async with self._server_deadline():
                description = await handle.describe(rpc_timeout=self._rpc_timeout)
        return description.typed_search_attributes.get(CUSTOMER_ID_KEY)

    async def read(self, order_id: str, *, reader: str | None = None) -> OrderRead:
        """The order, read without depending on a worker being up.

        The server alone answers describe: it names the order's customer (a
        customer other than `reader` gets OrderNotFound before anything else is
        read) and whether it is closed. An order the saga finished is read from
        its result, where the workflow leaves its final view. Otherwise it is
        asked through the status query: an open one unless a worker is running
        one of its workflow tasks (a query would wait for that task, as long as
        a slow local attempt holds it); a closed one without a result
        (cancelled or terminated through Temporal) is answered by a worker
        replaying its history. Then, or when no worker answers within
        READ_QUERY_DEADLINE, it is read from what the workflow last published
        (its search attributes) and its input, marked stale: its steps are not
        known there.

        A closed order always shows a terminal status (closed_view).
        """
        handle = self._client.get_workflow_handle(order_id, result_type=OrderResult)
        with _not_found_as(OrderNotFound(f"no order {order_id}")):
            async with self._server_deadline():
                description = await handle.describe(rpc_timeout=self._rpc_timeout)
        if (
            reader is not None
            and description.typed_search_attributes.get(CUSTOMER_ID_KEY) != reader
        ):
            raise OrderNotFound(f"no order {order_id}")
        execution = description.status
        view: OrderView | None = None
        if execution is WorkflowExecutionStatus.COMPLETED:
            async with self._server_deadline():
                result = await handle.result(rpc_timeout=self._rpc_timeout)
            view = result.view
        if view is None and execution is WorkflowExecutionStatus.RUNNING:
            if _task_in_flight(description):
                log.debug("a workflow task is in flight; reading the last published state")
            else:
                view = await self._queried_view(handle)
        elif view is None:
            # A closed execution keeps no result when it was cancelled or
            # terminated through Temporal; a worker can still replay its
            # history and answer the query with the steps as they ended.
            view = await self._queried_view(handle)
        stale = view is None
        if view is None:
            view = await self._published_state(handle, description)
        return OrderRead(closed_view(view, description), stale=stale)

    async def _queried_view(self, handle: WorkflowHandle[Any, Any]) -> OrderView | None:
        """The status query's answer, or None when no worker gave one in time."""
        try:
            async with asyncio.timeout(READ_QUERY_DEADLINE.total_seconds()):
                view: OrderView = await handle.query(
                    STATUS_QUERY, result_type=OrderView, rpc_timeout=READ_QUERY_DEADLINE
                )
            return view
        except (TimeoutError, RPCTimeoutOrCancelledError, WorkflowQueryFailedError) as err:
            # No worker answered in time, or the query failed in the workflow.
            log.info(
                "no worker answered the status query in time (%s); "
                "reading the last published state",
                type(err).__name__,
            )
        except RPCError as err:
            # The server refuses the query when no worker can answer it: a
            # workflow task failing (its worker was killed mid-task) is
            # FAILED_PRECONDITION, as is a queue no poller has been seen on.
            # Neither means the order is unreadable.
            if err.status is not RPCStatusCode.FAILED_PRECONDITION:
                raise
            log.info(
                "the status query was refused (%s); reading the last published state",
                err.message,
            )
        return None

    async def _published_state(
        self, handle: WorkflowHandle[Any, Any], description: WorkflowExecutionDescription
    ) -> OrderView:
        """What Temporal keeps for the order without a worker: the status, customer
        and total the workflow last published as search attributes, and the
        items and currency of its input. Its steps are not known there."""
        attributes = description.typed_search_attributes
        placed: PlaceOrder | None = None
        async with self._server_deadline():
            async for event in handle.fetch_history_events(
                page_size=1, rpc_timeout=self._rpc_timeout
            ):
                started = event.workflow_execution_started_event_attributes
                (placed,) = await self._client.data_converter.decode(
                    started.input.payloads, [PlaceOrder]
                )
                break
        if placed is None:
            raise OrderNotFound(f"no order {handle.id}")
        return OrderView(
            order_id=handle.id,
            status=_known_status(attributes.get(ORDER_STATUS_KEY)) or OrderStatus.RECEIVED,
            customer_id=placed.customer_id,
            items=placed.items,
            total_cents=attributes.get(ORDER_TOTAL_CENTS_KEY),
            currency=placed.currency,
            created_at=description.start_time.isoformat() if description.start_time else "",
            updated_at=description.close_time.isoformat() if description.close_time else "",
        )

    async def page(
        self,
        *,
        status: OrderStatus | None,
        customer_id: str | None,
        page_size: int,
        page_token: str | None,
    ) -> OrderPageResult:
        """One page of orders from visibility: one RPC, no query per order."""
        query = visibility_query(status=status, customer_id=customer_id)
        key = self._page_token_key
        iterator = self._client.list_workflows(
            query,
            page_size=page_size,
            next_page_token=decode_page_token(page_token, query, key) if page_token else None,
            rpc_timeout=self._rpc_timeout,
        )
        # One page, one RPC: the iterator's own paging would read them all.
        async with self._server_deadline():
            await iterator.fetch_next_page()
        next_token = iterator.next_page_token
        return OrderPageResult(
            executions=iterator.current_page or [],
            next_page_token=encode_page_token(next_token, query, key) if next_token else None,
        )

    @contextlib.asynccontextmanager
    async def _server_deadline(self) -> AsyncIterator[None]:
        """A bound on a call the server alone answers, connecting included: a
        lazily connected client's first call may otherwise wait on connection
        retries far longer than its rpc_timeout."""
        try:
            async with asyncio.timeout(self._rpc_timeout.total_seconds() + 0.5):
                yield
        except (TimeoutError, RPCTimeoutOrCancelledError) as err:
            raise TemporalUnavailable(
                "Temporal did not answer in time; retry later with the same Idempotency-Key"
            ) from err

    async def cancel(self, order_id: str, request: CancelOrder) -> CancelAccepted:
        return await self._update(
            order_id, CANCEL_UPDATE, request, CancelAccepted, rejected_as=TooLate
        )

    async def retry_compensation(
        self, order_id: str, action: OperatorAction
    ) -> OperatorActionAccepted:
        return await self._operator_decision(order_id, RETRY_COMPENSATION_UPDATE, action)

    async def resolve_compensation(
        self, order_id: str, action: OperatorAction
    ) -> OperatorActionAccepted:
        return await self._operator_decision(order_id, RESOLVE_COMPENSATION_UPDATE, action)

    async def _operator_decision(
        self, order_id: str, update: str, action: OperatorAction
    ) -> OperatorActionAccepted:
        # The workflow refuses either decision for one reason: the order is
        # not waiting for an operator.
        return await self._update(
            order_id, update, action, OperatorActionAccepted, rejected_as=NotNeedsAttention
        )

    async def _update(
        self,
        order_id: str,
        update: str,
        arg: object,
        result_type: type[ResultT],
        *,
        rejected_as: type[ApiError],
    ) -> ResultT:
        handle = self._client.get_workflow_handle(order_id)
        try:
            async with _worker_deadline():
                result: ResultT = await handle.execute_update(update, arg, result_type=result_type)
                return result
        except WorkflowUpdateFailedError as err:
            # A validator that raises rejects the update; the SDK hands its
            # exception back as the cause, an ApplicationError whose type is
            # the exception's class name ("ValueError") and whose message is
            # the workflow's reason.
            cause = err.cause
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise rejected_as(reason) from err
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            # NOT_FOUND means either "no such workflow" or "workflow execution
            # already completed"; only a describe tells which.
            closed_status = await self._closed_order_status(order_id)
            raise rejected_as(f"the order is closed ({closed_status})") from err

    async def _closed_order_status(self, order_id: str) -> str:
        handle = self._client.get_workflow_handle(order_id)
        with _not_found_as(OrderNotFound(f"no order {order_id}")):
            description = await handle.describe(rpc_timeout=self._rpc_timeout)
        published = description.typed_search_attributes.get(ORDER_STATUS_KEY)
        order_status = order_status_of(published, description.status)
        return order_status.value if order_status else "unknown"


def _known_status(published: str | None) -> OrderStatus | None:
    # A status this API version does not know counts as none published, rather
    # than failing the read or the whole page of a listing.
    try:
        return OrderStatus(published) if published else None
    except ValueError:
        return None


def order_status_of(
    published: str | None, execution: WorkflowExecutionStatus | None
) -> OrderStatus | None:
    """The order's status from what Temporal keeps without a worker: the
    OrderStatus the workflow last published, and its execution's status.

    An open order is what it published (None if nothing known). A closed one is
    never shown as still under way: only a terminal status it published stands;
    otherwise it was closed through Temporal before the saga finished, and is
    CANCELLED if it was cancelled there, else FAILED (terminated, timed out or
    failed: abandoned, see closed_view). visibility_query filters by exactly
    this rule, so a listing and a read agree.
    """
    status = _known_status(published)
    if execution is None or execution is WorkflowExecutionStatus.RUNNING:
        return status
    if status is not None and status.is_terminal:
        return status
    if execution is WorkflowExecutionStatus.CANCELED:
        return OrderStatus.CANCELLED
    return OrderStatus.FAILED


def closed_view(view: OrderView, description: WorkflowExecutionDescription) -> OrderView:
    """The view of an order whose execution closed through Temporal, as that
    end means for it (order_status_of); any other view as it is.

    Cancelled through Temporal, the workflow unwinds as for a customer's
    cancel: CANCELLED, with failure_code CANCELLED_BY_OPERATOR. Terminated,
    timed out or failed before the saga finished, it stopped where it was and
    undoes nothing further: FAILED with failure_code ABANDONED, the steps still
    showing what took effect, the reason saying what happened for operators.
    """
    status = order_status_of(view.status.value, description.status)
    if description.status is WorkflowExecutionStatus.CANCELED and status is OrderStatus.CANCELLED:
        return replace(view, status=status, failure_code=CANCELLED_BY_OPERATOR)
    if status is None or status is view.status:
        return view
    how = _CLOSED_HOW.get(description.status, "closed")
    reason = (
        f"the order's workflow was {how} in Temporal while {view.status.value}: "
        "the saga stopped there and undoes nothing further; settle by hand what "
        "its steps show in effect (`ordersaga audit` reports it as "
        "workflow_closed_abnormally)"
    )
    if view.failure_reason:
        reason = f"{reason}. Before that: {view.failure_reason}"
    closed_at = description.close_time
    return replace(
        view,
        status=status,
        failure_code=ABANDONED,
        failure_reason=reason,
        # When it stopped: the workflow's own clock stopped at its last step.
        updated_at=closed_at.isoformat() if closed_at else view.updated_at,
    )


_CLOSED_HOW: dict[WorkflowExecutionStatus | None, str] = {
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
    WorkflowExecutionStatus.FAILED: "failed",
}


def visibility_query(*, status: OrderStatus | None, customer_id: str | None) -> str:
    """A visibility filter from validated values only.

    Always narrowed to order workflows, so other workflows in the namespace
    never show up as orders. Values are enum members or match the safe id
    charset (no quotes), and are checked again here so that no future caller
    can splice text into the query.
    """
    clauses = [f"WorkflowType = '{WORKFLOW_TYPE}'"]
    if status is not None:
        clauses.append(_status_clause(OrderStatus(status)))
    if customer_id is not None:
        if not is_safe_id(customer_id):
            raise ValueError("customer_id is not a safe identifier")
        clauses.append(f"{CUSTOMER_ID} = '{customer_id}'")
    return " AND ".join(clauses)


def _status_clause(status: OrderStatus) -> str:
    """Orders that order_status_of shows as `status`: the published status of
    an open order; a terminal one as published, or what the end of an
    execution closed through Temporal means for it."""
    published = f"{ORDER_STATUS} = '{status.value}'"
    if not status.is_terminal:
        return f"{published} AND ExecutionStatus = 'Running'"
    if status is OrderStatus.CANCELLED:
        closed_as = "ExecutionStatus = 'Canceled'"
    elif status is OrderStatus.FAILED:
        closed_as = "ExecutionStatus NOT IN ('Running', 'Canceled')"
    else:
        return published  # only the saga completes an order
    terminal = ", ".join(f"'{each.value}'" for each in sorted(TERMINAL_STATUSES))
    no_terminal_status = f"({ORDER_STATUS} IS NULL OR {ORDER_STATUS} NOT IN ({terminal}))"
    return f"({published} OR ({closed_as} AND {no_terminal_status}))"


# Page tokens are Temporal's own, wrapped with an HMAC under the API's key and
# bound to the filter they were issued for (which, for a customer, names the
# customer). The server does not validate tokens itself (a foreign one fails as
# an internal error, which the SDK then retries for seconds), so a forged,
# garbled, truncated or cross-filter token is refused here, fast, as a 400.
_PAGE_TOKEN_CHECK_BYTES = 16


def _page_token_check(token: bytes, query: str, key: bytes) -> bytes:
    mac = hmac.new(key, query.encode() + b"\0" + token, hashlib.sha256)
    return mac.digest()[:_PAGE_TOKEN_CHECK_BYTES]


def encode_page_token(token: bytes, query: str, key: bytes) -> str:
    wrapped = _page_token_check(token, query, key) + token
    return base64.urlsafe_b64encode(wrapped).decode("ascii").rstrip("=")


def decode_page_token(text: str, query: str, key: bytes) -> bytes:
    invalid = InvalidPageToken("next_page_token is not one this API issued for these filters")
    try:
        # validate=True: the lenient default silently drops foreign characters.
        wrapped = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    # binascii.Error (bad base64) is a ValueError, as is non-ASCII text.
    except ValueError as err:
        raise invalid from err
    check, token = wrapped[:_PAGE_TOKEN_CHECK_BYTES], wrapped[_PAGE_TOKEN_CHECK_BYTES:]
    if not token or not hmac.compare_digest(check, _page_token_check(token, query, key)):
        raise invalid
    return token


def order_summary(order: PlaceOrder) -> str:
    """What the Web UI shows for the workflow. Counts only: the address and the
    card token never leave the workflow input, and the price is not known
    until the catalog prices the reservation."""
    units = order.unit_count
    return f"{units} item{'s' if units != 1 else ''}, customer {order.customer_id}"


@contextlib.contextmanager
def _not_found_as(error: ApiError) -> Iterator[None]:
    try:
        yield
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise error from err
        raise


@contextlib.asynccontextmanager
async def _worker_deadline() -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(WORKER_ANSWER_DEADLINE.total_seconds()):
            yield
    # The SDK turns the cancellation of an update call into its own
    # RPCTimeoutOrCancelledError, so the deadline surfaces as either.
    except (TimeoutError, RPCTimeoutOrCancelledError) as err:
        # Temporal keeps the request for the order's next workflow task, so it
        # can still take effect once a worker is back: say so. Repeating it is
        # safe (a second cancel changes nothing) and returns its outcome.
        raise WorkersUnavailable(
            "no worker answered in time; the request may still take effect when one "
            "does, and repeating it is safe: retry later to learn its outcome"
        ) from err


def _task_in_flight(description: WorkflowExecutionDescription) -> bool:
    """Whether a worker is running one of the order's workflow tasks right now."""
    pending = description.raw_description.pending_workflow_task
    return pending.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED
