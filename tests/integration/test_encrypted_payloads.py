"""Encrypted payloads on a real Temporal server.

Read straight from the server, without the codec, a history holds none of an
order's personal data, in any kind of payload; through the codec it all reads
back. Keys rotate without stopping orders in flight, and a dropped key fails
loudly, naming itself.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.workflowservice.v1 import QueryWorkflowRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from contracts.orders import Address, OrderLine, PaymentDetails, PlaceOrder
from ordersaga.runtime.codec import (
    ENCODING,
    KEY_ID_KEY,
    EncryptionCodec,
    UnknownKeyError,
    decrypt_history_json,
)
from ordersaga.runtime.keyring import Keyring
from ordersaga.runtime.temporal_config import data_converter, workflow_runner
from tests.integration.codec_workflow import CodecProbeWorkflow, charge, ship
from tests.keys import TEST_KEYRING

NAME = "Ada Lovelace"
LINE1 = "12 St James Sq"
POSTAL_CODE = "SW1Y 4JH"
TOKEN = "tok_visa_4242"
PERSONAL = (NAME, LINE1, POSTAL_CODE, TOKEN)
KEY_A = Keyring("a", {"a": bytes([1] * 32)})
KEY_A_AND_B = Keyring("b", {"b": bytes([2] * 32), "a": bytes([1] * 32)})
KEY_B_ONLY = Keyring("b", {"b": bytes([2] * 32)})
ENCODING_B64 = base64.b64encode(ENCODING).decode()


def an_order() -> PlaceOrder:
    return PlaceOrder(
        order_id=f"ord_codec_{uuid.uuid4().hex[:12]}",
        customer_id="cus_codec",
        items=[OrderLine(sku="sku_mug", quantity=1)],
        currency="EUR",
        payment=PaymentDetails(token=TOKEN),
        shipping_address=Address(
            name=NAME, line1=LINE1, city="London", postal_code=POSTAL_CODE, country="GB"
        ),
    )


def with_keys(plain: Client, keyring: Keyring) -> Client:
    return Client(
        plain.service_client, namespace=plain.namespace, data_converter=data_converter(keyring)
    )


@contextlib.asynccontextmanager
async def probe_worker(client: Client, task_queue: str) -> AsyncIterator[None]:
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[CodecProbeWorkflow],
        activities=[ship, charge],
        workflow_runner=workflow_runner(),
    ):
        yield


async def start(client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
    order = an_order()
    return await client.start_workflow(
        CodecProbeWorkflow.run,
        order,
        id=order.order_id,
        task_queue=task_queue,
        memo={"customer_name": NAME},
    )


async def finish(handle: WorkflowHandle[Any, Any]) -> str:
    note = await handle.execute_update(CodecProbeWorkflow.add_note, f"ring {NAME} at {POSTAL_CODE}")
    assert note == f"noted: ring {NAME} at {POSTAL_CODE}"
    result: str = await handle.result()
    return result


def payload_nodes(node: Any) -> list[dict[str, Any]]:
    """Every Payload in a history's JSON (anything with metadata and data)."""
    found: list[dict[str, Any]] = []
    if isinstance(node, list):
        for item in node:
            found += payload_nodes(item)
    elif isinstance(node, dict):
        if isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
            found.append(node)
        else:
            for child in node.values():
                found += payload_nodes(child)
    return found


def readable_text(history_json: str) -> str:
    """The JSON and every payload's bytes as text: what anyone reading it sees."""
    texts = [history_json]
    for payload in payload_nodes(json.loads(history_json)):
        texts.append(base64.b64decode(payload.get("data", "")).decode(errors="replace"))
    return "\n".join(texts)


def key_ids(history_json: str) -> set[str]:
    return {
        base64.b64decode(payload["metadata"][KEY_ID_KEY]).decode()
        for payload in payload_nodes(json.loads(history_json))
        if payload["metadata"].get("encoding") == ENCODING_B64
    }


async def raw_history(plain: Client, workflow_id: str) -> str:
    return (await plain.get_workflow_handle(workflow_id).fetch_history()).to_json()


async def test_the_server_holds_no_personal_data_and_the_codec_reads_it_all(
    dev_server_env: WorkflowEnvironment,
) -> None:
    plain = dev_server_env.client  # the SDK's default converter: no codec
    encrypted = with_keys(plain, TEST_KEYRING)
    task_queue = f"codec-{uuid.uuid4().hex}"
    async with probe_worker(encrypted, task_queue):
        handle = await start(encrypted, task_queue)
        address = await handle.query(CodecProbeWorkflow.address)
        assert address is not None and address.postal_code == POSTAL_CODE
        raw_query = await plain.workflow_service.query_workflow(
            QueryWorkflowRequest(
                namespace=plain.namespace,
                execution=WorkflowExecution(workflow_id=handle.id),
                query=WorkflowQuery(query_type="address"),
            )
        )
        result = await finish(handle)
    assert TOKEN in result and POSTAL_CODE in result  # the declined card's message too

    (query_payload,) = raw_query.query_result.payloads
    assert query_payload.metadata["encoding"] == ENCODING
    for fragment in PERSONAL:
        assert fragment.encode() not in query_payload.SerializeToString()

    history_json = await raw_history(plain, handle.id)
    text = readable_text(history_json)
    for fragment in PERSONAL:
        assert fragment not in text, fragment
    assert "declined" not in text  # failure messages are encrypted as well
    events = json.loads(history_json)["events"]
    kinds = {event["eventType"] for event in events}
    # Each kind of payload really is in there: failure, update, memo upsert.
    for kind in (
        "EVENT_TYPE_ACTIVITY_TASK_FAILED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED",
        "EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED",
    ):
        assert kind in kinds, kind
    assert key_ids(history_json) == {TEST_KEYRING.current_key_id}
    for payload in payload_nodes(events):
        assert payload["metadata"]["encoding"] == ENCODING_B64, payload

    # The plain client cannot read the result; the codec's client can.
    with pytest.raises(Exception):  # noqa: B017 - the SDK's converter error
        await plain.get_workflow_handle(handle.id).result()
    decrypted = readable_text(decrypt_history_json(history_json, EncryptionCodec(TEST_KEYRING)))
    for fragment in PERSONAL:
        assert fragment in decrypted, fragment
    assert f"card {TOKEN} declined" in decrypted
    description = await encrypted.get_workflow_handle(handle.id).describe()
    assert await description.memo_value("customer_name") == NAME
    assert await description.memo_value("ship_to") == LINE1


async def test_keys_rotate_under_orders_in_flight(dev_server_env: WorkflowEnvironment) -> None:
    plain = dev_server_env.client
    task_queue = f"codec-rotation-{uuid.uuid4().hex}"
    under_a = with_keys(plain, KEY_A)
    async with probe_worker(under_a, task_queue):
        old = await start(under_a, task_queue)
        # Under way (its activities ran), waiting for its update.
        assert await old.query(CodecProbeWorkflow.address) is not None

    # B becomes current, A stays to decrypt; the worker restarts with the new keyring.
    rotated = with_keys(plain, KEY_A_AND_B)
    async with probe_worker(rotated, task_queue):
        old_result = await finish(rotated.get_workflow_handle(old.id))
        new = await start(rotated, task_queue)
        new_result = await finish(new)
    assert POSTAL_CODE in old_result and POSTAL_CODE in new_result

    old_json = await raw_history(plain, old.id)
    new_json = await raw_history(plain, new.id)
    assert key_ids(old_json) == {"a", "b"}
    assert key_ids(new_json) == {"b"}

    replayer = Replayer(
        workflows=[CodecProbeWorkflow],
        data_converter=data_converter(KEY_A_AND_B),
        workflow_runner=workflow_runner(),
    )
    for workflow_id in (old.id, new.id):
        history = await plain.get_workflow_handle(workflow_id).fetch_history()
        assert (await replayer.replay_workflow(history)).replay_failure is None

    # Drop A too early, and the old order's payloads fail loudly, naming A.
    history = await plain.get_workflow_handle(old.id).fetch_history()
    without_a = Replayer(
        workflows=[CodecProbeWorkflow],
        data_converter=data_converter(KEY_B_ONLY),
        workflow_runner=workflow_runner(),
    )
    # The decode fails inside the workflow activation; the replayer raises it
    # either as is or as the failed workflow task that carries it (type named,
    # message encrypted like every failure). Either way nothing replays.
    with pytest.raises((UnknownKeyError, RuntimeError)) as replayed:
        await without_a.replay_workflow(history)
    assert "key id 'a'" in str(replayed.value) or "UnknownKeyError" in str(replayed.value)
    started = history.events[0].workflow_execution_started_event_attributes
    with pytest.raises(UnknownKeyError, match=r"key id 'a'"):
        await data_converter(KEY_B_ONLY).decode(started.input.payloads)


async def test_histories_from_before_encryption_replay_through_the_codec(
    dev_server_env: WorkflowEnvironment,
) -> None:
    # What the replay gate relies on: its committed recordings are plaintext.
    plain = dev_server_env.client
    task_queue = f"codec-plaintext-{uuid.uuid4().hex}"
    async with probe_worker(plain, task_queue):
        handle = await start(plain, task_queue)
        await finish(handle)
    history = await handle.fetch_history()
    assert key_ids(history.to_json()) == set()
    replayer = Replayer(
        workflows=[CodecProbeWorkflow],
        data_converter=data_converter(TEST_KEYRING),
        workflow_runner=workflow_runner(),
    )
    assert (await replayer.replay_workflow(history)).replay_failure is None
