"""A small workflow that puts an order's personal data into every kind of
payload: workflow input and result, activity input and result, an activity
failure's message, memo, a query result, an update's argument and result.

The encryption tests use it rather than OrderWorkflow so they check the codec
alone, whatever the saga does next; it takes the saga's own PlaceOrder.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.orders import Address, PaymentDetails, PlaceOrder


@activity.defn(name="codec_probe_ship")
async def ship(address: Address) -> str:
    return f"parcel for {address.name}, {address.line1}, {address.postal_code}"


@activity.defn(name="codec_probe_charge")
async def charge(payment: PaymentDetails) -> str:
    raise ApplicationError(f"card {payment.token} declined", non_retryable=True)


@workflow.defn(name="CodecProbeWorkflow")
class CodecProbeWorkflow:
    def __init__(self) -> None:
        self._address: Address | None = None
        self._note: str | None = None

    @workflow.run
    async def run(self, order: PlaceOrder) -> str:
        self._address = order.shipping_address
        workflow.upsert_memo({"ship_to": order.shipping_address.line1})
        parcel = await workflow.execute_activity(
            ship, order.shipping_address, start_to_close_timeout=timedelta(seconds=10)
        )
        declined = ""
        try:
            await workflow.execute_activity(
                charge,
                order.payment,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as error:
            declined = str(error.cause)
        await workflow.wait_condition(lambda: self._note is not None)
        return f"{parcel}; {declined}; note {self._note}"

    @workflow.query
    def address(self) -> Address | None:
        return self._address

    @workflow.update
    def add_note(self, note: str) -> str:
        self._note = note
        return f"noted: {note}"
