"""The replay gate: every committed history replays against the current workflow.

A change to OrderWorkflow that would make an order in flight take a different
path than its history says (a reordered step, a new command without a patch)
fails here, naming the history it breaks, instead of failing orders in
production. `ordersaga histories record` adds a recording of the current code;
`ordersaga histories export` adds histories from a real server.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from temporalio.workflow import NondeterminismError

from ordersaga.histories import RECORDING_MANIFEST, SCENARIO_NAMES
from tests.replay.deliberately_broken_workflow import DeliberatelyReorderedOrderWorkflow
from tests.replay.replayer import (
    HISTORIES_DIR,
    OLDEST_RECORDING,
    history_files,
    history_id,
    load_history,
    replayer,
)

# The paths issue 3 requires the gate to cover, all in its oldest recording.
REQUIRED_PATHS = {
    "happy_path",
    "out_of_stock",
    "payment_declined",
    "undeliverable",
    "transient_retries",
    "cancelled_before_shipping",
    "cancelled_step_in_flight",
    "needs_attention_resolved",
}

HISTORIES = history_files()


def recordings() -> list[Path]:
    return sorted(manifest.parent for manifest in HISTORIES_DIR.rglob(RECORDING_MANIFEST))


def files_listed_in(manifest: Path) -> set[str]:
    return set(re.findall(r"^\| `([^`]+\.json)` \|", manifest.read_text(), re.MULTILINE))


@pytest.mark.parametrize("path", HISTORIES, ids=history_id)
async def test_history_replays_on_current_code(path: Path) -> None:
    result = await replayer().replay_workflow(load_history(path))

    assert result.replay_failure is None


def test_every_recording_holds_every_history_it_lists() -> None:
    assert recordings(), f"no recordings under {HISTORIES_DIR}"
    for recording in recordings():
        listed = files_listed_in(recording / RECORDING_MANIFEST)
        present = {path.name for path in recording.glob("*.json")}
        assert listed, f"{recording.name}/{RECORDING_MANIFEST} lists no histories"
        assert present == listed, f"{recording.name}: files differ from its manifest"


def test_the_gate_covers_every_scenario() -> None:
    oldest = {path.stem for path in OLDEST_RECORDING.glob("*.json")}
    assert oldest >= REQUIRED_PATHS, f"missing: {sorted(REQUIRED_PATHS - oldest)}"
    recorded = {path.stem for recording in recordings() for path in recording.glob("*.json")}
    assert recorded >= set(SCENARIO_NAMES), f"never recorded: {set(SCENARIO_NAMES) - recorded}"


@pytest.mark.parametrize("path", HISTORIES, ids=history_id)
async def test_the_gate_bites_a_reordered_workflow(path: Path) -> None:
    with pytest.raises(NondeterminismError) as caught:
        await replayer(DeliberatelyReorderedOrderWorkflow).replay_workflow(load_history(path))

    # The history scheduled reserve_inventory (as an activity, or, since
    # local-first attempts, as a local activity's marker) where the broken
    # code now charges.
    assert re.search(
        "Nondeterminism error: Activity type of (scheduled event|recorded marker) "
        "'reserve_inventory' does not match activity type of (local )?activity command "
        "'charge_payment'",
        str(caught.value),
    ), str(caught.value)
