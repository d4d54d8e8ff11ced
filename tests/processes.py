"""Commands a test runs in a process of their own, as an operator would."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class Ran:
    code: int
    stdout: str
    # Empty when stderr went to stdout.
    stderr: str


async def run_process(
    *argv: str,
    within: float,
    env: Mapping[str, str] | None = None,
    stderr_to_stdout: bool = False,
) -> Ran:
    """Run `argv` with `env` (default: this process's environment) and collect
    its output; killed, and TimeoutError raised, if it takes longer than
    `within` seconds."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if stderr_to_stdout else asyncio.subprocess.PIPE,
        env=None if env is None else dict(env),
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    finally:
        # Timed out (or the test was cancelled): no process outlives its test.
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Ran(
        process.returncode,
        out.decode(errors="replace"),
        (err or b"").decode(errors="replace"),
    )
