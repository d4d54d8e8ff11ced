"""`ordersaga chaos`: start a stack of separate processes on free ports with a fresh
data dir, run the fault matrix against it, print a table per experiment and a
summary. Exits 0 when every invariant held, 1 on any violation (or when the
run could not be made)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import httpx

from ordersaga.chaos.checks import (
    Auditor,
    check_cancels,
    check_ledgers,
    check_no_5xx,
    check_one_order_per_key,
    check_terminal,
    outcomes,
    settle,
)
from ordersaga.chaos.experiments import (
    FULL,
    HTTP_READ_TIMEOUT_SECONDS,
    MATRIX,
    QUICK,
    Experiment,
    Lab,
)
from ordersaga.chaos.report import ExperimentResult, block, summary
from ordersaga.chaos.shop import Ledger, Shop
from ordersaga.chaos.stack import ChaosStack, chaos_stack
from ordersaga.devstack import on_free_ports
from ordersaga.runtime.auth import DevIssuer
from ordersaga.runtime.settings import SERVICES, Settings, env_var_name

LOG_NAME = "stack.log"
# Children log warnings and errors only: per-request lines cost CPU under load.
CHILD_LOG_LEVEL = "WARNING"
# Orders per customer per minute: the suite's customers place orders in bursts
# and repeat identical POSTs on purpose; the limit itself is not what it tests.
ORDER_RATE_LIMIT = "100000/minute"
# After a SIGKILLed Temporal is back (its readiness probe answers), it still
# reloads its shard and the API's connection is re-established: a 503 saying
# Temporal could not be reached or did not answer within the API's 1 s deadline
# is still "Temporal down" this long after (docs/chaos.md).
RECONNECT_GRACE_SECONDS = 5.0
API_KEEPALIVE_SECONDS = 2.0


@dataclass
class ChaosOptions:
    quick: bool = False
    only: tuple[str, ...] = ()
    seed: int | None = None
    data_dir: Path | None = None
    keep_data: bool = False
    # Known product issues (known.py) whose violations do not fail the run.
    tolerate: frozenset[str] = frozenset()


def chosen(options: ChaosOptions) -> list[tuple[int, Experiment]]:
    numbered = list(enumerate(MATRIX, start=1))
    if options.only:
        return [(n, e) for n, e in numbered if e.key in options.only]
    if options.quick:
        return [(n, e) for n, e in numbered if e.quick]
    return numbered


def stack_env() -> dict[str, str]:
    env = {
        env_var_name("http_read_timeout_seconds"): str(HTTP_READ_TIMEOUT_SECONDS),
        env_var_name("api_order_rate_limit"): ORDER_RATE_LIMIT,
    }
    env[env_var_name("log_level")] = os.environ.get(env_var_name("log_level"), CHILD_LOG_LEVEL)
    return env


async def ensure_up(stack: ChaosStack, ledger: Ledger) -> None:
    """Whatever a failed experiment left down is started again, every fault cleared."""
    for name in ("temporal", *SERVICES, "worker", "api"):
        if not stack.running(name):
            await stack.start_child(name)
    for service in ledger.services:
        await ledger.clear_faults(service)


async def run_experiment(
    number: int, experiment: Experiment, lab: Lab, auditor: Auditor, tolerate: frozenset[str]
) -> ExperimentResult:
    result = ExperimentResult(number, experiment.key, experiment.title, tolerated=tolerate)
    started = time.monotonic()
    try:
        trial = await experiment.run(lab)
        result.fault = trial.fault
        settled = await settle(lab.shop, trial)
        result.orders = len(settled)
        result.outcomes = outcomes(settled)
        ledgers, stock = await check_ledgers(lab.ledger, trial, settled)
        result.checks = [
            check_terminal(trial, settled),
            ledgers,
            stock,
            await auditor.run(),
            check_one_order_per_key(trial),
            check_cancels(trial, settled),
            check_no_5xx(lab.shop, lab.stack, started, RECONNECT_GRACE_SECONDS),
            *trial.extra,
        ]
        if trial.after is not None:
            await trial.after()
    except Exception as error:  # reported, and the next experiment still runs
        result.error = f"{error.__class__.__name__}: {error}"
    result.seconds = time.monotonic() - started
    return result


async def run_matrix(
    options: ChaosOptions, settings: Settings, data_dir: Path, log: TextIO, out: TextIO
) -> list[ExperimentResult]:
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    tag = secrets.token_hex(2)
    experiments = chosen(options)
    size = QUICK if options.quick else FULL
    out.write(
        f"ordersaga chaos: {len(experiments)} experiment(s), "
        f"{'quick' if options.quick else 'full'} sizes, seed {seed}\n"
    )
    out.flush()
    settings = on_free_ports(settings)
    results: list[ExperimentResult] = []
    async with contextlib.AsyncExitStack() as exits:
        stack = await exits.enter_async_context(chaos_stack(settings, data_dir, log, stack_env()))
        admin = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
        services = {
            name: await exits.enter_async_context(
                httpx.AsyncClient(base_url=url, headers=admin, timeout=30.0)
            )
            for name, url in stack.service_urls.items()
        }
        api = await exits.enter_async_context(
            httpx.AsyncClient(
                base_url=stack.api_url,
                timeout=30.0,
                # Idle connections are dropped before the API's keep-alive timeout
                # (uvicorn's 5 s) closes them: reusing one the server is closing
                # fails a request unanswered, which would read as a lost answer.
                limits=httpx.Limits(
                    max_connections=256,
                    max_keepalive_connections=256,
                    keepalive_expiry=API_KEEPALIVE_SECONDS,
                ),
            )
        )
        ledger = Ledger(services)
        lab = Lab(
            stack=stack,
            shop=Shop(api, DevIssuer.in_data_dir(data_dir)),
            ledger=ledger,
            sizes=size,
            rng=random.Random(seed),
            tag=tag,
        )
        auditor = Auditor(stack)
        out.write(f"stack up (data dir {data_dir})\n\n")
        out.flush()
        for number, experiment in experiments:
            await ensure_up(stack, ledger)
            result = await run_experiment(number, experiment, lab, auditor, options.tolerate)
            results.append(result)
            out.write(block(result) + "\n\n")
            out.flush()
    return results


def run_chaos_command(options: ChaosOptions, settings: Settings, out: TextIO = sys.stdout) -> int:
    from ordersaga.binaries import BinaryNotFoundError
    from ordersaga.devstack import ChildFailed, DevStackError

    data_dir = (
        options.data_dir.resolve()
        if options.data_dir is not None
        else Path(tempfile.mkdtemp(prefix="ordersaga-chaos-"))
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / LOG_NAME
    print(f"ordersaga chaos: process logs in {log_path}", file=sys.stderr)
    started = time.monotonic()
    try:
        with log_path.open("w") as log:
            results = asyncio.run(run_matrix(options, settings, data_dir, log, out))
    except (ChildFailed, DevStackError, BinaryNotFoundError, httpx.HTTPError) as error:
        print(f"ordersaga chaos: {error}", file=sys.stderr)
        if isinstance(error, ChildFailed):
            print(error.child.report_tail(), file=sys.stderr)
        print(f"ordersaga chaos: data kept in {data_dir}", file=sys.stderr)
        return 1
    out.write(summary(results) + "\n")
    failed = [r for r in results if not r.passed]
    elapsed = time.monotonic() - started
    if failed:
        names = ", ".join(r.key for r in failed)
        out.write(
            f"\nchaos: {len(failed)} of {len(results)} violated ({names}) in {elapsed:.0f}s\n"
        )
        print(f"ordersaga chaos: data kept for inspection in {data_dir}", file=sys.stderr)
        return 1
    out.write(f"\nchaos: all {len(results)} experiments held every invariant in {elapsed:.0f}s\n")
    if options.data_dir is None and not options.keep_data:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


def parse_only(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def unknown_experiments(names: Sequence[str]) -> list[str]:
    known = {experiment.key for experiment in MATRIX}
    return [name for name in names if name not in known]
