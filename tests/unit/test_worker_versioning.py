"""Worker Versioning settings and the worker's probes, without a Temporal server.

The server-side behaviour (bootstrap, rollout, rollback, racing replicas) is
tested on a real dev server in tests/integration/test_worker_versioning.py.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.workflow import _Definition

from ordersaga.devstack import child_env
from ordersaga.runtime.settings import Settings
from workers.health import ProbePortError, WorkerHealth, listening_socket, probe_app
from workers.unversioned import UnversionedOrderWorkflow
from workers.versioning import build_id, default_build_id, deployment_config, deployment_name
from workflows.order import OrderWorkflow

# The SDK's parsed @workflow.defn; no public accessor exists.
workflow_definition = _Definition.must_from_class


def test_an_empty_or_spaced_deployment_name_or_one_with_a_dot_is_refused() -> None:
    for bad in ("", "  ", "order saga", "ordersaga.v2"):
        with pytest.raises(ValidationError, match="worker_deployment_name"):
            Settings(worker_deployment_name=bad)


def test_a_build_id_with_spaces_or_too_long_is_refused() -> None:
    for bad in ("build 1", "b" * 256):
        with pytest.raises(ValidationError, match="worker_build_id"):
            Settings(worker_build_id=bad)


def test_an_empty_build_id_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSAGA_WORKER_BUILD_ID", "")
    settings = Settings()
    assert settings.worker_build_id is None
    assert build_id(settings) == default_build_id()


def test_the_default_build_id_is_the_package_version_and_the_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("workers.versioning.package_version", lambda: "1.2.3")
    monkeypatch.setattr("workers.versioning.commit", lambda: "abc1234")
    assert default_build_id() == "1.2.3-abc1234"
    assert build_id(Settings(worker_build_id="release-7")) == "release-7"


def test_each_queue_is_its_own_deployment_of_one_build() -> None:
    settings = Settings(worker_deployment_name="shop", worker_build_id="b1")
    assert deployment_name(settings, "payments") == "shop-payments"
    config = deployment_config(settings, "orders")
    assert config is not None
    assert config.use_worker_versioning
    assert config.version == WorkerDeploymentVersion("shop-orders", "b1")


def test_versioning_off_means_no_deployment_config() -> None:
    assert deployment_config(Settings(worker_versioning=False), "orders") is None


async def test_probes_before_temporal_alive_yes_ready_no_with_a_reason() -> None:
    health = WorkerHealth(queues=["orders"], build_id="b1")
    transport = httpx.ASGITransport(app=probe_app(health))
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as http:
        alive = await http.get("/healthz")
        ready = await http.get("/readyz")
        health.draining = True
        draining = await http.get("/readyz")

    assert alive.status_code == 200
    assert ready.status_code == 503
    assert ready.json() == {"status": "not ready", "reason": "not connected to Temporal yet"}
    assert draining.status_code == 503
    assert draining.json()["reason"].startswith("draining")


def test_a_probe_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ProbePortError, match=re.escape(f"cannot listen on 127.0.0.1:{port}")):
            listening_socket("127.0.0.1", port)


def test_a_probe_host_that_does_not_resolve_is_a_clear_error() -> None:
    with pytest.raises(ProbePortError, match=re.escape("cannot listen on no-such-host.invalid:")):
        listening_socket("no-such-host.invalid", 8010)


def test_the_dev_stack_gives_its_worker_one_build_id_across_restarts(tmp_path: Path) -> None:
    assert child_env(Settings(), tmp_path)["ORDERSAGA_WORKER_BUILD_ID"] == "dev"
    explicit = child_env(Settings(worker_build_id="mine"), tmp_path)
    assert explicit["ORDERSAGA_WORKER_BUILD_ID"] == "mine"


def test_order_workflow_is_pinned_and_its_unversioned_twin_is_the_same_workflow() -> None:
    pinned = workflow_definition(OrderWorkflow)
    twin = workflow_definition(UnversionedOrderWorkflow)
    assert pinned.versioning_behavior == VersioningBehavior.PINNED
    assert twin.versioning_behavior == VersioningBehavior.UNSPECIFIED
    assert (twin.name, twin.arg_types, twin.ret_type) == (
        pinned.name,
        pinned.arg_types,
        pinned.ret_type,
    )
    assert (set(twin.queries), set(twin.updates), set(twin.signals)) == (
        set(pinned.queries),
        set(pinned.updates),
        set(pinned.signals),
    )
