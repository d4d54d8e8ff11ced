"""`ordersaga bench`: run the benchmark, print the table, write the JSON and the PNG.

Exits 0 when every order reached its expected terminal status and the services'
ledgers add up, 1 when anything was lost or the run could not be made.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ordersaga.runtime.settings import Settings, env_var_name

# The children's own logs go to a file beside the report; warnings and errors
# are what matters there, and per-request INFO lines would cost CPU under load.
DEFAULT_CHILD_LOG_LEVEL = "WARNING"
JSON_NAME = "bench.json"
CHART_NAME = "bench.png"
STACK_LOG_NAME = "stack.log"


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    models = [
        line.split(":", 1)[1].strip()
        for line in cpuinfo.splitlines()
        if line.startswith("model name")
    ]
    meminfo = dict(
        line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line
    )
    memory_kib = int(meminfo["MemTotal"].split()[0])
    return {
        "cores": os.cpu_count(),
        "cpu_model": models[0] if models else "unknown",
        "memory_gib": round(memory_kib / 2**20, 1),
        "load_average_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "python": sys.version.split()[0],
    }


def run_bench_command(options: Any, settings: Settings) -> int:
    from ordersaga.bench.report import (
        codec_cost,
        cpu_per_request,
        machine_speed,
        ratios,
        table,
        targets,
        write_chart,
        write_json,
    )
    from ordersaga.bench.runner import Bench, BenchError
    from ordersaga.binaries import BinaryNotFoundError
    from ordersaga.devstack import ChildFailed, DevStackError
    from ordersaga.runtime import eventloop

    output_dir: Path = options.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(env_var_name("log_level"), DEFAULT_CHILD_LOG_LEVEL)
    bench = Bench(options, settings)
    log_path = output_dir / STACK_LOG_NAME
    print(
        f"ordersaga bench: data in {bench.data_dir}, process logs in {log_path}",
        file=sys.stderr,
    )
    started_machine = machine()
    try:
        with log_path.open("w") as log:
            # The load generator shares the machine with what it measures:
            # on the same loop as the workers and HTTP servers it takes less
            # of it (docs/performance.md, round 4).
            report = eventloop.run(bench.run(log))
    except (BenchError, ChildFailed, DevStackError, BinaryNotFoundError) as error:
        print(f"ordersaga bench: {error}", file=sys.stderr)
        if isinstance(error, ChildFailed):
            print(error.child.report_tail(), file=sys.stderr)
        return 1
    options_json = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in dataclasses.asdict(options).items()
    }
    report = {
        "machine": started_machine,
        "options": options_json,
        **report,
    }
    report["ratios"] = ratios(report["scenarios"])
    report["codec_cost"] = codec_cost(report["scenarios"])
    report["cpu_per_request"] = cpu_per_request(report["scenarios"])
    report["machine_speed"] = machine_speed(report["scenarios"])
    report["targets"] = targets(report)
    json_path, chart_path = output_dir / JSON_NAME, output_dir / CHART_NAME
    write_json(report, json_path)
    write_chart(report, chart_path)
    print(table(report))
    print(f"\nreport: {json_path}  chart: {chart_path}")
    if not report["verification"]["nothing_lost"]:
        print(f"ordersaga bench: data kept for inspection in {bench.data_dir}", file=sys.stderr)
        return 1
    if options.data_dir is None:
        # A temporary folder of ours: its SQLite files hold nothing worth keeping.
        shutil.rmtree(bench.data_dir, ignore_errors=True)
    return 0
