"""Dependencies the routes declare through Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request
from temporalio.client import Client

from api.errors import (
    IdempotencyKeyInvalid,
    OrderNotFound,
    TemporalUnavailable,
)
from api.ids import (
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    IDEMPOTENCY_KEY_PATTERN,
    idempotency_key_problem,
    is_order_id,
)
from api.limits import OpenOrderCap, OrderRateLimit
from api.metrics import ApiMetrics
from api.temporal_orders import TemporalOrders
from ordersaga.runtime.logging import bind_log_fields


# Every dependency here is `async def` although none awaits anything: FastAPI
# runs a plain `def` dependency in its thread pool, a thread hand-off per
# dependency per request.
async def get_temporal_client(request: Request) -> Client:
    client: Client | None = getattr(request.app.state, "temporal_client", None)
    if client is None:
        # Only before start-up finished (or when the lifespan never ran).
        raise TemporalUnavailable("the API has no Temporal client yet; retry later")
    return client


TemporalClientDep = Annotated[Client, Depends(get_temporal_client)]


async def get_orders(request: Request, *, client: TemporalClientDep) -> TemporalOrders:
    state = request.app.state
    return TemporalOrders(
        client, page_token_key=state.page_token_key, rpc_timeout=state.rpc_timeout
    )


OrdersDep = Annotated[TemporalOrders, Depends(get_orders)]


async def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]


async def get_order_rate_limit(request: Request) -> OrderRateLimit:
    limit: OrderRateLimit = request.app.state.order_rate_limit
    return limit


OrderRateLimitDep = Annotated[OrderRateLimit, Depends(get_order_rate_limit)]


async def get_open_order_cap(request: Request) -> OpenOrderCap:
    cap: OpenOrderCap = request.app.state.open_order_cap
    return cap


OpenOrderCapDep = Annotated[OpenOrderCap, Depends(get_open_order_cap)]


async def idempotency_key(
    *,
    key: Annotated[
        str,
        Header(
            alias=IDEMPOTENCY_KEY_HEADER,
            min_length=1,
            max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description=(
                f"1-{IDEMPOTENCY_KEY_MAX_LENGTH} visible ASCII characters, unique per "
                "order attempt of a customer. The same key and body again return the "
                "same order; the same key with another body is refused. Missing or "
                "malformed: 400."
            ),
        ),
    ],
) -> str:
    # Declared required with its pattern, so the OpenAPI document says what is
    # checked; api.errors turns a failed check into our 400 with a reason.
    problem = idempotency_key_problem(key)
    if problem is not None:
        raise IdempotencyKeyInvalid(problem)
    return key


IdempotencyKeyDep = Annotated[str, Depends(idempotency_key)]


async def order_id_path(
    *, order_id: Annotated[str, Path(description="An id returned by POST /orders")]
) -> str:
    # Anything that cannot be an order id is simply not found: it never
    # reaches Temporal, and a malformed id is not a client "validation" matter.
    if not is_order_id(order_id):
        raise OrderNotFound(f"no order {order_id[:80]!r}")
    bind_log_fields(order_id=order_id, workflow_id=order_id)
    return order_id


OrderIdDep = Annotated[str, Depends(order_id_path)]
