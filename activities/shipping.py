"""Shipping activities: create the shipment, cancel it."""

from __future__ import annotations

from dataclasses import asdict

from temporalio import activity

from activities.http import ServiceClient, saga_step
from contracts.activities import CancelShipmentInput, CreateShipmentInput, StepOutcome


class ShippingActivities:
    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    @activity.defn(name="create_shipment")
    async def create_shipment(self, request: CreateShipmentInput) -> StepOutcome:
        with saga_step("create_shipment", request.order_id):
            return await self._client.create(
                "/shipments",
                idempotency_key=request.idempotency_key,
                json={
                    "order_id": request.order_id,
                    "lines": [
                        {"sku": line.sku, "quantity": line.quantity} for line in request.lines
                    ],
                    "address": asdict(request.address),
                },
                id_field="shipment_id",
            )

    @activity.defn(name="cancel_shipment")
    async def cancel_shipment(self, request: CancelShipmentInput) -> StepOutcome:
        with saga_step("cancel_shipment", request.order_id):
            return await self._client.undo(
                collection="shipments",
                action="cancel",
                order_id=request.order_id,
                resource_id=request.shipment_id,
                idempotency_key=request.idempotency_key,
                id_field="shipment_id",
            )
