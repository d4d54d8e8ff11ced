"""Free loopback ports, for stacks started on the side (tests, benchmark, recorder).

A port is chosen here and bound by a child process seconds later. A port the
OS picks for a bind to port 0 comes from its ephemeral range, the same range it
takes the local end of every outgoing connection from: in between, any
connection on the machine (a gRPC channel, an HTTP client) could take the
chosen port, and the child then fails with "address already in use" (it
happened to the bench's codec server in a `make test` run). So on Linux the
ports come from just below that range (/proc/sys/net/ipv4/ip_local_port_range),
where the kernel never puts an outgoing connection; elsewhere the OS chooses,
as before.
"""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# How far below the ephemeral range to look, and the lowest port ever chosen:
# above the project's own fixed ports (7233, 8000-8003, 8081, 8233).
LISTENING_SPAN = 12_000
LOWEST_PORT = 10_000
# Tries at a random port of that span before the OS's choice.
ATTEMPTS = 50
# Every port this process has handed out: callers ask one at a time for the
# ports of one stack (free_port() twice), and a random pick could repeat one
# that is not bound yet.
_handed_out: set[int] = set()


def _listening_span(range_file: Path = EPHEMERAL_RANGE_FILE) -> range | None:
    """Ports below the ephemeral range, or None when it is not known."""
    try:
        low = int(range_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    span = range(max(LOWEST_PORT, low - LISTENING_SPAN), low)
    return span if len(span) > 0 else None


def _bound(held: contextlib.ExitStack, span: range | None) -> int:
    """Bind a socket that `held` closes: at a random port of `span` if one is
    free, else at the OS's choice. Returns its port."""
    sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    # Random, not a secret: so that concurrent pickers rarely meet.
    candidates = random.sample(span, min(ATTEMPTS, len(span))) if span is not None else []
    for port in candidates:
        if port in _handed_out:
            continue
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    sock.bind(("127.0.0.1", 0))
    return int(sock.getsockname()[1])


def free_port() -> int:
    """A port nothing listens on right now (another process may still take it)."""
    return free_ports(1)[0]


def free_ports(count: int, *, range_file: Path = EPHEMERAL_RANGE_FILE) -> list[int]:
    """`count` different free ports: each socket stays bound until all are
    chosen, so no port is handed out twice."""
    span = _listening_span(range_file)
    with contextlib.ExitStack() as held:
        ports = [_bound(held, span) for _ in range(count)]
    _handed_out.update(ports)
    return ports
