"""A write's answer is rendered once (services.common.idempotency): by pydantic
for the response and the store, where it was the model's JSON dump rendered as
starlette's JSONResponse does. The bytes must be the same, or a replay (which
renders what the store holds) would answer differently from the first time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from starlette.responses import JSONResponse

from services.inventory.domain import ReservationState
from services.inventory.schemas import ReservationPublic, ReservedLinePublic
from services.payments.domain import ChargeState
from services.payments.schemas import ChargePublic
from services.shipping.domain import ShipmentState
from services.shipping.schemas import ShipmentPublic

# Any text: non-ASCII, control characters, quotes, backslashes, U+2028.
TEXT = st.text(max_size=30)
CENTS = st.integers(min_value=0, max_value=2**63 - 1)

ANSWERS = st.one_of(
    st.builds(
        ChargePublic,
        charge_id=TEXT,
        order_id=TEXT,
        customer_id=TEXT,
        amount_cents=CENTS,
        currency=TEXT,
        state=st.sampled_from(ChargeState),
    ),
    st.builds(
        ShipmentPublic,
        shipment_id=TEXT,
        order_id=TEXT,
        state=st.sampled_from(ShipmentState),
        country=TEXT,
    ),
    st.builds(
        ReservationPublic,
        reservation_id=TEXT,
        order_id=TEXT,
        state=st.sampled_from(ReservationState),
        lines=st.lists(
            st.builds(ReservedLinePublic, sku=TEXT, quantity=CENTS, unit_price_cents=CENTS),
            max_size=3,
        ),
        total_cents=CENTS,
        currency=TEXT,
    ),
)


@settings(max_examples=200, deadline=None)
@given(answer=ANSWERS)
def test_pydantic_renders_an_answer_as_the_response_did(answer: BaseModel) -> None:
    rendered = JSONResponse(answer.model_dump(mode="json")).body
    assert answer.model_dump_json().encode("utf-8") == rendered
