"""`ordersaga bench` as a user runs it, kept small: it runs, its report holds, and a
lost order is caught. No timing is asserted: performance is never a test here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ordersaga.bench.load import OrderSample, RunResult
from ordersaga.bench.runner import (
    BASELINE_HAPPY,
    BASELINE_SAME_WORK,
    DEFAULT_SCENARIOS,
    SAGA_HAPPY,
    SAGA_HAPPY_NO_CODEC,
    SAGA_HAPPY_POSTGRES,
    SAGA_SLOW_STEP,
    Bench,
    BenchOptions,
)
from ordersaga.bench.service_alone import GAPS_MS, REQUESTS_PER_GAP
from ordersaga.runtime.settings import Settings
from tests.ordersaga_cli import run_ordersaga

# Three embedded stacks start one after the other (the PostgreSQL one unless skipped).
RUN_TIMEOUT = 400.0
PERCENTILES = {"p50", "p95", "p99"}


async def _bench(*args: str, limit_seconds: float = RUN_TIMEOUT) -> tuple[int, str, str]:
    # The embedded stack picks free ports itself; a developer's ORDERSAGA_* must
    # not leak in (run_ordersaga leaves them out).
    ran = await run_ordersaga("bench", *args, within=limit_seconds)
    return ran.code, ran.stdout, ran.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--orders", "0"], "--orders: must be at least 1"),
        (["--rate", "-3"], "--rate: must be above 0"),
        (["--concurrency", "many"], "--concurrency: expected a whole number"),
        (["--scenarios", "saga-happy,nope"], "unknown nope"),
        (["--temporal-address", "127.0.0.1:1"], "give --api-url too"),
        (
            ["--api-url", "http://127.0.0.1:1", "--scenarios", "saga-happy,saga-happy-no-codec"],
            "saga-happy-no-codec needs the benchmark's own embedded stacks",
        ),
    ],
)
async def test_bad_flags_exit_2_with_a_message(args: list[str], message: str) -> None:
    code, _out, err = await _bench(*args, limit_seconds=60)

    assert code == 2
    assert message in err
    assert "Traceback" not in err


async def test_a_running_stack_without_its_keys_is_refused_with_what_to_set() -> None:
    # Outside dev mode, with no ORDERSAGA_CODEC_KEYS: the saga's results could
    # not be read. Said before any order is sent, without a traceback.
    code, _out, err = await _bench(
        "--api-url", "http://127.0.0.1:1", "--scenarios", "saga-happy", limit_seconds=60
    )

    assert code == 1
    assert "ORDERSAGA_CODEC_KEYS is not set" in err
    assert "ORDERSAGA_DEV_MODE=true" in err
    assert "Traceback" not in err


async def test_a_lost_or_wrong_order_fails_the_verdict(tmp_path: Path) -> None:
    bench = Bench(BenchOptions(scenarios=(BASELINE_HAPPY,), data_dir=tmp_path), Settings())

    class FakeBaseline:
        """Stands in for a scenario: only its name and expected status are read."""

        name = BASELINE_HAPPY
        expected_status = "COMPLETED"

    bench.scenarios[BASELINE_HAPPY] = FakeBaseline()  # type: ignore[assignment]
    bench.results.append(
        RunResult(
            BASELINE_HAPPY,
            "closed",
            1,
            1.0,
            [
                OrderSample("wf-ok", 0.01, 0.5, "COMPLETED"),
                OrderSample("wf-stuck", 0.01, None, None, "TimeoutError: "),
                OrderSample(None, 0.01, None, None, "RPCError: unavailable"),
            ],
        )
    )

    verdict = await bench._verify([])

    assert verdict["nothing_lost"] is False
    assert verdict["orders_submitted"] == 2
    assert verdict["orders_terminal_as_expected"] == 1
    assert verdict["problem_count"] == 2
    assert any("wf-stuck" in problem for problem in verdict["problems"])


async def test_a_small_run_reports_every_figure_and_loses_nothing(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, out, err = await _bench(
        "--orders",
        "3",
        "--warmup-orders",
        "2",
        "--repetitions",
        "1",
        "--concurrency",
        "2",
        "--output-dir",
        str(out_dir),
        "--data-dir",
        str(tmp_path / "data"),
        "--no-progress",
    )

    assert code == 0, f"stdout:\n{out}\nstderr:\n{err[-3000:]}"
    assert "nothing lost" in out
    report = json.loads((out_dir / "bench.json").read_text())
    assert report["machine"]["cores"] >= 1
    # PostgreSQL may be missing here: then its scenario is skipped, saying why.
    assert set(report["skipped"]) <= {SAGA_HAPPY_POSTGRES}
    measured = set(DEFAULT_SCENARIOS) - {SAGA_SLOW_STEP} - set(report["skipped"])
    assert set(report["scenarios"]) == measured
    for name, scenario in report["scenarios"].items():
        for mode in ("closed", "open"):
            median = scenario[mode]["median"]
            assert len(scenario[mode]["runs"]) == 1, name
            assert median["completed"] == 3, (name, mode)
            assert median["orders_per_second"] > 0
            assert set(median["submit_latency_ms"]) == PERCENTILES
            assert set(median["terminal_latency_ms"]) == PERCENTILES
            assert set(median["cpu_seconds_per_order"]) == set(scenario["components"])
            assert set(median["peak_rss_mb"]) == set(scenario["components"])
            assert all(rss > 0 for rss in median["peak_rss_mb"].values()), (name, median)
    saga = report["scenarios"][SAGA_HAPPY]
    assert {"temporal", "worker", "api", "inventory", "payments", "shipping"} <= set(
        saga["components"]
    )
    # The same orders on the second stack, every process of it without the codec.
    plain = report["scenarios"][SAGA_HAPPY_NO_CODEC]
    stack = set(saga["components"]) - {"bench"}
    assert set(plain["components"]) == {f"{c}-no-codec" for c in stack} | {"bench"}
    assert set(report["ratios"]) >= {
        "saga_happy_vs_baseline",
        "saga_compensation_vs_baseline",
        "saga_happy_vs_no_codec",
        "embedded_vs_out_of_the_box",
        "saga_happy_vs_same_work",
        "saga_happy_vs_local_activities",
        "saga-happy_read_p99_ms_at_open_rate",
    }
    # The same-work baseline made the saga's calls to the first stack's services.
    same_work = report["scenarios"][BASELINE_SAME_WORK]
    assert {"inventory", "payments", "shipping", "baseline-worker"} <= set(same_work["components"])
    # Every saga order of the open loop was read once by its customer.
    assert saga["open"]["median"]["reads"]["count"] == 3
    assert saga["open"]["median"]["reads"]["errors"] == 0
    assert "targets (one run" in out
    # One calibration before each closed-loop window, and the line that reads them.
    speed = report["machine_speed"]
    assert speed["windows"] == len(measured)
    assert 0 < speed["fastest_ms"] <= speed["slowest_ms"]
    assert "machine speed: a fixed loop" in out
    # payments' charge alone, after the ledger check: back to back, then with gaps.
    alone = report["service_alone"]
    assert alone["error"] is None
    assert [(f["gap_ms"], f["requests"]) for f in alone["figures"]] == [
        (gap, REQUESTS_PER_GAP) for gap in GAPS_MS
    ]
    assert all(f["cpu_ms_per_request"] > 0 for f in alone["figures"])
    assert "payments alone, CPU per charge" in out
    assert {row["target"] for row in report["targets"]} >= {
        "saga-happy / baseline-same-work (orders/s)",
        "GET /orders/{id} p99 while a step is slow",
        "nothing lost",
    }
    slow = report["slow_step"]
    # 3 orders per slowed step: 2 read 3 times each, 1 cancelled.
    assert slow["reads"]["count"] == 3 * 2 * 3
    assert slow["cancels"]["sent"] == 3
    codec = report["codec_cost"]
    assert codec["target"] == 0.95
    medians = (
        saga["closed"]["median"]["orders_per_second"]
        / plain["closed"]["median"]["orders_per_second"]
    )
    # One repetition: its own ratio is the medians' ratio.
    assert codec["ratio_of_medians"] == pytest.approx(medians)
    assert codec["ratio"] == pytest.approx(medians)
    assert {"worker", "api"} <= set(codec["cpu_ms_per_order"])
    worker = codec["cpu_ms_per_order"]["worker"]
    assert worker["difference_ms"] == pytest.approx(
        worker["with_codec_ms"] - worker["without_codec_ms"]
    )
    assert "the codec's cost" in out
    assert "worker CPU/order:" in out and "api CPU/order:" in out
    verdict = report["verification"]
    assert verdict["nothing_lost"] is True
    # Each measured scenario: 2 warm-up + 3 closed + 3 open orders; the slow
    # step 3 per step.
    assert verdict["orders_submitted"] == verdict["orders_terminal_as_expected"]
    assert verdict["orders_submitted"] == 8 * len(measured) + 9
    # The saga scenarios', the same-work baseline's and the slow step's.
    on_ledgers = {s for s in measured if s.startswith("saga-")} | {BASELINE_SAME_WORK}
    assert verdict["orders_checked_against_services"] == 8 * len(on_ledgers) + 9
    assert verdict["stock"]["actual"] == verdict["stock"]["expected"]
    assert verdict["stock_no_codec_stack"]["actual"] == verdict["stock_no_codec_stack"]["expected"]
    assert verdict["stock_no_codec_stack"]["initial"] == 8
    if SAGA_HAPPY_POSTGRES in measured:
        postgres = verdict["stock_postgres_stack"]
        assert postgres["actual"] == postgres["expected"]
        assert verdict["payload_encoding"][SAGA_HAPPY_POSTGRES] == "binary/encrypted"
    # The comparison is real: one stack stored its payloads encrypted, the other not.
    assert verdict["payload_encoding"][SAGA_HAPPY] == "binary/encrypted"
    assert verdict["payload_encoding"][SAGA_HAPPY_NO_CODEC] == "json/plain"
    assert (out_dir / "bench.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
