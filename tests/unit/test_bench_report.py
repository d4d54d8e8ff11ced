"""The benchmark's verdicts from its figures, fast and without a stack: the
ratios and their targets, CPU per service request, the targets table, what the
slow-step scenario counts, and what each order's ledger must hold. No timing is
asserted: the figures here are made up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ordersaga.bench.ledger import ledger_problems
from ordersaga.bench.load import OrderSample, Read, read_figures
from ordersaga.bench.procs import HostTicks, calibration_cpu_ms
from ordersaga.bench.report import cpu_per_request, machine_speed, ratios, table, targets
from ordersaga.bench.runner import (
    BASELINE_HAPPY,
    BASELINE_LOCAL,
    BASELINE_SAME_WORK,
    DEFAULT_SCENARIOS,
    EMBEDDED_ONLY_SCENARIOS,
    SAGA_COMPENSATION,
    SAGA_HAPPY,
    SAGA_HAPPY_POSTGRES,
    SAGA_SLOW_STEP,
    Bench,
    BenchOptions,
)
from ordersaga.bench.scenarios import Answer
from ordersaga.bench.slow_step import (
    SLOWED_STEPS,
    SlowOrder,
    cancel_figures,
    expected_after_cancel,
    slow_step_figures,
)
from ordersaga.devstack import child_env
from ordersaga.runtime.settings import Settings

PRICE = 100


def latencies(p99: float | None) -> dict[str, float | None]:
    return {"p50": p99, "p95": p99, "p99": p99}


def window(
    orders_per_second: float,
    cpu_ms: dict[str, float] | None = None,
    *,
    submit_p99: float | None = 20.0,
    read_p99: float | None = None,
    load: float = 16,
) -> dict[str, Any]:
    cpu = cpu_ms or {"temporal": 10.0}
    return {
        "load": load,
        "orders_per_second": orders_per_second,
        "submit_latency_ms": latencies(submit_p99),
        "terminal_latency_ms": latencies(100.0),
        "cpu_seconds_per_order": {name: ms / 1000 for name, ms in cpu.items()},
        "peak_rss_mb": dict.fromkeys(cpu, 100.0),
        "reads": {
            "count": 0 if read_p99 is None else 10,
            "errors": 0,
            "latency_ms": {**latencies(read_p99), "max": read_p99},
            "in_flight": 3,
            "stale": 0,
        },
    }


def scenario(rate: float, cpu_ms: dict[str, float] | None = None, **opened: Any) -> dict[str, Any]:
    return {
        "closed": {"median": window(rate, cpu_ms)},
        "open": {"median": window(rate / 2, cpu_ms, load=rate / 2, **opened)},
    }


SAGA_CPU = {"temporal": 20.0, "inventory": 8.0, "payments": 3.0, "shipping": 1.5, "worker": 30.0}


def verification(nothing_lost: bool = True) -> dict[str, Any]:
    return {
        "nothing_lost": nothing_lost,
        "orders_submitted": 10,
        "orders_terminal_as_expected": 10 if nothing_lost else 9,
        "orders_checked_against_services": 6,
        "stock": {"sku": "sku_x", "initial": 10, "expected": {}, "actual": {}},
        "problems": [] if nothing_lost else ["saga-happy: ord_1 ended FAILED, expected COMPLETED"],
        "problem_count": 0 if nothing_lost else 1,
    }


def report_of(scenarios: dict[str, Any], **extra: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "options": {"repetitions": 3, "orders": 150},
        "scenarios": scenarios,
        "slow_step": None,
        "skipped": {},
        "verification": verification(),
        "codec_cost": None,
        **extra,
    }
    report["ratios"] = ratios(scenarios)
    report["cpu_per_request"] = cpu_per_request(scenarios)
    report["machine_speed"] = machine_speed(scenarios)
    report["targets"] = targets(report)
    return report


# --- ratios and targets ----------------------------------------------------------


def test_the_saga_is_compared_with_the_same_work_and_with_bare_local_activities() -> None:
    found = ratios(
        {
            SAGA_HAPPY: scenario(18.0),
            BASELINE_SAME_WORK: scenario(20.0),
            BASELINE_LOCAL: scenario(30.0),
        }
    )

    same_work = found["saga_happy_vs_same_work"]
    assert same_work["value"] == pytest.approx(0.9)
    assert (same_work["target"], same_work["met"]) == (0.9, True)
    local = found["saga_happy_vs_local_activities"]
    assert local["value"] == pytest.approx(0.6)
    assert (local["target"], local["met"]) == (0.65, False)


def test_a_ratio_whose_scenarios_did_not_both_run_is_left_out() -> None:
    found = ratios({SAGA_HAPPY: scenario(18.0), BASELINE_HAPPY: scenario(20.0)})

    assert "saga_happy_vs_same_work" not in found
    assert "saga_happy_vs_local_activities" not in found
    assert found["saga_happy_vs_baseline"]["met"] is True  # 0.9 >= 0.85, kept as before


def repeated(*rates: float) -> dict[str, Any]:
    """A scenario whose closed-loop repetitions ran at these rates, in this order."""
    made = scenario(sorted(rates)[len(rates) // 2])
    made["closed"]["runs"] = [window(rate) for rate in rates]
    return made


def test_each_repetition_has_its_own_ratio_beside_the_median() -> None:
    report = report_of(
        {SAGA_HAPPY: repeated(46.0, 40.0, 46.0), BASELINE_LOCAL: repeated(76.0, 72.0, 80.0)}
    )

    local = report["ratios"]["saga_happy_vs_local_activities"]
    # Each pass its own pair of windows; the value is the pairs' median.
    assert local["repetitions"] == pytest.approx([46.0 / 76.0, 40.0 / 72.0, 46.0 / 80.0])
    assert local["value"] == pytest.approx(46.0 / 80.0)
    assert local["of_medians"] == pytest.approx(46.0 / 76.0)
    row = next(
        r for r in report["targets"] if r["target"].startswith("saga-happy / baseline-happy-local")
    )
    assert row["value"] == pytest.approx(46.0 / 80.0)
    assert row["of"].endswith("; each repetition 0.61 0.56 0.57; the medians' ratio 0.61")
    assert "each repetition 0.61 0.56 0.57; the medians' ratio 0.61]" in table(report)


@pytest.mark.parametrize(
    ("saga", "baseline", "met"),
    [
        # The medians' ratio 39 / 60 = 0.65 meets the target, but two passes
        # of three fall short of it (0.67, 0.63, 0.52), as in round 9's run 3.
        ((40.0, 39.0, 30.0), (60.0, 62.0, 58.0), False),
        # The other way: the medians' ratio 40 / 64 = 0.625 falls short, where
        # two passes of three are above the target (0.66, 0.57, 0.67).
        ((42.0, 40.0, 35.0), (64.0, 70.0, 52.0), True),
    ],
)
def test_the_verdict_is_the_median_of_the_passes_not_the_ratio_of_medians(
    saga: tuple[float, ...], baseline: tuple[float, ...], met: bool
) -> None:
    found = ratios({SAGA_HAPPY: repeated(*saga), BASELINE_LOCAL: repeated(*baseline)})

    local = found["saga_happy_vs_local_activities"]
    pairs = sorted(s / b for s, b in zip(saga, baseline, strict=True))
    assert local["value"] == pytest.approx(pairs[1])
    assert (local["of_medians"] >= 0.65) is not met
    assert local["met"] is met


def test_a_ratio_without_repetitions_names_only_what_it_divides() -> None:
    report = report_of({SAGA_HAPPY: scenario(18.0), BASELINE_LOCAL: scenario(30.0)})

    row = next(
        r for r in report["targets"] if r["target"].startswith("saga-happy / baseline-happy-local")
    )
    assert row["of"] == "saga-happy / baseline-happy-local-activities"


def test_read_and_submit_p99_at_the_open_loop_rate_have_their_targets() -> None:
    found = ratios({SAGA_HAPPY: scenario(20.0, submit_p99=49.0, read_p99=51.0)})

    assert found["saga-happy_submit_p99_ms_at_open_rate"]["met"] is True
    read = found["saga-happy_read_p99_ms_at_open_rate"]
    assert (read["value"], read["target"], read["met"]) == (51.0, 50.0, False)


def test_no_reads_is_not_a_met_read_target() -> None:
    found = ratios({SAGA_HAPPY: scenario(20.0, read_p99=None)})

    assert found["saga-happy_read_p99_ms_at_open_rate"]["met"] is False


def test_cpu_per_request_divides_by_the_requests_a_happy_order_makes() -> None:
    postgres_cpu = {"inventory-postgres": 3.0, "payments-postgres": 2.5, "shipping-postgres": 2.0}
    found = cpu_per_request(
        {SAGA_HAPPY: scenario(20.0, SAGA_CPU), SAGA_HAPPY_POSTGRES: scenario(15.0, postgres_cpu)}
    )

    inventory = found["saga-happy_inventory_cpu_ms_per_request"]
    assert inventory["value"] == pytest.approx(4.0)  # 8 ms per order, reserve and commit
    assert (inventory["target"], inventory["met"]) == (2.0, False)
    assert found["saga-happy_payments_cpu_ms_per_request"]["value"] == pytest.approx(3.0)
    assert found["saga-happy_shipping_cpu_ms_per_request"]["met"] is True
    assert found["saga-happy-postgres_inventory_cpu_ms_per_request"]["value"] == pytest.approx(1.5)
    assert found["saga-happy-postgres_payments_cpu_ms_per_request"]["met"] is False


def test_cpu_per_request_at_exactly_the_target_meets_it_whatever_the_floats_last_bit() -> None:
    # What a median of tick counts gave in a real run: printed 2.0, judged over 2.
    found = cpu_per_request({SAGA_HAPPY: scenario(20.0, {"shipping": 2.0000000000000004})})

    shipping = found["saga-happy_shipping_cpu_ms_per_request"]
    assert (shipping["value"], shipping["met"]) == (2.0, True)


def test_the_targets_table_holds_every_target_with_its_verdict() -> None:
    report = report_of(
        {
            SAGA_HAPPY: scenario(18.0, SAGA_CPU, read_p99=40.0),
            SAGA_COMPENSATION: scenario(15.0, SAGA_CPU, read_p99=80.0),
            BASELINE_SAME_WORK: scenario(19.0),
            BASELINE_LOCAL: scenario(40.0),
        }
    )
    rows = {row["target"]: row for row in report["targets"]}

    assert rows["saga-happy / baseline-same-work (orders/s)"]["met"] is True
    assert rows["saga-happy / baseline-happy-local-activities"]["met"] is False
    assert rows["inventory in saga-happy, 2 request(s) per order"]["met"] is False
    assert rows["GET /orders/{id} p99, saga-happy, half the maximum rate"]["met"] is True
    assert rows["GET /orders/{id} p99, saga-compensation, half the maximum rate"]["met"] is False
    assert rows["nothing lost"]["met"] is True
    printed = table(report)
    assert "targets (one run" in printed
    lines = {line.strip().split("  ")[0]: line for line in printed.splitlines()}
    assert " met " in lines["saga-happy / baseline-same-work (orders/s)"]
    assert "NOT met" in lines["saga-happy / baseline-happy-local-activities"]
    assert "<= 2 ms CPU/request" in lines["inventory in saga-happy, 2 request(s) per order"]
    assert "4.0" in lines["inventory in saga-happy, 2 request(s) per order"]
    assert "yes  >= yes" not in printed and "  yes  yes " in lines["nothing lost"]


def test_a_lost_order_misses_the_nothing_lost_target() -> None:
    report = report_of({SAGA_HAPPY: scenario(18.0)}, verification=verification(False))

    (row,) = [row for row in report["targets"] if row["target"] == "nothing lost"]
    assert row["met"] is False
    assert "ORDERS LOST OR WRONG: 1 problem(s)" in table(report)


def test_a_skipped_scenario_is_printed_with_its_reason() -> None:
    report = report_of(
        {SAGA_HAPPY: scenario(18.0)},
        skipped={SAGA_HAPPY_POSTGRES: "PostgreSQL at postgresql+asyncpg://... is not reachable"},
    )

    assert "saga-happy-postgres: skipped, PostgreSQL at" in table(report)


# --- the machine's speed ----------------------------------------------------------


def timed_runs(rate: float, *speeds: tuple[float, float | None]) -> dict[str, Any]:
    """A scenario whose closed-loop windows each carry the calibration loop's
    CPU time before it and the steal share during it."""
    measured = scenario(rate)
    measured["closed"]["runs"] = [
        {**window(rate), "calibration_cpu_ms": ms, "steal_share": steal} for ms, steal in speeds
    ]
    return measured


def test_a_run_whose_speed_held_is_reported_steady() -> None:
    report = report_of(
        {
            SAGA_HAPPY: timed_runs(18.0, (40.0, 0.0), (41.0, 0.01)),
            BASELINE_LOCAL: timed_runs(30.0, (42.0, 0.02)),
        }
    )

    speed = report["machine_speed"]
    assert (speed["windows"], speed["fastest_ms"], speed["slowest_ms"]) == (3, 40.0, 42.0)
    assert speed["steady"] is True
    assert speed["most_steal"] == 0.02
    assert "40.0 to 42.0 ms of CPU before the 3 closed-loop windows, 5% apart" in table(report)
    assert "up to 2.0% of the CPU (steal): steady" in table(report)


def test_a_run_whose_speed_moved_says_so() -> None:
    report = report_of(
        {SAGA_HAPPY: timed_runs(18.0, (36.0, 0.2)), BASELINE_LOCAL: timed_runs(30.0, (54.0, None))}
    )

    assert report["machine_speed"]["steady"] is False
    assert report["machine_speed"]["spread"] == pytest.approx(0.5)
    assert "50% apart; the hypervisor took up to 20.0% of the CPU (steal): MOVED" in table(report)


def test_without_calibrated_windows_no_speed_is_claimed() -> None:
    report = report_of({SAGA_HAPPY: scenario(18.0)})

    assert report["machine_speed"] is None
    assert "machine speed" not in table(report)


def alone_figure(gap_ms: float, clients: int, cpu_ms: float) -> dict[str, float]:
    return {
        "gap_ms": gap_ms,
        "clients": clients,
        "requests": 300,
        "cpu_ms_per_request": cpu_ms,
        "requests_per_second": 100.0,
    }


def test_payments_alone_prints_the_charge_back_to_back_and_after_each_gap() -> None:
    figures = [alone_figure(0.0, 4, 1.734), alone_figure(5.0, 1, 2.07), alone_figure(20.0, 1, 3.2)]
    report = report_of(
        {SAGA_HAPPY: scenario(18.0)}, service_alone={"figures": figures, "error": None}
    )

    assert (
        "payments alone, CPU per charge (300 each, after the ledger check): "
        "1.73 ms back to back (4 clients); 2.07 ms 5 ms idle after each; "
        "3.20 ms 20 ms idle after each"
    ) in table(report)


def test_payments_alone_that_could_not_measure_says_why() -> None:
    report = report_of(
        {SAGA_HAPPY: scenario(18.0)},
        service_alone={"figures": [], "error": "payments answered a charge with 402"},
    )

    assert "payments alone: not measured (payments answered a charge with 402)" in table(report)


def test_a_run_on_a_running_stack_has_no_payments_alone_line() -> None:
    assert "payments alone" not in table(
        report_of({SAGA_HAPPY: scenario(18.0)}, service_alone=None)
    )


def test_steal_is_the_share_of_the_machine_ticks_the_hypervisor_took() -> None:
    before, after = HostTicks(total=1000, steal=10), HostTicks(total=1400, steal=110)

    assert after.steal_share_since(before) == 0.25
    assert before.steal_share_since(before) is None
    now = HostTicks.now()
    assert now.total > 0 and 0 <= now.steal <= now.total


def test_the_calibration_loop_takes_cpu_time() -> None:
    assert calibration_cpu_ms() > 0


# --- the slow step ---------------------------------------------------------------


def read(status: str, ms: float, *, code: int = 200, stale: bool = False) -> Read:
    return Read(ms / 1000, Answer(code, status if code in (200, 202) else None, stale))


def slow_order(step: str, status: str, cancel: Read | None = None, *reads: Read) -> SlowOrder:
    sample = OrderSample("ord_x", 0.01, 3.0, status)
    return SlowOrder(step, sample, list(reads), cancel)


def test_reads_count_the_ones_that_saw_the_order_in_flight_or_stale() -> None:
    figures = read_figures(
        [
            read("SHIPPING", 10),
            read("RECEIVED", 1000, stale=True),
            read("COMPLETED", 30),
            Read(5.0, None, "ReadTimeout: "),
        ]
    )

    assert (figures["count"], figures["errors"]) == (4, 1)
    assert (figures["in_flight"], figures["stale"]) == (2, 1)
    assert figures["latency_ms"]["max"] == pytest.approx(1000)


def test_a_cancel_ends_the_order_as_its_answer_says() -> None:
    assert expected_after_cancel(read("CANCELLED", 5, code=202), "COMPLETED") == "CANCELLED"
    refused = Read(0.005, Answer(409, refusal="TOO_LATE: the order is closed (COMPLETED)"))
    assert expected_after_cancel(refused, "COMPLETED") == "COMPLETED"
    assert expected_after_cancel(None, "CANCELLED") == "COMPLETED"
    # No answer: the cancel may or may not have arrived; either end is right.
    unanswered = Read(30.0, None, "ReadTimeout: ")
    assert expected_after_cancel(unanswered, "CANCELLED") == "CANCELLED"
    assert expected_after_cancel(unanswered, None) == "COMPLETED"


def test_cancels_are_counted_by_answer_and_by_how_the_accepted_ones_ended() -> None:
    refused = Read(0.005, Answer(409, refusal="TOO_LATE: the order is closed (COMPLETED)"))
    orders = [
        slow_order("charge_payment", "CANCELLED", read("CANCELLING", 5, code=202)),
        slow_order("charge_payment", "COMPLETED", read("CHARGING", 5, code=202)),
        slow_order("charge_payment", "COMPLETED", refused),
        slow_order("charge_payment", "COMPLETED", None, read("CHARGING", 20)),
    ]

    figures = cancel_figures(orders)

    assert (figures["sent"], figures["accepted"], figures["refused_409"]) == (3, 2, 1)
    assert figures["accepted_then_cancelled"] == 1
    assert figures["accepted_then"] == {"CANCELLED": 1, "COMPLETED": 1}
    assert figures["refusals"] == {"409 TOO_LATE: the order is closed (COMPLETED)": 1}


def test_the_slow_step_target_rows_read_its_figures() -> None:
    orders = [
        slow_order(step, "CANCELLED", read("CANCELLING", 5, code=202)) for step, _ in SLOWED_STEPS
    ] + [
        slow_order("create_shipment", "COMPLETED", None, read("SHIPPING", 40), read("SHIPPING", 90))
    ]
    slow = slow_step_figures(orders, 2000)
    report = report_of({SAGA_HAPPY: scenario(18.0)}, slow_step=slow)
    rows = {row["target"]: row for row in report["targets"]}

    assert slow["steps"]["create_shipment"]["reads"]["statuses_seen"] == {"SHIPPING": 2}
    assert rows["GET /orders/{id} p99 while a step is slow"]["met"] is True
    cancels = rows["cancels while a step is in flight: share ended CANCELLED"]
    assert (cancels["value"], cancels["met"]) == (1.0, True)
    assert "create_shipment: GET p50" in table(report)


def test_no_cancel_sent_is_not_a_met_cancel_target() -> None:
    slow = slow_step_figures([], 2000)
    report = report_of({SAGA_HAPPY: scenario(18.0)}, slow_step=slow)
    rows = {row["target"]: row for row in report["targets"]}

    cancels = rows["cancels while a step is in flight: share ended CANCELLED"]
    assert (cancels["value"], cancels["met"]) == (None, False)
    assert "not measured" in table(report)


# --- what the ledgers must hold ------------------------------------------------


def ledger(charges: list[str], shipments: list[str], reservations: list[str]) -> dict[str, Any]:
    return {
        "charges": [{"state": state, "amount_cents": PRICE} for state in charges],
        "shipments": [{"state": state} for state in shipments],
        "reservations": [{"state": state} for state in reservations],
    }


@pytest.mark.parametrize(
    ("ended", "held"),
    [
        ("COMPLETED", ledger(["captured"], ["created"], ["committed"])),
        ("FAILED", ledger(["refunded"], [], ["released"])),
        ("CANCELLED", ledger(["refunded"], ["cancelled"], ["released"])),
        # Cancelled before the charge: nothing to refund or cancel.
        ("CANCELLED", ledger([], [], ["released"])),
        ("CANCELLED", ledger([], [], [])),
    ],
)
def test_a_ledger_that_matches_how_the_order_ended_has_no_problem(
    ended: str, held: dict[str, Any]
) -> None:
    assert ledger_problems("ord_x", ended, PRICE, **held) == []


@pytest.mark.parametrize(
    ("ended", "held", "wrong"),
    [
        ("COMPLETED", ledger(["captured", "captured"], ["created"], ["committed"]), "charges"),
        ("COMPLETED", ledger(["captured"], [], ["committed"]), "shipments"),
        ("CANCELLED", ledger(["captured"], [], ["released"]), "charges"),
        ("CANCELLED", ledger(["refunded"], ["created"], ["released"]), "shipments"),
        ("CANCELLED", ledger(["refunded"], [], ["committed"]), "reservations"),
        ("FAILED", ledger(["refunded"], [], ["reserved"]), "reservations"),
    ],
)
def test_a_ledger_that_does_not_match_is_a_problem_naming_what(
    ended: str, held: dict[str, Any], wrong: str
) -> None:
    (problem,) = ledger_problems("ord_x", ended, PRICE, **held)

    assert problem.startswith(f"ord_x: {wrong} ")


def test_a_charge_of_another_amount_is_a_problem() -> None:
    held = ledger(["captured"], ["created"], ["committed"])
    held["charges"][0]["amount_cents"] = PRICE + 1

    assert ledger_problems("ord_x", "COMPLETED", PRICE, **held)


# --- the run's set-up --------------------------------------------------------------


def test_the_new_scenarios_run_by_default_and_need_the_embedded_stacks() -> None:
    for name in (BASELINE_LOCAL, BASELINE_SAME_WORK, SAGA_HAPPY_POSTGRES, SAGA_SLOW_STEP):
        assert name in DEFAULT_SCENARIOS
    for name in (BASELINE_SAME_WORK, SAGA_HAPPY_POSTGRES, SAGA_SLOW_STEP):
        assert name in EMBEDDED_ONLY_SCENARIOS


def test_the_slow_step_plans_its_orders_per_step_and_a_skipped_scenario_none(
    tmp_path: Path,
) -> None:
    bench = Bench(
        BenchOptions(
            scenarios=(SAGA_HAPPY, SAGA_SLOW_STEP, SAGA_HAPPY_POSTGRES),
            orders=4,
            warmup_orders=2,
            repetitions=1,
            data_dir=tmp_path,
        ),
        Settings(),
    )

    assert bench.planned_orders(SAGA_SLOW_STEP) == 3 * 4  # a short run, shorter per step
    assert bench.planned_orders(SAGA_HAPPY_POSTGRES) == 2 + 2 * 4
    bench._skip((SAGA_HAPPY_POSTGRES,), "no PostgreSQL")
    assert bench.planned_orders(SAGA_HAPPY_POSTGRES) == 0
    assert bench.skipped == {SAGA_HAPPY_POSTGRES: "no PostgreSQL"}
    assert bench.active == (SAGA_HAPPY, SAGA_SLOW_STEP)


async def test_an_unreachable_postgresql_skips_its_scenario_with_the_reason(
    tmp_path: Path,
) -> None:
    bench = Bench(
        BenchOptions(
            scenarios=(SAGA_HAPPY, SAGA_HAPPY_POSTGRES),
            data_dir=tmp_path,
            # Port 1 on loopback: refused at once.
            postgres_url="postgresql+asyncpg://postgres@127.0.0.1:1/test",
        ),
        Settings(),
    )

    async with bench._postgres_databases() as urls:
        assert urls is None
    assert bench.active == (SAGA_HAPPY,)
    assert "127.0.0.1:1" in bench.skipped[SAGA_HAPPY_POSTGRES]


def test_the_stack_children_get_the_services_databases_given_in_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for service in ("inventory", "payments", "shipping"):
        monkeypatch.delenv(f"ORDERSAGA_{service.upper()}_DATABASE_URL", raising=False)
    url = "postgresql+asyncpg://postgres@127.0.0.1:5432/ordersaga_bench_x_payments"
    settings = Settings().model_copy(update={"payments_database_url": SecretStr(url)})

    env = child_env(settings, tmp_path)

    assert env["ORDERSAGA_PAYMENTS_DATABASE_URL"] == url
    # The others stay on their SQLite files in the stack's data folder.
    assert "ORDERSAGA_INVENTORY_DATABASE_URL" not in env
