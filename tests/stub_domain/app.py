"""The stub domain's service: an app factory with the registry's calling
convention, keeping what it was given for the test to check."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import SecretStr


def create_app(
    *,
    database_url: str,
    database_pool_size: int,
    admin_token: SecretStr,
    worker_token: SecretStr,
    currency: str,
) -> FastAPI:
    app = FastAPI(title="loyalty")
    app.state.database_url = database_url
    app.state.database_pool_size = database_pool_size
    app.state.worker_token = worker_token
    app.state.currency = currency
    return app


def create_no_app(**arguments: object) -> dict[str, object]:
    """Takes any arguments, returns no app: what the CLI must refuse."""
    return arguments


NOT_A_FACTORY = "a registry entry naming this fails to resolve"
