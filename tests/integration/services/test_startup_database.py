"""`ordersaga service NAME` on a database it cannot use, run as an operator
would: it exits non-zero with one line naming ORDERSAGA_<NAME>_DATABASE_URL
(password hidden) and the cause, and no traceback."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.integration.services.support import ADMIN_TOKEN, POSTGRES_URL, WORKER_TOKEN
from tests.ordersaga_cli import clean_env, run_ordersaga
from tests.ports import free_port

SETTING = "ORDERSAGA_INVENTORY_DATABASE_URL"
PASSWORD = "hunter2-database-password"
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="ORDERSAGA_TEST_POSTGRES_URL is not set"
)


def _on_the_test_server(**parts: str) -> str:
    assert POSTGRES_URL is not None
    return make_url(POSTGRES_URL).set(**parts).render_as_string(hide_password=False)


async def _start_inventory(database_url: str, tmp_path: Path) -> tuple[int, str, list[str]]:
    """The exit code, all the output, and the lines that name the setting."""
    env = clean_env() | {
        "ORDERSAGA_ADMIN_TOKEN": ADMIN_TOKEN,
        "ORDERSAGA_WORKER_TOKEN": WORKER_TOKEN,
        "ORDERSAGA_DATA_DIR": str(tmp_path),
        # Lines as an operator reads them; JSON would escape the quotes.
        "ORDERSAGA_LOG_FORMAT": "text",
        # Should it start after all, it serves where nothing else does.
        "ORDERSAGA_INVENTORY_PORT": str(free_port()),
        SETTING: database_url,
    }
    ran = await run_ordersaga("service", "inventory", within=30, env=env)
    output = ran.stdout + ran.stderr
    return ran.code, output, [line for line in ran.stderr.splitlines() if SETTING in line]


def _assert_refused_in_one_line(code: int, output: str, lines: list[str], *causes: str) -> str:
    assert code != 0, output
    assert "Traceback" not in output, output
    assert len(lines) == 1, output
    for cause in causes:
        assert cause in lines[0], lines[0]
    assert PASSWORD not in output
    return lines[0]


async def test_nothing_listening_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://inventory:{PASSWORD}@127.0.0.1:{free_port()}/inventory"
    code, output, lines = await _start_inventory(url, tmp_path)
    line = _assert_refused_in_one_line(code, output, lines, "Connection refused")
    assert "postgresql+asyncpg://inventory:***@127.0.0.1:" in line, line


async def test_libpq_sslmode_is_refused_with_asyncpgs_name_for_it(tmp_path: Path) -> None:
    # Refused before any connection: nothing need listen there.
    url = f"postgresql+asyncpg://inventory:{PASSWORD}@127.0.0.1:{free_port()}/i?sslmode=require"
    code, output, lines = await _start_inventory(url, tmp_path)
    _assert_refused_in_one_line(code, output, lines, "sslmode", "ssl=require")


async def test_a_url_parameter_asyncpg_does_not_take_is_named(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://inventory@127.0.0.1:{free_port()}/i?application_name={PASSWORD}"
    code, output, lines = await _start_inventory(url, tmp_path)
    _assert_refused_in_one_line(code, output, lines, "'application_name'")


@needs_postgres
async def test_a_missing_database_is_one_line(tmp_path: Path) -> None:
    name = f"ordersaga_no_such_{uuid.uuid4().hex[:8]}"
    code, output, lines = await _start_inventory(_on_the_test_server(database=name), tmp_path)
    _assert_refused_in_one_line(code, output, lines, f'database "{name}" does not exist')


@needs_postgres
async def test_a_missing_role_is_one_line_without_its_password(tmp_path: Path) -> None:
    role = f"ordersaga_no_such_{uuid.uuid4().hex[:8]}"
    url = _on_the_test_server(username=role, password=PASSWORD)
    code, output, lines = await _start_inventory(url, tmp_path)
    line = _assert_refused_in_one_line(code, output, lines, role)
    assert f"{role}:***@" in line, line
