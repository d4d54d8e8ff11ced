"""The tables: one block per experiment as it finishes, a summary at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ordersaga.chaos.checks import EVIDENCE_LINES, Check
from ordersaga.chaos.known import KNOWN_ISSUES

OUTCOMES = ("COMPLETED", "FAILED", "CANCELLED", "NEEDS_ATTENTION")
PASS, FAIL, NOT_APPLICABLE, KNOWN = "✓", "✗", "-", "✗ known"


@dataclass
class ExperimentResult:
    number: int
    key: str
    title: str
    fault: str = ""
    orders: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    # The harness itself failed: the experiment says nothing about the product.
    error: str | None = None
    # Known issues (known.py) the caller chose to tolerate.
    tolerated: frozenset[str] = frozenset()

    @property
    def violated(self) -> list[Check]:
        return [check for check in self.checks if check.ok is False]

    @property
    def passed(self) -> bool:
        return self.error is None and not self.violated

    def known_issues(self) -> set[str]:
        """The known issues whose evidence appears in this experiment's violations."""
        return {
            issue.id
            for check in self.violated
            for line in check.evidence
            for issue in KNOWN_ISSUES.values()
            if issue.explains(check.name, line)
        }

    @property
    def only_tolerated(self) -> bool:
        """Violated, but every evidence line is a tolerated known issue's."""
        return (
            self.error is None
            and bool(self.violated)
            and all(
                any(
                    KNOWN_ISSUES[issue].explains(check.name, line)
                    for issue in self.tolerated
                    if issue in KNOWN_ISSUES
                )
                for check in self.violated
                for line in check.evidence
            )
        )

    @property
    def verdict(self) -> str:
        if self.passed:
            return PASS
        return KNOWN if self.only_tolerated else FAIL


def _mark(check: Check) -> str:
    return {True: PASS, False: FAIL, None: NOT_APPLICABLE}[check.ok]


def outcome_counts(outcomes: Counter[str]) -> str:
    shown = [f"{name} {outcomes[name]}" for name in OUTCOMES if outcomes[name]]
    shown += [f"{name} {n}" for name, n in outcomes.items() if name not in OUTCOMES]
    return ", ".join(shown) or "none"


def block(result: ExperimentResult) -> str:
    lines = [
        f"{result.number:>2}. {result.key}: {result.title}  [{result.verdict}]",
        f"    fault    {result.fault}",
        f"    orders   {result.orders}: {outcome_counts(result.outcomes)}  ({result.seconds:.0f}s)",
    ]
    if result.error:
        lines.append(f"    {FAIL} harness error: {result.error}")
    width = max((len(check.name) for check in result.checks), default=0)
    for check in result.checks:
        lines.append(f"    {_mark(check)} {check.name.ljust(width)}  {check.summary}")
        for line in check.evidence[:EVIDENCE_LINES]:
            lines.append(f"        {line}")
        if len(check.evidence) > EVIDENCE_LINES:
            lines.append(f"        ... and {len(check.evidence) - EVIDENCE_LINES} more")
    for issue in sorted(result.known_issues()):
        tolerated = " (tolerated)" if issue in result.tolerated else ""
        lines.append(
            f"    known product issue {issue}{tolerated}: {KNOWN_ISSUES[issue].description}"
        )
    return "\n".join(lines)


def summary(results: list[ExperimentResult]) -> str:
    header = ["experiment", "orders", "COMPL", "FAIL", "CANC", "PARKED", "invariants", ""]
    rows: list[list[str]] = [header]
    for r in results:
        applicable = [check for check in r.checks if check.ok is not None]
        held = sum(1 for check in applicable if check.ok)
        rows.append(
            [
                f"{r.number}. {r.key}",
                str(r.orders),
                *(str(r.outcomes[name]) for name in OUTCOMES),
                f"{held}/{len(applicable)}",
                r.verdict,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    text = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(widths[i]) if i in (0, len(row) - 1) else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        text.append("  ".join(cells).rstrip())
        if n == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(text)
