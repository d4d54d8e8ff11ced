"""What `ordersaga --version` reports: the package version and the commit it was built from."""

from __future__ import annotations

import os
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# A Docker build has no .git; it bakes the commit in through this variable.
COMMIT_ENV_VAR = "ORDERSAGA_GIT_COMMIT"
# ordersaga/runtime/version.py -> the source tree's top level.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def package_version() -> str:
    try:
        return version("ordersaga")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+unknown"


def git_commit(source_root: Path = SOURCE_ROOT) -> str | None:
    """The short commit of the checkout this package runs from, if it runs from one.

    A wheel installed into a virtualenv that happens to sit inside some other
    repository must not report that repository's commit, so the checkout's top
    level has to be the package's own source root.
    """
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "--short", "HEAD"],
            cwd=source_root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.split()
    if result.returncode != 0 or len(lines) != 2:
        return None
    toplevel, commit = lines
    if Path(toplevel).resolve() != source_root.resolve():
        return None
    return commit


def commit() -> str:
    return git_commit() or os.environ.get(COMMIT_ENV_VAR, "").strip() or "unknown"


def version_string() -> str:
    return f"ordersaga {package_version()} (commit {commit()})"
