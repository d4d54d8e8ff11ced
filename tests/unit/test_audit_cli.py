"""`ordersaga audit` refusals: one line on stderr, no traceback, and the
documented exit status (2 usage or configuration, 3 unreachable)."""

from __future__ import annotations

from pathlib import Path

from tests.keys import TEST_CODEC_KEYS
from tests.ports import free_port
from tests.unit.test_cli import assert_refused, run

WITH_KEYS = {"ORDERSAGA_CODEC_KEYS": TEST_CODEC_KEYS}


def test_a_since_that_is_no_time_exits_2() -> None:
    assert_refused(run("audit", "--since", "yesterday", env=WITH_KEYS), "--since: expected")


def test_a_since_in_the_future_exits_2() -> None:
    result = run("audit", "--since", "2999-01-01T00:00:00Z", env=WITH_KEYS)

    assert_refused(result, "in the future")


def test_a_max_open_below_one_minute_exits_2() -> None:
    assert_refused(run("audit", "--max-open-minutes", "0", env=WITH_KEYS), "must be at least 1")


def test_an_unknown_flag_exits_2() -> None:
    assert_refused(run("audit", "--colour", env=WITH_KEYS), "unrecognized arguments")


def test_a_metrics_file_in_no_folder_exits_2(tmp_path: Path) -> None:
    result = run("audit", "--metrics-file", str(tmp_path / "nowhere" / "a.prom"), env=WITH_KEYS)

    assert_refused(result, "--metrics-file: no folder")


def test_without_the_payload_keys_outside_dev_mode_exits_2() -> None:
    assert_refused(run("audit"), "ORDERSAGA_CODEC_KEYS is not set")


def test_temporal_unreachable_exits_3_with_one_line(tmp_path: Path) -> None:
    metrics = tmp_path / "audit.prom"
    address = f"127.0.0.1:{free_port()}"

    result = run(
        "audit",
        "--timeout",
        "20",
        "--metrics-file",
        str(metrics),
        env={**WITH_KEYS, "ORDERSAGA_TEMPORAL_ADDRESS": address},
    )

    assert result.returncode == 3, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"Temporal at {address} is unreachable" in result.stderr
    assert "ordersaga_audit_success 0" in metrics.read_text()
