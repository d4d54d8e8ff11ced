"""The `ordersaga` console script, run in its own process as an operator would."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ORDERSAGA = Path(sys.executable).parent / "ordersaga"


def clean_env() -> dict[str, str]:
    """This process's environment without a developer's ORDERSAGA_* settings."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("ORDERSAGA_")}


@dataclass
class Ran:
    code: int
    stdout: str
    # Empty when stderr went to stdout.
    stderr: str


async def run_ordersaga(
    *args: str,
    within: float,
    env: Mapping[str, str] | None = None,
    stderr_to_stdout: bool = False,
) -> Ran:
    """Run `ordersaga *args` with `env` (default: clean_env()); killed, and
    TimeoutError raised, if it takes longer than `within` seconds."""
    process = await asyncio.create_subprocess_exec(
        str(ORDERSAGA),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if stderr_to_stdout else asyncio.subprocess.PIPE,
        env=dict(clean_env() if env is None else env),
    )
    try:
        async with asyncio.timeout(within):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Ran(
        process.returncode,
        out.decode(errors="replace"),
        (err or b"").decode(errors="replace"),
    )
