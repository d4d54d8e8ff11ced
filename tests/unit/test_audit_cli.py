"""`ordersaga audit` refusals: one line on stderr, no traceback, and the
documented exit status (2 usage or configuration, 3 unreachable)."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from ordersaga.audit import command
from ordersaga.audit.collect import AuditUnavailable
from ordersaga.audit.command import AuditOptions, run_audit
from ordersaga.audit.report import AuditReport
from ordersaga.audit.rules import Snapshot, StockLevel, check
from ordersaga.runtime.keyring import Keyring
from ordersaga.runtime.settings import Settings
from tests.keys import TEST_CODEC_KEYS
from tests.ports import free_port
from tests.unit.test_cli import assert_refused, run

WITH_KEYS = {"ORDERSAGA_CODEC_KEYS": TEST_CODEC_KEYS}


def nothing_listening() -> dict[str, str]:
    """The keys, and a Temporal address nothing listens on: a refusal that
    should come first shows as an exit 3 (or worse) if it does not."""
    return {**WITH_KEYS, "ORDERSAGA_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}


def assert_refused_in_one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert_refused(result, *fragments)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    # Refused before connecting: nothing was tried.
    assert "unreachable" not in result.stderr


def test_a_since_that_is_no_time_exits_2() -> None:
    assert_refused(run("audit", "--since", "yesterday", env=WITH_KEYS), "--since: expected")


def test_a_since_in_the_future_exits_2() -> None:
    result = run("audit", "--since", "2999-01-01T00:00:00Z", env=WITH_KEYS)

    assert_refused(result, "in the future")


@pytest.mark.parametrize(
    "since",
    [
        "99999999999d",  # was an OverflowError traceback, exit 1
        "1000000d",  # was "date value out of range", exit 1
        "0001-01-01T00:00:00",  # was Temporal's "unable to parse datetime", exit 3
    ],
)
def test_a_since_before_1970_exits_2_in_one_line(since: str) -> None:
    result = run("audit", "--timeout", "20", "--since", since, env=nothing_listening())

    assert_refused_in_one_line(result, "--since: ", "before 1970-01-01")


def test_a_max_open_below_one_minute_exits_2() -> None:
    assert_refused(run("audit", "--max-open-minutes", "0", env=WITH_KEYS), "must be at least 1")


def test_an_unknown_flag_exits_2() -> None:
    assert_refused(run("audit", "--colour", env=WITH_KEYS), "unrecognized arguments")


def test_a_metrics_file_in_no_folder_exits_2(tmp_path: Path) -> None:
    result = run("audit", "--metrics-file", str(tmp_path / "nowhere" / "a.prom"), env=WITH_KEYS)

    assert_refused(result, "--metrics-file: no folder")


def test_a_metrics_file_that_is_a_folder_exits_2_before_the_audit_runs(tmp_path: Path) -> None:
    result = run(
        "audit", "--timeout", "20", "--metrics-file", str(tmp_path), env=nothing_listening()
    )

    assert_refused_in_one_line(result, f"--metrics-file: {tmp_path} is a folder")
    assert list(tmp_path.iterdir()) == []


def writable(folder: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def test_a_metrics_file_in_a_folder_it_cannot_write_exits_2_before_the_audit_runs() -> None:
    # sysfs takes no new files, not even from root (a chmod-ed folder would:
    # these tests may run as root).
    folder = Path("/sys")
    if not folder.is_dir() or writable(folder):
        pytest.skip("needs a folder this user cannot create files in")

    result = run(
        "audit",
        "--timeout",
        "20",
        "--metrics-file",
        str(folder / "ordersaga_audit.prom"),
        env=nothing_listening(),
    )

    assert_refused_in_one_line(result, f"--metrics-file: cannot write in {folder}")


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


# --- the metrics file failing once the audit has run (in process) -------------------


def disk_full(path: Path, text: str) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def audit_without_connecting(
    monkeypatch: pytest.MonkeyPatch, outcome: AuditReport | Exception
) -> None:
    async def audited(*_: object) -> AuditReport:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(command, "_audit", audited)
    monkeypatch.setattr(command, "write_metrics_file", disk_full)


def run_in_process(metrics_file: Path) -> int:
    options = AuditOptions(metrics_file=metrics_file)
    return run_audit(options, cast(Settings, None), cast(Keyring, None))


def test_a_metrics_file_that_cannot_be_written_after_the_audit_exits_3_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = Snapshot(taken_at=datetime.now(UTC), stock=[StockLevel("sku_mug", 7, 3, 1)])
    report = AuditReport(snapshot, check(snapshot), since=None, max_open=timedelta(minutes=15))
    audit_without_connecting(monkeypatch, report)
    metrics = tmp_path / "ordersaga_audit.prom"

    status = run_in_process(metrics)

    out = capsys.readouterr()
    # Not 1: that says discrepancies, and would say it of a clean audit too.
    assert status == 3
    assert "stock_mismatch" in out.out  # the report itself was printed
    assert out.err.count("\n") == 1, out.err
    assert f"--metrics-file: could not write {metrics}: No space left on device" in out.err
    assert "the audit ran: 1 error, 0 warnings" in out.err


def test_a_metrics_file_that_cannot_be_written_after_a_failed_audit_keeps_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    audit_without_connecting(monkeypatch, AuditUnavailable("Temporal at nowhere is unreachable"))
    metrics = tmp_path / "ordersaga_audit.prom"

    status = run_in_process(metrics)

    err = capsys.readouterr().err
    assert status == 3
    assert err.count("\n") == 1, err
    assert "Temporal at nowhere is unreachable" in err
    assert f"could not write {metrics}: No space left on device" in err
