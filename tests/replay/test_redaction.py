"""Exported histories lose their personal data and still replay."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ordersaga.histories import (
    REDACTED,
    HistoriesError,
    check_label,
    history_file_name,
    redact_history_json,
)
from tests.replay.replayer import OLDEST_RECORDING, load_history, replayer

# Written by `ordersaga histories record` into every order it places.
RECORDED_PERSONAL_DATA = ("Replay Recorder", "1 Test Street", "Berlin", "10115", "tok_visa")


def payload_texts(history_json: str) -> list[str]:
    texts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "metadata" in node and "data" in node:
                texts.append(base64.b64decode(node["data"]).decode())
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(json.loads(history_json))
    return texts


@pytest.fixture
def recorded() -> str:
    # A charge retried on the payments queue: the token is in the order's input
    # and in the queued charge's input.
    return (OLDEST_RECORDING / "transient_retries.json").read_text()


def test_the_recorded_history_does_hold_personal_data(recorded: str) -> None:
    joined = "\n".join(payload_texts(recorded))
    for value in RECORDED_PERSONAL_DATA:
        assert value in joined


def test_redaction_removes_addresses_and_tokens_but_keeps_the_country(recorded: str) -> None:
    joined = "\n".join(payload_texts(redact_history_json(recorded)))

    for value in RECORDED_PERSONAL_DATA:
        assert value not in joined
    assert f'"line1":"{REDACTED}"' in joined
    assert f'"payment":{{"token":"{REDACTED}"}}' in joined
    assert f'"payment_token":"{REDACTED}"' in joined
    assert '"country":"DE"' in joined
    assert '"customer_id":"cus_replay"' in joined  # an id, not personal data


async def test_a_redacted_history_replays(recorded: str, tmp_path: Path) -> None:
    path = tmp_path / "redacted.json"
    path.write_text(redact_history_json(recorded))

    result = await replayer().replay_workflow(load_history(path))

    assert result.replay_failure is None


def test_history_file_names_are_safe() -> None:
    assert history_file_name("ord_abc", "r1") == "ord_abc__r1.json"
    assert history_file_name("../x/y z", "r1") == ".._x_y_z__r1.json"


@pytest.mark.parametrize("label", ["", "../up", "a/b", ".hidden", "with space"])
def test_labels_must_be_plain_folder_names(label: str) -> None:
    with pytest.raises(HistoriesError, match="--label"):
        check_label(label)


def test_a_plain_label_is_accepted() -> None:
    assert check_label("v0.1.0-a70646f") == "v0.1.0-a70646f"
