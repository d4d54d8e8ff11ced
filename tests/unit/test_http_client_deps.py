"""The worker's HTTP client (httpx over httpcore) finds sniffio installed.

httpcore runs `import sniffio` every time it makes a lock, an event or a
cancel shield, several times per request. Installed, that import is a lookup
in sys.modules; missing (httpx and anyio no longer depend on it), each one
fails only after asking every finder to search sys.path, which cost 0.2 ms of
CPU per call (docs/performance.md, round 5). pyproject.toml lists it for that.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

import pytest
from httpcore._synchronization import current_async_library


class RecordingFinder(MetaPathFinder):
    """Records the modules the import system had to search for; finds none."""

    def __init__(self) -> None:
        self.searched: list[str] = []

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        self.searched.append(fullname)
        return None


async def library_three_times() -> list[str]:
    return [current_async_library() for _ in range(3)]


def test_httpcore_finds_its_event_loop_without_searching_for_a_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sniffio  # noqa: F401  (installed: pyproject.toml lists it)

    finder = RecordingFinder()
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])

    assert asyncio.run(library_three_times()) == ["asyncio"] * 3
    assert finder.searched == []


def test_without_sniffio_every_request_would_search_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What this guards against, shown: with sniffio gone, each ask searches.
    monkeypatch.delitem(sys.modules, "sniffio", raising=False)
    finder = RecordingFinder()
    monkeypatch.setattr(sys, "meta_path", [finder])

    assert asyncio.run(library_three_times()) == ["asyncio"] * 3
    assert finder.searched.count("sniffio") == 3
