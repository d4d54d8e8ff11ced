"""Shipping rules, free of any database or web framework.

The address is stored, since the goods must reach it, but only the country ever
leaves the service: names and streets stay out of answers and logs.

The functions take a unit of work and do not commit it (see the inventory
domain for why).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from contracts import errors
from contracts.orders import Address
from services.common.domain import (
    DomainError,
    Fences,
    Line,
    OrderResources,
    admit_once,
    locked,
    merge_lines,
    new_id,
)


class AddressUndeliverable(DomainError):
    code = errors.ADDRESS_UNDELIVERABLE


class ShipmentState(StrEnum):
    CREATED = "created"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ShippingPolicy:
    refused_countries: frozenset[str]

    @classmethod
    def refusing(cls, countries: Iterable[str]) -> ShippingPolicy:
        return cls(frozenset(country.strip().upper() for country in countries))


@dataclass
class Shipment:
    shipment_id: str
    order_id: str
    address: Address
    lines: list[Line]
    state: ShipmentState = ShipmentState.CREATED

    @property
    def country(self) -> str:
        return self.address.country

    def cancel(self) -> bool:
        """Mark cancelled; True when it was not cancelled before."""
        if self.state is ShipmentState.CANCELLED:
            return False
        self.state = ShipmentState.CANCELLED
        return True


class ShippingUnitOfWork(Protocol):
    @property
    def shipments(self) -> OrderResources[Shipment]: ...

    @property
    def fences(self) -> Fences: ...


async def create_shipment(
    uow: ShippingUnitOfWork,
    *,
    order_id: str,
    lines: Iterable[Line],
    address: Address,
    policy: ShippingPolicy,
) -> Shipment:
    """Ship the lines, or refuse with ADDRESS_UNDELIVERABLE (or ORDER_FENCED).
    An order ships once: asked again under another key, the same shipment
    gets the one created, and anything else INVALID_STATE."""
    merged = merge_lines(lines)
    created = await admit_once(
        uow.fences,
        uow.shipments,
        order_id,
        kind="shipment",
        same_request=lambda made: (
            made.state is ShipmentState.CREATED and made.address == address and made.lines == merged
        ),
    )
    if created is not None:
        return created
    if address.country in policy.refused_countries:
        raise AddressUndeliverable(f"we do not ship to country {address.country}")
    shipment = Shipment(shipment_id=new_id("shp"), order_id=order_id, address=address, lines=merged)
    await uow.shipments.add(shipment)
    return shipment


async def cancel(uow: ShippingUnitOfWork, shipment_id: str) -> Shipment:
    """Cancel the shipment. Cancelling twice cancels once."""
    shipment = await locked(uow.shipments, shipment_id, "shipment")
    if shipment.cancel():
        await uow.shipments.save_state(shipment)
    return shipment
