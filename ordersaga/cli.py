"""The `ordersaga` command line: one process per role, plus the dev stack supervisor.

Each role's code is imported inside its command, so `--version` and `--help`
work even while one part of the system is broken.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import inspect
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from contracts.domains import DOMAINS, DomainConfigError, Registry
from ordersaga.runtime.domains import resolve
from ordersaga.runtime.settings import (
    SERVICES,
    MissingSecretError,
    Settings,
    describe_validation_error,
    env_var_name,
    parse_queues,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ordersaga.runtime.keyring import Keyring

# Configuration the process cannot run with: fixed by the operator, not by retrying.
EXIT_USAGE = 2


class UsageError(Exception):
    """A problem the user fixes in the environment or on the command line."""


class _VersionAction(argparse.Action):
    """Like action="version", but only asks git for the commit when asked for it."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print version and commit, then exit")

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> NoReturn:
        from ordersaga.runtime.version import version_string

        print(version_string())
        parser.exit()


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = "\n".join(f"  {line}" for line in describe_validation_error(error))
        raise UsageError(f"invalid settings:\n{problems}") from None
    except SettingsError as error:
        raise UsageError(f"invalid settings: {error}") from None


@contextlib.contextmanager
def _data_dir_usable(settings: Settings, refusal: str) -> Iterator[None]:
    """Turns an OSError on a file of the data dir, or a secret dev mode keeps in
    it (ordersaga.runtime.dev_secrets), into one line naming the path."""
    try:
        yield
    except OSError as error:
        if error.filename is None:  # not a file's (a socket's, say): not this one's to explain
            raise
        raise UsageError(
            f"{refusal}: cannot use {error.filename} "
            f"({env_var_name('data_dir')}={settings.data_dir}): {error.strerror or error}"
        ) from None


def _make_data_dir(settings: Settings) -> None:
    """The data dir, created if absent; an OSError if it cannot be written to."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(settings.data_dir, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(settings.data_dir))


def _setup_logging(settings: Settings) -> None:
    from ordersaga.runtime.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)


def _setup_telemetry(settings: Settings, role: str) -> None:
    """Logs, and the tracer provider of the process role (service.name
    ordersaga-<role>), before any app, engine or Temporal client exists."""
    _setup_logging(settings)
    from ordersaga.runtime.telemetry import TelemetryConfigError, configure_tracing

    try:
        configure_tracing(role)
    except TelemetryConfigError as error:
        raise UsageError(str(error)) from None


def _serve_http(app: FastAPI, host: str, port: int, settings: Settings) -> None:
    from ordersaga.runtime.http_server import serve

    serve(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        graceful_shutdown_seconds=settings.http_shutdown_timeout_seconds,
    )


def service_app(
    name: str, settings: Settings, worker_token: SecretStr, domains: Registry = DOMAINS
) -> FastAPI:
    """The domain's service app, from its registry entry's factory and settings."""
    from fastapi import FastAPI

    domain = domains.named(name)
    create_app = resolve(domain, "app")
    missing = [
        field for field in domain.app_settings.values() if field not in Settings.model_fields
    ]
    if missing:
        raise DomainConfigError(f"domain {name!r}: app_settings name no setting {missing[0]!r}")
    arguments = {
        "database_url": settings.database_url(name, domains),
        "database_pool_size": settings.service_database_pool_size,
        "admin_token": settings.admin_token,
        "worker_token": worker_token,
        **{keyword: getattr(settings, field) for keyword, field in domain.app_settings.items()},
    }
    try:
        # Checked first: a TypeError from inside the factory is not the registry's.
        inspect.signature(create_app).bind(**arguments)
    except TypeError as error:
        raise DomainConfigError(
            f"domain {name!r}: {domain.app} cannot take the arguments {', '.join(arguments)}: "
            f"{error}"
        ) from None
    app = create_app(**arguments)
    if not isinstance(app, FastAPI):
        raise DomainConfigError(f"domain {name!r}: {domain.app} returned no FastAPI app")
    return app


def cmd_service(args: argparse.Namespace) -> int:
    name: str = args.name
    settings = load_settings()
    problem = settings.admin_token_problem()
    if problem:
        raise UsageError(f"refusing to start the {name} service: {problem}")
    try:
        # Outside dev mode it must be configured; dev mode keeps one in data_dir.
        with _data_dir_usable(settings, f"refusing to start the {name} service"):
            worker_token = SecretStr(settings.worker_token_value())
    except MissingSecretError as error:
        raise UsageError(f"refusing to start the {name} service: {error}") from None
    if worker_token.get_secret_value() == settings.admin_token.get_secret_value():
        raise UsageError(
            f"refusing to start the {name} service: ORDERSAGA_WORKER_TOKEN is the admin "
            "token; give the workers a credential of their own"
        )
    if settings.configured_database_url(name) is None:
        # The default SQLite file lives there; SQLite creates files, not folders.
        with _data_dir_usable(settings, f"refusing to start the {name} service"):
            _make_data_dir(settings)
    _setup_telemetry(settings, name)
    try:
        app = service_app(name, settings, worker_token)
    except DomainConfigError as error:
        raise UsageError(f"cannot start the {name} service: {error}") from None
    _serve_http(app, settings.service_host, settings.service_port(name), settings)
    return 0


def _codec_keyring(settings: Settings, role: str) -> Keyring:
    """The payload keyring, or a one-line refusal: no component talks to Temporal
    without it, since whatever it wrote would be readable by anyone with access
    to Temporal. The benchmark's switch that turns the codec off is refused here
    outside dev mode too (ordersaga.runtime.codec.payload_keyring)."""
    from ordersaga.runtime.codec import keyring_from_settings, payload_keyring
    from ordersaga.runtime.settings import MissingSecretError

    try:
        # Dev mode keeps its key in the data dir.
        with _data_dir_usable(settings, f"refusing to start the {role}"):
            payload_keyring(settings)
            return keyring_from_settings(settings)
    except (MissingSecretError, ValueError) as error:
        raise UsageError(f"refusing to start the {role}: {error}") from None


def cmd_api(args: argparse.Namespace) -> int:
    settings = load_settings()
    _codec_keyring(settings, "API")
    _setup_telemetry(settings, "api")
    from api.app import create_app

    try:
        # Dev mode keeps its page-token key and issuer in the data dir.
        with _data_dir_usable(settings, "refusing to start the API"):
            app = create_app(settings)
    except ValueError as error:  # MissingSecretError included
        raise UsageError(f"refusing to start the API: {error}") from None
    _serve_http(app, settings.api_host, settings.api_port, settings)
    return 0


# A minted token is a bearer credential nobody can revoke: a day at most, so a
# leaked one does not outlive the work it was minted for.
MAX_TOKEN_TTL_SECONDS = 24 * 3600


def _token_ttl(text: str) -> int:
    """--ttl in seconds, 1 to MAX_TOKEN_TTL_SECONDS, or UsageError."""
    bounds = f"a whole number of seconds from 1 to {MAX_TOKEN_TTL_SECONDS} (24 hours)"
    # Checked here rather than by argparse, whose refusal also prints the usage:
    # a refusal is one line. The text is echoed only when short.
    shown = repr(text) if len(text) <= 24 else "a longer text"
    try:
        seconds = int(text)
    except ValueError:  # not a number, or too many digits to convert
        raise UsageError(f"--ttl must be {bounds}, got {shown}") from None
    if not 1 <= seconds <= MAX_TOKEN_TTL_SECONDS:
        raise UsageError(f"--ttl must be {bounds}, got {shown}")
    return seconds


def cmd_token(args: argparse.Namespace) -> int:
    """Mint a token with dev mode's own issuer; only the token goes to stdout."""
    # Before anything is read or created: a refused --ttl leaves no trace.
    ttl_seconds = None if args.ttl is None else _token_ttl(args.ttl)
    settings = load_settings(dev_mode=True)
    if settings.auth_jwks_url:
        raise UsageError(
            "ORDERSAGA_AUTH_JWKS_URL is set: tokens come from that provider, not from "
            "`ordersaga token` (a dev-only issuer)"
        )
    from ordersaga.runtime.auth import DEFAULT_TOKEN_TTL_SECONDS, DevIssuer, customer_id_for

    if args.operator is not None:
        subject, scope = args.operator, settings.auth_operator_scope
    else:
        subject, scope = args.customer, settings.auth_customer_scope
    if customer_id_for(subject) != subject:
        raise UsageError(
            f"{subject!r} is not a plain id (letters, digits, _ . : -, at most 64 characters)"
        )
    with _data_dir_usable(settings, "cannot mint a token"):
        issuer = DevIssuer.from_settings(settings)
    if ttl_seconds is None:
        ttl_seconds = DEFAULT_TOKEN_TTL_SECONDS
    print(issuer.mint(subject, [scope], ttl_seconds=ttl_seconds))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = load_settings()
    queues = settings.worker_queues
    if args.queues is not None:
        try:
            queues = parse_queues(args.queues)
        except ValueError as error:
            raise UsageError(f"--queues: {error}") from None
    _codec_keyring(settings, "worker")
    if settings.dev_mode:
        # Made up in data_dir now, so a folder it cannot use is one line, not a
        # traceback from inside the worker; run_worker reads the same one.
        with _data_dir_usable(settings, "refusing to start the worker"):
            settings.worker_token_value()
    _setup_telemetry(settings, "worker")
    from ordersaga.runtime.logging import structured_temporal_loggers

    structured_temporal_loggers()
    from workers.main import WorkerStartupError, exit_without_finalizing, run_worker

    try:
        from ordersaga.runtime import eventloop

        eventloop.run(run_worker(settings, queues))
    except (WorkerStartupError, DomainConfigError) as error:
        raise UsageError(str(error)) from None
    exit_without_finalizing(0)


def cmd_codec_server(args: argparse.Namespace) -> int:
    settings = load_settings()
    keyring = _codec_keyring(settings, "codec server")
    from ordersaga.runtime.auth import TokenVerifier

    try:
        # Dev mode keeps its issuer in the data dir.
        with _data_dir_usable(settings, "refusing to start the codec server"):
            verifier = TokenVerifier.from_settings(settings)
    except ValueError as error:
        raise UsageError(f"refusing to start the codec server: {error}") from None
    _setup_telemetry(settings, "codec-server")
    from ordersaga.codec_server import create_codec_app
    from ordersaga.runtime.codec import EncryptionCodec

    app = create_codec_app(
        codec=EncryptionCodec(keyring),
        verifier=verifier,
        namespace=settings.temporal_namespace,
        cors_origins=settings.codec_cors_origins(),
    )
    _serve_http(app, settings.codec_server_host, settings.codec_server_port, settings)
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    # The supervisor and every child it starts run in dev mode.
    settings = load_settings(dev_mode=True)
    with _data_dir_usable(settings, "refusing to start the dev stack"):
        _make_data_dir(settings)
    from ordersaga.devstack import run_dev_stack

    return run_dev_stack(settings)


def _histories_failed(action: str, error: Exception) -> int:
    print(f"ordersaga histories {action}: {error}", file=sys.stderr)
    return 1


def cmd_histories_record(args: argparse.Namespace) -> int:
    settings = load_settings()
    from ordersaga.binaries import BinaryNotFoundError
    from ordersaga.devstack import ChildFailed, DevStackError
    from ordersaga.histories import HistoriesError, default_label, printer, record_histories

    log = printer()
    try:
        target = asyncio.run(
            record_histories(
                out=args.out,
                label=args.label or default_label(),
                settings=settings,
                log=log,
                only=args.scenario or (),
            )
        )
    except (HistoriesError, DevStackError, BinaryNotFoundError, ChildFailed) as error:
        return _histories_failed("record", error)
    log(f"recorded into {target}; commit it so the replay gate keeps these paths")
    return 0


def cmd_histories_export(args: argparse.Namespace) -> int:
    settings = load_settings()
    from ordersaga.histories import HistoriesError, export_histories, printer

    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    log = printer()
    try:
        written = asyncio.run(
            export_histories(
                address=args.address or settings.temporal_address,
                namespace=args.namespace or settings.temporal_namespace,
                query=args.query,
                out=args.out,
                limit=args.limit,
                log=log,
                keyring=_codec_keyring(settings, "histories export"),
                redact=not args.keep_personal_data,
            )
        )
    except HistoriesError as error:
        return _histories_failed("export", error)
    log(f"exported {len(written)} histor{'y' if len(written) == 1 else 'ies'} into {args.out}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Exit 0 when the URL answers 2xx, else 1 with the reason: a container
    healthcheck that needs no curl in the slim image (Docker reads 1 as
    unhealthy; 2 is reserved)."""
    import httpx

    if not args.timeout > 0:
        raise UsageError("--timeout must be more than 0 seconds")
    try:
        response = httpx.get(args.url, timeout=args.timeout)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        print(f"ordersaga probe: {args.url}: {error or type(error).__name__}", file=sys.stderr)
        return 1
    if not response.is_success:
        print(f"ordersaga probe: {args.url} answered {response.status_code}", file=sys.stderr)
        return 1
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def cmd_bench(args: argparse.Namespace) -> int:
    settings = load_settings(dev_mode=True) if args.api_url is None else load_settings()
    from ordersaga.bench.runner import (
        ALL_SCENARIOS,
        DEFAULT_SCENARIOS,
        EMBEDDED_ONLY_SCENARIOS,
        BenchOptions,
    )

    requested = DEFAULT_SCENARIOS if args.scenarios is None else args.scenarios.split(",")
    scenarios = tuple(dict.fromkeys(s.strip() for s in requested if s.strip()))
    unknown = [s for s in scenarios if s not in ALL_SCENARIOS]
    if unknown or not scenarios:
        raise UsageError(
            f"--scenarios: unknown {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(ALL_SCENARIOS)}"
        )
    if args.api_url is not None:
        # A running stack cannot be restarted without the codec: by default
        # those scenarios are left out, and asking for one is an error.
        embedded_only = [s for s in scenarios if s in EMBEDDED_ONLY_SCENARIOS]
        if embedded_only and args.scenarios is not None:
            raise UsageError(
                f"--scenarios: {', '.join(embedded_only)} needs the benchmark's own "
                "embedded stacks; leave out --api-url"
            )
        scenarios = tuple(s for s in scenarios if s not in EMBEDDED_ONLY_SCENARIOS)
    remote = {
        "--temporal-address": args.temporal_address,
        **{f"--{name}-url": getattr(args, f"{name}_url") for name in SERVICES},
    }
    if args.api_url is None and any(remote.values()):
        given = ", ".join(flag for flag, value in remote.items() if value)
        raise UsageError(f"{given} target a running stack: give --api-url too")
    import importlib.util

    missing = [name for name in ("matplotlib", "tqdm") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(
            f"{', '.join(missing)} missing: install the bench extra, pip install 'ordersaga[bench]'"
        )
    options = BenchOptions(
        concurrency=args.concurrency,
        rate=args.rate,
        orders=args.orders,
        warmup_orders=args.warmup_orders,
        repetitions=args.repetitions,
        scenarios=scenarios,
        output_dir=args.output_dir,
        data_dir=args.data_dir,
        api_url=args.api_url,
        temporal_address=args.temporal_address,
        service_urls={
            name: getattr(args, f"{name}_url") for name in SERVICES if getattr(args, f"{name}_url")
        },
        progress=not args.no_progress,
    )
    from ordersaga.bench.command import run_bench_command

    return run_bench_command(options, settings)


def cmd_chaos(args: argparse.Namespace) -> int:
    # A stack of its own, in dev mode: its own issuer and keys in its data dir.
    settings = load_settings(dev_mode=True)
    from ordersaga.chaos.command import (
        ChaosOptions,
        parse_only,
        run_chaos_command,
        unknown_experiments,
    )
    from ordersaga.chaos.experiments import MATRIX
    from ordersaga.chaos.known import KNOWN_ISSUES

    if args.list:
        for number, experiment in enumerate(MATRIX, start=1):
            quick = "  (in --quick)" if experiment.quick else ""
            print(f"{number:>2}. {experiment.key:<22} {experiment.title}{quick}")
        print("\nknown product issues (--tolerate ID):")
        for issue in KNOWN_ISSUES.values():
            print(f"  {issue.id}: {issue.description}")
        return 0
    only = parse_only(args.only)
    unknown = unknown_experiments(only)
    if unknown:
        raise UsageError(
            f"--only: unknown {', '.join(unknown)}; `ordersaga chaos --list` names them"
        )
    tolerate = frozenset(args.tolerate or ())
    unknown_issues = sorted(tolerate - set(KNOWN_ISSUES))
    if unknown_issues:
        raise UsageError(
            f"--tolerate: unknown {', '.join(unknown_issues)}; `ordersaga chaos --list` names them"
        )
    options = ChaosOptions(
        tolerate=tolerate,
        quick=args.quick,
        only=only,
        seed=args.seed,
        data_dir=args.data_dir,
        keep_data=args.keep_data,
    )
    return run_chaos_command(options, settings)


def cmd_audit(args: argparse.Namespace) -> int:
    settings = load_settings()
    from datetime import UTC, datetime, timedelta

    from ordersaga.audit.command import AuditOptions, parse_since, run_audit

    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since, datetime.now(UTC))
        except ValueError as error:
            raise UsageError(f"--since: {error}") from None
    metrics_file: Path | None = args.metrics_file
    if metrics_file is not None and not metrics_file.parent.is_dir():
        raise UsageError(f"--metrics-file: no folder {metrics_file.parent}")
    keyring = _codec_keyring(settings, "audit")
    options = AuditOptions(
        since=since,
        max_open=timedelta(minutes=args.max_open_minutes),
        as_json=args.json,
        metrics_file=metrics_file,
        fail_on_warnings=args.fail_on_warnings,
        timeout=timedelta(seconds=args.timeout),
    )
    from ordersaga.runtime.eventloop import exit_without_finalizing

    exit_without_finalizing(run_audit(options, settings, keyring))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ordersaga",
        description="Order fulfilment saga on Temporal. Configure with ORDERSAGA_* variables.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser(
        "dev",
        help="run the whole system locally: Temporal dev server, services, worker, API",
    )
    dev.set_defaults(handler=cmd_dev)

    service = commands.add_parser("service", help="run one domain service (HTTP)")
    service.add_argument("name", choices=SERVICES)
    service.set_defaults(handler=cmd_service)

    api = commands.add_parser("api", help="run the HTTP API")
    api.set_defaults(handler=cmd_api)

    token = commands.add_parser(
        "token",
        help="dev only: mint a bearer token for the API with dev mode's own issuer",
        description="Mints a JWT signed by the dev issuer kept in ORDERSAGA_DATA_DIR "
        "(default .ordersaga, the folder `make dev` uses) and prints it alone on stdout, "
        "e.g. TOKEN=$(ordersaga token --customer cus_ada). Production tokens come "
        "from your OIDC provider.",
    )
    who = token.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer", metavar="ID", help="a customer token for this customer id")
    who.add_argument(
        "--operator",
        metavar="ID",
        nargs="?",
        const="op_dev",
        help="an operator token (subject ID, default op_dev)",
    )
    token.add_argument(
        "--ttl",
        metavar="SECONDS",
        help=f"lifetime in seconds, 1 to {MAX_TOKEN_TTL_SECONDS} (default: 43200, 12 hours)",
    )
    token.set_defaults(handler=cmd_token)

    worker = commands.add_parser("worker", help="run a Temporal worker")
    worker.add_argument(
        "--queues",
        metavar="Q1,Q2",
        help="comma-separated task queues to serve (default: ORDERSAGA_WORKER_QUEUES, i.e. all)",
    )
    worker.set_defaults(handler=cmd_worker)

    codec_server = commands.add_parser(
        "codec-server",
        help="serve Temporal's remote codec (/encode, /decode) to operators: Web UI and CLI",
    )
    codec_server.set_defaults(handler=cmd_codec_server)

    probe = commands.add_parser(
        "probe", help="exit 0 if URL answers 2xx, else 1 (container healthchecks)"
    )
    probe.add_argument("url", metavar="URL", help="e.g. http://127.0.0.1:8000/readyz")
    probe.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to wait for an answer (default: 3)"
    )
    probe.set_defaults(handler=cmd_probe)

    histories = commands.add_parser(
        "histories", help="workflow histories for the replay tests (record, export)"
    )
    history_commands = histories.add_subparsers(
        dest="histories_command", required=True, metavar="ACTION"
    )
    record = history_commands.add_parser(
        "record",
        help="run every saga scenario on a dev stack of its own and save each history",
    )
    record.add_argument(
        "--out",
        type=Path,
        default=Path("tests/replay/histories"),
        help="folder of recordings (default: tests/replay/histories)",
    )
    record.add_argument(
        "--label",
        help="sub-folder for this recording (default: v<version>-<commit>)",
    )
    record.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="record only this scenario (repeatable; default: all)",
    )
    record.set_defaults(handler=cmd_histories_record)
    export = history_commands.add_parser(
        "export", help="save the histories a visibility query matches, from any Temporal server"
    )
    export.add_argument(
        "--query",
        required=True,
        help='visibility query, e.g. \'WorkflowType = "OrderWorkflow" AND OrderStatus = "FAILED"\'',
    )
    export.add_argument("--out", type=Path, required=True, help="folder to write into")
    export.add_argument(
        "--address", help="Temporal host:port (default: ORDERSAGA_TEMPORAL_ADDRESS)"
    )
    export.add_argument(
        "--namespace", help="Temporal namespace (default: ORDERSAGA_TEMPORAL_NAMESPACE)"
    )
    export.add_argument(
        "--limit", type=int, default=100, help="at most this many workflows (default: 100)"
    )
    export.add_argument(
        "--keep-personal-data",
        action="store_true",
        help="keep shipping addresses and payment tokens in the payloads (default: redacted)",
    )
    export.set_defaults(handler=cmd_histories_export)

    bench = commands.add_parser(
        "bench",
        help="benchmark the saga against a bare Temporal baseline (starts its own stack)",
        description="Measure orders/s, latencies and CPU/RSS per component for the saga "
        "and a bare Temporal baseline, interleaved, then check that nothing was lost.",
    )
    bench.add_argument(
        "--concurrency", type=_positive_int, default=16, help="closed-loop clients (default: 16)"
    )
    bench.add_argument(
        "--rate",
        type=_positive_float,
        help="open-loop orders/s (default: half the closed loop's measured orders/s)",
    )
    bench.add_argument(
        "--orders", type=_positive_int, default=150, help="orders per measured run (default: 150)"
    )
    bench.add_argument(
        "--warmup-orders",
        type=_positive_int,
        default=30,
        help="orders per scenario to warm up (default: 30)",
    )
    bench.add_argument(
        "--repetitions", type=_positive_int, default=3, help="interleaved repetitions (default: 3)"
    )
    bench.add_argument(
        "--scenarios",
        help="comma-separated scenarios (default: every one; docs/performance.md lists them)",
    )
    bench.add_argument(
        "--output-dir",
        type=Path,
        default=Path("bench-results"),
        help="where bench.json, bench.png go",
    )
    bench.add_argument(
        "--data-dir",
        type=Path,
        help="data folder of the embedded stack (default: a new temporary one)",
    )
    bench.add_argument("--api-url", help="target a running stack's API instead of starting one")
    bench.add_argument(
        "--temporal-address",
        help="with --api-url: its Temporal (default: ORDERSAGA_TEMPORAL_ADDRESS)",
    )
    for name in SERVICES:
        bench.add_argument(f"--{name}-url", help=f"with --api-url: its {name} service")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.set_defaults(handler=cmd_bench)

    chaos = commands.add_parser(
        "chaos",
        help="run the fault matrix against a stack of separate processes (starts its own)",
        description="Kill and hang the components of a stack of its own (free ports, fresh "
        "data dir) while orders are in flight, then check the saga's invariants: a table "
        "per experiment, exit 1 on any violation.",
    )
    chaos.add_argument(
        "--quick",
        action="store_true",
        help="the bounded form for CI: fewer orders, shorter faults, a subset of experiments",
    )
    chaos.add_argument("--only", metavar="E1,E2", help="run only these experiments (see --list)")
    chaos.add_argument(
        "--list", action="store_true", help="list the experiments and known issues, then exit"
    )
    chaos.add_argument(
        "--tolerate",
        action="append",
        metavar="ISSUE",
        help="a known product issue (see --list) whose violations are shown but do not fail "
        "the run (repeatable; default: none, every violation fails)",
    )
    chaos.add_argument("--seed", type=int, help="seed of the random choices (default: random)")
    chaos.add_argument(
        "--data-dir",
        type=Path,
        help="data folder of the stack (default: a new temporary one, removed when clean)",
    )
    chaos.add_argument(
        "--keep-data", action="store_true", help="keep the temporary data folder even when clean"
    )
    chaos.set_defaults(handler=cmd_chaos)

    audit = commands.add_parser(
        "audit",
        help="reconcile every order's Temporal status with the payments, shipping "
        "and inventory ledgers",
        description="Check every order against Temporal and the three ledgers and report "
        "each discrepancy with its evidence. Reads ORDERSAGA_TEMPORAL_ADDRESS, "
        "ORDERSAGA_*_URL, ORDERSAGA_ADMIN_TOKEN and ORDERSAGA_CODEC_KEYS. Exit status: "
        "0 clean, 1 discrepancies found, 2 usage or configuration error, "
        "3 Temporal or a service unreachable.",
    )
    audit.add_argument(
        "--since",
        metavar="WHEN",
        help="check only orders open now or closed since WHEN: a duration back from now "
        "(30m, 24h, 7d) or an ISO 8601 time (default: every order)",
    )
    audit.add_argument(
        "--max-open-minutes",
        type=_positive_int,
        default=15,
        metavar="N",
        help="an order open longer than this (and not parked) is stuck (default: 15)",
    )
    audit.add_argument("--json", action="store_true", help="print JSON instead of a table")
    audit.add_argument(
        "--metrics-file",
        type=Path,
        metavar="PATH",
        help="also write a Prometheus textfile (node exporter's textfile collector), "
        "e.g. /var/lib/node_exporter/textfile/ordersaga_audit.prom",
    )
    audit.add_argument(
        "--fail-on-warnings",
        action="store_true",
        help="exit 1 for warnings too (parked orders), not only for errors",
    )
    audit.add_argument(
        "--timeout",
        type=_positive_float,
        default=300.0,
        metavar="SECONDS",
        help="give up (exit 3) when the audit takes longer (default: 300)",
    )
    audit.set_defaults(handler=cmd_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except UsageError as error:
        print(f"ordersaga {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # Ctrl-C before the command installed its own signal handling.
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
