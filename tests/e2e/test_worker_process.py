"""`ordersaga worker` as a process: it polls, and a signal stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

ORDERSAGA = Path(sys.executable).parent / "ordersaga"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_worker_polls_then_stops_with_exit_0_on_a_signal(
    dev_server_env: WorkflowEnvironment, signum: signal.Signals
) -> None:
    client = dev_server_env.client
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERSAGA_")}
    env |= {
        "ORDERSAGA_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "ORDERSAGA_WORKER_GRACE_PERIOD_SECONDS": "2",
    }
    worker = await asyncio.create_subprocess_exec(
        str(ORDERSAGA),
        "worker",
        "--queues",
        "orders,payments",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    seen: list[str] = []
    try:
        assert worker.stdout is not None
        async with asyncio.timeout(60):
            # Its own word, not the server's poller list: the server keeps
            # listing an earlier worker's pollers for a while.
            while "worker polling task queues orders, payments" not in "".join(seen):
                line = await worker.stdout.readline()
                assert line, "worker exited during start-up:\n" + "".join(seen)
                seen.append(line.decode())

        worker.send_signal(signum)
        async with asyncio.timeout(30):
            output, _ = await worker.communicate()
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()

    text = "".join(seen) + output.decode()
    assert worker.returncode == 0, text
    assert "in-flight tasks have 2s to finish" in text
    assert "worker stopped" in text
    assert "Traceback" not in text
