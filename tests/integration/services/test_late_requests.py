"""A forward request that lands after its order gave up on it leaves no effect.

The compensation of an ambiguous step fences the order (PUT /fences/{order_id}),
then looks its resources up and undoes them, as activities.http does. Whatever
the interleaving with a forward request of the same order, the end is "nothing
made" or "made and undone", never "made and left live". Each test runs on all
three services, on SQLite and (when configured) PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest

from services.common.db import create_engine, driver_transaction
from services.common.domain import Admission
from services.common.fences import SqlFences
from services.common.idempotency import IdempotencyStore
from tests.integration.services import support
from tests.integration.services.support import (
    ADMIN,
    SERVICE_APPS,
    Databases,
    inventory_app,
    listed,
    new_key,
    reservation,
    serving,
    serving_service,
)


@dataclass(frozen=True)
class Service(support.Service):
    """A service, with what the compensation activity does to it."""

    # One body per order: a retry must send the same request again.
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)

    def body(self, order_id: str) -> dict[str, Any]:
        return self.bodies.setdefault(order_id, self.new_body(order_id=order_id))

    async def forward(self, order_id: str, key: dict[str, str]) -> httpx.Response:
        return await self.client.post(self.collection, json=self.body(order_id), headers=key)

    async def compensate(self, order_id: str) -> list[str]:
        """What the compensation activity does: fence, look up, undo each."""
        fenced = await self.client.put(f"/fences/{order_id}")
        assert fenced.status_code == 200, fenced.text
        found = [
            item[self.id_field] for item in await listed(self.client, self.collection, order_id)
        ]
        for resource_id in found:
            undone = await self.client.post(
                f"{self.collection}/{resource_id}/{self.action}", headers=new_key()
            )
            assert undone.status_code == 200, undone.text
        return found

    async def states(self, order_id: str) -> list[str]:
        return [item["state"] for item in await listed(self.client, self.collection, order_id)]

    async def set_latency(self, milliseconds: int) -> None:
        response = await self.client.put(
            "/admin/faults", json={"error_rate": 0.0, "latency_ms": milliseconds}, headers=ADMIN
        )
        assert response.status_code == 200, response.text


@pytest.fixture(params=sorted(SERVICE_APPS))
async def service(request: pytest.FixtureRequest, databases: Databases) -> AsyncIterator[Service]:
    async with serving_service(Service, request.param, databases) as service:
        yield service


def new_order_id() -> str:
    return f"ord_late_{random.getrandbits(48):012x}"


def refused_as_fenced(response: httpx.Response) -> bool:
    return response.status_code == 409 and response.json()["detail"]["code"] == "ORDER_FENCED"


FirstT = TypeVar("FirstT")
ThenT = TypeVar("ThenT")


@dataclass
class Held:
    """A forward request stopped after its effect, before its commit."""

    key: str
    reached: asyncio.Event
    release: asyncio.Event


@contextlib.contextmanager
def holding(monkeypatch: pytest.MonkeyPatch, key: str) -> Iterator[Held]:
    """Hold the request under `key` inside its transaction, effect made and not
    committed (its locks held), until the test releases it."""
    held = Held(key, asyncio.Event(), asyncio.Event())
    record = IdempotencyStore.record

    async def record_and_hold(store: IdempotencyStore, caller: str, key: str, *answer: Any) -> bool:
        recorded = await record(store, caller, key, *answer)
        if key == held.key:
            held.reached.set()
            await held.release.wait()
        return recorded

    with monkeypatch.context() as patch:
        patch.setattr(IdempotencyStore, "record", record_and_hold)
        yield held


async def waits_for_the_held(
    monkeypatch: pytest.MonkeyPatch,
    key: dict[str, str],
    held_request: Coroutine[Any, Any, FirstT],
    *,
    then: Callable[[], Coroutine[Any, Any, ThenT]],
    what: str,
) -> tuple[FirstT, ThenT]:
    """Send `held_request` (under `key`) and hold it inside its transaction;
    start `then` and check it is still waiting 0.3 s later (`what` says why
    it should); release the first and return both answers."""
    with holding(monkeypatch, key["Idempotency-Key"]) as held:
        first = asyncio.create_task(held_request)
        await asyncio.wait_for(held.reached.wait(), 10)
        second = asyncio.create_task(then())
        await asyncio.sleep(0.3)
        assert not second.done(), what
        held.release.set()
        return await first, await second


# --- (a) the fence first ----------------------------------------------------------


async def test_a_forward_request_after_the_fence_is_refused_and_makes_nothing(
    service: Service,
) -> None:
    order_id, key = new_order_id(), new_key()
    assert await service.compensate(order_id) == []

    late = await service.forward(order_id, key)
    again = await service.forward(order_id, key)

    assert refused_as_fenced(late), late.text
    assert "Idempotent-Replayed" not in late.headers
    # The refusal is the answer for that key from now on.
    assert refused_as_fenced(again) and again.headers["Idempotent-Replayed"] == "true"
    assert await service.states(order_id) == []


async def test_another_order_is_not_fenced(service: Service) -> None:
    await service.compensate(new_order_id())

    other = await service.forward(new_order_id(), new_key())

    assert other.status_code == 201, other.text


async def test_fencing_twice_fences_once(service: Service) -> None:
    order_id = new_order_id()
    first = await service.client.put(f"/fences/{order_id}")
    second = await service.client.put(f"/fences/{order_id}")

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["order_id"] == order_id


# --- (b) the forward request first ------------------------------------------------


async def test_a_forward_request_before_the_fence_is_found_and_undone(service: Service) -> None:
    order_id, key = new_order_id(), new_key()
    made = await service.forward(order_id, key)
    assert made.status_code == 201, made.text

    found = await service.compensate(order_id)
    retried = await service.forward(order_id, key)

    assert found == [made.json()[service.id_field]]
    assert await service.states(order_id) == [service.undone]
    # A retry of the request that did take effect gets its own answer, not the
    # fence's refusal: it happened (and has been undone since).
    assert retried.status_code == 201
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json()[service.id_field] == made.json()[service.id_field]


# --- (c) both at once ------------------------------------------------------------


async def test_a_fence_waits_for_a_forward_request_inside_its_transaction(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forward request passed the gate and made its effect; the fence must
    wait for its commit, and the look-up after the fence then finds it."""
    order_id, key = new_order_id(), new_key()
    made, found = await waits_for_the_held(
        monkeypatch,
        key,
        service.forward(order_id, key),
        then=lambda: service.compensate(order_id),
        what="the fence did not wait for the forward request",
    )

    assert made.status_code == 201, made.text
    assert found == [made.json()[service.id_field]]
    assert await service.states(order_id) == [service.undone]


async def test_a_forward_request_held_before_its_transaction_lands_fenced(
    service: Service,
) -> None:
    """The issue's case: the request is held up (here by injected latency) past
    the compensation's look-up, which finds nothing, then lands."""
    order_id = new_order_id()
    await service.set_latency(600)
    forward = asyncio.create_task(service.forward(order_id, new_key()))
    await asyncio.sleep(0.1)  # it is in the service, waiting
    await service.client.delete("/admin/faults", headers=ADMIN)

    found = await service.compensate(order_id)
    late = await forward

    assert found == []
    assert refused_as_fenced(late), late.text
    assert await service.states(order_id) == []


async def test_in_every_interleaving_the_effect_is_never_left_live(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forward requests (one per order, each held inside its transaction for a
    random while) race their orders' compensations, started at random."""
    record = IdempotencyStore.record
    rng = random.Random(15)

    async def record_slowly(store: IdempotencyStore, caller: str, key: str, *answer: Any) -> bool:
        recorded = await record(store, caller, key, *answer)
        await asyncio.sleep(rng.uniform(0, 0.03))
        return recorded

    monkeypatch.setattr(IdempotencyStore, "record", record_slowly)

    async def race(order_id: str) -> tuple[httpx.Response, list[str]]:
        async def compensate_later() -> list[str]:
            await asyncio.sleep(rng.uniform(0, 0.03))
            return await service.compensate(order_id)

        return await asyncio.gather(service.forward(order_id, new_key()), compensate_later())

    orders = [new_order_id() for _ in range(12)]
    outcomes = await asyncio.gather(*(race(order_id) for order_id in orders))

    for order_id, (forward, found) in zip(orders, outcomes, strict=True):
        states = await service.states(order_id)
        if forward.status_code == 201:
            assert found == [forward.json()[service.id_field]], order_id
            assert states == [service.undone], order_id
        else:
            assert refused_as_fenced(forward), forward.text
            assert (found, states) == ([], []), order_id


# --- inventory: the stock, and the commit ------------------------------------------


async def test_a_late_reservation_takes_no_stock(databases: Databases) -> None:
    async with serving(inventory_app(await databases.new("inventory"))) as inventory:
        before = (await inventory.get("/stock/sku_mug")).json()
        order_id = new_order_id()
        assert (await inventory.put(f"/fences/{order_id}")).status_code == 200

        late = await inventory.post(
            "/reservations", json=reservation("sku_mug", 3, order_id), headers=new_key()
        )

        assert refused_as_fenced(late), late.text
        assert (await inventory.get("/stock/sku_mug")).json() == before


async def test_a_commit_after_the_fence_is_refused_and_the_release_goes_ahead(
    databases: Databases,
) -> None:
    """A commit held up past the order's cancel would otherwise turn the
    release into a refusal (INVALID_STATE) and park the order."""
    async with serving(inventory_app(await databases.new("inventory"))) as inventory:
        order_id = new_order_id()
        made = await inventory.post(
            "/reservations", json=reservation("sku_mug", 1, order_id), headers=new_key()
        )
        reservation_id = made.json()["reservation_id"]
        assert (await inventory.put(f"/fences/{order_id}")).status_code == 200

        commit = await inventory.post(f"/reservations/{reservation_id}/commit", headers=new_key())
        release = await inventory.post(f"/reservations/{reservation_id}/release", headers=new_key())

        assert refused_as_fenced(commit), commit.text
        assert release.status_code == 200, release.text
        assert release.json()["state"] == "released"


async def test_a_fence_waits_for_a_commit_inside_its_transaction(
    databases: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit looks for the order's gate row first (its reservation passed
    the gate): it must still hold the row, so the fence waits for its commit."""
    async with serving(inventory_app(await databases.new("inventory"))) as inventory:
        order_id = new_order_id()
        made = await inventory.post(
            "/reservations", json=reservation("sku_mug", 1, order_id), headers=new_key()
        )
        reservation_id = made.json()["reservation_id"]
        key = new_key()
        committed, fenced = await waits_for_the_held(
            monkeypatch,
            key,
            inventory.post(f"/reservations/{reservation_id}/commit", headers=key),
            then=lambda: inventory.put(f"/fences/{order_id}"),
            what="the fence did not wait for the commit",
        )

        assert committed.status_code == 200, committed.text
        assert committed.json()["state"] == "committed"
        assert fenced.status_code == 200, fenced.text


async def test_the_gate_answers_alike_whether_or_not_the_order_passed_it_before(
    databases: Databases,
) -> None:
    """SqlFences.admit(passed_before=True) looks for the row first; where there
    is none (an order older than the gates), it makes it as the first does."""
    database_url = await databases.new("inventory")
    async with serving(inventory_app(database_url)):  # migrated
        engine = create_engine(database_url)
        try:
            for passed_before in (False, True):
                order_id = new_order_id()
                answers = []
                for fence_first in (False, False, True):
                    async with driver_transaction(engine, write=True) as connection:
                        if fence_first:
                            await SqlFences(connection).fence(order_id)
                        answers.append(
                            await SqlFences(connection).admit(order_id, passed_before=passed_before)
                        )
                        await connection.commit()
                assert answers == [Admission.FIRST, Admission.AFTER_ANOTHER, Admission.FENCED], (
                    passed_before
                )
        finally:
            await engine.dispose()


# --- deadlines ------------------------------------------------------------------


async def test_a_request_past_its_deadline_commits_nothing_and_its_retry_runs(
    service: Service,
) -> None:
    order_id, key = new_order_id(), new_key()
    await service.set_latency(400)

    late = await service.client.post(
        service.collection,
        json=service.body(order_id),
        headers={**key, "Request-Timeout": "0.2"},
    )
    await service.client.delete("/admin/faults", headers=ADMIN)
    assert late.status_code == 504, late.text
    assert late.json()["detail"]["code"] == "DEADLINE_EXCEEDED"
    assert await service.states(order_id) == []

    retried = await service.client.post(
        service.collection, json=service.body(order_id), headers={**key, "Request-Timeout": "5"}
    )

    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    assert await service.states(order_id) == [service.live]


async def test_a_request_whose_deadline_passes_inside_its_transaction_rolls_back(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting inside the transaction (for a lock, say) counts: the check is the
    last thing before the commit, and the effect and the key roll back."""
    order_id, key = new_order_id(), new_key()
    with holding(monkeypatch, key["Idempotency-Key"]) as held:
        # Long enough to reach the transaction on a loaded machine (at 0.2 s
        # it sometimes passed before, and the 504 came without the hold).
        forward = asyncio.create_task(
            service.client.post(
                service.collection,
                json=service.body(order_id),
                headers={**key, "Request-Timeout": "1.0"},
            )
        )
        await asyncio.wait_for(held.reached.wait(), 10)
        await asyncio.sleep(1.2)
        held.release.set()
        late = await forward

    assert late.status_code == 504, late.text
    assert await service.states(order_id) == []
    retried = await service.forward(order_id, key)
    assert retried.status_code == 201, retried.text


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf", ""])
async def test_a_malformed_deadline_is_400(service: Service, value: str) -> None:
    order_id = new_order_id()
    response = await service.client.post(
        service.collection,
        json=service.body(order_id),
        headers={**new_key(), "Request-Timeout": value},
    )

    assert response.status_code == 400, response.text
    assert response.json()["detail"]["code"] == "REQUEST_REJECTED"
    assert await service.states(order_id) == []
