"""`ordersaga histories export | record`, run as a user runs them: as processes.

Export is checked against a real dev server with a real order on it, and what
it writes must replay through the gate. Record runs for real, on a dev stack of
its own, for two scenarios. Bad input ends with a one-line message, never a
traceback.
"""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from ordersaga.histories import RECORDING_MANIFEST, history_file_name
from tests.integration.stack import Stack, module_stack
from tests.keys import TEST_CODEC_KEYS
from tests.orders import CUSTOMER_NAME, PAYMENT_TOKEN, STREET, order_body
from tests.ordersaga_cli import clean_env, run_ordersaga
from tests.ports import free_port
from tests.processes import Ran
from tests.replay.replayer import load_history, patch_ids, replayer
from tests.tokens import as_customer, new_customer_id
from workflows.order import CANCEL_HOLDS_NEXT_STEP_PATCH


async def ordersaga(*args: str, within: float = 60) -> Ran:
    # No ORDERSAGA_* from the developer's shell: every setting comes from arguments.
    env = {**clean_env(), "ORDERSAGA_CODEC_KEYS": TEST_CODEC_KEYS}
    return await run_ordersaga(*args, within=within, env=env)


def decoded_payloads(history: Path) -> str:
    """Every payload's JSON text in a history file, one per line."""
    texts = re.findall(r'"data": "([A-Za-z0-9+/=]+)"', history.read_text())
    return "\n".join(base64.b64decode(text).decode(errors="replace") for text in texts)


def entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def assert_refused(ran: Ran, *fragments: str) -> None:
    assert ran.code != 0, ran
    assert "Traceback" not in ran.stderr, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- export --------------------------------------------------------------------


stack = module_stack("export")


@pytest.fixture(scope="module")
async def finished_order(stack: Stack, dev_server_env: WorkflowEnvironment) -> str:
    response = await stack.api.post(
        "/orders", headers=as_customer(new_customer_id()), json=order_body(sku="sku_mug")
    )
    assert response.status_code == 202, response.text
    order_id = str(response.json()["order_id"])
    await stack.temporal.get_workflow_handle(order_id).result()
    return order_id


def server_of(env: WorkflowEnvironment) -> list[str]:
    client = env.client
    return ["--address", client.service_client.config.target_host, "--namespace", client.namespace]


async def export_from(env: WorkflowEnvironment, query: str, out: Path, *more: str) -> Ran:
    """`ordersaga histories export` of what `query` matches on `env`'s server."""
    return await ordersaga(
        "histories", "export", *server_of(env), "--query", query, "--out", str(out), *more
    )


async def test_export_writes_a_history_that_replays(
    finished_order: str, dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    out = tmp_path / "exported"
    ran = await export_from(
        dev_server_env, f'WorkflowType = "OrderWorkflow" AND WorkflowId = "{finished_order}"', out
    )

    assert ran.code == 0, ran.stderr
    run_id = (await dev_server_env.client.get_workflow_handle(finished_order).describe()).run_id
    assert entries(out) == [history_file_name(finished_order, run_id)]
    assert "exported 1 history" in ran.stdout
    exported = next(out.iterdir())
    result = await replayer().replay_workflow(load_history(exported))
    assert result.replay_failure is None
    # Personal data is redacted by default; the history replays all the same.
    payloads = decoded_payloads(exported)
    assert STREET not in payloads and CUSTOMER_NAME not in payloads
    assert "tok_visa" not in payloads and '"country":"GB"' in payloads


async def test_export_can_keep_personal_data(
    finished_order: str, dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ran = await export_from(
        dev_server_env, f'WorkflowId = "{finished_order}"', tmp_path, "--keep-personal-data"
    )

    assert ran.code == 0, ran.stderr
    (exported,) = entries(tmp_path)
    payloads = decoded_payloads(tmp_path / exported)
    assert STREET in payloads and PAYMENT_TOKEN in payloads


async def test_export_with_no_match_writes_nothing(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ran = await export_from(dev_server_env, f'WorkflowId = "ord_{uuid.uuid4().hex}"', tmp_path)

    assert ran.code == 0, ran.stderr
    assert entries(tmp_path) == []
    assert "exported 0 histories" in ran.stdout


async def test_export_refuses_a_bad_query(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ran = await export_from(dev_server_env, "OrderStatus ==== oops", tmp_path)

    assert_refused(ran, "query", "OrderStatus ==== oops")


async def test_export_refuses_an_unreachable_server(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    ran = await ordersaga(
        "histories", "export", "--address", address, "--query", "", "--out", str(tmp_path)
    )

    assert_refused(ran, f"cannot reach Temporal at {address}")


async def test_export_refuses_an_unwritable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    ran = await ordersaga(
        "histories",
        "export",
        "--address",
        f"127.0.0.1:{free_port()}",
        "--query",
        "",
        "--out",
        str(blocker / "out"),
    )

    assert_refused(ran, "cannot write to", str(blocker / "out"))


async def test_export_refuses_a_limit_below_one(tmp_path: Path) -> None:
    ran = await ordersaga(
        "histories", "export", "--query", "", "--out", str(tmp_path), "--limit", "0"
    )

    assert_refused(ran, "--limit")


# --- record --------------------------------------------------------------------


async def test_record_refuses_a_label_that_is_not_a_folder_name(tmp_path: Path) -> None:
    ran = await ordersaga("histories", "record", "--out", str(tmp_path), "--label", "../escape")

    assert_refused(ran, "--label")
    assert entries(tmp_path) == []


async def test_record_refuses_an_unknown_scenario(tmp_path: Path) -> None:
    ran = await ordersaga(
        "histories", "record", "--out", str(tmp_path), "--label", "x", "--scenario", "nope"
    )

    assert_refused(ran, "unknown scenario", "nope")


async def test_record_refuses_to_overwrite_a_recording(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    ran = await ordersaga("histories", "record", "--out", str(tmp_path), "--label", "taken")

    assert_refused(ran, "already exists")


async def test_record_drives_real_scenarios_into_replayable_histories(tmp_path: Path) -> None:
    ran = await ordersaga(
        "histories",
        "record",
        "--out",
        str(tmp_path),
        "--label",
        "smoke",
        "--scenario",
        "payment_declined",
        "--scenario",
        "cancel_decided_before_shipping",
        within=180,
    )

    assert ran.code == 0, ran.stdout + ran.stderr
    recording = tmp_path / "smoke"
    assert entries(recording) == [
        RECORDING_MANIFEST,
        "cancel_decided_before_shipping.json",
        "payment_declined.json",
    ]
    assert "FAILED as expected" in ran.stdout
    assert "CANCELLED as expected" in ran.stdout
    # The scenario holds a cancel's check past the charge, so the next step waited.
    held = recording / "cancel_decided_before_shipping.json"
    assert CANCEL_HOLDS_NEXT_STEP_PATCH in patch_ids(held)
    for history in recording.glob("*.json"):
        result = await replayer().replay_workflow(load_history(history))
        assert result.replay_failure is None
