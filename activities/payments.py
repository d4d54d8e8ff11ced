"""Payment activities: charge the customer, refund the charge."""

from __future__ import annotations

from temporalio import activity

from activities.http import ServiceClient, saga_step
from contracts.activities import ChargePaymentInput, RefundPaymentInput, StepOutcome


class PaymentActivities:
    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    @activity.defn(name="charge_payment")
    async def charge_payment(self, request: ChargePaymentInput) -> StepOutcome:
        with saga_step("charge_payment", request.order_id):
            return await self._client.create(
                "/charges",
                idempotency_key=request.idempotency_key,
                json={
                    "order_id": request.order_id,
                    "customer_id": request.customer_id,
                    "amount_cents": request.amount_cents,
                    "currency": request.currency,
                    "payment_token": request.payment_token,
                },
                id_field="charge_id",
            )

    @activity.defn(name="refund_payment")
    async def refund_payment(self, request: RefundPaymentInput) -> StepOutcome:
        with saga_step("refund_payment", request.order_id):
            return await self._client.undo(
                collection="charges",
                action="refund",
                order_id=request.order_id,
                resource_id=request.charge_id,
                idempotency_key=request.idempotency_key,
                id_field="charge_id",
            )
