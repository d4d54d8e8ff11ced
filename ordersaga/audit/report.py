"""What the audit says: a table for people, JSON for programs, and a
Prometheus textfile for the node exporter's textfile collector."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ordersaga.audit.rules import SEVERITY, Finding, Snapshot, count_by_kind


@dataclass(frozen=True)
class AuditReport:
    snapshot: Snapshot
    findings: Sequence[Finding]
    since: datetime | None
    max_open: timedelta

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def summary(self) -> str:
        """`1 error, 2 warnings`."""
        return f"{_plural(len(self.errors), 'error')}, {_plural(len(self.warnings), 'warning')}"

    def checked(self) -> dict[str, int]:
        snapshot = self.snapshot
        return {
            "orders": len(snapshot.orders),
            "charges": len(snapshot.charges),
            "shipments": len(snapshot.shipments),
            "reservations": len(snapshot.reservations),
            "products": len(snapshot.stock),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "clean": not self.errors,
            "checked_at": self.snapshot.taken_at.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "max_open_minutes": int(self.max_open.total_seconds() // 60),
            "checked": self.checked(),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "by_kind": {kind.value: n for kind, n in count_by_kind(self.findings).items() if n},
            "findings": [finding.as_json() for finding in self.findings],
        }


def render_json(report: AuditReport) -> str:
    return json.dumps(report.as_json(), indent=2, sort_keys=False)


def render_table(report: AuditReport) -> str:
    checked = ", ".join(f"{n} {what}" for what, n in report.checked().items())
    window = f" since {report.since.isoformat()}" if report.since else ""
    head = f"ordersaga audit{window}: checked {checked}; {report.summary()}"
    if not report.findings:
        return f"{head}\nclean: every order agrees with the ledgers"
    rows = [("SEVERITY", "KIND", "ORDER", "SUBJECT", "WHAT")]
    rows += [
        (f.severity, f.kind.value, f.order_id or "-", f.subject, f.message) for f in report.findings
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [head, ""]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[4]]))
    lines.append("")
    lines.append("Evidence of each finding: ordersaga audit --json")
    return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# --- metrics -----------------------------------------------------------------------

# Every series is a gauge: each run replaces the file.
_HELP = {
    "ordersaga_audit_discrepancies": (
        "Discrepancies the last audit found between Temporal and the ledgers, by kind"
    ),
    "ordersaga_audit_success": "1 when the last audit ran to the end, 0 when it could not",
    "ordersaga_audit_last_run_timestamp_seconds": "When the last audit ended (Unix time)",
    "ordersaga_audit_last_success_timestamp_seconds": (
        "When an audit last ran to the end (Unix time)"
    ),
    "ordersaga_audit_checked": "What the last audit checked, by what",
}
_LAST_SUCCESS = "ordersaga_audit_last_success_timestamp_seconds"


def metrics_text(
    report: AuditReport | None, *, ended_at: datetime, last_success: float | None = None
) -> str:
    """The textfile. With no report (the audit could not run) the discrepancy
    series are left out rather than reported as 0, since nothing was checked,
    and `last_success` (read from the previous file) is carried over."""
    samples: list[tuple[str, dict[str, str], float]] = [
        ("ordersaga_audit_success", {}, 1 if report else 0),
        ("ordersaga_audit_last_run_timestamp_seconds", {}, ended_at.timestamp()),
    ]
    if report is None and last_success is not None:
        samples.append((_LAST_SUCCESS, {}, last_success))
    if report is not None:
        samples.append((_LAST_SUCCESS, {}, ended_at.timestamp()))
        counts = count_by_kind(report.findings)
        samples += [
            ("ordersaga_audit_discrepancies", {"kind": kind.value, "severity": SEVERITY[kind]}, n)
            for kind, n in counts.items()
        ]
        samples += [
            ("ordersaga_audit_checked", {"what": what}, n) for what, n in report.checked().items()
        ]
    lines: list[str] = []
    for name, text in _HELP.items():
        mine = [s for s in samples if s[0] == name]
        if not mine:
            continue
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        for _, labels, value in mine:
            label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            series = f"{name}{{{label_text}}}" if labels else name
            lines.append(f"{series} {_number(value)}")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class MetricsFileError(Exception):
    """--metrics-file names a path the textfile cannot be written to."""


def check_metrics_file(path: Path) -> None:
    """Refuse, before the audit runs, a path write_metrics_file could not
    replace: rather than find out after the whole audit (or never, if the run
    that could not write it was the one that mattered). The folder is probed
    with the very temporary file the write makes, so whatever stops it (no
    permission, a read-only or full filesystem, a name too long) shows now."""
    if path.is_dir():
        raise MetricsFileError(f"{path} is a folder: name the file to write")
    if not path.parent.is_dir():
        raise MetricsFileError(f"no folder {path.parent}")
    try:
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise MetricsFileError(f"cannot write in {path.parent}: {why(error)}") from None
    os.close(fd)
    Path(probe).unlink(missing_ok=True)


def why(error: OSError) -> str:
    """An OSError in a few words (`No space left on device`), not its repr."""
    return error.strerror or str(error) or type(error).__name__


def write_metrics_file(path: Path, text: str) -> None:
    """Atomically: the collector never reads a half-written file (it reads
    *.prom, so the temporary file in the same folder has another suffix)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def previous_last_success(path: Path) -> float | None:
    """The last success a metrics file written before records, if any."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == _LAST_SUCCESS:
            try:
                return float(value)
            except ValueError:
                return None
    return None
