"""CPU time and memory of a component (a process and all its descendants), from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
RSS_SAMPLE_SECONDS = 0.25


# The fixed work that tells the machine's speed at one moment (calibration_cpu_ms).
CALIBRATION_ADDITIONS = 1_000_000


def calibration_cpu_ms() -> float:
    """CPU time of a fixed pure-Python loop on this thread, in ms: the machine's
    speed at this moment. The same code takes more CPU when the host is busier
    or the core slower, and so does everything measured beside it."""
    began = time.thread_time()
    total = 0
    for number in range(CALIBRATION_ADDITIONS):
        total += number
    return (time.thread_time() - began) * 1000


@contextlib.contextmanager
def own_collector_paused() -> Iterator[None]:
    """This process's cyclic collector off for one measured window, after a full
    collection.

    The load generator stands beside the system it measures: a full collection
    here (60 to 80 ms on round 8's machine, docs/performance.md) would add its
    pause to every request in flight and hold back the open loop's next
    arrivals, and be reported as the system's latency. Reference counting still
    frees what a window drops; the cycles it leaves are collected before the
    next window, outside any measurement.
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class HostTicks:
    """The machine's CPU ticks so far (/proc/stat): all of them, and those the
    hypervisor gave to other guests while this one had work (steal)."""

    total: int
    steal: int

    @classmethod
    def now(cls) -> HostTicks:
        try:
            fields = [int(f) for f in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return cls(0, 0)
        # user nice system idle iowait irq softirq steal ...; older kernels stop earlier.
        return cls(sum(fields[:8]), fields[7] if len(fields) > 7 else 0)

    def steal_share_since(self, before: HostTicks) -> float | None:
        elapsed = self.total - before.total
        return (self.steal - before.steal) / elapsed if elapsed > 0 else None


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in (PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def process_tree(pid: int) -> list[int]:
    """The process and every descendant alive now (e.g. a server the CLI started)."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += _children(current)
    return tree


def _cpu_seconds(pid: int) -> float:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def _rss_bytes(pid: int) -> int:
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


def tree_cpu_seconds(pid: int) -> float:
    return sum(_cpu_seconds(p) for p in process_tree(pid))


def tree_rss_bytes(pid: int) -> int:
    return sum(_rss_bytes(p) for p in process_tree(pid))


@dataclass
class Usage:
    """One component's use over a measured window."""

    cpu_seconds: float
    peak_rss_bytes: int


@dataclass
class UsageMeter:
    """Samples the components' RSS while a window runs; CPU is the difference of totals."""

    components: Mapping[str, int]
    # Measured without their descendants (the bench process, whose children are
    # the components themselves).
    without_children: frozenset[str] = frozenset()
    _cpu_at_start: dict[str, float] = field(default_factory=dict)
    _peak_rss: dict[str, int] = field(default_factory=dict)

    def _cpu(self, name: str) -> float:
        pid = self.components[name]
        return _cpu_seconds(pid) if name in self.without_children else tree_cpu_seconds(pid)

    def _rss(self, name: str) -> int:
        pid = self.components[name]
        return _rss_bytes(pid) if name in self.without_children else tree_rss_bytes(pid)

    def _sample_rss(self) -> None:
        for name in self.components:
            self._peak_rss[name] = max(self._peak_rss.get(name, 0), self._rss(name))

    @contextlib.asynccontextmanager
    async def window(self) -> AsyncIterator[dict[str, Usage]]:
        """Yields a dict that holds each component's usage once the block ends."""
        usage: dict[str, Usage] = {}
        self._cpu_at_start = {name: self._cpu(name) for name in self.components}
        self._peak_rss = {}
        self._sample_rss()

        async def sample() -> None:
            while True:
                await asyncio.sleep(RSS_SAMPLE_SECONDS)
                self._sample_rss()

        sampler = asyncio.create_task(sample())
        try:
            yield usage
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            self._sample_rss()
            for name in self.components:
                usage[name] = Usage(
                    cpu_seconds=max(0.0, self._cpu(name) - self._cpu_at_start[name]),
                    peak_rss_bytes=self._peak_rss.get(name, 0),
                )
