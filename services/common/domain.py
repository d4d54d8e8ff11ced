"""Building blocks for the domain layers: errors, lines of goods and ids.

Plain Python only. Domain code raises DomainError subclasses and never thinks
about HTTP; services.common.errors decides which status each code answers with.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import ClassVar, Generic, Protocol, TypeVar

from contracts import errors


class DomainError(Exception):
    """A refusal the caller can act on. `code` is a stable contracts.errors code."""

    code: ClassVar[str]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    code = errors.NOT_FOUND


class InvalidState(DomainError):
    code = errors.INVALID_STATE


class OrderFenced(DomainError):
    code = errors.ORDER_FENCED


class Admission(Enum):
    """What an order's gate says to a forward request."""

    # The order's compensation has run here: refused.
    FENCED = "fenced"
    # No forward request of the order has committed here: nothing is made yet.
    FIRST = "first"
    # One has: what it made may be there (admit_once looks).
    AFTER_ANOTHER = "after_another"


class Fences(Protocol):
    """Which orders have given up on this service (services.common.fences)."""

    async def admit(self, order_id: str, *, passed_before: bool = False) -> Admission:
        """Let a forward request for the order through, and keep the order from
        being fenced until the unit of work ends (unless it is FENCED).

        `passed_before`: the caller knows a forward request of the order has
        passed the gate here before (it holds what one made), so the gate can
        look for the order's row first. The answer is the same either way.
        """
        ...

    async def fence(self, order_id: str) -> datetime:
        """Fence the order for good; when it was first fenced."""
        ...


# What any forward request (a reservation, charge or shipment) may be refused
# with besides its own refusals: by `admit_once`.
FORWARD_REFUSALS = (errors.ORDER_FENCED, errors.INVALID_STATE)


async def admit(fences: Fences, order_id: str, *, passed_before: bool = False) -> Admission:
    """The gate of every forward request: refuse with ORDER_FENCED once the
    order's compensation has run here.

    Call it first, in the unit of work that makes the effect: the effect then
    commits before any fence for the order can, so the compensation (which
    fences first and looks the order's resources up after) finds it.
    `passed_before` as in `Fences.admit`.
    """
    admission = await fences.admit(order_id, passed_before=passed_before)
    if admission is Admission.FENCED:
        raise OrderFenced(
            f"order {order_id} has given up on this service (its compensation has run); "
            "this request took no effect"
        )
    return admission


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int


def merge_lines(lines: Iterable[Line]) -> list[Line]:
    """One line per sku, sorted by sku.

    The sort is what keeps concurrent multi-line reservations from deadlocking
    on PostgreSQL: every transaction locks product rows in the same order.
    """
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.sku] = totals.get(line.sku, 0) + line.quantity
    return [Line(sku, quantity) for sku, quantity in sorted(totals.items())]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


ResourceT = TypeVar("ResourceT")


@dataclass(frozen=True)
class Dated(Generic[ResourceT]):
    """A resource with when it was made and last changed (UTC): a ledger entry."""

    resource: ResourceT
    created_at: datetime
    updated_at: datetime


class OrderResources(Protocol[ResourceT]):
    """What a service makes for orders (reservations, charges, shipments), each
    with an id, an order id and a state."""

    async def add(self, resource: ResourceT) -> None: ...

    async def lock(self, resource_id: str) -> ResourceT | None:
        """Load it and keep concurrent changes out until the unit of work ends."""
        ...

    async def save_state(self, resource: ResourceT) -> None: ...

    async def for_order(self, order_id: str) -> list[ResourceT]: ...

    async def ledger_page(
        self, *, after: str | None, limit: int, changed_since: datetime | None
    ) -> list[Dated[ResourceT]]:
        """Up to `limit` resources by id, after the id `after`, changed at or
        after `changed_since`: every one, a page at a time, for an audit."""
        ...


async def locked(resources: OrderResources[ResourceT], resource_id: str, kind: str) -> ResourceT:
    """The resource, locked for change; NotFound (naming the kind) when there is none."""
    resource = await resources.lock(resource_id)
    if resource is None:
        raise NotFound(f"no {kind} {resource_id}")
    return resource


async def admit_once(
    fences: Fences,
    resources: OrderResources[ResourceT],
    order_id: str,
    *,
    kind: str,
    same_request: Callable[[ResourceT], bool],
) -> ResourceT | None:
    """The gate of a forward request (`admit`), then what this service already
    made for the order (None when nothing): an order gets one reservation, one
    charge, one shipment here, whatever key asks for another.

    The saga asks under one key per order and step, and the key makes a retry
    a replay. This guards against a caller asking again under another key: a
    worker build that changed how keys are made, while orders retry a step
    (replay tests compare commands, not activity inputs, so they would not
    see it). The same request, for a resource still in force, gets the one
    made; anything else is refused with INVALID_STATE, never made twice.

    The order's gate row serialises the order's forward requests, so two of
    them never both find nothing; and the first one (the saga's first attempt,
    the common case) has nothing to look up. Every request that commits a
    resource passes the gate in the same transaction, so a gate that has never
    let a request commit means nothing was made here (but for orders older
    than the gates, migration 0003).
    """
    if await admit(fences, order_id) is Admission.FIRST:
        return None
    made = await resources.for_order(order_id)
    for each in made:
        if same_request(each):
            return each
    if made:
        raise InvalidState(
            f"order {order_id} already has a {kind} here, made by another request "
            "or no longer in force; an order gets one"
        )
    return None
