"""Inventory activities: reserve stock, release it, commit it when the order ships."""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.http import ServiceClient, attempt_number, saga_step
from contracts.activities import (
    CommitReservationInput,
    FindCommittedReservationInput,
    ReleaseInventoryInput,
    ReserveInventoryInput,
    StepOutcome,
)
from contracts.orders import PricedLine


class InventoryActivities:
    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    @activity.defn(name="reserve_inventory")
    async def reserve_inventory(self, request: ReserveInventoryInput) -> StepOutcome:
        """Reserve at the catalog's prices; the outcome carries the priced lines
        and their total, which is what the order is charged."""
        with saga_step("reserve_inventory", request.order_id):
            body: dict[str, Any] = {
                "order_id": request.order_id,
                "lines": [{"sku": line.sku, "quantity": line.quantity} for line in request.lines],
                "currency": request.currency,
            }
            if request.expected_total_cents is not None:
                body["expected_total_cents"] = request.expected_total_cents
            reserved = await self._client.create_json(
                "/reservations", idempotency_key=request.idempotency_key, json=body
            )
            return StepOutcome(
                resource_id=str(reserved["reservation_id"]),
                attempt=attempt_number(),
                priced_lines=[
                    PricedLine(
                        sku=str(line["sku"]),
                        quantity=int(line["quantity"]),
                        unit_price_cents=int(line["unit_price_cents"]),
                    )
                    for line in reserved["lines"]
                ],
                total_cents=int(reserved["total_cents"]),
                currency=str(reserved["currency"]),
            )

    @activity.defn(name="release_inventory")
    async def release_inventory(self, request: ReleaseInventoryInput) -> StepOutcome:
        with saga_step("release_inventory", request.order_id):
            return await self._client.undo(
                collection="reservations",
                action="release",
                order_id=request.order_id,
                resource_id=request.reservation_id,
                idempotency_key=request.idempotency_key,
                id_field="reservation_id",
            )

    @activity.defn(name="commit_reservation")
    async def commit_reservation(self, request: CommitReservationInput) -> StepOutcome:
        with saga_step("commit_reservation", request.order_id):
            return await self._client.act(
                "reservations",
                request.reservation_id,
                "commit",
                idempotency_key=request.idempotency_key,
            )

    @activity.defn(name="find_committed_reservation")
    async def find_committed_reservation(
        self, request: FindCommittedReservationInput
    ) -> str | None:
        """The order's committed reservation, or None: has its stock left the warehouse?"""
        with saga_step("find_committed_reservation", request.order_id):
            for reservation in await self._client.list_for_order("reservations", request.order_id):
                if reservation["state"] == "committed":
                    return str(reservation["reservation_id"])
            return None
