"""What the benchmark runs: the baseline through a Temporal client, the saga through
the HTTP API, each with the terminal status its orders must reach."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from temporalio.client import Client

from contracts.orders import OrderResult, OrderStatus
from ordersaga.bench.baseline import (
    WORKFLOW_QUEUE,
    BaselineInput,
    BaselineResult,
    BaselineWorkflow,
    LocalActivityBaselineWorkflow,
)
from ordersaga.runtime.auth import DevIssuer

# The catalog price the bench sets for its own SKU: every charge must be it.
UNIT_PRICE_CENTS = 100
CUSTOMER_SCOPE = "orders:customer"
HAPPY_COUNTRY = "GB"
# Refused by shipping by default: reserve, charge, ship refused, refund, release.
UNDELIVERABLE_COUNTRY = "AQ"


class SubmitRefused(Exception):
    """The system did not accept an order (not a 202)."""


# A keep-alive connection the server closed just as it was reused fails the
# request without it having been processed; a client retries that (the order
# POST is safe to repeat under its Idempotency-Key, the GETs always are).
TRANSPORT_ATTEMPTS = 3


async def send_retrying(request: httpx.Request, http: httpx.AsyncClient) -> httpx.Response:
    for attempt in range(1, TRANSPORT_ATTEMPTS + 1):
        try:
            return await http.send(request)
        except httpx.TransportError:
            if attempt == TRANSPORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


@dataclass
class BaselineScenario:
    name: str
    client: Client
    steps: int
    run_tag: str
    local_activities: bool = False
    expected_status: str = OrderStatus.COMPLETED.value

    async def submit(self, sequence: int) -> str:
        workflow_id = f"bench-{self.run_tag}-{self.name}-{sequence}"
        run = LocalActivityBaselineWorkflow.run if self.local_activities else BaselineWorkflow.run
        await self.client.start_workflow(
            run, BaselineInput(self.steps), id=workflow_id, task_queue=WORKFLOW_QUEUE
        )
        return workflow_id

    async def wait_terminal(self, order_id: str) -> str:
        result = await self.client.get_workflow_handle(
            order_id, result_type=BaselineResult
        ).result()
        if result.steps_done != self.steps:
            return f"RAN {result.steps_done} OF {self.steps} STEPS"
        return OrderStatus.COMPLETED.value


@dataclass
class SagaScenario:
    """Orders through `POST /orders`; `undeliverable` sends them down the compensation path."""

    name: str
    api: httpx.AsyncClient
    client: Client
    sku: str
    run_tag: str
    undeliverable: bool
    # Signs each order's customer token, as the stack's issuer would.
    issuer: DevIssuer
    expected_status: str = ""
    submitted: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        expected = OrderStatus.FAILED if self.undeliverable else OrderStatus.COMPLETED
        self.expected_status = expected.value

    def customer_of(self, sequence: int) -> str:
        # One customer per order: the payments service caps each customer's
        # total, and the API each customer's rate of orders.
        return f"cus_b{self.run_tag}_{sequence}"

    def order_body(self, sequence: int) -> dict[str, object]:
        return {
            "items": [{"sku": self.sku, "quantity": 1}],
            "currency": "EUR",
            "payment": {"token": "tok_visa"},
            "shipping_address": {
                "name": "Bench Customer",
                "line1": "1 Load Street",
                "city": "London",
                "postal_code": "SW1Y 4JH",
                "country": UNDELIVERABLE_COUNTRY if self.undeliverable else HAPPY_COUNTRY,
            },
        }

    async def submit(self, sequence: int) -> str:
        response = await send_retrying(
            self.api.build_request(
                "POST",
                "/orders",
                json=self.order_body(sequence),
                headers={
                    "Idempotency-Key": f"bench-{self.run_tag}-{self.name}-{sequence}",
                    "Authorization": "Bearer "
                    + self.issuer.mint(self.customer_of(sequence), [CUSTOMER_SCOPE]),
                },
            ),
            self.api,
        )
        if response.status_code != 202:
            raise SubmitRefused(f"POST /orders answered {response.status_code}: {response.text}")
        order_id = str(response.json()["order_id"])
        self.submitted.append(order_id)
        return order_id

    async def wait_terminal(self, order_id: str) -> str:
        result = await self.client.get_workflow_handle(order_id, result_type=OrderResult).result()
        return str(result.status.value)
