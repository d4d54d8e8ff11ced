"""Settings: what the environment may say, and how a wrong value is reported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts.domains import DOMAINS
from ordersaga.runtime.settings import (
    DEV_ADMIN_TOKEN,
    Settings,
    describe_validation_error,
    parse_queues,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own ORDERSAGA_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("ORDERSAGA_"):
            monkeypatch.delenv(name)


def problems_with(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    return describe_validation_error(caught.value)


# --- invalid values ----------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ORDERSAGA_API_PORT", "70000", "Input should be less than or equal to 65535"),
        ("ORDERSAGA_API_PORT", "0", "Input should be greater than or equal to 1"),
        ("ORDERSAGA_INVENTORY_PORT", "eight", "Input should be a valid integer"),
        ("ORDERSAGA_TEMPORAL_UI_PORT", "-1", "Input should be greater than or equal to 1"),
        ("ORDERSAGA_TEMPORAL_ADDRESS", "localhost", "expected host:port"),
        ("ORDERSAGA_TEMPORAL_ADDRESS", "localhost:99999", "expected host:port"),
        ("ORDERSAGA_TEMPORAL_ADDRESS", ":7233", "expected host:port"),
        ("ORDERSAGA_DEV_MODE", "perhaps", "Input should be a valid boolean"),
        ("ORDERSAGA_LOG_LEVEL", "loud", "unknown log level 'loud'"),
        ("ORDERSAGA_WORKER_QUEUES", "orders,bogus", "unknown task queue(s) bogus"),
        ("ORDERSAGA_WORKER_QUEUES", " , ", "no task queue given"),
        ("ORDERSAGA_HTTP_READ_TIMEOUT_SECONDS", "0", "Input should be greater than 0"),
        ("ORDERSAGA_WORKER_GRACE_PERIOD_SECONDS", "-5", "greater than or equal to 0"),
        ("ORDERSAGA_PAYMENTS_CUSTOMER_LIMIT_CENTS", "-1", "greater than or equal to 0"),
        (
            "ORDERSAGA_PAYMENTS_CUSTOMER_LIMIT_CENTS",
            "1000000000000001",
            "less than or equal to 1000000000000000",
        ),
        ("ORDERSAGA_SERVICE_DATABASE_POOL_SIZE", "0", "greater than or equal to 1"),
        ("ORDERSAGA_SERVICE_DATABASE_POOL_SIZE", "1001", "less than or equal to 1000"),
    ],
)
def test_an_invalid_value_is_reported_once_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    problems = problems_with(monkeypatch, **{variable: value})

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{variable}: "), problems
    assert expected in problems[0]


def test_every_invalid_value_is_reported_on_its_own_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problems = problems_with(
        monkeypatch,
        ORDERSAGA_API_PORT="70000",
        ORDERSAGA_SHIPPING_PORT="x",
        ORDERSAGA_LOG_LEVEL="?",
    )

    assert sorted(line.split(":")[0] for line in problems) == [
        "ORDERSAGA_API_PORT",
        "ORDERSAGA_LOG_LEVEL",
        "ORDERSAGA_SHIPPING_PORT",
    ]
    assert all("\n" not in line for line in problems)


def test_the_rejected_value_itself_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Someone pasting a secret into the wrong variable must not see it in logs.
    problems = problems_with(monkeypatch, ORDERSAGA_API_PORT="hunter2-secret")

    assert "hunter2-secret" not in "\n".join(problems)


def test_the_supervisor_timeout_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    problems = problems_with(monkeypatch, ORDERSAGA_DEV_STARTUP_TIMEOUT_SECONDS="0")

    assert problems == ["ORDERSAGA_DEV_STARTUP_TIMEOUT_SECONDS: Input should be greater than 0"]


# --- the admin token rule ----------------------------------------------------


def test_the_dev_default_admin_token_is_refused_outside_dev_mode() -> None:
    problem = Settings().admin_token_problem()

    assert problem is not None
    assert "ORDERSAGA_ADMIN_TOKEN" in problem
    assert "dev default" in problem


def test_an_empty_admin_token_is_refused_outside_dev_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERSAGA_ADMIN_TOKEN", "")

    problem = Settings().admin_token_problem()

    assert problem is not None
    assert "empty" in problem


def test_the_dev_default_admin_token_is_fine_in_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSAGA_DEV_MODE", "true")

    assert Settings().admin_token_problem() is None


def test_a_secret_admin_token_is_fine_outside_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSAGA_ADMIN_TOKEN", "a-long-random-secret-of-32-chars")

    settings = Settings()

    assert settings.admin_token_problem() is None
    assert "a-long-random-secret-of-32-chars" not in repr(settings)


# --- queues --------------------------------------------------------------------


def test_parse_queues_rejects_unknown_names_and_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown task queue\(s\) bogus, other; choose from"):
        parse_queues("orders,bogus,other")


def test_parse_queues_rejects_an_empty_list() -> None:
    with pytest.raises(ValueError, match="no task queue given"):
        parse_queues("")


def test_parse_queues_strips_blanks_and_duplicates_keeping_order() -> None:
    assert parse_queues(" payments, orders ,,payments ") == ["payments", "orders"]
    assert parse_queues(["shipping", "inventory"]) == ["shipping", "inventory"]


def test_worker_queues_come_from_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERSAGA_WORKER_QUEUES", "orders, inventory")

    assert Settings().worker_queues == ["orders", "inventory"]


# --- defaults and overrides ----------------------------------------------------


def test_defaults_run_everything_locally_on_the_documented_ports() -> None:
    settings = Settings()

    assert settings.dev_mode is False
    assert settings.data_dir == Path(".ordersaga")
    assert settings.log_level == "INFO"
    assert settings.temporal_address == "127.0.0.1:7233"
    assert settings.temporal_port == 7233
    assert settings.temporal_namespace == "default"
    assert settings.temporal_ui_port == 8233
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)
    assert [settings.service_port(name) for name in ("inventory", "payments", "shipping")] == [
        8001,
        8002,
        8003,
    ]
    assert settings.service_url("payments") == "http://127.0.0.1:8002"
    assert settings.admin_token.get_secret_value() == DEV_ADMIN_TOKEN
    assert settings.shipping_refused_countries == ["AQ"]
    assert settings.worker_queues == list(DOMAINS.task_queues)
    assert settings.worker_grace_period_seconds > 0


def test_default_databases_are_sqlite_files_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORDERSAGA_DATA_DIR", str(tmp_path))

    settings = Settings()

    assert settings.database_url("inventory") == (
        f"sqlite+aiosqlite:///{tmp_path.resolve()}/inventory.sqlite3"
    )
    assert settings.database_url("shipping").endswith("/shipping.sqlite3")


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = {
        "ORDERSAGA_DEV_MODE": "true",
        "ORDERSAGA_LOG_LEVEL": "debug",
        "ORDERSAGA_API_PORT": "9000",
        "ORDERSAGA_TEMPORAL_ADDRESS": "temporal.internal:7999",
        "ORDERSAGA_PAYMENTS_URL": "http://payments.internal:80",
        "ORDERSAGA_INVENTORY_DATABASE_URL": "postgresql+asyncpg://db/inventory",
        "ORDERSAGA_SHIPPING_REFUSED_COUNTRIES": "aq, kp",
        "ORDERSAGA_WORKER_GRACE_PERIOD_SECONDS": "2.5",
    }
    for name, value in overrides.items():
        monkeypatch.setenv(name, value)

    settings = Settings()

    assert settings.dev_mode is True
    assert settings.log_level == "DEBUG"
    assert settings.api_port == 9000
    assert settings.temporal_port == 7999
    assert settings.service_url("payments") == "http://payments.internal:80"
    assert settings.service_url("shipping") == "http://127.0.0.1:8003"
    assert settings.database_url("inventory") == "postgresql+asyncpg://db/inventory"
    assert settings.shipping_refused_countries == ["AQ", "KP"]
    assert settings.worker_grace_period_seconds == 2.5


def test_variables_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ordersaga_api_port", "9100")

    assert Settings().api_port == 9100
