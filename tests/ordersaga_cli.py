"""The `ordersaga` console script, run in its own process as an operator would."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.processes import Ran, run_process

ORDERSAGA = Path(sys.executable).parent / "ordersaga"


def clean_env() -> dict[str, str]:
    """This process's environment without a developer's ORDERSAGA_* settings."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("ORDERSAGA_")}


async def run_ordersaga(
    *args: str,
    within: float,
    env: Mapping[str, str] | None = None,
    stderr_to_stdout: bool = False,
) -> Ran:
    """Run `ordersaga *args` with `env` (default: clean_env()); killed, and
    TimeoutError raised, if it takes longer than `within` seconds."""
    return await run_process(
        str(ORDERSAGA),
        *args,
        within=within,
        env=clean_env() if env is None else env,
        stderr_to_stdout=stderr_to_stdout,
    )
