"""What one service request costs with nothing else running, back to back and
with the idle gaps the saga leaves between a service's requests.

In the closed loop each service answers a request every 15 to 35 ms, on two
cores shared by eight busy processes, and its CPU per request there was 1.7 to
2.5 times what the same request costs back to back (docs/performance.md,
rounds 5 to 7). This step tells the two apart in every run: payments' charge,
the saga's own request with the workers' credential, sent by this process
alone, once back to back and then one at a time with a pause after each
answer. The first figure is the service code's cost; the others are what the
machine adds to the same code when the process idles between requests.

It runs on the benchmark's own stack only, after the ledger check: the charges
it makes belong to no order, and a running stack's ledger is not the
benchmark's to write.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field

import httpx
from pydantic import SecretStr

from ordersaga.bench.procs import tree_cpu_seconds

# Pauses after each answer, in ms: none (several clients, so the service never
# waits), then gaps like the closed loop's and the open loop's.
GAPS_MS = (0.0, 5.0, 20.0)
REQUESTS_PER_GAP = 300
WARMUP_REQUESTS = 40
BACK_TO_BACK_CLIENTS = 4
AMOUNT_CENTS = 2500


@dataclass(frozen=True)
class GapFigure:
    gap_ms: float
    clients: int
    requests: int
    cpu_ms_per_request: float
    requests_per_second: float


class ServiceAloneError(Exception):
    """The service refused a request the step sends: its figures would be of a refusal."""


@dataclass
class ChargesAlone:
    """Charges sent to one payments service, and its process's CPU meanwhile."""

    payments: httpx.AsyncClient
    pid: int
    run_tag: str
    # Charges sent so far: each one's order and customer are numbered by it.
    _sent: int = field(default=0, init=False)

    async def _charge(self) -> None:
        self._sent += 1
        # A new order and customer per charge: the customer's exposure limit
        # would otherwise refuse the later ones.
        order_id = f"ord_alone_{self.run_tag}_{self._sent}"
        response = await self.payments.post(
            "/charges",
            json={
                "order_id": order_id,
                "customer_id": f"cus_alone_{self.run_tag}_{self._sent}",
                "amount_cents": AMOUNT_CENTS,
                "currency": "EUR",
                "payment_token": "tok_visa",
            },
            headers={"Idempotency-Key": f"{order_id}:charge_payment"},
        )
        if response.status_code != httpx.codes.CREATED:
            raise ServiceAloneError(
                f"payments answered a charge with {response.status_code}: {response.text[:200]}"
            )

    async def _clients(self, clients: int, requests: int, gap_ms: float) -> None:
        async def client(count: int) -> None:
            for _ in range(count):
                await self._charge()
                if gap_ms:
                    await asyncio.sleep(gap_ms / 1000)

        share, extra = divmod(requests, clients)
        await asyncio.gather(*(client(share + (i < extra)) for i in range(clients)))

    async def measure(
        self, gaps_ms: tuple[float, ...] = GAPS_MS, requests: int = REQUESTS_PER_GAP
    ) -> list[GapFigure]:
        figures = []
        for gap_ms in gaps_ms:
            clients = 1 if gap_ms else BACK_TO_BACK_CLIENTS
            await self._clients(clients, WARMUP_REQUESTS, gap_ms)
            cpu_before, began = tree_cpu_seconds(self.pid), time.perf_counter()
            await self._clients(clients, requests, gap_ms)
            cpu = tree_cpu_seconds(self.pid) - cpu_before
            elapsed = time.perf_counter() - began
            figures.append(
                GapFigure(
                    gap_ms=gap_ms,
                    clients=clients,
                    requests=requests,
                    cpu_ms_per_request=cpu * 1000 / requests,
                    requests_per_second=requests / elapsed,
                )
            )
        return figures


async def charges_alone(
    payments_url: str, worker_token: SecretStr, pid: int, run_tag: str
) -> list[dict[str, float]]:
    """The figures of ChargesAlone.measure, as the report keeps them."""
    async with httpx.AsyncClient(
        base_url=payments_url,
        timeout=30.0,
        headers={"Authorization": f"Bearer {worker_token.get_secret_value()}"},
    ) as payments:
        figures = await ChargesAlone(payments, pid, run_tag).measure()
    return [asdict(figure) for figure in figures]
