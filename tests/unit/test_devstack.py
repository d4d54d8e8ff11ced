"""The dev stack supervisor's pre-flight checks and the commands it runs.

Starting the real stack is tests/e2e/test_devstack.py; these check, fast, what
it would do and what it refuses.
"""

from __future__ import annotations

import io
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.search_attributes import SEARCH_ATTRIBUTE_TYPES
from ordersaga.binaries import temporal_cli
from ordersaga.devstack import (
    Console,
    DevStackError,
    check_ports,
    child_env,
    data_dir_lock,
    http_url,
    port_problem,
    temporal_argv,
)
from ordersaga.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
