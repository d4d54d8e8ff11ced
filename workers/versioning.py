"""Worker Versioning: which deployment version a worker belongs to, and the
first-deploy bootstrap of a deployment's current version.

Each task queue is its own Worker Deployment, named
f"{worker_deployment_name}-{queue}", so each queue's workers roll out (and
roll back) on their own. A worker only *joins* a version by polling; which
version gets new work is routing, changed by an operator (`temporal worker
deployment set-current-version ...`, see docs/deploying-workers.md). The one
exception is the bootstrap below: a deployment with no current version at all
(a first deploy, `make dev`, a fresh test server) would route its work to
unversioned workers, of which there are none, so nothing would ever run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from enum import Enum

from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import WorkerDeploymentConfig

from ordersaga.runtime.settings import Settings
from ordersaga.runtime.version import commit, package_version

log = logging.getLogger(__name__)

# The server learns of a version from its first poll, and a set-current that
# loses a race to another replica must look again: a few seconds cover both.
BOOTSTRAP_TIMEOUT_SECONDS = 60.0
_RETRY_DELAY_SECONDS = 0.5
_WORTH_RETRYING = (
    # The server has not seen this version poll yet.
    RPCStatusCode.NOT_FOUND,
    # A conflict (the deployment changed since our describe, e.g. another
    # replica made its build current) or no pollers registered yet: look again.
    RPCStatusCode.FAILED_PRECONDITION,
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.ABORTED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
)


def default_build_id() -> str:
    """The package version and the commit it was built from, e.g. `0.1.0-3f2c9ab`."""
    return f"{package_version()}-{commit()}"


def build_id(settings: Settings) -> str:
    return settings.worker_build_id or default_build_id()


def deployment_name(settings: Settings, queue: str) -> str:
    return f"{settings.worker_deployment_name}-{queue}"


def deployment_version(settings: Settings, queue: str) -> WorkerDeploymentVersion:
    return WorkerDeploymentVersion(
        deployment_name=deployment_name(settings, queue), build_id=build_id(settings)
    )


def deployment_config(settings: Settings, queue: str) -> WorkerDeploymentConfig | None:
    """The Worker's deployment config, or None to run unversioned.

    No default versioning behaviour: every workflow type must declare its own
    (OrderWorkflow does), and the SDK fails the tasks of one that does not.
    """
    if not settings.worker_versioning:
        return None
    return WorkerDeploymentConfig(
        version=deployment_version(settings, queue), use_worker_versioning=True
    )


class Bootstrap(Enum):
    MADE_CURRENT = "made this build current"
    ALREADY_CURRENT = "this build is already current"
    OTHER_CURRENT = "another build is current"
    GAVE_UP = "gave up"


@dataclass(frozen=True)
class BootstrapResult:
    outcome: Bootstrap
    current_build_id: str | None = None
    detail: str = ""


async def current_build_id(client: Client, deployment: str) -> tuple[str | None, bytes]:
    """The deployment's current build id (None: unversioned) and its conflict token.

    Raises RPCError NOT_FOUND while the deployment has never been polled.
    """
    described = await client.workflow_service.describe_worker_deployment(
        DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment)
    )
    routing = described.worker_deployment_info.routing_config
    current = (
        routing.current_deployment_version.build_id
        if routing.HasField("current_deployment_version")
        else ""
    )
    return current or None, described.conflict_token


async def make_current_if_unset(
    client: Client,
    version: WorkerDeploymentVersion,
    *,
    give_up_after: float = BOOTSTRAP_TIMEOUT_SECONDS,
) -> BootstrapResult:
    """Make `version` current when its deployment has no current version yet.

    Never replaces a current version: later rollouts are operator commands.
    Run it while the version's workers poll. Safe to run from every replica at
    once: the set carries the conflict token of the describe that saw no
    current version, so only the first replica's set lands and every other
    one looks again and finds a current version.
    """
    deadline = time.monotonic() + give_up_after
    problem = ""
    while True:
        try:
            current, token = await current_build_id(client, version.deployment_name)
            if current == version.build_id:
                return BootstrapResult(Bootstrap.ALREADY_CURRENT, current)
            if current is not None:
                return BootstrapResult(Bootstrap.OTHER_CURRENT, current)
            await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace,
                    deployment_name=version.deployment_name,
                    build_id=version.build_id,
                    conflict_token=token,
                    identity=client.identity,
                )
            )
            return BootstrapResult(Bootstrap.MADE_CURRENT, version.build_id)
        except RPCError as error:
            problem = error.message
            if error.status not in _WORTH_RETRYING:
                return BootstrapResult(Bootstrap.GAVE_UP, detail=problem)
        if time.monotonic() >= deadline:
            return BootstrapResult(Bootstrap.GAVE_UP, detail=problem)
        await asyncio.sleep(_RETRY_DELAY_SECONDS)


async def bootstrap_current_versions(
    client: Client, versions: list[WorkerDeploymentVersion], *, give_up_after: float
) -> None:
    """make_current_if_unset for each version, logging what it found or did."""
    results = await asyncio.gather(
        *(
            make_current_if_unset(client, version, give_up_after=give_up_after)
            for version in versions
        )
    )
    for version, result in zip(versions, results, strict=True):
        name, build = version.deployment_name, version.build_id
        if result.outcome is Bootstrap.MADE_CURRENT:
            log.info("deployment %s had no current version; made build %s current", name, build)
        elif result.outcome is Bootstrap.ALREADY_CURRENT:
            log.info("deployment %s: build %s is current", name, build)
        elif result.outcome is Bootstrap.OTHER_CURRENT:
            log.info(
                "deployment %s: build %s is current; this build %s gets new work once an "
                "operator ramps to it or makes it current (see docs/deploying-workers.md)",
                name,
                result.current_build_id,
                build,
            )
        else:
            log.warning(
                "deployment %s: could not make build %s current within %.0fs (%s); "
                "its work waits for `temporal worker deployment set-current-version`",
                name,
                build,
                give_up_after,
                result.detail or "no answer",
            )
