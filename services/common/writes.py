"""What the three services' routes have in common: the saga's idempotent writes,
the actions that undo a step, and the ledger an audit reads.

A write route takes one dependency, `worker_write(...)`, instead of one per
part (caller, unit of work, policy, idempotency key): FastAPI solves each
dependency of each request in turn, and nine of them took about a tenth of a
service request's CPU in a profile (docs/performance.md). It still runs after
the router's own two, authentication and then injected faults, which FastAPI
solves first and hands on from its per-request cache.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, Protocol, TypeVar

from fastapi import APIRouter, Body, Depends, Request, status
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from ordersaga.runtime.fields import StrictRequest
from ordersaga.runtime.query import QUERY_PARAMETERS_CHECKED
from services.common.auth import AuthenticatedCaller, Caller, check_admitted, declare_admitted
from services.common.db import SqlUnitOfWork
from services.common.direct_writes import servable, write_provider
from services.common.domain import Dated
from services.common.errors import FORBIDDEN, UNAUTHORIZED
from services.common.idempotency import (
    IDEMPOTENT_ERRORS,
    IdempotencyKeyHeader,
    IdempotentRequest,
    idempotent_request,
)
from services.common.runtime import runtime_of, unit_of_work
from services.common.schemas import (
    DEFAULT_LEDGER_PAGE,
    AfterQuery,
    ChangedSinceQuery,
    IdPath,
    LimitQuery,
    error_responses,
    ledger_entries,
    next_after,
)

U = TypeVar("U", bound=SqlUnitOfWork)
P = TypeVar("P")
_WORKERS = frozenset({Caller.WORKER})


@dataclass(frozen=True)
class WorkerWrite(Generic[U, P]):
    """An idempotent write by the workers: its unit of work, the service's policy
    and the request's key."""

    uow: U
    policy: P
    idempotency: IdempotentRequest

    async def run(
        self,
        effect: Callable[[U], Awaitable[object]],
        *,
        present: type[BaseModel],
        status_code: int,
    ) -> Response:
        """services.common.idempotency.IdempotentRequest.run, on this write's unit of work."""
        return await self.idempotency.run(
            self.uow, effect, present=present, status_code=status_code
        )


def worker_write(
    uow_factory: Callable[[AsyncEngine], U], policy_kind: type[P]
) -> Callable[..., Awaitable[WorkerWrite[U, P]]]:
    """The dependency of a write route: the workers only (403 for an operator),
    the key required."""

    async def provide(
        request: Request, caller: AuthenticatedCaller, key: IdempotencyKeyHeader = None
    ) -> WorkerWrite[U, P]:
        check_admitted(caller, _WORKERS)
        runtime = runtime_of(request)
        return WorkerWrite(
            uow_factory(runtime.engine),
            runtime.config_of(policy_kind),
            await idempotent_request(request, caller, key),
        )

    return write_provider(declare_admitted(provide, _WORKERS))


class NoFields(StrictRequest):
    """The body of an action: none, `{}` (the workers send that) or `null`. Any field
    is a 422: a refund is always whole, so `{"amount_cents": 1}` must not be
    taken as a partial one and refund everything."""


# Declared so, FastAPI reads a body if there is one and OpenAPI shows it as optional.
ActionBody = Annotated[NoFields | None, Body()]


def add_action_route(
    router: APIRouter,
    path: str,
    *,
    name: str,
    action: Callable[[Any, str], Awaitable[object]],
    write: Any,
    present: type[BaseModel],
    refusals: Sequence[str],
    description: str,
) -> None:
    """`POST {path}` with no fields: `action(unit_of_work, the path's id)` run once
    per key, as the steps' undos (release, refund, cancel) and the commit are.

    `path` names its one id (`/{charge_id}/refund`); the route's parameter takes
    that name, so OpenAPI shows it. `write` is the service's `worker_write`
    dependency (as an Annotated type).
    """
    id_name = path.split("{", 1)[1].split("}", 1)[0]

    async def endpoint(**params: Any) -> Response:
        resource_id: str = params[id_name]
        worker: WorkerWrite[Any, Any] = params["write"]
        return await worker.run(
            lambda tx: action(tx, resource_id), present=present, status_code=status.HTTP_200_OK
        )

    _declare(
        endpoint,
        name,
        [
            (id_name, IdPath, inspect.Parameter.empty),
            ("write", write, inspect.Parameter.empty),
            ("body", ActionBody, None),
        ],
    )
    router.add_api_route(
        path,
        servable(endpoint),
        methods=["POST"],
        response_model=present,
        responses=error_responses(*IDEMPOTENT_ERRORS, *refusals),
        description=description,
    )


def admin_router() -> APIRouter:
    """A router under `/admin`, for a ServiceSpec's `admin_routers`: the app
    factory mounts those behind the admin token."""
    return APIRouter(
        prefix="/admin", tags=["admin"], responses=error_responses(UNAUTHORIZED, FORBIDDEN)
    )


class _Ledger(Protocol):
    async def ledger_page(
        self, *, after: str | None, limit: int, changed_since: Any
    ) -> Sequence[Dated[Any]]: ...


EntryT = TypeVar("EntryT", bound=BaseModel)


def add_ledger_route(
    router: APIRouter,
    uow_factory: Callable[[AsyncEngine], U],
    *,
    name: str,
    ledger: Callable[[U], _Ledger],
    public: type[BaseModel],
    entry: type[EntryT],
    page: type[BaseModel],
    resource_id: Callable[[Any], str],
    description: str,
) -> None:
    """`GET /ledger` on an admin router: every resource with when it was made and
    last changed, a page at a time by id, for a reconciliation audit
    (`ordersaga audit`). `page` has `items` (of `entry`) and `next_after`."""

    async def endpoint(
        *, uow: U, after: str | None, limit: int, changed_since: datetime | None
    ) -> BaseModel:
        async with uow:
            found = await ledger(uow).ledger_page(
                after=after, limit=limit, changed_since=changed_since
            )
        return page(
            items=ledger_entries(found, public, entry),
            next_after=next_after(found, limit, resource_id),
        )

    _declare(
        endpoint,
        name,
        [
            ("uow", Annotated[Any, Depends(unit_of_work(uow_factory))], inspect.Parameter.empty),
            ("after", AfterQuery, None),
            ("limit", LimitQuery, DEFAULT_LEDGER_PAGE),
            ("changed_since", ChangedSinceQuery, None),
        ],
    )
    router.add_api_route(
        "/ledger",
        endpoint,
        methods=["GET"],
        response_model=page,
        dependencies=[QUERY_PARAMETERS_CHECKED],
        description=description,
    )


def _declare(endpoint: Callable[..., Any], name: str, params: list[tuple[str, Any, Any]]) -> None:
    """Name a route function made here and give FastAPI, which reads a route's
    parameters from its signature, the real annotations: the ones written in
    this module are strings (postponed annotations) naming a factory's locals."""
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                param, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default
            )
            for param, kind, default in params
        ]
    )
    endpoint.__name__ = endpoint.__qualname__ = name
