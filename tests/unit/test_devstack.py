"""The dev stack supervisor's pre-flight checks, the commands it runs, and how
it handles a child that fails.

Starting the real stack is tests/e2e/test_devstack.py; these check, fast, what
it would do and what it refuses.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.search_attributes import SEARCH_ATTRIBUTE_TYPES
from ordersaga.binaries import temporal_cli
from ordersaga.devstack import (
    Child,
    ChildFailed,
    ChildSpec,
    Console,
    DevStack,
    DevStackError,
    Probe,
    _run,
    check_ports,
    child_env,
    data_dir_lock,
    http_url,
    port_problem,
    temporal_argv,
)
from ordersaga.runtime.settings import Settings
from tests.ports import free_port


def free_settings(**overrides: Any) -> Settings:
    ports = {
        "temporal_address": f"127.0.0.1:{free_port()}",
        "temporal_ui_port": free_port(),
        "api_port": free_port(),
        "inventory_port": free_port(),
        "payments_port": free_port(),
        "shipping_port": free_port(),
    }
    return Settings(**{**ports, **overrides})


@pytest.fixture
def listening() -> Iterator[int]:
    """A port some other program is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


# --- ports -------------------------------------------------------------------


def test_a_port_someone_listens_on_is_reported_in_use(listening: int) -> None:
    assert port_problem("127.0.0.1", listening) == "already in use"


def test_a_taken_api_port_stops_start_up_naming_port_and_variable(listening: int) -> None:
    with pytest.raises(DevStackError) as caught:
        check_ports(free_settings(api_port=listening))

    message = str(caught.value)
    assert f"port {listening}" in message
    assert "the API" in message
    assert "ORDERSAGA_API_PORT" in message


def test_a_taken_temporal_port_names_the_address_variable(listening: int) -> None:
    with pytest.raises(DevStackError, match="ORDERSAGA_TEMPORAL_ADDRESS"):
        check_ports(free_settings(temporal_address=f"127.0.0.1:{listening}"))


def test_two_processes_on_one_port_is_refused_before_binding_anything() -> None:
    port = free_port()

    with pytest.raises(DevStackError) as caught:
        check_ports(free_settings(inventory_port=port, shipping_port=port))

    assert "ORDERSAGA_INVENTORY_PORT or ORDERSAGA_SHIPPING_PORT" in str(caught.value)


def test_a_port_left_in_time_wait_by_the_last_run_is_free() -> None:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = int(server.getsockname()[1])
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its socket lingers in TIME_WAIT
        client.close()

    assert port_problem("127.0.0.1", port) is None


def test_free_ports_pass() -> None:
    check_ports(free_settings())


# --- the data dir lock ---------------------------------------------------------


def test_a_second_supervisor_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with (
        data_dir_lock(tmp_path),
        pytest.raises(DevStackError, match="in use by another `ordersaga dev`"),
        data_dir_lock(tmp_path),
    ):
        pass

    with data_dir_lock(tmp_path):  # released on exit
        pass


# --- what it runs ----------------------------------------------------------------


def test_temporal_is_started_persistent_on_loopback_with_the_search_attributes(
    tmp_path: Path,
) -> None:
    settings = Settings(temporal_address="127.0.0.1:17233", temporal_ui_port=18233)

    argv = temporal_argv(Path("/bin/temporal"), settings, tmp_path)

    assert argv[:3] == ["/bin/temporal", "server", "start-dev"]
    joined = " ".join(argv)
    assert "--ip 127.0.0.1 --port 17233 --ui-port 18233" in joined
    assert f"--db-filename {tmp_path / 'temporal.sqlite'}" in joined
    assert "--namespace default" in joined
    for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
        assert f"--search-attribute {name}={kind}" in joined


def test_temporal_hands_tasks_to_matching_without_waiting_for_the_default_poll_rate(
    tmp_path: Path,
) -> None:
    argv = temporal_argv(Path("/bin/temporal"), Settings(), tmp_path)

    assert "--dynamic-config-value history.transferProcessorMaxPollRPS=100" in " ".join(argv)


def test_every_flag_passed_to_temporal_exists_in_the_installed_cli(tmp_path: Path) -> None:
    binary = temporal_cli()
    help_text = subprocess.run(
        [str(binary), "server", "start-dev", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    global_options = subprocess.run(
        [str(binary), "options"], capture_output=True, text=True, timeout=30, check=True
    ).stdout

    flags = {arg for arg in temporal_argv(binary, Settings(), tmp_path) if arg.startswith("--")}

    missing = {
        flag for flag in flags if not re.search(rf"{re.escape(flag)}\b", help_text + global_options)
    }
    assert not missing


def test_children_run_in_dev_mode_against_the_supervisors_temporal(tmp_path: Path) -> None:
    settings = Settings(temporal_address="temporal.example:7999")

    env = child_env(settings, tmp_path)

    assert env["ORDERSAGA_DEV_MODE"] == "true"
    assert env["ORDERSAGA_DATA_DIR"] == str(tmp_path)
    assert env["ORDERSAGA_TEMPORAL_ADDRESS"] == "127.0.0.1:7999"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_children_listen_where_the_supervisor_says_and_call_its_own_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A URL left in the developer's shell must not divert the stack's worker.
    monkeypatch.setenv("ORDERSAGA_PAYMENTS_URL", "http://payments.example:9999")
    monkeypatch.setenv("ORDERSAGA_PAYMENTS_CUSTOMER_LIMIT_CENTS", "500")
    settings = Settings(api_port=18000, payments_port=18002, worker_health_port=18010)

    env = child_env(settings, tmp_path)

    assert "ORDERSAGA_PAYMENTS_URL" not in env
    assert Settings().payments_url == "http://payments.example:9999"  # set, yet not passed on
    assert env["ORDERSAGA_API_PORT"] == "18000"
    assert env["ORDERSAGA_PAYMENTS_PORT"] == "18002"
    assert env["ORDERSAGA_WORKER_HEALTH_PORT"] == "18010"
    # Other settings from the shell still reach the children.
    assert env["ORDERSAGA_PAYMENTS_CUSTOMER_LIMIT_CENTS"] == "500"


# --- output --------------------------------------------------------------------


def test_lines_are_prefixed_with_their_process_and_plain_when_not_a_terminal() -> None:
    out = io.StringIO()
    console = Console(["temporal", "api"], stream=out)

    console.line("api", "listening")
    console.say("two\nlines")

    assert out.getvalue().splitlines() == [
        "[api]      listening",
        "[dev]      two",
        "[dev]      lines",
    ]


def test_wildcard_listen_addresses_are_reached_over_loopback() -> None:
    assert http_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert http_url("::", 8000) == "http://[::1]:8000"
    assert http_url("localhost", 8001) == "http://localhost:8001"


# --- children that fail ----------------------------------------------------------

SLEEPER = "import time; time.sleep(60)"


async def ready() -> str | None:
    return None


async def not_yet() -> str | None:
    return "still warming up"


def python_child(
    name: str,
    code: str,
    probe: Probe = not_yet,
    ready_timeout: float = 30,
    stop_timeout: float = 30,
) -> ChildSpec:
    return ChildSpec(
        name,
        [sys.executable, "-c", code],
        probe,
        ready_timeout=ready_timeout,
        stop_timeout=stop_timeout,
    )


async def test_a_child_exiting_during_start_up_fails_it_and_stops_the_stages_before(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    async with httpx.AsyncClient() as http:
        stack = DevStack(Settings(), tmp_path, http)
    stack.console = Console(["first", "second"], stream=out)
    stack.stages = [
        [python_child("first", SLEEPER, probe=ready)],
        [python_child("second", "print('cannot open the database'); raise SystemExit(3)")],
    ]

    code = await _run(stack, asyncio.Event())

    assert code == 1
    output = out.getvalue()
    assert "start-up failed: second exited with code 3 during start-up" in output
    assert "  | cannot open the database" in output
    assert "stopping first" in output
    assert [child.returncode for child in stack.children] == [-signal.SIGTERM, 3]


async def test_a_child_never_ready_fails_start_up_naming_the_last_check() -> None:
    async def broken() -> str | None:
        raise RuntimeError("probe bug")

    child = Child(
        python_child("slow", SLEEPER, probe=broken, ready_timeout=1),
        Console(["slow"], stream=io.StringIO()),
    )
    await child.start(dict(os.environ))
    try:
        # A probe that raises means "not ready yet", never a crash of the supervisor.
        with pytest.raises(
            ChildFailed,
            match=r"^slow was not ready after 1s \(last check: readiness check failed: "
            r"RuntimeError\('probe bug'\)\)$",
        ):
            await child.wait_ready()
    finally:
        await child.stop()


async def test_a_child_ignoring_sigterm_is_killed_after_its_stop_timeout() -> None:
    async def ignoring_sigterm() -> str | None:
        return None if "ignoring SIGTERM" in child.tail else "no handler yet"

    out = io.StringIO()
    child = Child(
        python_child(
            "stubborn",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ignoring SIGTERM', flush=True); time.sleep(60)",
            probe=ignoring_sigterm,
            stop_timeout=1,
        ),
        Console(["stubborn"], stream=out),
    )
    await child.start(dict(os.environ))
    await child.wait_ready()

    await child.stop()

    assert child.returncode == -signal.SIGKILL
    assert "stubborn did not stop within 1s; killing it" in out.getvalue()
    assert f"stubborn stopped with exit code {-signal.SIGKILL}" in out.getvalue()
