"""The chaos suite's own logic, without a stack: when a 5xx is allowed, what a
cancel answer must agree with, one order per key, the retry budget, the tables."""

from __future__ import annotations

from collections import Counter
from typing import cast

import pytest

from ordersaga.chaos.checks import (
    Check,
    Settled,
    Trial,
    check_cancels,
    check_no_5xx,
    check_one_order_per_key,
    check_terminal,
)
from ordersaga.chaos.experiments import MATRIX, retry_budget_seconds
from ordersaga.chaos.known import KNOWN_ISSUES
from ordersaga.chaos.report import ExperimentResult, block, summary
from ordersaga.chaos.shop import Answer, CancelAnswer, Placed, Shop
from ordersaga.chaos.stack import TEMPORAL, WORKERS, ChaosStack, Outages
from ordersaga.cli import main


def _placed(key: str, *order_ids: str, customer: str = "cus_a") -> Placed:
    placed = Placed(customer, key, {}, "sku", 1, accepted_at=0.0)
    placed.order_ids.update(order_ids)
    placed.order_id = order_ids[-1] if order_ids else None
    placed.statuses = [202] * len(order_ids)
    return placed


def _settled(status: str) -> Settled:
    return Settled({"status": status, "failure_reason": None}, 1.0)


class _Fakes:
    """Only the attributes check_no_5xx reads."""

    def __init__(self, answers: list[Answer], outages: Outages) -> None:
        self.answers = answers
        self.outages = outages


def test_an_outage_covers_its_window_and_the_grace_after_it() -> None:
    outages = Outages()
    outages.down(TEMPORAL, at=10.0)
    outages.windows[TEMPORAL][-1] = (10.0, 20.0)

    assert not outages.was_down(TEMPORAL, 9.9)
    assert outages.was_down(TEMPORAL, 15.0)
    assert outages.was_down(TEMPORAL, 21.0, grace=2.0)
    assert not outages.was_down(TEMPORAL, 23.0, grace=2.0)
    assert not outages.was_down("payments", 15.0)


LATE = "Temporal did not answer in time; retry later with the same Idempotency-Key"
REFUSED = "Temporal did not answer (FAILED_PRECONDITION); retry later"


def test_a_5xx_counts_unless_temporal_or_every_worker_was_down() -> None:
    outages = Outages()
    outages.windows[TEMPORAL] = [(10.0, 20.0)]
    outages.windows[WORKERS] = [(30.0, 40.0)]
    answers = [
        Answer(5.0, "POST", "/orders", 202),
        Answer(15.0, "POST", "/orders", 503, "TEMPORAL_UNAVAILABLE", message=LATE),
        # Within the grace after Temporal came back, but Temporal answered: a refusal.
        Answer(21.0, "GET", "/orders/x", 503, "TEMPORAL_UNAVAILABLE", message=REFUSED),
        Answer(21.5, "GET", "/orders/y", 503, "TEMPORAL_UNAVAILABLE", message=LATE),
        Answer(35.0, "POST", "/orders/x/cancel", 503, "WORKERS_UNAVAILABLE"),
        Answer(35.0, "POST", "/orders", 500, "INTERNAL_ERROR", message="internal error"),
        Answer(50.0, "GET", "/orders/z", 503, "TEMPORAL_UNAVAILABLE", message=LATE),
        Answer(51.0, "GET", "/orders/w", None, error="ReadTimeout()"),
    ]
    fakes = _Fakes(answers, outages)

    check = check_no_5xx(cast(Shop, fakes), cast(ChaosStack, fakes), since=0.0, grace=2.0)

    assert check.ok is False
    assert check.evidence == [
        f"GET /orders/x -> 503 TEMPORAL_UNAVAILABLE: {REFUSED} (1.0s after Temporal came back)",
        "POST /orders -> 500 INTERNAL_ERROR: internal error (15.0s after Temporal came back)",
        f"GET /orders/z -> 503 TEMPORAL_UNAVAILABLE: {LATE} (30.0s after Temporal came back)",
        "GET /orders/w -> no answer: ReadTimeout()",
    ]
    assert "3 503s" in check.summary


def test_cancel_answers_must_agree_with_the_final_status() -> None:
    settled = {
        "o1": _settled("CANCELLED"),
        "o2": _settled("COMPLETED"),
        "o3": _settled("COMPLETED"),
    }
    trial = Trial(
        [],
        0.0,
        {},
        cancels=[
            CancelAnswer("o1", 202, 0.0),
            CancelAnswer("o2", 409, 0.0),
            CancelAnswer("o3", 202, 0.0),
        ],
    )

    check = check_cancels(trial, settled)

    assert check.ok is False
    assert check.evidence == ["o3: cancel answered 202, ended COMPLETED"]
    assert check_cancels(Trial([], 0.0, {}), {}).ok is None


def test_two_orders_for_one_key_is_a_violation() -> None:
    ok = Trial([_placed("k1", "ord_a"), _placed("k1", "ord_a"), _placed("k2", "ord_b")], 0.0, {})
    split = Trial([_placed("k1", "ord_a"), _placed("k1", "ord_c")], 0.0, {})

    assert check_one_order_per_key(ok).ok is True
    assert check_one_order_per_key(split).evidence == ["cus_a/k1 -> ['ord_a', 'ord_c']"]


def test_an_order_not_final_in_time_or_never_accepted_is_reported() -> None:
    refused = Placed("cus_a", "k2", {}, "sku", 1, refusal="POST /orders answered 400: bad")
    trial = Trial([_placed("k1", "ord_a"), refused], 0.0, {})
    settled = {"ord_a": Settled({"status": "CHARGING", "stale": True}, None)}

    check = check_terminal(trial, settled)

    assert check.ok is False
    assert check.evidence == [
        "ord_a still CHARGING (stale) 60s after the fault",
        "cus_a/k2: POST /orders answered 400: bad",
    ]


def test_the_retry_budget_adds_the_local_attempt_every_queued_one_and_the_backoff() -> None:
    # 1 s local (its own timeout) + 5 x 4 s + 1 + 2 + 4 + 8 s backoff.
    assert retry_budget_seconds(4.0) == 36.0
    # A read timeout below the local attempt's bounds it.
    assert retry_budget_seconds(0.25) == 16.5


def test_the_quick_form_covers_the_experiments_ci_must_run() -> None:
    quick = {e.key for e in MATRIX if e.quick}
    assert quick == {
        "worker-kill",
        "temporal-kill",
        "service-hang",
        "duplicates",
        "oversell",
        "cancels",
    }
    assert len(MATRIX) == 11


def test_the_tables_show_each_invariant_with_its_evidence() -> None:
    good = ExperimentResult(1, "worker-kill", "killed", orders=2, outcomes=Counter(COMPLETED=2))
    good.checks = [Check("a", True, "fine"), Check("n/a", None, "nothing to check")]
    bad = ExperimentResult(6, "service-hang", "hang", orders=1, outcomes=Counter(FAILED=1))
    bad.checks = [Check("ledgers", False, "1 order", [f"ord_{i} FAILED kept" for i in range(10)])]

    assert good.passed and block(good).splitlines()[0].endswith("[✓]")
    text = block(bad)
    assert text.splitlines()[0].endswith("[✗]")
    assert "✗ ledgers" in text and "ord_0 FAILED kept" in text and "... and 2 more" in text
    table = summary([good, bad]).splitlines()
    assert table[2].split() == ["1.", "worker-kill", "2", "2", "0", "0", "0", "1/1", "✓"]
    assert table[3].split() == ["6.", "service-hang", "1", "0", "1", "0", "0", "0/1", "✗"]


NO_5XX = "no 5xx while Temporal up"
KNOWN_SLOW = f"POST /orders -> 503 TEMPORAL_UNAVAILABLE: {LATE}"


def _violated(evidence: list[str], tolerate: frozenset[str]) -> ExperimentResult:
    result = ExperimentResult(8, "duplicates", "a burst", tolerated=tolerate)
    result.checks = [Check(NO_5XX, False, "", evidence)]
    return result


def test_a_known_issue_fails_the_run_unless_tolerated_by_name() -> None:
    issue = "deadline-503-under-load"
    assert issue in KNOWN_ISSUES

    plain = _violated([KNOWN_SLOW], frozenset())
    tolerated = _violated([KNOWN_SLOW], frozenset({issue}))
    refused = f"GET /orders/ord_abc -> 503 TEMPORAL_UNAVAILABLE: {REFUSED}"
    mixed = _violated([KNOWN_SLOW, refused], frozenset({issue}))

    assert plain.known_issues() == {issue} and not plain.only_tolerated
    assert plain.verdict == "✗"
    assert tolerated.only_tolerated and tolerated.verdict == "✗ known"
    assert f"known product issue {issue} (tolerated)" in block(tolerated)
    # Anything the known issue does not explain still fails: a refused query
    # (fixed: reads fall back to the last published state) is not tolerated.
    assert not mixed.only_tolerated and mixed.verdict == "✗"


def test_the_command_lists_experiments_and_refuses_unknown_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["chaos", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "service-hang" in listed and "deadline-503-under-load" in listed

    assert main(["chaos", "--only", "worker-kill,nope"]) == 2
    assert "--only: unknown nope" in capsys.readouterr().err
    assert main(["chaos", "--tolerate", "nope"]) == 2
    assert "--tolerate: unknown nope" in capsys.readouterr().err
