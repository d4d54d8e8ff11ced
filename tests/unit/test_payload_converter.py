"""The payload converter every ordersaga process uses (JSON through pydantic):
it reads what the SDK's default converter wrote and the other way round, for
every type a workflow or activity sends, and refuses a payload of the wrong shape."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, PayloadConverter

from contracts import activities, orders
from ordersaga.runtime import temporal_config
from ordersaga.runtime.temporal_config import data_converter

# Every dataclass that travels as a payload: workflow input and result, query,
# update and signal arguments and results, activity inputs and outcomes.
PAYLOAD_TYPES: list[type[Any]] = [
    orders.PlaceOrder,
    orders.OrderView,
    orders.OrderResult,
    orders.CancelOrder,
    orders.CancelAccepted,
    orders.OperatorAction,
    orders.OperatorActionAccepted,
    activities.ReserveInventoryInput,
    activities.ReleaseInventoryInput,
    activities.CommitReservationInput,
    activities.FindCommittedReservationInput,
    activities.ChargePaymentInput,
    activities.RefundPaymentInput,
    activities.CreateShipmentInput,
    activities.CancelShipmentInput,
    activities.StepOutcome,
]

DEFAULT = DataConverter.default.payload_converter


def ours() -> PayloadConverter:
    # A new instance each time, as the SDK makes one for each workflow run.
    return data_converter(None)._new_payload_converter()


def every_field(hint: Any) -> st.SearchStrategy[Any]:
    """Values of `hint` with every field of every dataclass in it drawn, the ones
    with defaults too (st.from_type would leave those at their defaults)."""
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return st.builds(
            hint, **{each.name: every_field(hints[each.name]) for each in dataclasses.fields(hint)}
        )
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return st.lists(every_field(item), max_size=3)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return st.one_of([every_field(each) for each in typing.get_args(hint)])
    return st.from_type(hint)


values = st.sampled_from(PAYLOAD_TYPES).flatmap(every_field)


@settings(max_examples=300, deadline=None)
@given(values)
def test_it_reads_what_the_default_converter_wrote(value: Any) -> None:
    written = DEFAULT.to_payloads([value])

    assert ours().from_payloads(written, [type(value)]) == [value]


@settings(max_examples=300, deadline=None)
@given(values)
def test_the_default_converter_reads_what_it_wrote(value: Any) -> None:
    written = ours().to_payloads([value])

    assert written[0].metadata["encoding"] == b"json/plain"
    assert DEFAULT.from_payloads(written, [type(value)]) == [value]


def test_without_a_type_it_reads_plain_json_as_the_default_converter_does() -> None:
    written = DEFAULT.to_payloads([{"status": "COMPLETED", "steps": [1, None]}, None, b"raw"])

    assert ours().from_payloads(written) == DEFAULT.from_payloads(written)


def test_a_hint_that_cannot_be_cached_is_still_read() -> None:
    # Annotated metadata that is a list makes the hint unhashable: no shared
    # validator, the contrib converter's own uncached way instead.
    unhashable = typing.Annotated[list[orders.OrderLine], ["lines"]]
    written = DEFAULT.to_payloads([[orders.OrderLine("sku_mug", 2)]])

    assert ours().from_payloads(written, [unhashable]) == [[orders.OrderLine("sku_mug", 2)]]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b'{"resource_id": 5}', activities.StepOutcome),
        (b'{"attempt": 2}', activities.StepOutcome),
        (b'{"order_id": "ord_1", "status": "SHIPPED_TO_MARS"}', orders.OrderResult),
        (b"not json", orders.OrderView),
        (b'["ord_1"]', orders.CancelOrder),
    ],
)
def test_a_payload_of_the_wrong_shape_is_refused(data: bytes, kind: type[Any]) -> None:
    payload = Payload(metadata={"encoding": b"json/plain"}, data=data)

    with pytest.raises(ValidationError):
        ours().from_payloads([payload], [kind])


def test_every_instance_reads_through_the_validators_built_once() -> None:
    value = orders.OrderResult("ord_1", orders.OrderStatus.COMPLETED)
    written = DEFAULT.to_payloads([value])
    ours().from_payloads(written, [orders.OrderResult])
    before = temporal_config._type_adapter.cache_info()

    for _ in range(3):
        assert ours().from_payloads(written, [orders.OrderResult]) == [value]

    after = temporal_config._type_adapter.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (3, 0)
