"""`ordersaga histories record | export`: workflow histories for the replay gate.

`record` starts a whole dev stack of its own on free ports, drives every path of
the saga through the real API and services (faults and stock set through the
services' admin endpoints), checks that each order ended as the scenario
expects, and writes each workflow's history as JSON. The replay test
(tests/replay) replays every committed history against the current workflow
code, so a change that would break orders in flight fails there first.

`export` writes the histories a visibility query matches, from any Temporal
server, so histories of real production orders can join the gate.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError

from contracts.orders import OrderStatus
from ordersaga.runtime.auth import DevIssuer
from ordersaga.runtime.codec import EncryptionCodec, decrypt_history_json, keyring_from_settings
from ordersaga.runtime.keyring import Keyring
from ordersaga.runtime.settings import Settings
from ordersaga.runtime.temporal_config import data_converter, temporal_interceptors
from workflows.order import CANCEL_HOLDS_NEXT_STEP_PATCH
from workflows.runner import LOCAL_ATTEMPT_TIMEOUT

# Written into every folder `record` creates; the replay test reads it to know
# which scenarios that recording must contain.
RECORDING_MANIFEST = "RECORDING.md"

ORDER_WAIT_SECONDS = 90.0
POLL_SECONDS = 0.1
# A step's first attempt runs locally and holds the workflow task; only once it
# has timed out does the step go to its domain's queue, in flight and visible,
# where a cancel can be accepted meanwhile. Long enough to act then, short
# enough to keep `record` quick.
IN_FLIGHT_LATENCY_MS = round(LOCAL_ATTEMPT_TIMEOUT.total_seconds() * 1000) + 2_000
# A customer's cancel first asks inventory whether the order is committed
# (workflows/lost_task.py). Slowed this much, that check is still pending when
# a step held by IN_FLIGHT_LATENCY_MS lands, yet answers inside the workers'
# read timeout (Settings.http_read_timeout_seconds, 5 s) and so the API's wait
# for the cancel's answer.
CHECK_OUTLASTS_STEP_MS = IN_FLIGHT_LATENCY_MS + 1_000
TEST_SKU = "sku_mug"
# The SDK core releases a client's Python objects from its own threads a moment
# after the last reference goes; a short-lived process that exits before then
# sometimes aborts ("Fatal Python error: PyGILState_Release", sdk-python#300)
# instead of exiting cleanly. Commands wait this long after their last client.
CLIENT_SETTLE_SECONDS = 0.1


RECORDING_CUSTOMER = "cus_replay"
RECORDING_OPERATOR = "op_replay"
RECORDING_PRICE_CENTS = 1250
CUSTOMER_SCOPE = "orders:customer"
OPERATOR_SCOPE = "orders:operator"


class HistoriesError(Exception):
    """Recording or exporting cannot go on; the message says why."""


# --- files -------------------------------------------------------------------


def history_file_name(workflow_id: str, run_id: str) -> str:
    """One file per run; anything but [A-Za-z0-9._-] in an id becomes '_'."""
    safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", workflow_id)
    return f"{safe_id}__{run_id}.json"


def pretty_history_json(history_json: str) -> str:
    """The SDK's JSON (the same shape `temporal workflow show -o json` prints),
    indented so it reads well in a review."""
    return json.dumps(json.loads(history_json), indent=2) + "\n"


def prepare_out_dir(out: Path) -> Path:
    """Create the folder (and parents) and prove it can be written, before any work."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as error:
        raise HistoriesError(f"cannot write to {out}: {error.strerror or error}") from None
    return out


# --- export ------------------------------------------------------------------

# What identifies a person in an order's payloads (workflow input, activity
# inputs): the shipping address but its country, and the payment token. The
# workflow never branches on them, so a history without them replays the same.
ADDRESS_FIELDS = frozenset({"name", "line1", "line2", "city", "postal_code"})
TOKEN_FIELDS = frozenset({"token", "payment_token"})
REDACTED = "redacted"
_JSON_ENCODING = base64.b64encode(b"json/plain").decode()


def redact_history_json(history_json: str) -> str:
    """The same history with personal data in its JSON payloads replaced."""
    history = json.loads(history_json)
    _redact_payloads(history)
    return json.dumps(history)


def _redact_payloads(node: Any) -> None:
    _walk_objects(node, _redact_payload)


def _redact_payload(node: dict[str, Any]) -> bool:
    """Redacts `node` if it is a JSON payload, saying whether it was one."""
    if node.get("metadata", {}).get("encoding") != _JSON_ENCODING or "data" not in node:
        return False
    value = json.loads(base64.b64decode(node["data"]))
    _walk_objects(value, _redact_fields)
    node["data"] = base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()
    return True


def _redact_fields(value: dict[str, Any]) -> bool:
    is_address = "country" in value and "line1" in value
    for key, child in value.items():
        if isinstance(child, str) and (
            key in TOKEN_FIELDS or (is_address and key in ADDRESS_FIELDS)
        ):
            value[key] = REDACTED
    return False


def _walk_objects(node: Any, visit: Callable[[dict[str, Any]], bool]) -> None:
    """`visit` each object in a JSON tree, outermost first; it returns True to keep
    the walk out of that object's values."""
    if isinstance(node, list):
        for item in node:
            _walk_objects(item, visit)
    elif isinstance(node, dict) and not visit(node):
        for child in node.values():
            _walk_objects(child, visit)


async def connect(address: str, namespace: str, keyring: Keyring) -> Client:
    try:
        return await Client.connect(
            address,
            namespace=namespace,
            data_converter=data_converter(keyring),
            interceptors=temporal_interceptors(),
        )
    except RuntimeError as error:  # the SDK's "Failed client connect: ..."
        raise HistoriesError(f"cannot reach Temporal at {address}: {error}") from None


async def export_histories(
    *,
    address: str,
    namespace: str,
    query: str,
    out: Path,
    limit: int,
    log: Callable[[str], None],
    keyring: Keyring,
    redact: bool = True,
) -> list[Path]:
    """Histories are written decrypted with `keyring` (then redacted), so the
    replay gate reads them without the production keys."""
    prepare_out_dir(out)
    try:
        client = await connect(address, namespace, keyring)
        codec = EncryptionCodec(keyring)
        written: list[Path] = []
        try:
            async for execution in client.list_workflows(query, limit=limit):
                handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
                history = await handle.fetch_history()
                path = out / history_file_name(execution.id, execution.run_id)
                history_json = decrypt_history_json(history.to_json(), codec)
                if redact:
                    history_json = redact_history_json(history_json)
                path.write_text(pretty_history_json(history_json))
                status = execution.status.name if execution.status else "UNKNOWN"
                log(f"{path}  ({execution.workflow_type}, {status}, {len(history.events)} events)")
                written.append(path)
        except RPCError as error:
            raise HistoriesError(f"query {query!r} failed: {error.message}") from None
        except OSError as error:
            raise HistoriesError(f"cannot write to {out}: {error.strerror or error}") from None
        if len(written) == limit:
            log(f"stopped at --limit {limit}; there may be more")
        return written
    finally:
        await asyncio.sleep(CLIENT_SETTLE_SECONDS)


# --- record: the scenarios ---------------------------------------------------


class ScenarioFailed(HistoriesError):
    pass


@dataclass(frozen=True)
class Scenario:
    name: str
    expected: OrderStatus
    description: str
    drive: Callable[[Driver], Awaitable[str]]


class Driver:
    """Plays the customer and the operator against a running stack, over HTTP."""

    def __init__(
        self,
        api_url: str,
        service_urls: dict[str, str],
        admin_token: str,
        http: httpx.AsyncClient,
        client: Client,
        issuer: DevIssuer,
    ) -> None:
        self.api_url = api_url
        self.service_urls = service_urls
        self.http = http
        self.client = client
        self._admin = {"Authorization": f"Bearer {admin_token}"}
        # The stack's own dev issuer signs the customer's and the operator's tokens.
        self._customer = {
            "Authorization": f"Bearer {issuer.mint(RECORDING_CUSTOMER, [CUSTOMER_SCOPE])}"
        }
        self._operator = {
            "Authorization": f"Bearer {issuer.mint(RECORDING_OPERATOR, [OPERATOR_SCOPE])}"
        }

    # The customer ------------------------------------------------------------

    async def place(
        self, *, sku: str = TEST_SKU, token: str = "tok_visa", country: str = "DE"
    ) -> str:
        # The customer is the bearer token's subject, and prices come from the
        # catalog: the body names neither.
        body = {
            "items": [{"sku": sku, "quantity": 1}],
            "currency": "EUR",
            "payment": {"token": token},
            "shipping_address": {
                "name": "Replay Recorder",
                "line1": "1 Test Street",
                "city": "Berlin",
                "postal_code": "10115",
                "country": country,
            },
        }
        response = await self.http.post(
            f"{self.api_url}/orders",
            json=body,
            headers={"Idempotency-Key": uuid.uuid4().hex, **self._customer},
        )
        self._expect(response, 202, "POST /orders")
        return str(response.json()["order_id"])

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.http.get(f"{self.api_url}/orders/{order_id}", headers=self._operator)
        self._expect(response, 200, f"GET /orders/{order_id}")
        order: dict[str, Any] = response.json()
        return order

    async def wait_for(self, order_id: str, *statuses: OrderStatus) -> dict[str, Any]:
        wanted = {status.value for status in statuses}
        order: dict[str, Any] = {}
        try:
            async with asyncio.timeout(ORDER_WAIT_SECONDS):
                while True:
                    order = await self.order(order_id)
                    if order["status"] in wanted:
                        return order
                    await asyncio.sleep(POLL_SECONDS)
        except TimeoutError:
            raise ScenarioFailed(
                f"order {order_id} did not reach {'/'.join(sorted(wanted))} within "
                f"{ORDER_WAIT_SECONDS:.0f}s; last status {order.get('status')}"
            ) from None

    async def cancel(self, order_id: str, *, answer: int = 202) -> None:
        """Cancel as the customer; the API accepts with 202, refuses with 409."""
        await self._act_on(
            order_id, "cancel", {"reason": "replay recording"}, self._customer, answer=answer
        )

    async def resolve(self, order_id: str) -> None:
        note = "refunded by hand (replay recording)"
        await self._act_on(order_id, "compensation/resolve", {"note": note}, self._operator)

    async def _act_on(
        self,
        order_id: str,
        action: str,
        body: dict[str, str],
        headers: dict[str, str],
        *,
        answer: int = 202,
    ) -> None:
        """POST /orders/{order_id}/{action}: the API accepts a cancel or an
        operator's decision with 202."""
        path = f"/orders/{order_id}/{action}"
        response = await self.http.post(f"{self.api_url}{path}", json=body, headers=headers)
        self._expect(response, answer, f"POST {path}")

    async def patches_recorded(self, order_id: str) -> set[str]:
        """The ids of the `workflow.patched` markers in the order's history."""
        history = await self.client.get_workflow_handle(order_id).fetch_history()
        payloads = [
            payload
            for event in history.events
            if event.HasField("marker_recorded_event_attributes")
            and "patch-data" in event.marker_recorded_event_attributes.details
            for payload in event.marker_recorded_event_attributes.details["patch-data"].payloads
        ]
        codec = self.client.data_converter.payload_codec
        if codec is not None:
            payloads = await codec.decode(payloads)
        return {json.loads(payload.data)["id"] for payload in payloads}

    # The operator ------------------------------------------------------------

    async def set_faults(self, service: str, *, error_rate: float, latency_ms: int = 0) -> None:
        response = await self.http.put(
            f"{self.service_urls[service]}/admin/faults",
            json={"error_rate": error_rate, "latency_ms": latency_ms},
            headers=self._admin,
        )
        self._expect(response, 200, f"PUT {service} /admin/faults")

    async def clear_faults(self, service: str) -> None:
        response = await self.http.delete(
            f"{self.service_urls[service]}/admin/faults", headers=self._admin
        )
        self._expect(response, 204, f"DELETE {service} /admin/faults")

    async def set_stock(self, sku: str, available: int) -> None:
        response = await self.http.put(
            f"{self.service_urls['inventory']}/products/{sku}",
            json={"available": available, "price_cents": RECORDING_PRICE_CENTS},
            headers=self._admin,
        )
        self._expect(response, 200, f"PUT inventory /products/{sku}")

    # Temporal, to act at exactly the right moment ------------------------------

    async def wait_for_activity(self, order_id: str, activity: str, *, failed: bool) -> None:
        """Until `activity` is running for the order, or (failed=True) until an
        attempt of it has failed: its pending record then carries the failure,
        the deterministic sign that a retry really happens."""
        handle = self.client.get_workflow_handle(order_id)
        started = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        try:
            async with asyncio.timeout(ORDER_WAIT_SECONDS):
                while True:
                    description = await handle.describe()
                    for pending in description.raw_description.pending_activities:
                        if pending.activity_type.name != activity:
                            continue
                        if failed and pending.HasField("last_failure"):
                            return
                        if not failed and pending.state == started:
                            return
                    await asyncio.sleep(POLL_SECONDS)
        except TimeoutError:
            what = "an attempt failing" if failed else "it running"
            raise ScenarioFailed(f"order {order_id}: {activity}: never saw {what}") from None

    @staticmethod
    def _expect(response: httpx.Response, status: int, what: str) -> None:
        if response.status_code != status:
            raise ScenarioFailed(
                f"{what} answered {response.status_code}, expected {status}: {response.text}"
            )


def expect_step(order: dict[str, Any], step: str, *states: str) -> None:
    state = next(s["state"] for s in order["steps"] if s["name"] == step)
    if state not in states:
        raise ScenarioFailed(
            f"order {order['order_id']}: step {step} is {state}, expected {'/'.join(states)}"
        )


async def happy_path(d: Driver) -> str:
    return await d.place()


async def out_of_stock(d: Driver) -> str:
    sku = f"sku_replay_{uuid.uuid4().hex[:8]}"
    await d.set_stock(sku, 0)
    return await d.place(sku=sku)


async def payment_declined(d: Driver) -> str:
    return await d.place(token="tok_chargeDeclined")


async def undeliverable(d: Driver) -> str:
    return await d.place(country="AQ")


async def transient_retries(d: Driver) -> str:
    await d.set_faults("payments", error_rate=1.0)
    try:
        order_id = await d.place()
        await d.wait_for_activity(order_id, "charge_payment", failed=True)
    finally:
        await d.clear_faults("payments")
    order = await d.wait_for(order_id, OrderStatus.COMPLETED, OrderStatus.FAILED)
    charge = next(s for s in order["steps"] if s["name"] == "charge_payment")
    if charge["attempts"] < 2:
        raise ScenarioFailed(f"order {order_id}: charge_payment took {charge['attempts']} attempt")
    return order_id


async def _cancel_during(d: Driver, service: str, activity: str) -> str:
    """Cancel through the API while `activity` is in flight (held by latency)."""
    await d.set_faults(service, error_rate=0.0, latency_ms=IN_FLIGHT_LATENCY_MS)
    try:
        order_id = await d.place()
        await d.wait_for_activity(order_id, activity, failed=False)
        await d.cancel(order_id)
    finally:
        await d.clear_faults(service)
    return order_id


async def cancelled_before_shipping(d: Driver) -> str:
    order_id = await _cancel_during(d, "payments", "charge_payment")
    order = await d.wait_for(order_id, *TERMINAL)
    expect_step(order, "create_shipment", "pending")
    return order_id


async def cancelled_step_in_flight(d: Driver) -> str:
    order_id = await _cancel_during(d, "shipping", "create_shipment")
    order = await d.wait_for(order_id, *TERMINAL)
    # The shipment landed after the cancel was accepted, so it was undone too.
    expect_step(order, "create_shipment", "compensated")
    return order_id


async def _cancel_while_the_charge_lands(
    d: Driver, *, token: str, answer: int, charge_ends: str
) -> str:
    """Cancel while the charge is in flight, with the cancel's check on
    inventory (is the order committed?) still pending when the charge lands:
    the moment patch cancel-holds-next-step decides. `answer` is the API's to
    the cancel, `charge_ends` the charge step's state once the order has
    ended; nothing ships either way."""
    await d.set_faults("payments", error_rate=0.0, latency_ms=IN_FLIGHT_LATENCY_MS)
    try:
        order_id = await d.place(token=token)
        await d.wait_for_activity(order_id, "charge_payment", failed=False)
        await d.set_faults("inventory", error_rate=0.0, latency_ms=CHECK_OUTLASTS_STEP_MS)
        try:
            await d.cancel(order_id, answer=answer)  # answered once inventory has
        finally:
            await d.clear_faults("inventory")
    finally:
        await d.clear_faults("payments")
    order = await d.wait_for(order_id, *TERMINAL)
    expect_step(order, "charge_payment", charge_ends)
    expect_step(order, "create_shipment", "pending")
    # The patch was asked while the cancel was still checked: the history
    # takes one of its new branches.
    if CANCEL_HOLDS_NEXT_STEP_PATCH not in await d.patches_recorded(order_id):
        raise ScenarioFailed(
            f"order {order_id}: the charge landed with no cancel being checked "
            f"(no {CANCEL_HOLDS_NEXT_STEP_PATCH} marker)"
        )
    return order_id


async def cancel_decided_before_shipping(d: Driver) -> str:
    """A customer's cancel still being decided when the charge landed: the
    shipment waits for the decision (patch cancel-holds-next-step), so nothing
    ships only to be cancelled again."""
    return await _cancel_while_the_charge_lands(
        d, token="tok_visa", answer=202, charge_ends="compensated"
    )


async def cancel_checked_while_the_charge_failed(d: Driver) -> str:
    """A customer's cancel still being decided when the charge was declined:
    the order is already being undone as FAILED, so the cancel is refused as
    too late (409; patch cancel-holds-next-step) and the order ends FAILED."""
    return await _cancel_while_the_charge_lands(
        d, token="tok_chargeDeclined", answer=409, charge_ends="failed"
    )


async def cancelled_through_temporal(d: Driver) -> str:
    """Cancelled in the Web UI / CLI (a Temporal cancellation), not through the API."""
    await d.set_faults("shipping", error_rate=0.0, latency_ms=IN_FLIGHT_LATENCY_MS)
    try:
        order_id = await d.place()
        await d.wait_for_activity(order_id, "create_shipment", failed=False)
        await d.client.get_workflow_handle(order_id).cancel()
    finally:
        await d.clear_faults("shipping")
    order = await d.wait_for(order_id, *TERMINAL)
    expect_step(order, "create_shipment", "compensated")
    description = await d.client.get_workflow_handle(order_id).describe()
    if description.status is not WorkflowExecutionStatus.CANCELED:
        raise ScenarioFailed(f"order {order_id}: execution ended {description.status}")
    return order_id


async def cancel_checked_while_an_undo_was_refused(d: Driver) -> str:
    """A customer's cancel still being checked when the order, cancelled
    through Temporal meanwhile, parked on a refused refund: the cancel is too
    late, as after any failure (patch cancel-holds-next-step, asked because a
    refused undo counts as one), and the order waits for an operator."""
    await d.set_faults("shipping", error_rate=0.0, latency_ms=IN_FLIGHT_LATENCY_MS)
    try:
        order_id = await d.place(token="tok_refundFail")
        await d.wait_for_activity(order_id, "create_shipment", failed=False)
        await d.set_faults("inventory", error_rate=0.0, latency_ms=CHECK_OUTLASTS_STEP_MS)
        try:
            # Answered once the check's slowed call to inventory is.
            cancel = asyncio.create_task(d.cancel(order_id, answer=409))
            await d.wait_for_activity(order_id, "find_committed_reservation", failed=False)
        finally:
            # The latency a call waits is set as it arrives: only the
            # customer's check stays slowed, and the undo goes at full speed.
            await d.clear_faults("inventory")
        await d.client.get_workflow_handle(order_id).cancel()
    finally:
        await d.clear_faults("shipping")
    await d.wait_for(order_id, OrderStatus.NEEDS_ATTENTION, *TERMINAL)
    await cancel
    order = await d.order(order_id)
    if order["status"] != OrderStatus.NEEDS_ATTENTION.value:
        raise ScenarioFailed(f"order {order_id}: {order['status']} after the cancel was refused")
    expect_step(order, "charge_payment", "compensating")
    if CANCEL_HOLDS_NEXT_STEP_PATCH not in await d.patches_recorded(order_id):
        raise ScenarioFailed(
            f"order {order_id}: the cancel's check ended before the refund was refused "
            f"(no {CANCEL_HOLDS_NEXT_STEP_PATCH} marker)"
        )
    await d.resolve(order_id)
    return order_id


async def needs_attention_resolved(d: Driver) -> str:
    order_id = await d.place(token="tok_refundFail", country="AQ")
    await d.wait_for(order_id, OrderStatus.NEEDS_ATTENTION, *TERMINAL)
    await d.resolve(order_id)
    return order_id


TERMINAL = (OrderStatus.COMPLETED, OrderStatus.FAILED, OrderStatus.CANCELLED)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("happy_path", OrderStatus.COMPLETED, "reserved, charged, shipped", happy_path),
    Scenario("out_of_stock", OrderStatus.FAILED, "reservation refused", out_of_stock),
    Scenario(
        "payment_declined",
        OrderStatus.FAILED,
        "tok_chargeDeclined: charge refused, stock released",
        payment_declined,
    ),
    Scenario(
        "undeliverable",
        OrderStatus.FAILED,
        "country AQ: shipment refused, refunded, released",
        undeliverable,
    ),
    Scenario(
        "transient_retries",
        OrderStatus.COMPLETED,
        "payments failing until a charge attempt failed, then healthy: retried, completed",
        transient_retries,
    ),
    Scenario(
        "cancelled_before_shipping",
        OrderStatus.CANCELLED,
        "cancel accepted while charging: refunded, released, never shipped",
        cancelled_before_shipping,
    ),
    Scenario(
        "cancelled_step_in_flight",
        OrderStatus.CANCELLED,
        "cancel accepted while create_shipment was in flight: it landed, then all undone",
        cancelled_step_in_flight,
    ),
    Scenario(
        "cancel_decided_before_shipping",
        OrderStatus.CANCELLED,
        "cancel still being checked when the charge landed: shipping waited for it; "
        "refunded, released, never shipped",
        cancel_decided_before_shipping,
    ),
    Scenario(
        "cancel_checked_while_the_charge_failed",
        OrderStatus.FAILED,
        "cancel still being checked when the charge was declined: refused as too late; "
        "released, never shipped",
        cancel_checked_while_the_charge_failed,
    ),
    Scenario(
        "cancelled_through_temporal",
        OrderStatus.CANCELLED,
        "workflow cancelled through Temporal while create_shipment was in flight",
        cancelled_through_temporal,
    ),
    Scenario(
        "cancel_checked_while_an_undo_was_refused",
        OrderStatus.CANCELLED,
        "cancel still being checked when the order, cancelled through Temporal, parked "
        "on a refused refund: refused as too late; resolved by an operator",
        cancel_checked_while_an_undo_was_refused,
    ),
    Scenario(
        "needs_attention_resolved",
        OrderStatus.FAILED,
        "tok_refundFail + AQ: refund refused, NEEDS_ATTENTION, resolved by an operator",
        needs_attention_resolved,
    ),
)
SCENARIO_NAMES = tuple(scenario.name for scenario in SCENARIOS)


# --- record: running them ------------------------------------------------------


def default_label() -> str:
    from ordersaga.runtime.version import git_commit, package_version

    commit = git_commit()
    return f"v{package_version()}" + (f"-{commit}" if commit else "")


def check_label(label: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", label):
        raise HistoriesError(
            f"--label {label!r}: use letters, digits and . _ + - (it names a folder)"
        )
    return label


def manifest_text(label: str, rows: Sequence[tuple[Scenario, str, int]]) -> str:
    from ordersaga.runtime.version import version_string

    lines = [
        f"# Recording {label}",
        "",
        f"Recorded {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `ordersaga histories record`",
        f"with {version_string()}. Every file is one real run on a dev server;",
        "tests/replay replays them all against the current workflow code.",
        "",
        "| scenario | ended | events | what happened |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| `{s.name}.json` | {status} | {events} | {s.description} |" for s, status, events in rows
    ]
    return "\n".join(lines) + "\n"


async def record_histories(
    *,
    out: Path,
    label: str,
    settings: Settings,
    log: Callable[[str], None],
    only: Sequence[str] = (),
) -> Path:
    """Record every scenario into out/label; nothing is written unless all succeed."""
    from ordersaga.devstack import embedded_stack, on_free_ports, temporal_address

    scenarios = [s for s in SCENARIOS if not only or s.name in only]
    unknown = set(only) - set(SCENARIO_NAMES)
    if unknown:
        raise HistoriesError(
            f"unknown scenario(s) {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(SCENARIO_NAMES)}"
        )
    target = prepare_out_dir(out) / check_label(label)
    if target.exists():
        raise HistoriesError(f"{target} already exists; delete it or choose another --label")

    work = Path(tempfile.mkdtemp(prefix="ordersaga-record-"))
    stack_log_path = work / "stack.log"
    staged = work / label
    staged.mkdir()
    succeeded = False
    log(f"starting a dev stack on free ports (its output: {stack_log_path})")
    try:
        with stack_log_path.open("w") as stack_log:
            async with embedded_stack(
                on_free_ports(settings.model_copy(update={"dev_mode": True})),
                work / "data",
                console_stream=stack_log,
            ) as stack:
                rows = await _drive_all(
                    stack.api_url,
                    stack.service_urls,
                    stack.settings.admin_token.get_secret_value(),
                    DevIssuer.in_data_dir(stack.data_dir),
                    temporal_address(stack.settings),
                    stack.settings.temporal_namespace,
                    # The stack's own keyring: dev mode's key in its data dir,
                    # unless ORDERSAGA_CODEC_KEYS (which the children inherit) is set.
                    keyring_from_settings(
                        stack.settings.model_copy(update={"data_dir": stack.data_dir})
                    ),
                    scenarios,
                    staged,
                    log,
                )
        await asyncio.sleep(CLIENT_SETTLE_SECONDS)
        (staged / RECORDING_MANIFEST).write_text(manifest_text(label, rows))
        shutil.copytree(staged, target)
        succeeded = True
    finally:
        if succeeded:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"recording failed; the stack's output is kept in {stack_log_path}")
    return target


async def _drive_all(
    api_url: str,
    service_urls: dict[str, str],
    admin_token: str,
    issuer: DevIssuer,
    address: str,
    namespace: str,
    keyring: Keyring,
    scenarios: Sequence[Scenario],
    staged: Path,
    log: Callable[[str], None],
) -> list[tuple[Scenario, str, int]]:
    client = await connect(address, namespace, keyring)
    codec = EncryptionCodec(keyring)
    rows: list[tuple[Scenario, str, int]] = []
    async with httpx.AsyncClient(timeout=30) as http:
        driver = Driver(api_url, service_urls, admin_token, http, client, issuer)
        for number, scenario in enumerate(scenarios, 1):
            log(f"[{number}/{len(scenarios)}] {scenario.name}: {scenario.description}")
            try:
                order_id = await scenario.drive(driver)
                order = await driver.wait_for(order_id, *TERMINAL)
            except ScenarioFailed as failure:
                raise ScenarioFailed(f"scenario {scenario.name}: {failure}") from None
            if order["status"] != scenario.expected.value:
                raise ScenarioFailed(
                    f"scenario {scenario.name}: order {order_id} ended {order['status']}, "
                    f"expected {scenario.expected.value} ({order['failure_reason']})"
                )
            # The order's status is final a moment before the execution
            # closes; the history must be complete.
            await _wait_closed(client, order_id)
            history = await client.get_workflow_handle(order_id).fetch_history()
            # Written decrypted: test data only, and the gate needs no key to read it.
            history_json = decrypt_history_json(history.to_json(), codec)
            (staged / f"{scenario.name}.json").write_text(pretty_history_json(history_json))
            rows.append((scenario, order["status"], len(history.events)))
            log(f"      {order['status']} as expected; {len(history.events)} events ({order_id})")
    return rows


async def _wait_closed(client: Client, workflow_id: str) -> None:
    # A long poll on the result; a cancelled execution "fails" with CancelledError.
    async with asyncio.timeout(ORDER_WAIT_SECONDS):
        with contextlib.suppress(WorkflowFailureError):
            await client.get_workflow_handle(workflow_id).result()


def printer(stream: TextIO = sys.stdout) -> Callable[[str], None]:
    def log(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    return log
