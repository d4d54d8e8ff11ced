"""The benchmark's outputs: ratios against the targets, a terminal table, JSON, a PNG."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ordersaga.bench.runner import (
    BASELINE_COMPENSATION,
    BASELINE_HAPPY,
    BASELINE_OUT_OF_THE_BOX,
    NO_CODEC_SUFFIX,
    SAGA_COMPENSATION,
    SAGA_HAPPY,
    SAGA_HAPPY_NO_CODEC,
)

SAGA_RATIO_TARGET = 0.85
# The encryption issue: the codec may cost at most 5 % of the orders per second.
CODEC_RATIO_TARGET = 0.95
# Whose CPU per order the codec's cost is reported for (the processes that
# encrypt and decrypt), and the Temporal server, which stores the bigger payloads.
CODEC_COMPONENTS = ("worker", "api", "temporal")
OUT_OF_THE_BOX_RATIO_TARGET = 2.0
SUBMIT_P99_TARGET_MS = 50.0


def _closed_rate(scenarios: Mapping[str, Any], name: str) -> float | None:
    if name not in scenarios:
        return None
    value = scenarios[name]["closed"]["median"]["orders_per_second"]
    return float(value) if value is not None else None


def _ratio(
    scenarios: Mapping[str, Any], top: str, bottom: str, target: float
) -> dict[str, Any] | None:
    numerator, denominator = _closed_rate(scenarios, top), _closed_rate(scenarios, bottom)
    if numerator is None or not denominator:
        return None
    value = numerator / denominator
    return {"of": f"{top} / {bottom}", "value": value, "target": target, "met": value >= target}


def ratios(scenarios: Mapping[str, Any]) -> dict[str, Any]:
    """Closed-loop throughput ratios (median of repetitions) and the open-loop p99."""
    found: dict[str, Any] = {}
    for key, top, bottom, target in (
        ("saga_happy_vs_baseline", SAGA_HAPPY, BASELINE_HAPPY, SAGA_RATIO_TARGET),
        (
            "saga_compensation_vs_baseline",
            SAGA_COMPENSATION,
            BASELINE_COMPENSATION,
            SAGA_RATIO_TARGET,
        ),
        ("saga_happy_vs_no_codec", SAGA_HAPPY, SAGA_HAPPY_NO_CODEC, CODEC_RATIO_TARGET),
        (
            "embedded_vs_out_of_the_box",
            BASELINE_HAPPY,
            BASELINE_OUT_OF_THE_BOX,
            OUT_OF_THE_BOX_RATIO_TARGET,
        ),
    ):
        ratio = _ratio(scenarios, top, bottom, target)
        if ratio is not None:
            found[key] = ratio
    for name in (SAGA_HAPPY, SAGA_COMPENSATION):
        if name in scenarios:
            p99 = scenarios[name]["open"]["median"]["submit_latency_ms"]["p99"]
            found[f"{name}_submit_p99_ms_at_open_rate"] = {
                "of": f"{name} open loop at {scenarios[name]['open']['median']['load']:.1f}/s",
                "value": p99,
                "target": SUBMIT_P99_TARGET_MS,
                "met": p99 is not None and p99 <= SUBMIT_P99_TARGET_MS,
            }
    return found


def codec_cost(scenarios: Mapping[str, Any]) -> dict[str, Any] | None:
    """saga-happy against saga-happy-no-codec (closed loop, medians): the orders/s
    ratio with its target, and the CPU per order of the processes concerned with
    the codec and without it. None unless both ran."""
    ratio = _ratio(scenarios, SAGA_HAPPY, SAGA_HAPPY_NO_CODEC, CODEC_RATIO_TARGET)
    if ratio is None:
        return None
    with_codec = scenarios[SAGA_HAPPY]["closed"]["median"]
    without = scenarios[SAGA_HAPPY_NO_CODEC]["closed"]["median"]
    cpu: dict[str, dict[str, float]] = {}
    pairs = [(c, c + NO_CODEC_SUFFIX) for c in CODEC_COMPONENTS]
    for component, plain in pairs:
        a = with_codec["cpu_seconds_per_order"].get(component)
        b = without["cpu_seconds_per_order"].get(plain)
        if a is not None and b is not None:
            cpu[component] = {
                "with_codec_ms": a * 1000,
                "without_codec_ms": b * 1000,
                "difference_ms": (a - b) * 1000,
            }
    if cpu:
        a = sum(with_codec["cpu_seconds_per_order"].values()) * 1000
        b = sum(without["cpu_seconds_per_order"].values()) * 1000
        cpu["all components"] = {"with_codec_ms": a, "without_codec_ms": b, "difference_ms": a - b}
    return {
        "of": ratio["of"],
        "orders_per_second": {
            "with_codec": with_codec["orders_per_second"],
            "without_codec": without["orders_per_second"],
        },
        "ratio": ratio["value"],
        "target": ratio["target"],
        "met": ratio["met"],
        "cpu_ms_per_order": cpu,
    }


def _codec_lines(cost: Mapping[str, Any]) -> list[str]:
    rates = cost["orders_per_second"]
    verdict = "met" if cost["met"] else "NOT met"
    lines = [
        "the codec's cost (saga-happy with it / saga-happy-no-codec without, closed loop, medians)",
        f"  orders/s: {rates['with_codec']:.1f} / {rates['without_codec']:.1f} = "
        f"{cost['ratio']:.3f} (target >= {cost['target']:.2f}) {verdict}",
    ]
    for component, ms in cost["cpu_ms_per_order"].items():
        difference = round(ms["difference_ms"], 1) or 0.0  # never "-0.0"
        lines.append(
            f"  {component} CPU/order: {ms['with_codec_ms']:.1f} ms with, "
            f"{ms['without_codec_ms']:.1f} ms without, {difference:+.1f} ms"
        )
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(report: Mapping[str, Any]) -> str:
    scenarios: Mapping[str, Any] = report["scenarios"]
    lines = [
        "medians of {reps} repetitions, {orders} orders each; latencies in ms".format(
            reps=report["options"]["repetitions"], orders=report["options"]["orders"]
        ),
        f"{'scenario':<34}{'loop':<12}{'orders/s':>9}  "
        f"{'submit p50':>10}{'p95':>7}{'p99':>7}  {'terminal p50':>12}{'p95':>7}{'p99':>7}",
    ]
    for name, scenario in scenarios.items():
        for mode in ("closed", "open"):
            m = scenario[mode]["median"]
            load = f"c={m['load']:.0f}" if mode == "closed" else f"{m['load']:.1f}/s"
            s, t = m["submit_latency_ms"], m["terminal_latency_ms"]
            lines.append(
                f"{name:<34}{mode + ' ' + load:<12}{m['orders_per_second']:>9.1f}  "
                f"{_ms(s['p50']):>10}{_ms(s['p95']):>7}{_ms(s['p99']):>7}  "
                f"{_ms(t['p50']):>12}{_ms(t['p95']):>7}{_ms(t['p99']):>7}"
            )
    lines.append("")
    lines.append("CPU-seconds per order / peak RSS MB, per component (closed loop, medians)")
    for name, scenario in scenarios.items():
        m = scenario["closed"]["median"]
        parts = [
            f"{component} {cpu * 1000:.1f}ms/{m['peak_rss_mb'].get(component, 0):.0f}MB"
            for component, cpu in m["cpu_seconds_per_order"].items()
        ]
        if parts:
            total = sum(m["cpu_seconds_per_order"].values()) * 1000
            lines.append(f"  {name}: {', '.join(parts)}  (total {total:.1f} ms CPU/order)")
    lines.append("")
    lines.append("ratios (closed-loop orders/s, medians) and targets")
    for key, ratio in report["ratios"].items():
        verdict = "met" if ratio["met"] else "NOT met"
        if key.endswith("_ms_at_open_rate"):
            lines.append(
                f"  {key}: {_ms(ratio['value'])} ms (target <= {ratio['target']:.0f}) {verdict}"
                f"  [{ratio['of']}]"
            )
        else:
            lines.append(
                f"  {key}: {ratio['value']:.2f} (target >= {ratio['target']:.2f}) {verdict}"
                f"  [{ratio['of']}]"
            )
    if report.get("codec_cost") is not None:
        lines.append("")
        lines += _codec_lines(report["codec_cost"])
    v = report["verification"]
    lines.append("")
    if v["nothing_lost"]:
        stocks = [v[key] for key in ("stock", "stock_no_codec_stack") if key in v]
        lines.append(
            f"nothing lost: {v['orders_terminal_as_expected']}/{v['orders_submitted']} orders "
            "reached their expected terminal status"
            + (
                f"; charges, shipments, reservations of {v['saga_orders_checked_against_services']}"
                f" saga orders and the stock of {stocks[0]['sku']} add up"
                + (" in both stacks" if len(stocks) > 1 else "")
                if stocks
                else ""
            )
        )
    else:
        lines.append(f"ORDERS LOST OR WRONG: {v['problem_count']} problem(s)")
        lines += [f"  {problem}" for problem in v["problems"][:20]]
    return "\n".join(lines)


def write_json(report: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")


def write_chart(report: Mapping[str, Any], path: Path) -> None:
    """Throughput and latency percentiles per scenario, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios: Mapping[str, Any] = report["scenarios"]
    names = list(scenarios)
    positions = list(range(len(names)))
    figure, (rate, submit, terminal) = plt.subplots(1, 3, figsize=(17, 6))
    width = 0.38
    for offset, mode in ((-width / 2, "closed"), (width / 2, "open")):
        rate.bar(
            [p + offset for p in positions],
            [scenarios[n][mode]["median"]["orders_per_second"] for n in names],
            width,
            label=f"{mode} loop",
        )
    rate.set_title("throughput (orders/s, median)")
    rate.legend()
    percentile_width = 0.27
    for axis, key, mode, title in (
        (submit, "submit_latency_ms", "open", "submit latency, open loop (ms)"),
        (terminal, "terminal_latency_ms", "closed", "submit to terminal, closed loop (ms)"),
    ):
        for index, percentile in enumerate(("p50", "p95", "p99")):
            axis.bar(
                [p + (index - 1) * percentile_width for p in positions],
                [scenarios[n][mode]["median"][key][percentile] or 0 for n in names],
                percentile_width,
                label=percentile,
            )
        axis.set_title(title)
        axis.legend()
    for axis in (rate, submit, terminal):
        axis.set_xticks(positions)
        axis.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    verdict = "nothing lost" if report["verification"]["nothing_lost"] else "ORDERS LOST"
    figure.suptitle(f"ordersaga bench {report['started_at']} ({verdict})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
