"""Free ports for side stacks come from below the kernel's ephemeral range,
where no outgoing connection can take one before its server binds it."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from ordersaga.ports import EPHEMERAL_RANGE_FILE, LOWEST_PORT, free_ports


def range_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ip_local_port_range"
    path.write_text(text)
    return path


def test_ports_come_from_below_the_ephemeral_range_and_are_free(tmp_path: Path) -> None:
    ports = free_ports(20, range_file=range_file(tmp_path, "32768\t60999\n"))

    assert len(set(ports)) == 20
    assert all(32768 - 12_000 <= port < 32768 for port in ports), ports
    for port in ports:  # each is free once handed out
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_the_span_never_reaches_below_the_projects_fixed_ports(tmp_path: Path) -> None:
    ports = free_ports(5, range_file=range_file(tmp_path, "15000 60999"))

    assert all(LOWEST_PORT <= port < 15000 for port in ports), ports


def os_choices() -> range:
    """Where this machine's OS puts a bind to port 0 (its ephemeral range)."""
    try:
        low, high = map(int, EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return range(1, 65536)
    return range(low, high + 1)


def test_without_a_known_range_the_os_chooses(tmp_path: Path) -> None:
    for text in ("", "not ports", "1025 2000"):  # unreadable, or no room below it
        ports = free_ports(3, range_file=range_file(tmp_path, text))
        assert len(set(ports)) == 3 and all(port in os_choices() for port in ports), ports
    missing = free_ports(2, range_file=tmp_path / "missing")
    assert all(port in os_choices() for port in missing), missing


def test_when_the_span_is_all_taken_the_os_chooses(tmp_path: Path) -> None:
    span = range(LOWEST_PORT, LOWEST_PORT + 5)
    with contextlib.ExitStack() as held:
        for port in span:  # whatever this cannot bind is taken already
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            with contextlib.suppress(OSError):
                sock.bind(("127.0.0.1", port))
        ports = free_ports(2, range_file=range_file(tmp_path, str(span.stop)))

    assert all(port in os_choices() for port in ports), ports


def test_one_port_at_a_time_never_repeats_one_already_handed_out(tmp_path: Path) -> None:
    # A span of 20 ports, asked one at a time: a random pick would repeat one.
    tiny = range_file(tmp_path, str(LOWEST_PORT + 20))
    ports = [free_ports(1, range_file=tiny)[0] for _ in range(15)]

    assert len(set(ports)) == 15
