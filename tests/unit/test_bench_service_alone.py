"""The bench's "payments alone" step (ordersaga.bench.service_alone), against a
stand-in for the payments service (httpx.MockTransport), and how the runner
reports a step that could not measure."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from ordersaga.bench.runner import Bench, BenchOptions, Target
from ordersaga.bench.service_alone import (
    BACK_TO_BACK_CLIENTS,
    WARMUP_REQUESTS,
    ChargesAlone,
    ServiceAloneError,
)
from ordersaga.ports import free_port
from ordersaga.runtime.auth import DevIssuer
from ordersaga.runtime.settings import Settings

TOKEN = "worker-credential-for-the-test"


def stand_in(status: int, seen: list[httpx.Request]) -> httpx.AsyncClient:
    """A payments service stand-in: answers every charge with `status`."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"detail": {"code": "PAYMENT_DECLINED"}})

    return httpx.AsyncClient(
        base_url="http://payments.test",
        transport=httpx.MockTransport(answer),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


async def test_each_gap_is_measured_with_its_own_charges() -> None:
    seen: list[httpx.Request] = []
    async with stand_in(201, seen) as payments:
        figures = await ChargesAlone(payments, os.getpid(), "t1").measure((0.0, 1.0), requests=6)

    assert [(f.gap_ms, f.clients, f.requests) for f in figures] == [
        (0.0, BACK_TO_BACK_CLIENTS, 6),
        (1.0, 1, 6),
    ]
    assert all(f.cpu_ms_per_request >= 0 and f.requests_per_second > 0 for f in figures)
    assert len(seen) == 2 * (WARMUP_REQUESTS + 6)
    # The saga's own request: the workers' credential, a key per charge, and a
    # customer per charge so that no exposure limit refuses the later ones.
    assert {r.headers["Authorization"] for r in seen} == {f"Bearer {TOKEN}"}
    assert len({r.headers["Idempotency-Key"] for r in seen}) == len(seen)
    bodies = [json.loads(r.content) for r in seen]
    assert len({body["customer_id"] for body in bodies}) == len(seen)
    assert {(r.method, r.url.path) for r in seen} == {("POST", "/charges")}


async def test_a_refused_charge_stops_the_step_naming_the_answer() -> None:
    async with stand_in(402, []) as payments:
        with pytest.raises(ServiceAloneError, match="payments answered a charge with 402"):
            await ChargesAlone(payments, os.getpid(), "t2").measure((0.0,), requests=2)


async def test_a_payments_service_out_of_reach_is_reported_not_raised(tmp_path: Path) -> None:
    bench = Bench(BenchOptions(data_dir=tmp_path), Settings())
    nobody = f"http://127.0.0.1:{free_port()}"
    target = Target(
        api_url="http://127.0.0.1:1",
        temporal_address="127.0.0.1:1",
        service_urls={"payments": nobody},
        components={"payments": os.getpid()},
        issuer=DevIssuer.in_data_dir(tmp_path),
        keyring=None,
        worker_token=SecretStr(TOKEN),
    )

    alone = await bench._payments_alone(target)

    assert alone["figures"] == []
    assert alone["error"]
