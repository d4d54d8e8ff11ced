"""Settings a component must not start with, refused at start-up with one line
naming the variable: service and JWKS URLs, database URLs, weak secrets, and a
data dir that cannot be used (the last through the command line)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import SecretStr

from ordersaga.runtime.settings import (
    DEV_ADMIN_TOKEN,
    Settings,
)
from tests.keys import TEST_CODEC_KEYS
from tests.unit.test_cli import assert_refused, run

# An autouse fixture: imported, it runs here too.
from tests.unit.test_settings import clean_environment, problems_with  # noqa: F401

SECRET = "0123456789abcdef0123456789abcdef"  # 32 characters


# --- service URLs --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:18002", "expected an absolute http:// or https:// URL with a host"),
        ("ftp://payments.internal/", "expected an absolute http:// or https:// URL with a host"),
        ("http://", "expected an absolute http:// or https:// URL with a host"),
        ("http://payments.internal:99999", "expected an absolute http:// or https:// URL"),
        ("http://payments.internal/?x=1", "without a query or fragment"),
        ("http://payments.internal/#top", "without a query or fragment"),
    ],
)
def test_a_service_url_must_be_an_http_url(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    (problem,) = problems_with(monkeypatch, ORDERSAGA_PAYMENTS_URL=value)

    assert problem.startswith("ORDERSAGA_PAYMENTS_URL: "), problem
    assert expected in problem


@pytest.mark.parametrize(
    "value", ["http://payments.internal", "https://10.0.0.7:8443/payments", "http://[::1]:8002"]
)
def test_http_and_https_service_urls_are_accepted(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ORDERSAGA_INVENTORY_URL", value)

    assert Settings().service_url("inventory") == value


def test_an_empty_service_url_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSAGA_SHIPPING_URL", "")

    assert Settings().service_url("shipping") == "http://127.0.0.1:8003"


# --- the JWKS URL ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ftp://x/jwks", "notaurl", "https:///jwks"])
def test_the_jwks_url_must_be_an_http_url(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    (problem,) = problems_with(monkeypatch, ORDERSAGA_AUTH_JWKS_URL=value)

    assert problem.startswith("ORDERSAGA_AUTH_JWKS_URL: expected an absolute http"), problem


def test_an_https_jwks_url_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSAGA_AUTH_JWKS_URL", "https://idp.example/.well-known/jwks.json")

    assert Settings().auth_jwks_url == "https://idp.example/.well-known/jwks.json"


# --- database URLs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("garbage", "not a database URL"),
        ("mysql://shop:hunter2-password@db/payments", "mysql databases are not supported"),
        ("postgres://shop:hunter2-password@db/payments", "postgres databases are not supported"),
        ("postgresql://shop:hunter2-password@db/payments", "driver psycopg"),
        ("postgresql+psycopg2://shop:hunter2-password@db/p", "driver psycopg2"),
        ("sqlite:///payments.sqlite3", "driver pysqlite"),
    ],
)
def test_a_database_url_must_be_one_a_service_can_run_on(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    (problem,) = problems_with(monkeypatch, ORDERSAGA_PAYMENTS_DATABASE_URL=value)

    assert problem.startswith("ORDERSAGA_PAYMENTS_DATABASE_URL: "), problem
    assert expected in problem
    assert "postgresql+asyncpg://" in problem  # what to write instead
    assert "hunter2" not in problem


@pytest.mark.parametrize(
    "value",
    [
        "postgresql+asyncpg://shop:pw@db:5432/payments",
        "sqlite+aiosqlite:///var/lib/payments.sqlite3",
        "sqlite+aiosqlite://",
    ],
)
def test_async_sqlite_and_postgresql_urls_are_accepted(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ORDERSAGA_PAYMENTS_DATABASE_URL", value)

    assert Settings().database_url("payments") == value


# --- weak secrets outside dev mode -----------------------------------------------


@pytest.mark.parametrize("field", ["worker_token", "api_page_token_key"])
def test_a_short_secret_is_refused_outside_dev_mode(
    monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    variable = f"ORDERSAGA_{field.upper()}"
    (problem,) = problems_with(monkeypatch, **{variable: "s3cret-but-only-31-characters.."})

    assert problem.startswith(f"{variable}: is 31 characters"), problem
    assert "at least 32" in problem
    assert "s3cret" not in problem


def test_the_dev_admin_token_is_no_worker_token_outside_dev_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (problem,) = problems_with(monkeypatch, ORDERSAGA_WORKER_TOKEN=DEV_ADMIN_TOKEN)

    assert problem.startswith("ORDERSAGA_WORKER_TOKEN: is the public dev default admin token")


def test_secrets_of_32_characters_are_accepted_outside_dev_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERSAGA_WORKER_TOKEN", SECRET)
    monkeypatch.setenv("ORDERSAGA_API_PAGE_TOKEN_KEY", SECRET[::-1])
    monkeypatch.setenv("ORDERSAGA_ADMIN_TOKEN", SECRET.upper())

    settings = Settings()

    assert settings.worker_token_value() == SECRET
    assert settings.page_token_key_value() == SECRET[::-1]
    assert settings.admin_token_problem() is None


def test_a_short_admin_token_is_refused_outside_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSAGA_ADMIN_TOKEN", "admin-token-of-25-letters")

    problem = Settings().admin_token_problem()

    assert problem is not None
    assert problem.startswith("ORDERSAGA_ADMIN_TOKEN is 25 characters")
    assert "admin-token-of" not in problem


def test_dev_mode_keeps_short_tokens_and_the_dev_admin_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORDERSAGA_DEV_MODE", "true")
    monkeypatch.setenv("ORDERSAGA_WORKER_TOKEN", DEV_ADMIN_TOKEN)
    monkeypatch.setenv("ORDERSAGA_API_PAGE_TOKEN_KEY", "short")
    monkeypatch.setenv("ORDERSAGA_CODEC_KEYS", f"k1:{base64.b64encode(bytes(32)).decode()}")

    settings = Settings(data_dir=tmp_path)

    assert settings.admin_token_problem() is None
    assert settings.worker_token_value() == DEV_ADMIN_TOKEN
    assert settings.page_token_key_value() == "short"


@pytest.mark.parametrize("byte", [0, 0x41, 0xFF])
def test_a_codec_key_of_one_repeated_byte_is_refused_outside_dev_mode(
    monkeypatch: pytest.MonkeyPatch, byte: int
) -> None:
    weak = base64.b64encode(bytes([byte]) * 32).decode()
    (problem,) = problems_with(monkeypatch, ORDERSAGA_CODEC_KEYS=f"{TEST_CODEC_KEYS},old:{weak}")

    assert problem.startswith("ORDERSAGA_CODEC_KEYS: key 'old' is one byte repeated"), problem
    assert weak not in problem


def test_the_test_keyring_is_accepted_outside_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSAGA_CODEC_KEYS", TEST_CODEC_KEYS)

    assert Settings().codec_keys == SecretStr(TEST_CODEC_KEYS)


# --- through the command line --------------------------------------------------------


def test_a_service_refuses_a_short_admin_token(tmp_path: Path) -> None:
    result = run(
        "service",
        "payments",
        env={
            "ORDERSAGA_ADMIN_TOKEN": "short-admin",
            "ORDERSAGA_WORKER_TOKEN": SECRET,
            "ORDERSAGA_DATA_DIR": str(tmp_path),
        },
    )

    assert_refused(
        result, "refusing to start the payments service: ORDERSAGA_ADMIN_TOKEN is 11 characters"
    )
    assert "short-admin" not in result.stderr


def test_an_unusable_database_url_stops_the_service_before_it_serves(tmp_path: Path) -> None:
    result = run(
        "service",
        "payments",
        env={
            "ORDERSAGA_PAYMENTS_DATABASE_URL": "mysql://shop:hunter2-password@db/payments",
            "ORDERSAGA_DATA_DIR": str(tmp_path),
        },
    )

    assert_refused(result, "ORDERSAGA_PAYMENTS_DATABASE_URL: mysql databases are not supported")
    assert "hunter2" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ("service", "inventory"),
        ("api",),
        ("worker",),
        ("codec-server",),
        ("dev",),
        ("token", "--customer", "cus_ada"),
    ],
)
def test_a_data_dir_that_cannot_be_created_is_one_line(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    data_dir = blocker / "data"

    result = run(
        *command,
        env={
            "ORDERSAGA_DEV_MODE": "true",
            "ORDERSAGA_DATA_DIR": str(data_dir),
            # Nothing is reached if the refusal works; these only keep a
            # wrongly started command from clashing with anything.
            "ORDERSAGA_TEMPORAL_ADDRESS": "127.0.0.1:1",
            "ORDERSAGA_WORKER_HEALTH_PORT": "0",
            "ORDERSAGA_WORKER_METRICS_PORT": "0",
        },
    )

    assert_refused(result, f"cannot use {data_dir}", "ORDERSAGA_DATA_DIR", "Not a directory")
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"ordersaga {command[0]}: ")
