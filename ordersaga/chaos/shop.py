"""The clients' side of the chaos suite: customers placing, reading and cancelling
orders through the API as any client would (retrying a 503 under the same
Idempotency-Key), and an operator reading the services' ledgers. Every answer
the API gives is recorded, so the "no 5xx while Temporal is up" invariant can
be judged afterwards against when each component was down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ordersaga.runtime.auth import DevIssuer

CUSTOMER_SCOPE = "orders:customer"
OPERATOR_SCOPE = "orders:operator"
OPERATOR = "op_chaos"
CURRENCY = "EUR"
COUNTRY = "GB"
# A client's patience: retries of a 503 or a dropped connection stop after this.
GIVE_UP_SECONDS = 120.0
RETRY_PAUSE_SECONDS = 0.5
# Answers a client retries: Temporal (or every worker) unreachable, or too busy.
RETRIED = frozenset({429, 503})
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
PARKED = "NEEDS_ATTENTION"


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange with the API (status None: no answer at all)."""

    at: float
    method: str
    path: str
    status: int | None
    code: str | None = None
    error: str | None = None
    message: str | None = None


@dataclass
class Placed:
    customer: str
    key: str
    body: dict[str, Any]
    sku: str
    quantity: int
    order_id: str | None = None
    accepted_at: float | None = None
    # Every status POST /orders answered for this (customer, key), in order.
    statuses: list[int | None] = field(default_factory=list)
    # Every order id a 202 named: exactly one is the invariant.
    order_ids: set[str] = field(default_factory=set)
    refusal: str | None = None


@dataclass(frozen=True)
class CancelAnswer:
    order_id: str
    status: int | None
    at: float


def order_body(sku: str, quantity: int) -> dict[str, Any]:
    return {
        "items": [{"sku": sku, "quantity": quantity}],
        "currency": CURRENCY,
        "payment": {"token": "tok_visa"},
        "shipping_address": {
            "name": "Chaos Customer",
            "line1": "1 Fault Line",
            "city": "London",
            "postal_code": "SW1Y 4JH",
            "country": COUNTRY,
        },
    }


def _error_of(response: httpx.Response) -> tuple[str | None, str | None]:
    """The (code, message) of the API's one error body shape, if it is one."""
    if response.status_code < 400:
        return None, None
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return None, None
    if isinstance(detail, dict):
        code, message = detail.get("code"), detail.get("message")
        return (
            str(code) if code is not None else None,
            str(message) if message is not None else None,
        )
    return None, None


class Shop:
    def __init__(self, api: httpx.AsyncClient, issuer: DevIssuer) -> None:
        self.api = api
        self.issuer = issuer
        self.answers: list[Answer] = []
        self._tokens: dict[str, str] = {}
        self._operator = issuer.mint(OPERATOR, [OPERATOR_SCOPE])

    def _customer(self, customer: str) -> dict[str, str]:
        if customer not in self._tokens:
            self._tokens[customer] = self.issuer.mint(customer, [CUSTOMER_SCOPE])
        return {"Authorization": f"Bearer {self._tokens[customer]}"}

    @property
    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._operator}"}

    async def send(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        record: bool = True,
    ) -> httpx.Response | None:
        at = time.monotonic()
        try:
            response = await self.api.request(
                method, path, headers=dict(headers), json=body, params=params
            )
        except httpx.HTTPError as error:
            if record:
                self.answers.append(Answer(at, method, path, None, error=repr(error)))
            return None
        if record:
            code, message = _error_of(response)
            self.answers.append(
                Answer(at, method, path, response.status_code, code, message=message)
            )
        return response

    async def place(self, placed: Placed, give_up_seconds: float = GIVE_UP_SECONDS) -> Placed:
        """POST /orders until accepted or refused for good; a 503 is retried as a
        client would, under the same key (the API's contract makes that safe)."""
        give_up_at = time.monotonic() + give_up_seconds
        headers = {**self._customer(placed.customer), "Idempotency-Key": placed.key}
        while True:
            response = await self.send("POST", "/orders", headers, placed.body)
            status = response.status_code if response is not None else None
            placed.statuses.append(status)
            if response is not None and status == 202:
                order_id = str(response.json()["order_id"])
                placed.order_ids.add(order_id)
                placed.order_id = order_id
                placed.accepted_at = time.monotonic()
                return placed
            if (status is None or status in RETRIED) and time.monotonic() < give_up_at:
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                continue
            placed.refusal = (
                f"POST /orders answered {status}: {response.text[:200]}"
                if response is not None
                else "POST /orders: no answer"
            )
            return placed

    async def cancel(
        self, customer: str, order_id: str, give_up_seconds: float = GIVE_UP_SECONDS
    ) -> CancelAnswer:
        """The customer's cancel; a 503 (no worker to take it) is retried."""
        give_up_at = time.monotonic() + give_up_seconds
        while True:
            response = await self.send(
                "POST",
                f"/orders/{order_id}/cancel",
                self._customer(customer),
                {"reason": "chaos: changed my mind"},
            )
            status = response.status_code if response is not None else None
            if (status is None or status in RETRIED) and time.monotonic() < give_up_at:
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                continue
            return CancelAnswer(order_id, status, time.monotonic())

    async def read(self, order_id: str) -> dict[str, Any] | None:
        """The order as an operator reads it; None while it cannot be read."""
        response = await self.send("GET", f"/orders/{order_id}", self.operator_headers)
        if response is None or response.status_code != 200:
            return None
        view: dict[str, Any] = response.json()
        return view

    async def orders_of(self, customer: str) -> list[dict[str, Any]]:
        response = await self.send(
            "GET",
            "/orders",
            self.operator_headers,
            params={"customer_id": customer, "page_size": 100},
        )
        if response is None or response.status_code != 200:
            return []
        items: list[dict[str, Any]] = response.json()["items"]
        return items


class Ledger:
    """The services as their admin reads and configures them."""

    def __init__(self, services: Mapping[str, httpx.AsyncClient]) -> None:
        self.services = services

    async def _get(self, service: str, path: str, params: Mapping[str, str] | None = None) -> Any:
        for attempt in range(5):
            try:
                response = await self.services[service].get(path, params=params)
                if response.status_code < 500:
                    response.raise_for_status()
                    return response.json()
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5 * (attempt + 1))
        response = await self.services[service].get(path, params=params)
        response.raise_for_status()
        return response.json()

    async def rows(self, service: str, collection: str, order_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            await self._get(service, f"/{collection}", {"order_id": order_id})
        )["items"]
        return found

    async def stock(self, sku: str) -> dict[str, int]:
        body = await self._get("inventory", f"/stock/{sku}")
        return {"available": int(body["available"]), "reserved": int(body["reserved"])}

    async def set_product(self, sku: str, available: int, price_cents: int) -> None:
        response = await self.services["inventory"].put(
            f"/products/{sku}", json={"available": available, "price_cents": price_cents}
        )
        response.raise_for_status()

    async def set_faults(self, service: str, error_rate: float, latency_ms: int) -> None:
        response = await self.services[service].put(
            "/admin/faults", json={"error_rate": error_rate, "latency_ms": latency_ms}
        )
        response.raise_for_status()

    async def clear_faults(self, service: str) -> None:
        response = await self.services[service].delete("/admin/faults")
        response.raise_for_status()
