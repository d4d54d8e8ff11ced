"""The compose stack's setup scripts, run for real: the namespace and search
attribute step against a Temporal dev server, the database init script against
PostgreSQL. (The schema step needs temporal-sql-tool, which only the
admin-tools image has; test_commands.py cannot cover it either.)"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from contracts.search_attributes import SEARCH_ATTRIBUTE_TYPES
from ordersaga.binaries import temporal_cli
from tests.deploy import files
from tests.processes import run_process

POSTGRES_URL = os.environ.get("ORDERSAGA_TEST_POSTGRES_URL")


async def _run(script: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run a script as its container does: executed, by its shebang."""
    ran = await run_process(str(script), within=180, env=env, stderr_to_stdout=True)
    return ran.code, ran.stdout


# ---- Temporal namespace and search attributes ----


def _setup_env(env: WorkflowEnvironment, namespace: str, **overrides: str) -> dict[str, str]:
    compose_env = files.environment(files.services()["temporal-setup"])
    return {
        "PATH": f"{temporal_cli().parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": namespace,
        "NAMESPACE_RETENTION": compose_env["NAMESPACE_RETENTION"],
        "SEARCH_ATTRIBUTES": compose_env["SEARCH_ATTRIBUTES"],
        "SETUP_ATTEMPTS": "30",
        **overrides,
    }


async def _registered(env: WorkflowEnvironment, namespace: str) -> dict[str, str]:
    response = await env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return {
        name: IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_")
        for name, value in response.custom_attributes.items()
    }


async def test_setup_creates_the_namespace_and_every_search_attribute_idempotently(
    dev_server_env: WorkflowEnvironment,
) -> None:
    namespace = f"setup-{uuid.uuid4().hex[:10]}"
    code, output = await _run(files.NAMESPACE_SETUP_SCRIPT, _setup_env(dev_server_env, namespace))
    assert code == 0, output
    assert f"creating namespace {namespace}" in output
    expected = {name: kind.upper() for name, kind in SEARCH_ATTRIBUTE_TYPES.items()}
    assert await _registered(dev_server_env, namespace) == expected

    # A restart of the step (compose `restart: on-failure`, a second `up`) is harmless.
    code, output = await _run(files.NAMESPACE_SETUP_SCRIPT, _setup_env(dev_server_env, namespace))
    assert code == 0, output
    assert f"namespace {namespace} exists" in output
    assert await _registered(dev_server_env, namespace) == expected

    # An attribute that exists with another type is an error, not a silent pass.
    [keyword_attribute, *_] = [n for n, k in SEARCH_ATTRIBUTE_TYPES.items() if k == "Keyword"]
    code, output = await _run(
        files.NAMESPACE_SETUP_SCRIPT,
        _setup_env(
            dev_server_env,
            namespace,
            SEARCH_ATTRIBUTES=f"{keyword_attribute}=Int",
            SETUP_ATTEMPTS="1",
        ),
    )
    assert code != 0
    assert "different type" in output and "gave up" in output


async def test_setup_refuses_a_malformed_attribute_list(
    dev_server_env: WorkflowEnvironment,
) -> None:
    code, output = await _run(
        files.NAMESPACE_SETUP_SCRIPT,
        _setup_env(dev_server_env, "default", SEARCH_ATTRIBUTES="OrderStatus"),
    )
    assert code == 1
    assert "bad SEARCH_ATTRIBUTES entry 'OrderStatus'" in output


async def test_setup_names_a_missing_variable(dev_server_env: WorkflowEnvironment) -> None:
    env = _setup_env(dev_server_env, "default")
    del env["TEMPORAL_NAMESPACE"]
    code, output = await _run(files.NAMESPACE_SETUP_SCRIPT, env)
    assert code != 0
    assert "set TEMPORAL_NAMESPACE" in output


# ---- PostgreSQL: one database and role per owner ----


def _psql_env(**extra: str) -> dict[str, str]:
    assert POSTGRES_URL
    url = urlsplit(POSTGRES_URL)
    return {
        "PATH": os.environ["PATH"],
        "PGHOST": url.hostname or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        **({"PGPASSWORD": url.password} if url.password else {}),
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_DB": url.path.lstrip("/") or "postgres",
        **extra,
    }


async def _sql(query: str) -> str:
    env = _psql_env()
    ran = await run_process(
        "psql",
        "-v",
        "ON_ERROR_STOP=1",
        "--no-psqlrc",
        "-tA",
        "-U",
        env["POSTGRES_USER"],
        "-d",
        env["POSTGRES_DB"],
        "-c",
        query,
        within=60,
        env=env,
    )
    assert ran.code == 0, ran.stderr
    return ran.stdout.strip()


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="ORDERSAGA_TEST_POSTGRES_URL is not set")
async def test_initdb_gives_each_owner_its_own_database() -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    shop, ledger, ledger_history = f"{prefix}_shop", f"{prefix}_ledger", f"{prefix}_ledger_history"
    databases = f"{shop}:{shop} {ledger}:{ledger} {ledger_history}:{ledger}"
    env = _psql_env(DATABASES=databases, ROLE_PASSWORD="not-a-real-secret")
    try:
        code, output = await _run(files.INITDB_SCRIPT, env)
        assert code == 0, output
        owners = await _sql(
            "SELECT datname || '=' || pg_get_userbyid(datdba) FROM pg_database "
            f"WHERE datname LIKE '{prefix}%' ORDER BY datname"
        )
        assert owners.splitlines() == sorted(
            [f"{shop}={shop}", f"{ledger}={ledger}", f"{ledger_history}={ledger}"]
        )
        # One owner cannot open another owner's database.
        access = await _sql(
            f"SELECT has_database_privilege('{shop}', '{ledger}', 'CONNECT'), "
            f"has_database_privilege('{ledger}', '{ledger_history}', 'CONNECT'), "
            f"has_database_privilege('{shop}', '{shop}', 'CONNECT')"
        )
        assert access == "f|t|t"
        # The postgres image runs it once, but a re-run must not fail either.
        code, output = await _run(files.INITDB_SCRIPT, env)
        assert code == 0, output
    finally:
        for database in (shop, ledger, ledger_history):
            await _sql(f'DROP DATABASE IF EXISTS "{database}"')
        for role in (shop, ledger):
            await _sql(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="ORDERSAGA_TEST_POSTGRES_URL is not set")
async def test_initdb_refuses_a_name_that_is_not_an_identifier() -> None:
    env = _psql_env(DATABASES='ok:"; DROP ROLE postgres; --', ROLE_PASSWORD="x")
    code, output = await _run(files.INITDB_SCRIPT, env)
    assert code == 1
    assert "bad name" in output
