"""`ordersaga audit` against a real stack: orders placed through the API, then
discrepancies planted straight into the services' databases, each found alone,
with its evidence, by the command as an operator runs it (a process of its own).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from ordersaga.histories import IN_FLIGHT_LATENCY_MS
from ordersaga.runtime.settings import SERVICES
from tests import orders
from tests.integration.stack import ADMIN_TOKEN, Stack, running_stack
from tests.keys import TEST_CODEC_KEYS
from tests.ordersaga_cli import clean_env, run_ordersaga
from tests.ports import free_port
from tests.tokens import as_customer, new_customer_id

UNIT_PRICE_CENTS = 1500


@dataclass
class Placed:
    stack: Stack
    since: datetime
    sku: str
    completed: str
    failed_aq: str
    declined: str


@pytest.fixture(scope="module")
async def placed(
    dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Placed]:
    """A stack with three orders, each at its end: completed, failed at shipping
    (AQ), declined card."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    async with running_stack(dev_server_env.client, tmp_path_factory.mktemp("audit")) as stack:
        sku = f"sku_audit_{uuid.uuid4().hex[:8]}"
        await stack.stock(sku, 10, price_cents=UNIT_PRICE_CENTS)
        bodies = {
            "completed": orders.order_body(sku=sku, quantity=3, country="DE"),
            "failed_aq": orders.order_body(sku=sku, quantity=2, country="AQ"),
            "declined": orders.order_body(sku=sku, payment_token="tok_chargeDeclined"),
        }
        ids = {name: await place(stack, body) for name, body in bodies.items()}
        expected = {"completed": "COMPLETED", "failed_aq": "FAILED", "declined": "FAILED"}
        for name, order_id in ids.items():
            assert await wait_for_end(stack, order_id) == expected[name], name
        yield Placed(stack, since, sku, **ids)


async def place(stack: Stack, body: dict[str, Any]) -> str:
    response = await stack.api.post("/orders", json=body, headers=as_customer(new_customer_id()))
    assert response.status_code == 202, response.text
    return str(response.json()["order_id"])


async def wait_for_end(stack: Stack, order_id: str) -> str:
    async with asyncio.timeout(60):
        while True:
            response = await stack.api.get(f"/orders/{order_id}")
            status = str(response.json()["status"])
            if status in ("COMPLETED", "FAILED", "CANCELLED"):
                # The workflow returns just after its last status upsert.
                description = await stack.temporal.get_workflow_handle(order_id).describe()
                if description.close_time is not None:
                    return status
            await asyncio.sleep(0.1)


@dataclass
class Run:
    status: int
    stdout: str
    stderr: str

    def document(self) -> dict[str, Any]:
        # 2 or 3: the audit could not run, and stderr says why.
        assert self.status in (0, 1), (self.status, self.stderr)
        found: dict[str, Any] = json.loads(self.stdout)
        return found

    def errors(self) -> list[dict[str, Any]]:
        return [f for f in self.document()["findings"] if f["severity"] == "error"]


def audit_env(stack: Stack, **overrides: str) -> dict[str, str]:
    settings = stack.settings
    return {
        **clean_env(),
        "ORDERSAGA_TEMPORAL_ADDRESS": settings.temporal_address,
        "ORDERSAGA_TEMPORAL_NAMESPACE": stack.temporal.namespace,
        "ORDERSAGA_ADMIN_TOKEN": ADMIN_TOKEN,
        "ORDERSAGA_CODEC_KEYS": TEST_CODEC_KEYS,
        **{f"ORDERSAGA_{name.upper()}_URL": settings.service_url(name) for name in SERVICES},
        "ORDERSAGA_LOG_LEVEL": "WARNING",
        # Two shared cores under a whole test run: slow is not unreachable here.
        "ORDERSAGA_HTTP_READ_TIMEOUT_SECONDS": "30",
        **overrides,
    }


async def audit(placed: Placed, *args: str, **env: str) -> Run:
    """`ordersaga audit` in its own process (the stack serves from this loop,
    so the loop must keep running meanwhile). --since leaves out the orders of
    other test modules on the shared Temporal server."""
    ran = await run_ordersaga(
        "audit",
        "--since",
        placed.since.isoformat(),
        *args,
        within=120,
        env=audit_env(placed.stack, **env),
    )
    return Run(ran.code, ran.stdout, ran.stderr)


# --- the databases, written behind the services' backs -------------------------


@contextmanager
def database(placed: Placed, service: str) -> Iterator[sqlite3.Connection]:
    path = placed.stack.settings.data_dir / f"{service}.sqlite3"
    with closing(sqlite3.connect(path, timeout=5)) as connection, connection:
        yield connection


def now_text() -> str:
    # As SQLAlchemy writes a DateTime on SQLite.
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def the_charge(placed: Placed, order_id: str) -> dict[str, Any]:
    with database(placed, "payments") as db:
        db.row_factory = sqlite3.Row
        (row,) = db.execute("SELECT * FROM charges WHERE order_id = ?", (order_id,)).fetchall()
        return dict(row)


# --- clean --------------------------------------------------------------------------


async def test_a_clean_system_audits_clean_and_exits_0(placed: Placed, tmp_path: Path) -> None:
    metrics = tmp_path / "ordersaga_audit.prom"

    table = await audit(placed, "--metrics-file", str(metrics))
    as_json = await audit(placed, "--json")

    assert table.status == 0, (table.stdout, table.stderr)
    assert "0 errors" in table.stdout
    assert as_json.status == 0, as_json.stderr
    document = as_json.document()
    assert document["clean"] is True
    assert as_json.errors() == []
    assert document["checked"]["orders"] >= 3
    assert document["checked"]["charges"] == 2  # the declined card charged nothing
    text = metrics.read_text()
    assert 'ordersaga_audit_discrepancies{kind="double_charge",severity="error"} 0' in text
    assert "ordersaga_audit_success 1" in text
    assert "ordersaga_audit_last_run_timestamp_seconds " in text


# --- planted, one at a time ---------------------------------------------------------


def flip_refund_back(placed: Placed, order_id: str | None = None) -> Callable[[], None]:
    """The refund of the order's charge (the AQ order's by default) undone."""
    charge_id = the_charge(placed, order_id or placed.failed_aq)["charge_id"]
    with database(placed, "payments") as db:
        db.execute("UPDATE charges SET state = 'captured' WHERE charge_id = ?", (charge_id,))

    def undo() -> None:
        with database(placed, "payments") as db:
            db.execute("UPDATE charges SET state = 'refunded' WHERE charge_id = ?", (charge_id,))

    return undo


def second_charge(placed: Placed) -> Callable[[], None]:
    first = the_charge(placed, placed.completed)
    second = {**first, "charge_id": f"ch_planted_{uuid.uuid4().hex}", "state": "refunded"}
    second.update(created_at=now_text(), updated_at=now_text())
    insert_charge(placed, second)
    return delete_charge(placed, second["charge_id"])


def orphan_charge(placed: Placed) -> Callable[[], None]:
    first = the_charge(placed, placed.completed)
    orphan = {
        **first,
        "charge_id": f"ch_orphan_{uuid.uuid4().hex}",
        "order_id": f"ord_nobody_{uuid.uuid4().hex[:8]}",
        "created_at": now_text(),
        "updated_at": now_text(),
    }
    insert_charge(placed, orphan)
    return delete_charge(placed, orphan["charge_id"])


def insert_charge(placed: Placed, row: dict[str, Any]) -> None:
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    with database(placed, "payments") as db:
        db.execute(f"INSERT INTO charges ({columns}) VALUES ({marks})", tuple(row.values()))


def delete_charge(placed: Placed, charge_id: str) -> Callable[[], None]:
    def undo() -> None:
        with database(placed, "payments") as db:
            db.execute("DELETE FROM charges WHERE charge_id = ?", (charge_id,))

    return undo


def delete_shipment(placed: Placed) -> Callable[[], None]:
    with database(placed, "shipping") as db:
        db.row_factory = sqlite3.Row
        (shipment,) = db.execute(
            "SELECT * FROM shipments WHERE order_id = ?", (placed.completed,)
        ).fetchall()
        lines = db.execute(
            "SELECT * FROM shipment_lines WHERE shipment_id = ?", (shipment["shipment_id"],)
        ).fetchall()
        db.execute("DELETE FROM shipment_lines WHERE shipment_id = ?", (shipment["shipment_id"],))
        db.execute("DELETE FROM shipments WHERE shipment_id = ?", (shipment["shipment_id"],))
    saved, saved_lines = dict(shipment), [dict(line) for line in lines]

    def undo() -> None:
        with database(placed, "shipping") as db:
            for table, rows in (("shipments", [saved]), ("shipment_lines", saved_lines)):
                for row in rows:
                    db.execute(
                        f"INSERT INTO {table} ({', '.join(row)}) "
                        f"VALUES ({', '.join('?' for _ in row)})",
                        tuple(row.values()),
                    )

    return undo


def bump_reserved(placed: Placed) -> Callable[[], None]:
    with database(placed, "inventory") as db:
        db.execute("UPDATE products SET reserved = reserved + 2 WHERE sku = ?", (placed.sku,))

    def undo() -> None:
        with database(placed, "inventory") as db:
            db.execute("UPDATE products SET reserved = reserved - 2 WHERE sku = ?", (placed.sku,))

    return undo


PLANTS: dict[str, Callable[[Placed], Callable[[], None]]] = {
    "charge_not_refunded": flip_refund_back,
    "double_charge": second_charge,
    "completed_shipment_mismatch": delete_shipment,
    "stock_mismatch": bump_reserved,
    "orphan_charge": orphan_charge,
}


@pytest.mark.parametrize("kind", sorted(PLANTS))
async def test_a_planted_discrepancy_is_found_alone_with_its_evidence(
    placed: Placed, kind: str
) -> None:
    undo = PLANTS[kind](placed)
    try:
        as_json = await audit(placed, "--json")
        table = await audit(placed)
    finally:
        undo()

    assert as_json.status == 1, (as_json.stdout, as_json.stderr)
    (finding,) = as_json.errors()
    assert finding["kind"] == kind
    assert as_json.document()["clean"] is False
    evidence = finding["evidence"]
    if kind == "charge_not_refunded":
        assert finding["order_id"] == placed.failed_aq
        assert evidence["charge"]["state"] == "captured"
        assert evidence["order"]["order_status"] == "FAILED"
    elif kind == "double_charge":
        assert finding["order_id"] == placed.completed
        assert sorted(c["state"] for c in evidence["charges"]) == ["captured", "refunded"]
    elif kind == "completed_shipment_mismatch":
        assert finding["order_id"] == placed.completed
        assert evidence["shipments"] == []
    elif kind == "stock_mismatch":
        assert finding["subject"] == placed.sku
        assert evidence["difference"] == 2
    else:
        assert finding["order_id"].startswith("ord_nobody_")
        assert evidence["charge"]["amount_cents"] == 3 * UNIT_PRICE_CENTS
    assert table.status == 1
    assert kind in table.stdout and finding["subject"] in table.stdout
    # Undone: clean again.
    assert (await audit(placed, "--json")).errors() == []


# --- cancelled through Temporal ----------------------------------------------------


async def cancel_through_temporal_while_shipping(placed: Placed) -> str:
    """An order cancelled as from the Web UI while its shipment is being created:
    the shipment lands, then everything is undone and the execution ends CANCELED."""
    stack = placed.stack
    async with stack.slowed(stack.shipping, IN_FLIGHT_LATENCY_MS):
        order_id = await place(stack, orders.order_body(sku=placed.sku, country="DE"))
        await stack.wait_for_status(order_id, "SHIPPING", within=30)
        await stack.temporal.get_workflow_handle(order_id).cancel()
    assert await wait_for_end(stack, order_id) == "CANCELLED"
    description = await stack.temporal.get_workflow_handle(order_id).describe()
    assert description.status is WorkflowExecutionStatus.CANCELED
    return order_id


async def test_an_order_cancelled_through_temporal_is_clean_undone_but_not_keeping_an_effect(
    placed: Placed,
) -> None:
    order_id = await cancel_through_temporal_while_shipping(placed)
    # It got as far as a charge and a shipment, both undone since.
    assert the_charge(placed, order_id)["state"] == "refunded"

    undone = await audit(placed, "--json")
    undo = flip_refund_back(placed, order_id)
    try:
        kept = await audit(placed, "--json")
    finally:
        undo()

    assert undone.status == 0, (undone.stdout, undone.stderr)
    assert [f for f in undone.document()["findings"] if f["order_id"] == order_id] == []
    assert kept.status == 1, (kept.stdout, kept.stderr)
    (finding,) = kept.errors()
    assert (finding["kind"], finding["order_id"]) == ("charge_not_refunded", order_id)
    assert finding["evidence"]["order"]["execution_status"] == "CANCELED"
    assert finding["evidence"]["order"]["order_status"] == "CANCELLED"


# --- could not run ------------------------------------------------------------------


async def test_an_unreachable_service_exits_3_with_one_line(placed: Placed, tmp_path: Path) -> None:
    metrics = tmp_path / "audit.prom"
    down = f"http://127.0.0.1:{free_port()}"

    result = await audit(placed, "--metrics-file", str(metrics), ORDERSAGA_PAYMENTS_URL=down)

    assert result.status == 3, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "payments service" in result.stderr and down in result.stderr
    assert "ordersaga_audit_success 0" in metrics.read_text()


async def test_a_refused_admin_token_exits_2(placed: Placed) -> None:
    result = await audit(placed, ORDERSAGA_ADMIN_TOKEN="not-the-admin-token-though-32-long")

    assert result.status == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1
    assert "ORDERSAGA_ADMIN_TOKEN" in result.stderr


async def test_a_since_temporal_cannot_take_exits_2_and_the_earliest_it_can_runs(
    placed: Placed,
) -> None:
    env = audit_env(placed.stack)

    year_one = await run_ordersaga(
        "audit", "--since", "0001-01-01T00:00:00", "--json", within=120, env=env
    )
    epoch = await run_ordersaga(
        "audit", "--since", "1970-01-01T00:00:00Z", "--json", within=120, env=env
    )

    # Was 3: Temporal refused the listing ("unable to parse datetime").
    assert year_one.code == 2, (year_one.stdout, year_one.stderr)
    assert year_one.stderr.count("\n") == 1 and "before 1970-01-01" in year_one.stderr
    # Every order on the shared server, other test modules' too, whose rows are
    # in other stacks: findings, maybe, but Temporal took the query.
    assert epoch.code in (0, 1), (epoch.stdout, epoch.stderr)


async def test_a_metrics_file_that_is_a_folder_exits_2_before_the_audit_runs(
    placed: Placed, tmp_path: Path
) -> None:
    result = await audit(placed, "--metrics-file", str(tmp_path))

    # Was the whole audit on stdout, then an IsADirectoryError traceback, exit 1.
    assert result.status == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"--metrics-file: {tmp_path} is a folder" in result.stderr


# --- resolved by an operator --------------------------------------------------------


async def test_a_refund_an_operator_resolved_is_a_warning_not_an_error(
    placed: Placed, tmp_path: Path
) -> None:
    """The README's refused refund (tok_refundFail to AQ), resolved through the
    API: its charge stays captured in the ledger, and the audit says so without
    failing or alerting. Last in the module: it leaves that warning behind."""
    body = orders.order_body(sku=placed.sku, country="AQ", payment_token="tok_refundFail")
    order_id = await place(placed.stack, body)
    await placed.stack.wait_for_status(order_id, "NEEDS_ATTENTION")
    resolved = await placed.stack.api.post(  # the stack's API client reads as an operator
        f"/orders/{order_id}/compensation/resolve", json={"note": "refunded by hand"}
    )
    assert resolved.status_code == 202, resolved.text
    assert await wait_for_end(placed.stack, order_id) == "FAILED"
    metrics = tmp_path / "ordersaga_audit.prom"

    as_json = await audit(placed, "--json", "--metrics-file", str(metrics))

    assert as_json.status == 0, (as_json.stdout, as_json.stderr)
    assert as_json.errors() == []
    (finding,) = [f for f in as_json.document()["findings"] if f["order_id"] == order_id]
    assert (finding["kind"], finding["severity"]) == ("resolved_by_operator", "warning")
    assert "never refunded" in finding["message"]
    assert "refund_payment resolved by operator op_tester" in finding["message"]
    assert "refunded by hand" in finding["message"]
    assert finding["evidence"]["unresolved_kind"] == "charge_not_refunded"
    text = metrics.read_text()
    assert 'ordersaga_audit_discrepancies{kind="charge_not_refunded",severity="error"} 0' in text
    assert 'ordersaga_audit_discrepancies{kind="resolved_by_operator",severity="warning"} 1' in text


async def test_a_refund_resolved_after_a_cancellation_through_temporal_is_a_warning_too(
    placed: Placed,
) -> None:
    """Cancelled as from the Web UI while shipping, the order parks on a
    refused refund and an operator resolves it. Its execution ends CANCELED,
    with no result: the audit reads the resolve from its status query (the
    stack's worker answers), so the captured charge is a warning, not an error."""
    stack = placed.stack
    body = orders.order_body(sku=placed.sku, country="DE", payment_token="tok_refundFail")
    async with stack.slowed(stack.shipping, IN_FLIGHT_LATENCY_MS):
        order_id = await place(stack, body)
        await stack.wait_for_status(order_id, "SHIPPING", within=30)
        await stack.temporal.get_workflow_handle(order_id).cancel()
    await stack.wait_for_status(order_id, "NEEDS_ATTENTION")
    resolved = await stack.api.post(
        f"/orders/{order_id}/compensation/resolve", json={"note": "refunded after a UI cancel"}
    )
    assert resolved.status_code == 202, resolved.text
    assert await wait_for_end(stack, order_id) == "CANCELLED"
    description = await stack.temporal.get_workflow_handle(order_id).describe()
    assert description.status is WorkflowExecutionStatus.CANCELED
    assert the_charge(placed, order_id)["state"] == "captured"

    as_json = await audit(placed, "--json")

    assert as_json.status == 0, (as_json.stdout, as_json.stderr)
    assert as_json.errors() == []
    (finding,) = [f for f in as_json.document()["findings"] if f["order_id"] == order_id]
    assert (finding["kind"], finding["severity"]) == ("resolved_by_operator", "warning")
    assert "refund_payment resolved by operator op_tester" in finding["message"]
    assert "refunded after a UI cancel" in finding["message"]
    assert finding["evidence"]["order"]["execution_status"] == "CANCELED"
