"""`ordersaga dev` as a developer runs it: a real process tree on free ports.

Each test starts the supervisor as a subprocess with every port moved to a free
one and its own data dir, so it never collides with a `make dev` running on the
same machine. Start-up includes the real Temporal dev server; timeouts are
generous for slow CI machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ordersaga.runtime.auth import DevIssuer
from tests.orders import order_body
from tests.ports import free_ports

ORDERSAGA = Path(sys.executable).parent / "ordersaga"
BANNER = "ordersaga dev stack is up"
START_TIMEOUT = 180.0
# Worker grace (set to 3s below) plus margins, per stage, with room to spare.
STOP_TIMEOUT = 90.0
ADMIN = {"Authorization": "Bearer dev-admin-token"}
IN_PROGRESS = ("RECEIVED", "RESERVING", "CHARGING", "SHIPPING", "COMPENSATING")


@pytest.fixture
def dev_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ORDERSAGA_")}
    # All different: ports picked one at a time may repeat.
    temporal, ui, api, inventory, payments, shipping, codec, probes, metrics = free_ports(9)
    env.update(
        {
            "ORDERSAGA_DATA_DIR": str(tmp_path / "data"),
            "ORDERSAGA_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal}",
            "ORDERSAGA_TEMPORAL_UI_PORT": str(ui),
            "ORDERSAGA_API_PORT": str(api),
            "ORDERSAGA_INVENTORY_PORT": str(inventory),
            "ORDERSAGA_PAYMENTS_PORT": str(payments),
            "ORDERSAGA_SHIPPING_PORT": str(shipping),
            "ORDERSAGA_CODEC_SERVER_PORT": str(codec),
            "ORDERSAGA_WORKER_HEALTH_PORT": str(probes),
            "ORDERSAGA_WORKER_METRICS_PORT": str(metrics),
            "ORDERSAGA_WORKER_GRACE_PERIOD_SECONDS": "3",
        }
    )
    return env


@pytest.fixture
def resolved_data_dir(dev_env: dict[str, str]) -> str:
    return str(Path(dev_env["ORDERSAGA_DATA_DIR"]).resolve())


def url(env: dict[str, str], variable: str) -> str:
    return f"http://127.0.0.1:{env[variable]}"


class DevProcess:
    """`ordersaga dev` with its output collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new_line = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            async with self._new_line:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._new_line.notify_all()
        async with self._new_line:
            self._new_line.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_for(self, pattern: str, within: float = START_TIMEOUT) -> re.Match[str]:
        regex = re.compile(pattern)
        seen = 0
        try:
            async with asyncio.timeout(within), self._new_line:
                while True:
                    for line in self.lines[seen:]:
                        if match := regex.search(line):
                            return match
                    seen = len(self.lines)
                    if self._reader.done():
                        pytest.fail(
                            f"ordersaga dev exited ({self.process.returncode}) before "
                            f"printing {pattern!r}:\n{self.output}"
                        )
                    await self._new_line.wait()
        except TimeoutError:
            pytest.fail(f"no {pattern!r} within {within:.0f}s:\n{self.output}")

    async def stop(self, signum: int = signal.SIGINT, within: float = STOP_TIMEOUT) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signum)
        return await self.wait_exit(within, "stop")

    async def wait_exit(self, within: float, what: str = "exit") -> int:
        """Wait for it to exit (on its own, unless stop() signalled it)."""
        try:
            async with asyncio.timeout(within):
                code = await self.process.wait()
                await self._reader
        except TimeoutError:
            pytest.fail(f"ordersaga dev did not {what} within {within:.0f}s:\n{self.output}")
        return code


@contextlib.asynccontextmanager
async def ordersaga_dev(env: dict[str, str], cwd: Path) -> AsyncIterator[DevProcess]:
    process = await asyncio.create_subprocess_exec(
        str(ORDERSAGA),
        "dev",
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    dev = DevProcess(process)
    try:
        yield dev
    finally:
        # A failed test must not leave a Temporal server and four services behind.
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        await dev._reader


async def wait_until(check: Any, what: str, within: float = 60) -> Any:
    """Poll `check()` until it returns something truthy."""
    last: Any = None
    try:
        async with asyncio.timeout(within):
            while True:
                last = await check()
                if last:
                    return last
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"{what} not reached within {within:.0f}s (last: {last!r})")


def stopped_in_order(dev: DevProcess) -> list[str]:
    """What the supervisor said it was stopping, stage by stage."""
    stops = (re.fullmatch(r"\[dev\]\s+stopping (.+)", line) for line in dev.lines)
    return [match.group(1) for match in stops if match]


def assert_no_traceback(dev: DevProcess) -> None:
    assert "Traceback" not in dev.output, dev.output


def assert_supervisor_did_not_crash(dev: DevProcess) -> None:
    """Children may log tracebacks (a failed activity attempt does); the supervisor may not.

    Its own output is the lines without a `[process]` prefix.
    """
    own = [line for line in dev.lines if not line.startswith("[")]
    assert not [line for line in own if "Traceback" in line], dev.output


# --- refusals ----------------------------------------------------------------


async def test_a_taken_port_is_reported_and_nothing_starts(
    dev_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(dev_env["ORDERSAGA_PAYMENTS_PORT"])))
        squatter.listen()

        async with ordersaga_dev(dev_env, tmp_path) as dev:
            code = await dev.wait_exit(within=60)

    assert code == 1, dev.output
    assert f"port {dev_env['ORDERSAGA_PAYMENTS_PORT']}" in dev.output
    assert "ORDERSAGA_PAYMENTS_PORT" in dev.output
    assert "started temporal" not in dev.output
    assert not (tmp_path / "data" / "temporal.sqlite").exists()
    assert_no_traceback(dev)


@pytest.fixture
def locked_data_dir(dev_env: dict[str, str]) -> Iterator[Path]:
    """The data dir, held by another supervisor (pid 4242)."""
    data_dir = Path(dev_env["ORDERSAGA_DATA_DIR"])
    data_dir.mkdir(parents=True)
    with open(data_dir / "dev.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        lock.write("4242\n")
        lock.flush()
        yield data_dir


async def test_a_second_stack_on_the_same_data_dir_is_refused(
    dev_env: dict[str, str], tmp_path: Path, locked_data_dir: Path
) -> None:
    # Locked before any port is checked, so taken ports do not matter here.
    async with ordersaga_dev(dev_env, tmp_path) as dev:
        code = await dev.wait_exit(within=60)

    assert code == 1, dev.output
    assert "in use by another `ordersaga dev` (pid 4242)" in dev.output
    assert_no_traceback(dev)


# --- the running stack -----------------------------------------------------------


async def test_the_stack_starts_answers_and_stops_cleanly_on_ctrl_c(
    dev_env: dict[str, str], tmp_path: Path, resolved_data_dir: str
) -> None:
    async with ordersaga_dev(dev_env, tmp_path) as dev:
        await dev.wait_for(BANNER)
        async with httpx.AsyncClient(timeout=10) as http:
            api = await http.get(f"{url(dev_env, 'ORDERSAGA_API_PORT')}/readyz")
            assert api.status_code == 200, api.text
            for service in ("INVENTORY", "PAYMENTS", "SHIPPING"):
                ready = await http.get(f"{url(dev_env, f'ORDERSAGA_{service}_PORT')}/readyz")
                assert ready.status_code == 200, (service, ready.text)
            ui = await http.get(url(dev_env, "ORDERSAGA_TEMPORAL_UI_PORT"))
            assert ui.status_code == 200

        code = await dev.stop(signal.SIGINT)

    assert code == 0, dev.output
    banner = dev.output[dev.output.index(BANNER) :]
    for variable in ("API", "INVENTORY", "PAYMENTS", "SHIPPING", "TEMPORAL_UI"):
        assert url(dev_env, f"ORDERSAGA_{variable}_PORT") in banner
    assert "dev-admin-token" in banner
    assert resolved_data_dir in banner
    # Reverse order: the API goes before the worker, the worker before the
    # services it calls, and Temporal last.
    assert stopped_in_order(dev) == [
        "api",
        "worker",
        "inventory, payments, shipping, codec",
        "temporal",
    ], dev.output
    assert_no_traceback(dev)


async def test_a_child_dying_stops_everything_with_exit_1(
    dev_env: dict[str, str], tmp_path: Path
) -> None:
    async with ordersaga_dev(dev_env, tmp_path) as dev:
        await dev.wait_for(BANNER)
        pid = int((await dev.wait_for(r"started shipping \(pid (\d+)\)", within=1)).group(1))

        os.kill(pid, signal.SIGKILL)
        code = await dev.wait_exit(within=STOP_TIMEOUT)

    assert code == 1, dev.output
    assert f"shipping exited unexpectedly with code {-signal.SIGKILL}" in dev.output
    assert stopped_in_order(dev)[-1] == "temporal", dev.output


async def test_an_order_in_flight_when_the_stack_stops_completes_after_a_restart(
    dev_env: dict[str, str], tmp_path: Path
) -> None:
    api_url = url(dev_env, "ORDERSAGA_API_PORT")
    inventory_url = url(dev_env, "ORDERSAGA_INVENTORY_PORT")
    shipping_url = url(dev_env, "ORDERSAGA_SHIPPING_PORT")
    sku = f"sku_e2e_{uuid.uuid4().hex[:8]}"

    customer = f"cus_{uuid.uuid4().hex[:8]}"
    # `make dev` is its own issuer; its key lives in the data dir, as for `ordersaga token`.
    issuer = DevIssuer.in_data_dir(Path(dev_env["ORDERSAGA_DATA_DIR"]))
    as_customer = {"Authorization": f"Bearer {issuer.mint(customer, ['orders:customer'])}"}

    async with httpx.AsyncClient(timeout=10) as http:

        async def status_of(order_id: str) -> str:
            response = await http.get(f"{api_url}/orders/{order_id}", headers=as_customer)
            assert response.status_code == 200, response.text
            return str(response.json()["status"])

        async with ordersaga_dev(dev_env, tmp_path) as dev:
            await dev.wait_for(BANNER)
            stock = await http.put(
                f"{inventory_url}/products/{sku}",
                json={"available": 10, "price_cents": 1250},
                headers=ADMIN,
            )
            assert stock.status_code == 200, stock.text
            # Slow shipping holds create_shipment in flight when the stack stops.
            # (Failing every call instead would spend the step's retry budget
            # while the stack shuts down, and the order would rightly fail.)
            faults = await http.put(
                f"{shipping_url}/admin/faults",
                json={"error_rate": 0, "latency_ms": 3000},
                headers=ADMIN,
            )
            assert faults.status_code == 200, faults.text
            placed = await http.post(
                f"{api_url}/orders",
                json=order_body(sku=sku, quantity=2),
                headers={"Idempotency-Key": uuid.uuid4().hex, **as_customer},
            )
            assert placed.status_code == 202, placed.text
            order_id = placed.json()["order_id"]

            async def shipping() -> bool:
                return await status_of(order_id) == "SHIPPING"

            await wait_until(shipping, "order in SHIPPING", within=60)
            # SIGTERM, as a service manager or `docker stop` would send.
            assert await dev.stop(signal.SIGTERM) == 0, dev.output
        assert_supervisor_did_not_crash(dev)

        # Fault injection lives in the service process: it is gone after the restart.
        async with ordersaga_dev(dev_env, tmp_path) as again:
            await again.wait_for(BANNER)

            async def finished() -> str | None:
                status = await status_of(order_id)
                return None if status in IN_PROGRESS else status

            assert await wait_until(finished, "a final status", within=120) == "COMPLETED"
            left = await http.get(f"{inventory_url}/stock/{sku}", headers=ADMIN)
            assert left.json() == {"sku": sku, "available": 8, "reserved": 0}
            assert await again.stop(signal.SIGINT) == 0, again.output
        assert_no_traceback(again)
