"""The invariants asserted after every experiment, each with its evidence.

- every order terminal, or parked in NEEDS_ATTENTION with a reason, within 60 s
  of the fault clearing;
- the ledgers: a COMPLETED order has exactly one captured charge of its total,
  one live shipment and one committed reservation; a FAILED or CANCELLED one
  none of them; never two charges for one order; stock conserved. Checked here
  for the experiment's own orders, and by `ordersaga audit` (every order) when
  that command exists;
- one order per (customer, Idempotency-Key);
- every cancel answer agrees with the final state (202 -> CANCELLED, 409 -> not);
- no 5xx to a well-formed request while Temporal is up.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ordersaga.chaos.shop import PARKED, TERMINAL, Answer, CancelAnswer, Ledger, Placed, Shop
from ordersaga.chaos.stack import TEMPORAL, WORKERS, ChaosStack

SETTLE_SECONDS = 60.0
POLL_SECONDS = 0.5
READ_CONCURRENCY = 8
AUDIT_TIMEOUT_SECONDS = 180.0
# Evidence lines shown per violated invariant (the count is always shown).
EVIDENCE_LINES = 8


@dataclass
class Check:
    name: str
    # None: not applicable to this experiment, or could not be run.
    ok: bool | None
    summary: str = ""
    evidence: list[str] = field(default_factory=list)


@dataclass
class Trial:
    """What an experiment did: its orders, when its fault cleared, what it cancelled."""

    placed: list[Placed]
    cleared_at: float
    # Each SKU the experiment stocked, with the units it started with.
    stock: dict[str, int]
    cancels: list[CancelAnswer] = field(default_factory=list)
    # Checks only this experiment makes (e.g. stock never negative).
    extra: list[Check] = field(default_factory=list)
    fault: str = ""
    # Undoes the experiment's own set-up once it has been checked.
    after: Callable[[], Awaitable[None]] | None = None


@dataclass
class Settled:
    view: dict[str, Any] | None
    # Seconds from the fault clearing (or the order's acceptance, if later).
    seconds: float | None


def _final(view: dict[str, Any] | None) -> bool:
    if view is None or view.get("stale"):
        return False
    status = view.get("status")
    return status in TERMINAL or (status == PARKED and bool(view.get("failure_reason")))


async def settle(shop: Shop, trial: Trial) -> dict[str, Settled]:
    gate = asyncio.Semaphore(READ_CONCURRENCY)

    async def one(placed: Placed) -> tuple[str, Settled]:
        assert placed.order_id is not None and placed.accepted_at is not None
        start = max(trial.cleared_at, placed.accepted_at)
        deadline = start + SETTLE_SECONDS
        view: dict[str, Any] | None = None
        while True:
            async with gate:
                view = await shop.read(placed.order_id) or view
            if _final(view):
                return placed.order_id, Settled(view, max(0.0, time.monotonic() - start))
            if time.monotonic() > deadline:
                return placed.order_id, Settled(view, None)
            await asyncio.sleep(POLL_SECONDS)

    # Duplicate submissions share an order: read it once.
    accepted = {p.order_id: p for p in trial.placed if p.order_id is not None}
    return dict(await asyncio.gather(*(one(p) for p in accepted.values())))


def outcomes(settled: Mapping[str, Settled]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for s in settled.values():
        status = s.view.get("status") if s.view else None
        counts[str(status) if status else "UNREADABLE"] += 1
    return counts


def check_terminal(trial: Trial, settled: Mapping[str, Settled]) -> Check:
    late = []
    for order_id, s in settled.items():
        if s.seconds is None:
            status = s.view.get("status") if s.view else "unreadable"
            stale = " (stale)" if s.view and s.view.get("stale") else ""
            late.append(f"{order_id} still {status}{stale} {SETTLE_SECONDS:.0f}s after the fault")
    refused = [f"{p.customer}/{p.key}: {p.refusal}" for p in trial.placed if p.order_id is None]
    times = [s.seconds for s in settled.values() if s.seconds is not None]
    slowest = f"slowest {max(times):.1f}s" if times else "no orders"
    return Check(
        f"terminal or parked within {SETTLE_SECONDS:.0f}s of clearing",
        not late and not refused,
        f"{len(settled)} accepted, {slowest}"
        + (f", {len(refused)} never accepted" if refused else ""),
        late + refused,
    )


async def check_ledgers(
    ledger: Ledger, trial: Trial, settled: Mapping[str, Settled]
) -> tuple[Check, Check]:
    """(per-order ledger check, stock conservation per SKU)."""
    problems: list[str] = []
    committed: Counter[str] = Counter()
    held: Counter[str] = Counter()
    gate = asyncio.Semaphore(READ_CONCURRENCY)

    async def one(order_id: str, s: Settled) -> None:
        async with gate:
            charges, shipments, reservations = await asyncio.gather(
                ledger.rows("payments", "charges", order_id),
                ledger.rows("shipping", "shipments", order_id),
                ledger.rows("inventory", "reservations", order_id),
            )
        for r in reservations:
            for line in r.get("lines", []):
                if r["state"] == "committed":
                    committed[line["sku"]] += int(line["quantity"])
                elif r["state"] == "reserved":
                    held[line["sku"]] += int(line["quantity"])
        status = s.view.get("status") if s.view else None
        captured = [c for c in charges if c["state"] == "captured"]
        live = [x for x in shipments if x["state"] == "created"]
        kept = [r for r in reservations if r["state"] == "committed"]
        holding = [r for r in reservations if r["state"] == "reserved"]
        seen = (
            f"charges {[(c['state'], c['amount_cents']) for c in charges]}, "
            f"shipments {[x['state'] for x in shipments]}, "
            f"reservations {[r['state'] for r in reservations]}"
        )
        if len(charges) > 1:
            problems.append(f"{order_id} ({status}): {len(charges)} charges: {seen}")
        if status == "COMPLETED":
            total = s.view.get("total_cents") if s.view else None
            if (
                len(captured) != 1
                or captured[0]["amount_cents"] != total
                or len(live) != 1
                or len(kept) != 1
                or holding
            ):
                problems.append(f"{order_id} COMPLETED (total {total}): {seen}")
        elif status in ("FAILED", "CANCELLED") and (captured or live or kept or holding):
            problems.append(f"{order_id} {status} kept an effect: {seen}")

    await asyncio.gather(*(one(order_id, s) for order_id, s in settled.items()))
    ledgers = Check(
        "ledgers agree with each order",
        not problems,
        f"{len(settled)} orders' charges, shipments, reservations read",
        problems,
    )
    stock_problems = []
    for sku, initial in trial.stock.items():
        now = await ledger.stock(sku)
        if now["available"] < 0 or now["reserved"] < 0:
            stock_problems.append(f"{sku}: negative stock {now}")
        accounted = now["available"] + now["reserved"] + committed[sku]
        if accounted != initial or now["reserved"] != held[sku]:
            stock_problems.append(
                f"{sku}: started with {initial}; now {now}, {committed[sku]} committed by "
                f"its orders, {held[sku]} held by them"
            )
    stock = Check(
        "stock conserved",
        not stock_problems,
        ", ".join(
            f"{sku} {initial} = {initial - committed[sku]} + {committed[sku]} shipped"
            for sku, initial in trial.stock.items()
            if not stock_problems
        ),
        stock_problems,
    )
    return ledgers, stock


def check_one_order_per_key(trial: Trial) -> Check:
    by_key: dict[tuple[str, str], set[str]] = {}
    for placed in trial.placed:
        by_key.setdefault((placed.customer, placed.key), set()).update(placed.order_ids)
    problems = [
        f"{customer}/{key} -> {sorted(ids)}"
        for (customer, key), ids in by_key.items()
        if len(ids) > 1
    ]
    retried = sum(1 for p in trial.placed if len(p.statuses) > 1)
    return Check(
        "one order per (customer, key)",
        not problems,
        f"{len(by_key)} keys, {sum(len(p.statuses) for p in trial.placed)} POSTs"
        + (f" ({retried} retried)" if retried else ""),
        problems,
    )


def check_cancels(trial: Trial, settled: Mapping[str, Settled]) -> Check:
    if not trial.cancels:
        return Check("cancel answers agree with the end", None, "no cancels")
    problems = []
    counts: Counter[str] = Counter()
    for answer in trial.cancels:
        s = settled.get(answer.order_id)
        final = s.view.get("status") if s and s.view else None
        counts[str(answer.status)] += 1
        if answer.status == 202 and final != "CANCELLED":
            problems.append(f"{answer.order_id}: cancel answered 202, ended {final}")
        elif answer.status == 409 and final == "CANCELLED":
            problems.append(f"{answer.order_id}: cancel answered 409, ended CANCELLED")
        elif answer.status not in (202, 409):
            problems.append(f"{answer.order_id}: cancel answered {answer.status}")
    return Check(
        "cancel answers agree with the end",
        not problems,
        ", ".join(f"{n}x {status}" for status, n in sorted(counts.items())),
        problems,
    )


def _unreachable(answer: Answer) -> bool:
    """The API's 503 for a Temporal it could not reach or that did not answer
    within its deadline (not one that answered and refused)."""
    message = answer.message or ""
    return answer.code == "TEMPORAL_UNAVAILABLE" and (
        "did not answer in time" in message
        or "cannot connect" in message
        or "(UNAVAILABLE)" in message
        or "(DEADLINE_EXCEEDED)" in message
        or "(CANCELLED)" in message
    )


def check_no_5xx(shop: Shop, stack: ChaosStack, since: float, grace: float) -> Check:
    """A 5xx is allowed only while Temporal was down: a 503 saying it could not be
    reached or did not answer in time (the contract), while it was down or in
    the `grace` seconds after it came back (its readiness probe passes before it
    has reloaded its shard and answers every call quickly); and a 503
    WORKERS_UNAVAILABLE only while no worker ran (a cancel needs one). No
    answer at all is a violation too: the API itself was never stopped."""
    problems = []
    allowed = 0
    total = 0
    for answer in shop.answers:
        if answer.at < since:
            continue
        total += 1
        if answer.status is not None and answer.status < 500:
            continue
        if _unreachable(answer) and stack.outages.was_down(TEMPORAL, answer.at, grace):
            allowed += 1
            continue
        if answer.code == "WORKERS_UNAVAILABLE" and stack.outages.was_down(WORKERS, answer.at):
            allowed += 1
            continue
        if answer.status is None:
            problems.append(f"{answer.method} {answer.path} -> no answer: {answer.error}")
            continue
        line = f"{answer.method} {answer.path} -> {answer.status} {answer.code or ''}".rstrip()
        if answer.message:
            line += f": {answer.message}"
        back = stack.outages.back_since(TEMPORAL, answer.at)
        if back is not None:
            line += f" ({back:.1f}s after Temporal came back)"
        problems.append(line)
    return Check(
        "no 5xx while Temporal up",
        not problems,
        f"{total} requests"
        + (f", {allowed} 503s while Temporal or every worker was down" if allowed else ""),
        problems,
    )


class Auditor:
    """`ordersaga audit --json` against the stack; a finding counts against the
    experiment that first shows it (the audit always reads every order)."""

    def __init__(self, stack: ChaosStack) -> None:
        self._stack = stack
        self._seen: set[str] = set()
        self.available: bool | None = None

    async def run(self) -> Check:
        name = "ordersaga audit"
        if self.available is False:
            return Check(name, None, "not available on this branch (own checks only)")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ordersaga.cli",
            "audit",
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._stack.audit_env(),
        )
        try:
            async with asyncio.timeout(AUDIT_TIMEOUT_SECONDS):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            return Check(name, False, f"took longer than {AUDIT_TIMEOUT_SECONDS:.0f}s")
        code = process.returncode
        stderr = err.decode(errors="replace").strip()
        if code == 2 and "invalid choice: 'audit'" in stderr:
            self.available = False
            return Check(name, None, "not available on this branch (own checks only)")
        self.available = True
        try:
            report: dict[str, Any] = json.loads(out.decode())
        except ValueError:
            return Check(name, False, f"exit {code}, no JSON", stderr.splitlines()[-3:])
        findings: Sequence[dict[str, Any]] = report.get("findings", [])
        errors = [f for f in findings if f.get("severity") != "warning"]
        new = []
        for finding in errors:
            key = json.dumps([finding.get("kind"), finding.get("order_id"), finding.get("subject")])
            if key not in self._seen:
                self._seen.add(key)
                new.append(finding)
        warnings = len(findings) - len(errors)
        checked = report.get("checked")
        if isinstance(checked, dict):
            checked = ", ".join(f"{n} {what}" for what, n in checked.items())
        summary = f"exit {code}, checked {checked}"
        if warnings:
            summary += f", {warnings} warning(s)"
        if errors and not new:
            summary += f", {len(errors)} finding(s) all from earlier experiments"
        if code not in (0, 1):
            return Check(name, False, summary, stderr.splitlines()[-3:])
        return Check(
            name,
            not new,
            summary,
            [
                f"{f.get('kind')} {f.get('order_id') or f.get('subject')}: {f.get('message')} "
                f"{json.dumps(f.get('evidence'), default=str)[:400]}"
                for f in new
            ],
        )
