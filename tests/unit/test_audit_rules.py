"""The audit's rules on plain data: each kind of discrepancy is found, with its
evidence, and a ledger that agrees with Temporal gives nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ordersaga.audit.command import parse_since
from ordersaga.audit.report import (
    AuditReport,
    metrics_text,
    previous_last_success,
    render_json,
    render_table,
    write_metrics_file,
)
from ordersaga.audit.rules import (
    Charge,
    Finding,
    Kind,
    Ledger,
    Order,
    Policy,
    Reservation,
    Resolution,
    Shipment,
    Snapshot,
    StockLevel,
    check,
    orders_that_kept_an_effect,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
STARTED = NOW - timedelta(minutes=5)


def closed(order_id: str, status: str, execution: str = "COMPLETED") -> Order:
    return Order(order_id, execution, status, STARTED, STARTED + timedelta(seconds=2), 4500)


def charge(order_id: str, state: str = "captured", amount: int = 4500, n: int = 1) -> Charge:
    return Charge(f"ch_{order_id}_{n}", order_id, state, amount, "EUR")


def shipment(order_id: str, state: str = "created", n: int = 1) -> Shipment:
    return Shipment(f"shp_{order_id}_{n}", order_id, state, "DE")


def reservation(order_id: str, state: str, total: int = 4500, n: int = 1) -> Reservation:
    return Reservation(f"res_{order_id}_{n}", order_id, state, total, "EUR")


def clean_snapshot() -> Snapshot:
    """A completed order, one failed at shipping, one declined, one cancelled
    before its charge, one in flight, and stock that adds up."""
    return Snapshot(
        taken_at=NOW,
        orders=[
            closed("ord_done", "COMPLETED"),
            closed("ord_aq", "FAILED"),
            closed("ord_declined", "FAILED"),
            closed("ord_cancelled", "CANCELLED"),
            Order("ord_busy", "RUNNING", "CHARGING", NOW - timedelta(minutes=1)),
        ],
        charges=[charge("ord_done"), charge("ord_aq", "refunded")],
        shipments=[shipment("ord_done")],
        reservations=[
            reservation("ord_done", "committed"),
            reservation("ord_aq", "released"),
            reservation("ord_declined", "released"),
            reservation("ord_cancelled", "released"),
            reservation("ord_busy", "reserved", total=1500),
        ],
        stock=[StockLevel("sku_mug", available=7, reserved=1, held=1)],
    )


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [(f.kind, f.message) for f in findings]
    return findings[0]


def test_a_ledger_that_agrees_with_temporal_gives_nothing() -> None:
    assert check(clean_snapshot()) == []


def test_an_empty_system_is_clean() -> None:
    assert check(Snapshot(taken_at=NOW)) == []


@pytest.mark.parametrize(
    ("order_id", "kind", "subject"),
    [
        ("ord_aq", Kind.CHARGE_NOT_REFUNDED, "ch_ord_aq_1"),
        ("ord_declined", Kind.RESERVATION_COMMITTED, "res_ord_declined_1"),
        ("ord_cancelled", Kind.SHIPMENT_NOT_CANCELLED, "shp_ord_cancelled_1"),
    ],
)
def test_a_compensated_order_that_kept_an_effect(order_id: str, kind: Kind, subject: str) -> None:
    snapshot = clean_snapshot()
    if kind is Kind.CHARGE_NOT_REFUNDED:
        snapshot = replace(snapshot, charges=[charge("ord_done"), charge("ord_aq")])
    elif kind is Kind.RESERVATION_COMMITTED:
        snapshot = replace(
            snapshot,
            reservations=[
                r if r.order_id != order_id else replace(r, state="committed")
                for r in snapshot.reservations
            ],
        )
    else:
        snapshot = replace(snapshot, shipments=[*snapshot.shipments, shipment(order_id)])

    finding = only(check(snapshot))

    assert (finding.kind, finding.order_id, finding.subject) == (kind, order_id, subject)
    assert finding.severity == "error"
    assert finding.evidence["order"]["order_status"] in ("FAILED", "CANCELLED")


REFUNDED_BY_HAND = Resolution(
    step="refund_payment",
    operator="ops_ada",
    note="refunded by hand",
    at="2025-03-01T11:58:00+00:00",
)


def refund_refused(*resolutions: Resolution) -> Snapshot:
    """The README's tok_refundFail to AQ order, ended FAILED: its charge still
    captured in the ledger (the issuer refused the refund), the rest undone."""
    base = clean_snapshot()
    orders = [
        replace(o, resolutions=resolutions) if o.order_id == "ord_aq" else o for o in base.orders
    ]
    return replace(base, orders=orders, charges=[charge("ord_done"), charge("ord_aq")])


def test_an_unrefunded_charge_an_operator_resolved_is_a_warning_naming_the_resolution() -> None:
    snapshot = refund_refused(REFUNDED_BY_HAND)

    finding = only(check(snapshot))
    report = report_of(snapshot)

    assert (finding.kind, finding.severity) == (Kind.RESOLVED_BY_OPERATOR, "warning")
    assert (finding.order_id, finding.subject) == ("ord_aq", "ch_ord_aq_1")
    assert "captured charge ch_ord_aq_1 (45.00 EUR), never refunded" in finding.message
    assert "refund_payment resolved by operator ops_ada" in finding.message
    assert "'refunded by hand'" in finding.message
    assert finding.evidence["unresolved_kind"] == "charge_not_refunded"
    assert finding.evidence["resolution"]["note"] == "refunded by hand"
    assert finding.evidence["charge"]["state"] == "captured"
    # Not an error anywhere an alert looks: the report, the JSON, the textfile.
    assert report.errors == [] and report.as_json()["clean"] is True
    text = metrics_text(report, ended_at=NOW)
    assert 'ordersaga_audit_discrepancies{kind="resolved_by_operator",severity="warning"} 1' in text
    assert 'ordersaga_audit_discrepancies{kind="charge_not_refunded",severity="error"} 0' in text


def test_the_same_unrefunded_charge_without_a_resolution_is_still_an_error() -> None:
    finding = only(check(refund_refused()))

    assert (finding.kind, finding.severity) == (Kind.CHARGE_NOT_REFUNDED, "error")
    assert "resolved" not in finding.message


def test_a_resolution_of_another_call_does_not_excuse_an_unrefunded_charge() -> None:
    elsewhere = replace(REFUNDED_BY_HAND, step="cancel_shipment", note="parcel recalled")

    finding = only(check(refund_refused(elsewhere)))

    assert (finding.kind, finding.severity) == (Kind.CHARGE_NOT_REFUNDED, "error")


def test_a_resolution_without_operator_or_note_still_says_so() -> None:
    anonymous = Resolution(step="refund_payment", operator="", note="", at="")

    finding = only(check(refund_refused(anonymous)))

    assert finding.kind is Kind.RESOLVED_BY_OPERATOR
    assert finding.message.endswith("refund_payment resolved by an operator (no note)")


@pytest.mark.parametrize(
    ("plant", "step", "unresolved"),
    [
        ("shipment", "cancel_shipment", Kind.SHIPMENT_NOT_CANCELLED),
        ("committed", "release_inventory", Kind.RESERVATION_COMMITTED),
    ],
)
def test_the_other_undos_an_operator_resolved_are_warnings_too(
    plant: str, step: str, unresolved: Kind
) -> None:
    base = clean_snapshot()
    if plant == "shipment":
        base = replace(base, shipments=[*base.shipments, shipment("ord_cancelled")])
    else:
        base = replace(
            base,
            reservations=[
                replace(r, state="committed") if r.order_id == "ord_cancelled" else r
                for r in base.reservations
            ],
        )
    resolved = replace(
        base,
        orders=[
            replace(o, resolutions=(replace(REFUNDED_BY_HAND, step=step),))
            if o.order_id == "ord_cancelled"
            else o
            for o in base.orders
        ],
    )

    assert only(check(base)).kind is unresolved
    finding = only(check(resolved))
    assert (finding.kind, finding.severity) == (Kind.RESOLVED_BY_OPERATOR, "warning")
    assert finding.evidence["unresolved_kind"] == unresolved.value
    assert f"{step} resolved by operator ops_ada" in finding.message


def test_only_compensated_orders_that_kept_an_effect_have_their_resolutions_read() -> None:
    snapshot = refund_refused()
    ledger = Ledger(list(snapshot.charges), list(snapshot.shipments), list(snapshot.reservations))

    assert orders_that_kept_an_effect(snapshot.orders, ledger) == ["ord_aq"]
    assert orders_that_kept_an_effect(clean_snapshot().orders, ledger) == ["ord_aq"]
    clean = clean_snapshot()
    clean_ledger = Ledger(list(clean.charges), list(clean.shipments), list(clean.reservations))
    assert orders_that_kept_an_effect(clean.orders, clean_ledger) == []


def test_a_closed_order_still_holding_its_reservation() -> None:
    snapshot = clean_snapshot()
    snapshot = replace(
        snapshot,
        reservations=[
            replace(r, state="reserved") if r.order_id == "ord_aq" else r
            for r in snapshot.reservations
        ],
    )

    finding = only(check(snapshot))

    assert finding.kind is Kind.RESERVATION_NOT_RELEASED
    assert finding.evidence["reservation"]["state"] == "reserved"


def test_a_completed_order_without_its_charge_shipment_or_reservation() -> None:
    base = clean_snapshot()
    no_charge = replace(base, charges=[charge("ord_aq", "refunded")])
    refunded = replace(base, charges=[charge("ord_done", "refunded"), charge("ord_aq", "refunded")])
    no_shipment = replace(base, shipments=[shipment("ord_done", "cancelled")])
    uncommitted = replace(
        base,
        reservations=[
            replace(r, state="released") if r.order_id == "ord_done" else r
            for r in base.reservations
        ],
    )

    assert only(check(no_charge)).kind is Kind.COMPLETED_CHARGE_MISMATCH
    assert only(check(refunded)).kind is Kind.COMPLETED_CHARGE_MISMATCH
    assert only(check(no_shipment)).kind is Kind.COMPLETED_SHIPMENT_MISMATCH
    assert only(check(no_shipment)).evidence["shipments"][0]["state"] == "cancelled"
    assert only(check(uncommitted)).kind is Kind.COMPLETED_RESERVATION_MISMATCH


def test_a_completed_order_charged_another_amount_than_it_reserved() -> None:
    snapshot = replace(
        clean_snapshot(), charges=[charge("ord_done", amount=4600), charge("ord_aq", "refunded")]
    )

    finding = only(check(snapshot))

    assert finding.kind is Kind.COMPLETED_CHARGE_MISMATCH
    assert "46.00 EUR" in finding.message and "45.00 EUR" in finding.message
    assert finding.evidence["reservation"]["total_cents"] == 4500


def test_two_charges_are_a_double_charge_even_if_one_was_refunded() -> None:
    snapshot = clean_snapshot()
    snapshot = replace(snapshot, charges=[*snapshot.charges, charge("ord_done", "refunded", n=2)])

    finding = only(check(snapshot))

    assert (finding.kind, finding.order_id) == (Kind.DOUBLE_CHARGE, "ord_done")
    assert len(finding.evidence["charges"]) == 2


def test_two_captured_charges_of_a_completed_order_are_reported_once() -> None:
    snapshot = clean_snapshot()
    snapshot = replace(snapshot, charges=[*snapshot.charges, charge("ord_done", n=2)])

    assert only(check(snapshot)).kind is Kind.DOUBLE_CHARGE


def test_two_live_shipments() -> None:
    snapshot = clean_snapshot()
    snapshot = replace(snapshot, shipments=[*snapshot.shipments, shipment("ord_done", n=2)])

    finding = only(check(snapshot))

    assert finding.kind is Kind.MULTIPLE_LIVE_SHIPMENTS


def test_rows_of_an_order_temporal_does_not_know_are_orphans() -> None:
    snapshot = clean_snapshot()
    snapshot = replace(
        snapshot,
        charges=[*snapshot.charges, charge("ord_ghost")],
        shipments=[*snapshot.shipments, shipment("ord_ghost")],
        reservations=[*snapshot.reservations, reservation("ord_ghost", "released")],
    )

    kinds = sorted(f.kind for f in check(snapshot))

    assert kinds == [Kind.ORPHAN_CHARGE, Kind.ORPHAN_RESERVATION, Kind.ORPHAN_SHIPMENT]


def test_rows_of_an_order_known_but_not_checked_are_not_orphans() -> None:
    snapshot = clean_snapshot()
    snapshot = replace(
        snapshot,
        charges=[*snapshot.charges, charge("ord_new")],
        known_order_ids=frozenset({"ord_new"}),
    )

    assert check(snapshot) == []


def test_duplicates_of_orders_outside_the_window_are_still_found() -> None:
    snapshot = clean_snapshot()
    snapshot = replace(
        snapshot,
        charges=[*snapshot.charges, charge("ord_old"), charge("ord_old", n=2)],
        known_order_ids=frozenset({"ord_old"}),
    )

    assert only(check(snapshot)).kind is Kind.DOUBLE_CHARGE


def test_stock_whose_reserved_is_not_what_reservations_hold() -> None:
    snapshot = replace(
        clean_snapshot(), stock=[StockLevel("sku_mug", available=7, reserved=3, held=1)]
    )

    finding = only(check(snapshot))

    assert (finding.kind, finding.subject, finding.order_id) == (
        Kind.STOCK_MISMATCH,
        "sku_mug",
        None,
    )
    assert finding.evidence["difference"] == 2


def test_an_order_open_too_long_and_the_limit_is_a_policy() -> None:
    old = Order("ord_stuck", "RUNNING", "SHIPPING", NOW - timedelta(minutes=20))
    snapshot = replace(clean_snapshot(), orders=[*clean_snapshot().orders, old])

    finding = only(check(snapshot))

    assert finding.kind is Kind.ORDER_OPEN_TOO_LONG
    assert finding.evidence["open_minutes"] == 20
    assert check(snapshot, Policy(max_open=timedelta(minutes=30))) == []


def test_a_parked_order_is_a_warning_with_its_reason_not_a_stuck_order() -> None:
    parked = Order(
        "ord_parked",
        "RUNNING",
        "NEEDS_ATTENTION",
        NOW - timedelta(hours=3),
        parked_reason="refund_payment refused: REFUND_REFUSED",
    )
    snapshot = replace(clean_snapshot(), orders=[*clean_snapshot().orders, parked])

    finding = only(check(snapshot))

    assert (finding.kind, finding.severity) == (Kind.ORDER_PARKED, "warning")
    assert "REFUND_REFUSED" in finding.message
    assert finding.evidence["reason"] == "refund_payment refused: REFUND_REFUSED"


@pytest.mark.parametrize(
    ("execution", "status"), [("TERMINATED", "CHARGING"), ("COMPLETED", "SHIPPING")]
)
def test_a_workflow_closed_without_the_sagas_own_end(execution: str, status: str) -> None:
    snapshot = replace(
        clean_snapshot(),
        orders=[*clean_snapshot().orders, closed("ord_killed", status, execution)],
        charges=[*clean_snapshot().charges, charge("ord_killed")],
    )

    finding = only(check(snapshot))

    assert finding.kind is Kind.WORKFLOW_CLOSED_ABNORMALLY
    assert finding.evidence["charges"][0]["state"] == "captured"


# A cancellation through Temporal (Web UI, `temporal workflow cancel`): the saga
# unwinds as for a customer's cancel, publishes CANCELLED, then re-raises the
# cancellation, so the execution ends CANCELED (with no result).
def cancelled_through_temporal(order_id: str) -> Order:
    return closed(order_id, "CANCELLED", "CANCELED")


def test_an_order_cancelled_through_temporal_and_fully_undone_is_clean() -> None:
    snapshot = replace(
        clean_snapshot(),
        orders=[*clean_snapshot().orders, cancelled_through_temporal("ord_ui")],
        charges=[*clean_snapshot().charges, charge("ord_ui", "refunded")],
        shipments=[*clean_snapshot().shipments, shipment("ord_ui", "cancelled")],
        reservations=[*clean_snapshot().reservations, reservation("ord_ui", "released")],
    )

    assert check(snapshot) == []


def test_only_a_canceled_execution_the_saga_unwound_to_cancelled_is_not_abnormal() -> None:
    """Terminated, or canceled in any other order status: nothing says the
    saga undid anything, so it stays workflow_closed_abnormally."""
    snapshot = replace(
        clean_snapshot(),
        orders=[
            *clean_snapshot().orders,
            cancelled_through_temporal("ord_ui"),
            closed("ord_killed", "CANCELLED", "TERMINATED"),
            closed("ord_midway", "CHARGING", "CANCELED"),
        ],
    )

    findings = check(snapshot)

    assert [(f.kind, f.order_id) for f in findings] == [
        (Kind.WORKFLOW_CLOSED_ABNORMALLY, "ord_killed"),
        (Kind.WORKFLOW_CLOSED_ABNORMALLY, "ord_midway"),
    ]


@pytest.mark.parametrize(
    ("kept", "kind", "subject"),
    [
        (Ledger([charge("ord_ui")], [], []), Kind.CHARGE_NOT_REFUNDED, "ch_ord_ui_1"),
        (Ledger([], [shipment("ord_ui")], []), Kind.SHIPMENT_NOT_CANCELLED, "shp_ord_ui_1"),
        (
            Ledger([], [], [reservation("ord_ui", "committed")]),
            Kind.RESERVATION_COMMITTED,
            "res_ord_ui_1",
        ),
        (
            Ledger([], [], [reservation("ord_ui", "reserved")]),
            Kind.RESERVATION_NOT_RELEASED,
            "res_ord_ui_1",
        ),
    ],
)
def test_an_order_cancelled_through_temporal_that_kept_an_effect_is_an_error(
    kept: Ledger, kind: Kind, subject: str
) -> None:
    snapshot = Snapshot(
        taken_at=NOW,
        orders=[cancelled_through_temporal("ord_ui")],
        charges=kept.charges,
        shipments=kept.shipments,
        reservations=kept.reservations,
    )

    finding = only(check(snapshot))

    assert (finding.kind, finding.order_id, finding.subject) == (kind, "ord_ui", subject)
    assert finding.severity == "error"
    assert finding.evidence["order"]["execution_status"] == "CANCELED"
    assert "could not be read" not in finding.message  # its view was read: no resolve


def test_a_kept_effect_whose_resolutions_could_not_be_read_says_why() -> None:
    """No worker answered the status query of an order with no result: an
    operator may have resolved it, and the error says the audit cannot tell."""
    unread = "cancelled through Temporal, it has no result, and no worker answered"
    order = replace(cancelled_through_temporal("ord_ui"), resolutions_unread=unread)
    snapshot = Snapshot(taken_at=NOW, orders=[order], charges=[charge("ord_ui")])

    finding = only(check(snapshot))

    assert (finding.kind, finding.severity) == (Kind.CHARGE_NOT_REFUNDED, "error")
    assert finding.message.endswith(f"(an operator's resolve could not be read: {unread})")


def test_an_order_cancelled_through_temporal_whose_refund_an_operator_resolved_is_a_warning() -> (
    None
):
    """Parked on a refused refund after a cancellation through Temporal, then
    resolved: its view (from the status query: it has no result) names the
    resolve, as a FAILED order's result does."""
    order = replace(cancelled_through_temporal("ord_ui"), resolutions=(REFUNDED_BY_HAND,))
    snapshot = Snapshot(taken_at=NOW, orders=[order], charges=[charge("ord_ui")])

    finding = only(check(snapshot))

    assert (finding.kind, finding.severity) == (Kind.RESOLVED_BY_OPERATOR, "warning")
    assert "refund_payment resolved by operator ops_ada" in finding.message
    assert finding.evidence["order"]["execution_status"] == "CANCELED"


def test_an_order_cancelled_through_temporal_that_kept_an_effect_has_its_resolutions_read() -> None:
    orders = [
        cancelled_through_temporal("ord_ui"),
        closed("ord_aq", "FAILED"),
        closed("ord_clean", "FAILED"),
        closed("ord_done", "COMPLETED"),
    ]
    ledger = Ledger(
        [charge("ord_ui"), charge("ord_aq"), charge("ord_clean", "refunded"), charge("ord_done")],
        [],
        [],
    )

    assert orders_that_kept_an_effect(orders, ledger) == ["ord_aq", "ord_ui"]


def test_findings_come_errors_first() -> None:
    parked = Order("ord_parked", "RUNNING", "NEEDS_ATTENTION", NOW)
    snapshot = replace(
        clean_snapshot(),
        orders=[parked, *clean_snapshot().orders],
        stock=[StockLevel("sku_mug", 7, 3, 1)],
    )

    assert [f.severity for f in check(snapshot)] == ["error", "warning"]


# --- the report ----------------------------------------------------------------


def report_of(snapshot: Snapshot) -> AuditReport:
    return AuditReport(snapshot, check(snapshot), since=None, max_open=timedelta(minutes=15))


def test_the_json_report_carries_every_finding_with_its_evidence() -> None:
    snapshot = replace(clean_snapshot(), stock=[StockLevel("sku_mug", 7, 3, 1)])

    document = json.loads(render_json(report_of(snapshot)))

    assert document["clean"] is False
    assert document["by_kind"] == {"stock_mismatch": 1}
    assert document["checked"]["orders"] == 5
    (finding,) = document["findings"]
    assert finding["kind"] == "stock_mismatch"
    assert finding["evidence"]["stock"]["reserved"] == 3


def test_the_table_says_clean_or_lists_each_finding() -> None:
    assert "clean" in render_table(report_of(clean_snapshot()))
    dirty = replace(clean_snapshot(), stock=[StockLevel("sku_mug", 7, 3, 1)])
    table = render_table(report_of(dirty))
    assert "1 error, 0 warnings" in table
    assert "stock_mismatch" in table and "sku_mug" in table


def test_the_metrics_textfile_has_every_kind_and_the_run_time(tmp_path: Path) -> None:
    path = tmp_path / "ordersaga_audit.prom"
    dirty = replace(clean_snapshot(), stock=[StockLevel("sku_mug", 7, 3, 1)])

    write_metrics_file(path, metrics_text(report_of(dirty), ended_at=NOW))
    text = path.read_text()

    assert 'ordersaga_audit_discrepancies{kind="stock_mismatch",severity="error"} 1' in text
    assert 'ordersaga_audit_discrepancies{kind="double_charge",severity="error"} 0' in text
    assert f"ordersaga_audit_last_run_timestamp_seconds {int(NOW.timestamp())}" in text
    assert "ordersaga_audit_success 1" in text
    assert [p.name for p in tmp_path.iterdir()] == [path.name]

    later = NOW + timedelta(hours=1)
    write_metrics_file(
        path, metrics_text(None, ended_at=later, last_success=previous_last_success(path))
    )
    failed = path.read_text()
    assert "ordersaga_audit_success 0" in failed
    assert "ordersaga_audit_discrepancies" not in failed
    assert f"ordersaga_audit_last_success_timestamp_seconds {int(NOW.timestamp())}" in failed
    assert f"ordersaga_audit_last_run_timestamp_seconds {int(later.timestamp())}" in failed


def test_since_takes_a_duration_or_a_moment() -> None:
    assert parse_since("30m", NOW) == NOW - timedelta(minutes=30)
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("2025-03-01T10:00:00", NOW) == datetime(2025, 3, 1, 10, tzinfo=UTC)
    for bad in ("yesterday", "10x", "2099-01-01T00:00:00+00:00", "-5m"):
        with pytest.raises(ValueError):
            parse_since(bad, NOW)


@pytest.mark.parametrize(
    "far",
    [
        "99999999999d",  # past what a timedelta holds
        "1000000d",  # a timedelta, but before year 1
        "9" * 5000 + "s",  # more digits than int() reads
        "0001-01-01T00:00:00",  # a date Temporal's visibility cannot parse
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:30:00+01:00",  # 1969 in UTC
    ],
)
def test_since_reaching_back_before_1970_is_refused_with_a_value_error(far: str) -> None:
    with pytest.raises(ValueError, match="before 1970-01-01"):
        parse_since(far, NOW)


def test_since_may_reach_back_to_1970_exactly() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    back = int((NOW - epoch).total_seconds())

    assert parse_since("1970-01-01T00:00:00Z", NOW) == epoch
    assert parse_since(f"{back}s", NOW) == epoch
    with pytest.raises(ValueError, match="before 1970-01-01"):
        parse_since(f"{back + 1}s", NOW)
