"""Free ports for side stacks come from below the kernel's ephemeral range,
where no outgoing connection can take one before its server binds it."""

from __future__ import annotations

import socket
from pathlib import Path

from ordersaga.ports import LOWEST_PORT, free_ports


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


def test_without_a_known_range_the_os_chooses(tmp_path: Path) -> None:
    for text in ("", "not ports", "1025 2000"):  # unreadable, or no room below it
        ports = free_ports(3, range_file=range_file(tmp_path, text))
        assert len(set(ports)) == 3 and all(port > 0 for port in ports)
    assert len(free_ports(2, range_file=tmp_path / "missing")) == 2
