"""`ordersaga worker` as a real child process, for the end-to-end worker tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.integration.stack import WORKER_TOKEN
from tests.keys import TEST_CODEC_KEYS
from tests.ports import free_port

ORDERSAGA = Path(sys.executable).parent / "ordersaga"


def worker_env(temporal_address: str, **settings: str) -> dict[str, str]:
    """The environment of a worker child: nothing inherited from ORDERSAGA_*, free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERSAGA_")}
    env |= {
        "ORDERSAGA_TEMPORAL_ADDRESS": temporal_address,
        "ORDERSAGA_WORKER_HEALTH_PORT": str(free_port()),
        "ORDERSAGA_WORKER_METRICS_PORT": str(free_port()),
        "ORDERSAGA_LOG_FORMAT": "text",
        # What production gives every worker: the payload keys and its
        # credential to the services (the in-process test stack's own).
        "ORDERSAGA_CODEC_KEYS": TEST_CODEC_KEYS,
        "ORDERSAGA_WORKER_TOKEN": WORKER_TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    env |= {f"ORDERSAGA_{name.upper()}": value for name, value in settings.items()}
    return env


class WorkerProcess:
    def __init__(self, process: asyncio.subprocess.Process, env: dict[str, str]) -> None:
        self.process = process
        self.health_url = f"http://127.0.0.1:{env['ORDERSAGA_WORKER_HEALTH_PORT']}"
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @property
    def identity(self) -> str:
        """The identity the SDK gives this process's client: pid@host."""
        return f"{self.process.pid}@{socket.gethostname()}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode(errors="replace"))

    async def wait_for_output(self, text: str, *, within: float = 60) -> None:
        async with asyncio.timeout(within):
            while text not in self.output:
                assert self.process.returncode is None, (
                    f"worker exited ({self.process.returncode}) before printing {text!r}:\n"
                    + self.output
                )
                await asyncio.sleep(0.05)

    async def probe(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.health_url, timeout=5) as http:
            return await http.get(path)

    async def wait_ready(self, *, within: float = 60) -> None:
        last = "no answer"
        try:
            async with asyncio.timeout(within):
                while True:
                    assert self.process.returncode is None, "worker exited:\n" + self.output
                    with contextlib.suppress(httpx.HTTPError):
                        response = await self.probe("/readyz")
                        if response.status_code == 200:
                            return
                        last = response.text
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"/readyz never 200 (last: {last}):\n{self.output}") from None

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait_exit(self, *, within: float) -> int:
        async with asyncio.timeout(within):
            code = await self.process.wait()
            await self._reader
        return code


@contextlib.asynccontextmanager
async def worker_process(env: dict[str, str], *args: str) -> AsyncIterator[WorkerProcess]:
    process = await asyncio.create_subprocess_exec(
        str(ORDERSAGA),
        "worker",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    worker = WorkerProcess(process, env)
    try:
        yield worker
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        await worker._reader
