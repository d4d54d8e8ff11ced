"""An API whose codec keyring cannot read what the workers wrote (a rotation
done in one step, a wrong key): reads and replays are a coded 503 with one
ERROR line naming the key id, never a 500 with a traceback."""

from __future__ import annotations

import logging

import httpx
import pytest
from temporalio.client import Client

from api.app import create_app
from ordersaga.runtime.keyring import Keyring
from ordersaga.runtime.settings import Settings
from ordersaga.runtime.temporal_config import data_converter
from tests.fakes import FakeDomainActivities
from tests.integration.api.support import (
    NewOrder,
    asgi_client,
    place,
    place_accepted,
    verifier_for_tests,
    wait_for_status,
)
from tests.keys import TEST_KEY_ID

# A keyring that shares no key with the one the workers and the test client use.
FOREIGN_KEYRING = Keyring("k9", {"k9": bytes([9] * 32)})


async def test_an_api_without_the_workers_key_answers_503_and_logs_the_key_id(
    settings: Settings,
    temporal_client: Client,
    fakes: FakeDomainActivities,
    api: httpx.AsyncClient,
    new_order: NewOrder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    order = new_order()
    order_id = await place_accepted(api, order)
    await wait_for_status(api, order_id, "COMPLETED")

    foreign = Client(
        temporal_client.service_client,
        namespace=temporal_client.namespace,
        data_converter=data_converter(FOREIGN_KEYRING),
    )
    app = create_app(settings, client=foreign, verifier=verifier_for_tests())
    with caplog.at_level(logging.INFO):
        async with asgi_client(app) as other_api:
            read = await other_api.get(f"/orders/{order_id}")
            replayed = await place(other_api, order)

    for response in (read, replayed):
        assert response.status_code == 503, response.text
        assert response.json()["detail"]["code"] == "PAYLOAD_UNDECRYPTABLE"
        assert "Retry-After" in response.headers
    assert not [record for record in caplog.records if record.exc_info], "no traceback"
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 2, [record.getMessage() for record in errors]
    assert all("ORDERSAGA_CODEC_KEYS" in record.getMessage() for record in errors)
    # The key the payload names, so the operator knows which one is missing.
    assert all(repr(TEST_KEY_ID) in record.getMessage() for record in errors)
