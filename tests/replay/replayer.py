"""The replayer of the gate, configured exactly as the workers run workflows."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from ordersaga.runtime.temporal_config import data_converter, temporal_interceptors, workflow_runner
from tests.keys import TEST_KEYRING
from workflows.order import OrderWorkflow

HISTORIES_DIR = Path(__file__).parent / "histories"
# The oldest recording still in the gate: before the undo-all-before-parking
# and catalog-prices patches, so it takes their old paths; the newest takes
# their new ones (docs/changing-workflows.md). Older recordings were retired
# with the patches they needed.
OLDEST_RECORDING = HISTORIES_DIR / "v0.1.0-local-commit"
NEWEST_RECORDING = HISTORIES_DIR / "v0.2.0-catalog-prices"


def history_files() -> list[Path]:
    """Every committed history, of every recorded version and every export."""
    return sorted(HISTORIES_DIR.rglob("*.json"))


def history_id(path: Path) -> str:
    return path.relative_to(HISTORIES_DIR).as_posix()


def load_history(path: Path) -> WorkflowHistory:
    # The workflow id is not part of a history; the file name stands in for it.
    return WorkflowHistory.from_json(path.stem, path.read_text())


def history_events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(path.read_text())["events"]
    return events


def patch_ids(path: Path) -> list[str]:
    """The ids of the `workflow.patched` markers a history recorded."""
    return [marker["id"] for marker in patch_markers(path)]


def patch_markers(path: Path) -> list[dict[str, Any]]:
    """The patch markers a history recorded: {"id": ..., "deprecated": ...} each."""
    markers: list[dict[str, Any]] = []
    for event in history_events(path):
        if event["eventType"] != "EVENT_TYPE_MARKER_RECORDED":
            continue
        details = event["markerRecordedEventAttributes"]["details"]
        for payload in details.get("patch-data", {}).get("payloads", []):
            markers.append(json.loads(base64.b64decode(payload["data"])))
    return markers


def upserted_search_attributes(path: Path) -> set[str]:
    names: set[str] = set()
    for event in history_events(path):
        if event["eventType"] == "EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES":
            upsert = event["upsertWorkflowSearchAttributesEventAttributes"]
            names |= set(upsert["searchAttributes"]["indexedFields"])
    return names


def replayer(workflow: type = OrderWorkflow) -> Replayer:
    """Through the codec, as the workers run, with the tests' key. Committed
    recordings hold plaintext payloads (`histories record` and `export` write
    them decrypted), which the codec passes through."""
    return Replayer(
        workflows=[workflow],
        data_converter=data_converter(TEST_KEYRING),
        interceptors=temporal_interceptors(),
        workflow_runner=workflow_runner(),
    )
