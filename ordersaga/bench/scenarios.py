"""What the benchmark runs: the baseline through a Temporal client, the saga through
the HTTP API, each with the terminal status its orders must reach."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import httpx
from temporalio.client import Client

from contracts.orders import (
    Address,
    OrderLine,
    OrderResult,
    OrderStatus,
    PaymentDetails,
    PlaceOrder,
)
from ordersaga.bench.baseline import (
    WORKFLOW_QUEUE,
    BaselineInput,
    BaselineResult,
    BaselineWorkflow,
    LocalActivityBaselineWorkflow,
)
from ordersaga.bench.same_work import STEPS as SAME_WORK_STEPS
from ordersaga.bench.same_work import SameWorkWorkflow
from ordersaga.runtime.auth import DevIssuer

# The catalog price the bench sets for its own SKU: every charge must be it.
UNIT_PRICE_CENTS = 100
CUSTOMER_SCOPE = "orders:customer"
HAPPY_COUNTRY = "GB"
# Refused by shipping by default: reserve, charge, ship refused, refund, release.
UNDELIVERABLE_COUNTRY = "AQ"
CURRENCY = "EUR"
PAYMENT_TOKEN = "tok_visa"
# Every order's address but its country: the saga's through the API, the
# same-work baseline's in its workflow input.
ADDRESS = {
    "name": "Bench Customer",
    "line1": "1 Load Street",
    "city": "London",
    "postal_code": "SW1Y 4JH",
}


def customer_of(run_tag: str, sequence: int) -> str:
    # One customer per order: the payments service caps each customer's
    # total, and the API each customer's rate of orders.
    return f"cus_b{run_tag}_{sequence}"


class SubmitRefused(Exception):
    """The system did not accept an order (not a 202)."""


@dataclass
class Answer:
    """What the API said to a customer's read or cancel."""

    status_code: int
    # The order's status in the body of a 200 or 202, else None.
    order_status: str | None = None
    # A read answered from the order's last published state (no worker in time).
    stale: bool = False
    # A refusal's error code and message, as the API gave them.
    refusal: str | None = None


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


def _refusal(response: httpx.Response) -> str:
    try:
        detail = response.json()["detail"]
        return f"{detail['code']}: {detail['message']}"
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


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
        return await baseline_status(self.client, order_id, self.steps)


async def baseline_status(client: Client, workflow_id: str, steps: int) -> str:
    result = await terminal_result(client, workflow_id)
    steps_done = result[_STEPS_DONE]
    if steps_done != steps:
        return f"RAN {steps_done} OF {steps} STEPS"
    return OrderStatus.COMPLETED.value


async def terminal_result(client: Client, workflow_id: str) -> dict[str, Any]:
    """A workflow's result as the JSON object it was stored as.

    Not converted into its dataclass: the load generator needs one field of it,
    and the SDK's conversion evaluates the string annotations of every nested
    dataclass on each call (`typing.get_type_hints`), about 1.2 ms of CPU for an
    OrderResult on the bench machine, taken from the processes under test.
    """
    result = await client.get_workflow_handle(workflow_id).result()
    if not isinstance(result, dict):
        raise TypeError(f"{workflow_id} returned {type(result).__name__}, not a JSON object")
    return result


def _field_name(kind: type, name: str) -> str:
    # The field the JSON holds, checked against its dataclass so that a rename
    # fails here rather than as a KeyError in every order.
    if name not in {f.name for f in fields(kind)}:
        raise AttributeError(f"{kind.__name__} has no field {name}")
    return name


_STEPS_DONE = _field_name(BaselineResult, "steps_done")
_ORDER_STATUS = _field_name(OrderResult, "status")


@dataclass
class SameWorkScenario:
    """`baseline-same-work`: a happy order's input, started on the baseline's
    worker, whose bare workflow makes the saga's four service calls."""

    name: str
    client: Client
    sku: str
    run_tag: str
    expected_status: str = OrderStatus.COMPLETED.value

    async def submit(self, sequence: int) -> str:
        workflow_id = f"bench-{self.run_tag}-{self.name}-{sequence}"
        order = PlaceOrder(
            order_id=workflow_id,
            customer_id=customer_of(self.run_tag, sequence),
            items=[OrderLine(self.sku, 1)],
            currency=CURRENCY,
            payment=PaymentDetails(PAYMENT_TOKEN),
            shipping_address=Address(**ADDRESS, country=HAPPY_COUNTRY),
        )
        await self.client.start_workflow(
            SameWorkWorkflow.run, order, id=workflow_id, task_queue=WORKFLOW_QUEUE
        )
        return workflow_id

    async def wait_terminal(self, order_id: str) -> str:
        return await baseline_status(self.client, order_id, SAME_WORK_STEPS)


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
    # Each order's customer token, for that customer's reads and cancels.
    tokens: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = OrderStatus.FAILED if self.undeliverable else OrderStatus.COMPLETED
        self.expected_status = expected.value

    def order_body(self, sequence: int) -> dict[str, object]:
        return {
            "items": [{"sku": self.sku, "quantity": 1}],
            "currency": CURRENCY,
            "payment": {"token": PAYMENT_TOKEN},
            "shipping_address": {
                **ADDRESS,
                "country": UNDELIVERABLE_COUNTRY if self.undeliverable else HAPPY_COUNTRY,
            },
        }

    async def submit(self, sequence: int) -> str:
        token = self.issuer.mint(customer_of(self.run_tag, sequence), [CUSTOMER_SCOPE])
        response = await send_retrying(
            self.api.build_request(
                "POST",
                "/orders",
                json=self.order_body(sequence),
                headers={
                    "Idempotency-Key": f"bench-{self.run_tag}-{self.name}-{sequence}",
                    "Authorization": f"Bearer {token}",
                },
            ),
            self.api,
        )
        if response.status_code != 202:
            raise SubmitRefused(f"POST /orders answered {response.status_code}: {response.text}")
        order_id = str(response.json()["order_id"])
        self.submitted.append(order_id)
        self.tokens[order_id] = token
        return order_id

    async def read(self, order_id: str) -> Answer:
        """`GET /orders/{id}` as its customer."""
        return await self._as_customer("GET", f"/orders/{order_id}", order_id)

    async def cancel(self, order_id: str) -> Answer:
        """`POST /orders/{id}/cancel` as its customer (cancelling twice changes nothing)."""
        return await self._as_customer("POST", f"/orders/{order_id}/cancel", order_id)

    async def _as_customer(self, method: str, path: str, order_id: str) -> Answer:
        response = await send_retrying(
            self.api.build_request(
                method, path, headers={"Authorization": f"Bearer {self.tokens[order_id]}"}
            ),
            self.api,
        )
        if response.status_code not in (200, 202):
            return Answer(response.status_code, refusal=_refusal(response))
        body = response.json()
        return Answer(response.status_code, str(body["status"]), bool(body.get("stale", False)))

    async def wait_terminal(self, order_id: str) -> str:
        result = await terminal_result(self.client, order_id)
        return str(result[_ORDER_STATUS])
