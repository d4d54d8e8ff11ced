"""Free loopback ports for servers a test starts."""

from __future__ import annotations

from ordersaga.ports import free_port, free_ports

__all__ = ["free_port", "free_ports"]
