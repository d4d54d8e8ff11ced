"""`ordersaga audit`: connect, collect, check, report, and say so in the exit status.

Exit status: 0 clean (warnings alone, such as parked orders, leave it clean
unless --fail-on-warnings), 1 discrepancies found, 2 usage or configuration
(bad flags or settings, a credential a service refuses), 3 Temporal or a
service unreachable (nothing was checked; retry later), or the metrics file
could not be written once the audit had run (the report is on stdout, but
what alerts read is stale; retry later).
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.service import RPCError

from ordersaga.audit.collect import AuditConfigError, AuditUnavailable, Sources, collect
from ordersaga.audit.report import (
    AuditReport,
    MetricsFileError,
    check_metrics_file,
    metrics_text,
    previous_last_success,
    render_json,
    render_table,
    why,
    write_metrics_file,
)
from ordersaga.audit.rules import Policy, check
from ordersaga.runtime.keyring import Keyring
from ordersaga.runtime.settings import Settings

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# The earliest --since. Temporal's visibility refuses a moment far back (year 1:
# "unable to parse datetime", which would read as Temporal being down), and no
# order predates the Unix epoch, so nothing is lost by stopping there.
EARLIEST_SINCE = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AuditOptions:
    since: datetime | None = None
    max_open: timedelta = timedelta(minutes=15)
    as_json: bool = False
    metrics_file: Path | None = None
    fail_on_warnings: bool = False
    # The whole audit, connecting included: a cron job never hangs.
    timeout: timedelta = timedelta(minutes=5)


def parse_since(text: str, now: datetime) -> datetime:
    """`30m`, `24h`, `7d`, `2w` back from now, or an ISO 8601 moment (UTC when
    it names no zone), from EARLIEST_SINCE up to now. ValueError says what is
    expected."""
    too_early = ValueError(
        f"{text!r} reaches back before {EARLIEST_SINCE.date().isoformat()}, the earliest it may be"
    )
    match = _DURATION.match(text.strip())
    if match:
        # Bounded as whole seconds before any timedelta is made: one that far
        # back overflows (OverflowError, not the ValueError callers turn into
        # a usage error), and int() refuses more than 4300 digits.
        digits, most = match[1].lstrip("0") or "0", int((now - EARLIEST_SINCE).total_seconds())
        if len(digits) > len(str(most)) or int(digits) * _UNIT_SECONDS[match[2]] > most:
            raise too_early
        return now - timedelta(seconds=int(digits) * _UNIT_SECONDS[match[2]])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"expected a duration such as 30m, 24h or 7d, or an ISO 8601 time, got {text!r}"
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment > now:
        raise ValueError(f"{text!r} is in the future")
    if moment < EARLIEST_SINCE:
        raise too_early
    return moment


def run_audit(options: AuditOptions, settings: Settings, keyring: Keyring) -> int:
    metrics_file = options.metrics_file
    if metrics_file is not None:
        try:
            check_metrics_file(metrics_file)
        except MetricsFileError as error:
            print(f"ordersaga audit: --metrics-file: {error}", file=sys.stderr)
            return EXIT_USAGE
    try:
        report = asyncio.run(_audit(options, settings, keyring))
    except AuditConfigError as error:
        return _could_not_run(error, EXIT_USAGE, metrics_file)
    except AuditUnavailable as error:
        return _could_not_run(error, EXIT_UNAVAILABLE, metrics_file)
    print(render_json(report) if options.as_json else render_table(report))
    if metrics_file is not None:
        try:
            write_metrics_file(metrics_file, metrics_text(report, ended_at=datetime.now(UTC)))
        except OSError as error:
            # Checked writable before the audit, so something changed since (a
            # full disk): retry later (3), like an unreachable service; 1 would
            # claim discrepancies, of a clean audit too. The line keeps what the
            # audit found, for cron's mail (stdout is often thrown away).
            print(
                f"ordersaga audit: --metrics-file: could not write {metrics_file}: "
                f"{why(error)} (the audit ran: {report.summary()})",
                file=sys.stderr,
            )
            return EXIT_UNAVAILABLE
    if report.errors or (options.fail_on_warnings and report.warnings):
        return EXIT_FINDINGS
    return EXIT_CLEAN


def _could_not_run(error: Exception, status: int, metrics_file: Path | None) -> int:
    line = f"ordersaga audit: {error}"
    if metrics_file is not None:
        text = metrics_text(
            None, ended_at=datetime.now(UTC), last_success=previous_last_success(metrics_file)
        )
        try:
            write_metrics_file(metrics_file, text)
        except OSError as write_error:
            # Still one line, and the status of why the audit could not run.
            line += f"; --metrics-file: could not write {metrics_file}: {why(write_error)}"
    print(line, file=sys.stderr)
    return status


async def _audit(options: AuditOptions, settings: Settings, keyring: Keyring) -> AuditReport:
    try:
        async with asyncio.timeout(options.timeout.total_seconds()):
            return await _connected_audit(options, settings, keyring)
    except TimeoutError:
        raise AuditUnavailable(
            f"did not finish within {int(options.timeout.total_seconds())} s (--timeout); "
            "Temporal or a service is too slow"
        ) from None


async def _connected_audit(
    options: AuditOptions, settings: Settings, keyring: Keyring
) -> AuditReport:
    from ordersaga.runtime.temporal_config import data_converter

    address = settings.temporal_address
    try:
        client = await Client.connect(
            address,
            namespace=settings.temporal_namespace,
            data_converter=data_converter(keyring),
        )
    except (RuntimeError, RPCError, OSError) as error:
        raise AuditUnavailable(f"Temporal at {address} is unreachable: {error}") from None
    timeout = httpx.Timeout(
        settings.http_read_timeout_seconds, connect=settings.http_connect_timeout_seconds
    )
    headers = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}

    def service(name: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=settings.service_url(name), headers=headers, timeout=timeout
        )

    async with (
        service("inventory") as inventory,
        service("payments") as payments,
        service("shipping") as shipping,
    ):
        sources = Sources(client, inventory=inventory, payments=payments, shipping=shipping)
        snapshot = await collect(sources, since=options.since)
    findings = check(snapshot, Policy(max_open=options.max_open))
    return AuditReport(snapshot, findings, since=options.since, max_open=options.max_open)
