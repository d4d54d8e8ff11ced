"""The `ordersaga` command line: one process per role, plus the dev stack supervisor.

Each role's code is imported inside its command, so `--version` and `--help`
work even while one part of the system is broken.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError
from pydantic_settings import SettingsError

from ordersaga.settings import SERVICES, Settings, describe_validation_error, parse_queues

if TYPE_CHECKING:
    from fastapi import FastAPI

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
        from ordersaga.version import version_string

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


def _setup_logging(settings: Settings) -> None:
    from ordersaga.logging import configure_logging

    configure_logging(settings.log_level)


def _serve_http(app: FastAPI, host: str, port: int, settings: Settings) -> None:
    import uvicorn

    # uvicorn traps SIGINT/SIGTERM itself and returns after a graceful stop.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=settings.http_shutdown_timeout_seconds,
    )


def _service_app(name: str, settings: Settings) -> FastAPI:
    token = settings.admin_token.get_secret_value()
    database_url = settings.database_url(name)
    if name == "inventory":
        from services.inventory.app import create_app as create_inventory

        return create_inventory(database_url=database_url, admin_token=token)
    if name == "payments":
        from services.payments.app import create_app as create_payments

        return create_payments(
            database_url=database_url,
            admin_token=token,
            customer_limit_cents=settings.payments_customer_limit_cents,
        )
    from services.shipping.app import create_app as create_shipping

    return create_shipping(
        database_url=database_url,
        admin_token=token,
        refused_countries=settings.shipping_refused_countries,
    )


def cmd_service(args: argparse.Namespace) -> int:
    name: str = args.name
    settings = load_settings()
    problem = settings.admin_token_problem()
    if problem:
        raise UsageError(f"refusing to start the {name} service: {problem}")
    if getattr(settings, f"{name}_database_url") is None:
        # The default SQLite file lives there; SQLite creates files, not folders.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    _setup_logging(settings)
    _serve_http(
        _service_app(name, settings), settings.service_host, settings.service_port(name), settings
    )
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    settings = load_settings()
    _setup_logging(settings)
    from api.app import create_app

    _serve_http(create_app(settings), settings.api_host, settings.api_port, settings)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = load_settings()
    queues = settings.worker_queues
    if args.queues is not None:
        try:
            queues = parse_queues(args.queues)
        except ValueError as error:
            raise UsageError(f"--queues: {error}") from None
    _setup_logging(settings)
    from workers.main import run_worker

    asyncio.run(run_worker(settings, queues))
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    # The supervisor and every child it starts run in dev mode.
    settings = load_settings(dev_mode=True)
    from ordersaga.devstack import run_dev_stack

    return run_dev_stack(settings)


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

    worker = commands.add_parser("worker", help="run a Temporal worker")
    worker.add_argument(
        "--queues",
        metavar="Q1,Q2",
        help="comma-separated task queues to serve (default: ORDERSAGA_WORKER_QUEUES, i.e. all)",
    )
    worker.set_defaults(handler=cmd_worker)
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
