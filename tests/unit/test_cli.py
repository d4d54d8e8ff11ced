"""The `ordersaga` console script, run as a user runs it: as a separate process.

A refused start must exit 2 with a one-line reason naming what to change, and
never show a traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ORDERSAGA = Path(sys.executable).parent / "ordersaga"
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the console script with only the given ORDERSAGA_* variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("ORDERSAGA_")}
    # A command that wrongly gets past its checks would serve forever: the
    # timeout turns that into a failure instead of a hang.
    return subprocess.run(
        [str(ORDERSAGA), *args],
        env={**clean, **(env or {})},
        cwd=cwd or SOURCE_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_console_script_is_installed() -> None:
    assert ORDERSAGA.is_file(), "pip install -e '.[dev]' creates it"


# --- refusals ----------------------------------------------------------------


def test_invalid_environment_exits_2_naming_the_variable() -> None:
    result = run("api", env={"ORDERSAGA_API_PORT": "70000"})

    assert_refused(result, "ORDERSAGA_API_PORT: Input should be less than or equal to 65535")


def test_each_invalid_variable_gets_its_own_line() -> None:
    result = run(
        "worker",
        env={"ORDERSAGA_INVENTORY_PORT": "abc", "ORDERSAGA_TEMPORAL_ADDRESS": "nowhere"},
    )

    assert_refused(result)
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert any(line.startswith("ORDERSAGA_INVENTORY_PORT: ") for line in lines), lines
    assert any(line.startswith("ORDERSAGA_TEMPORAL_ADDRESS: ") for line in lines), lines


def test_dev_refuses_invalid_settings_before_starting_anything(tmp_path: Path) -> None:
    result = run(
        "dev",
        env={"ORDERSAGA_TEMPORAL_UI_PORT": "0", "ORDERSAGA_DATA_DIR": str(tmp_path / "data")},
    )

    assert_refused(result, "ORDERSAGA_TEMPORAL_UI_PORT")
    assert not (tmp_path / "data").exists()


def test_service_refuses_the_dev_admin_token_outside_dev_mode(tmp_path: Path) -> None:
    result = run("service", "inventory", env={"ORDERSAGA_DATA_DIR": str(tmp_path)})

    assert_refused(
        result, "refusing to start the inventory service", "ORDERSAGA_ADMIN_TOKEN", "dev default"
    )


def test_service_refuses_an_empty_admin_token_outside_dev_mode(tmp_path: Path) -> None:
    result = run(
        "service",
        "payments",
        env={"ORDERSAGA_ADMIN_TOKEN": "", "ORDERSAGA_DATA_DIR": str(tmp_path)},
    )

    assert_refused(result, "ORDERSAGA_ADMIN_TOKEN is empty")


def test_service_refuses_to_start_without_a_worker_token_outside_dev_mode(tmp_path: Path) -> None:
    result = run(
        "service",
        "shipping",
        env={
            "ORDERSAGA_ADMIN_TOKEN": "a-secret-admin-token-of-32-chars",
            "ORDERSAGA_DATA_DIR": str(tmp_path),
        },
    )

    assert_refused(result, "refusing to start the shipping service", "ORDERSAGA_WORKER_TOKEN")


def test_service_refuses_a_worker_token_that_is_the_admin_token(tmp_path: Path) -> None:
    result = run(
        "service",
        "payments",
        env={
            "ORDERSAGA_ADMIN_TOKEN": "one-secret-shared-by-both-tokens",
            "ORDERSAGA_WORKER_TOKEN": "one-secret-shared-by-both-tokens",
            "ORDERSAGA_DATA_DIR": str(tmp_path),
        },
    )

    assert_refused(result, "ORDERSAGA_WORKER_TOKEN is the admin token")
    assert "one-secret-shared-by-both-tokens" not in result.stderr + result.stdout


def test_unknown_queue_on_the_command_line_exits_2() -> None:
    result = run("worker", "--queues", "orders,bogus")

    assert_refused(result, "--queues: unknown task queue(s) bogus")


def test_unknown_queue_in_the_environment_exits_2() -> None:
    result = run("worker", env={"ORDERSAGA_WORKER_QUEUES": "billing"})

    assert_refused(result, "ORDERSAGA_WORKER_QUEUES: unknown task queue(s) billing")


def test_unknown_service_exits_2_listing_the_choices() -> None:
    result = run("service", "billing")

    assert_refused(result, "invalid choice: 'billing'", "inventory")


def test_no_command_exits_2_with_usage() -> None:
    result = run()

    assert_refused(result, "usage: ordersaga")


@pytest.mark.parametrize(
    "ttl", ["99999999999999999999", "86401", "0", "-1", "1.5", "an hour", "9" * 5000]
)
def test_token_refuses_a_ttl_outside_a_second_to_a_day_in_one_line(
    tmp_path: Path, ttl: str
) -> None:
    # Found by a tester: --ttl 99999999999999999999 minted a token valid until
    # about 1e20, which the API and the codec server accepted.
    result = run("token", "--operator", "--ttl", ttl, env={"ORDERSAGA_DATA_DIR": str(tmp_path)})

    assert_refused(result, "--ttl must be a whole number of seconds from 1 to 86400")
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not any(tmp_path.iterdir()), "refused before the issuer's key is made"


# --- help and version ----------------------------------------------------------


def test_help_lists_every_command() -> None:
    result = run("--help")

    assert result.returncode == 0, result.stderr
    for command in ("dev", "service", "api", "worker"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), result.stdout


def test_version_names_the_package_version_and_the_checked_out_commit() -> None:
    git = shutil.which("git")
    head = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=SOURCE_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if git
        else None
    )
    if head is None or head.returncode != 0:
        pytest.skip("not running from a git checkout")

    result = run("--version")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ordersaga {version('ordersaga')} (commit {head.stdout.strip()})\n"


def test_version_falls_back_to_the_commit_baked_into_the_image(tmp_path: Path) -> None:
    # No git on PATH, as in the Docker image.
    result = run("--version", env={"PATH": str(tmp_path), "ORDERSAGA_GIT_COMMIT": "abc1234"})

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ordersaga {version('ordersaga')} (commit abc1234)\n"


def test_version_says_unknown_without_git_or_a_baked_commit(tmp_path: Path) -> None:
    result = run("--version", env={"PATH": str(tmp_path)})

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ordersaga {version('ordersaga')} (commit unknown)\n"


def test_version_works_from_any_directory(tmp_path: Path) -> None:
    result = run("--version", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"ordersaga \S+ \(commit \S+\)\n", result.stdout)
