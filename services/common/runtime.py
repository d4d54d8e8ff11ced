"""What one service app holds at run time, and the dependency that hands it out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import SqlUnitOfWork
from services.common.faults import FaultInjector
from services.common.metrics import HttpMetrics

ConfigT = TypeVar("ConfigT")


@dataclass
class ServiceRuntime:
    name: str
    admin_token: SecretStr
    # The workers' credential: the only caller of the saga's writes.
    worker_token: SecretStr
    # The service's own policy (limits, refused countries); each service narrows it.
    config: object
    metrics: HttpMetrics
    faults: FaultInjector = field(default_factory=FaultInjector)
    # Set by the lifespan: nothing touches a database before start-up.
    started_engine: AsyncEngine | None = None

    def config_of(self, kind: type[ConfigT]) -> ConfigT:
        """The service's policy, checked to be the kind its routes expect."""
        if not isinstance(self.config, kind):
            raise TypeError(f"the {self.name} app was built without a {kind.__name__}")
        return self.config

    @property
    def engine(self) -> AsyncEngine:
        if self.started_engine is None:
            raise RuntimeError(f"the {self.name} service has not started (lifespan not run)")
        return self.started_engine


def runtime_of(request: Request) -> ServiceRuntime:
    runtime = request.app.state.runtime
    assert isinstance(runtime, ServiceRuntime)
    return runtime


# Every dependency here is `async def` although none awaits anything: FastAPI
# runs a plain `def` dependency in its thread pool, a thread hand-off per
# dependency per request (docs/performance.md measures what that cost).
async def get_runtime(request: Request) -> ServiceRuntime:
    return runtime_of(request)


ServiceRuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]


async def get_engine(runtime: ServiceRuntimeDep) -> AsyncEngine:
    return runtime.engine


Engine = Annotated[AsyncEngine, Depends(get_engine)]


async def inject_faults(request: Request) -> None:
    await runtime_of(request).faults.apply()


UnitOfWorkT = TypeVar("UnitOfWorkT", bound=SqlUnitOfWork)


def unit_of_work(
    factory: Callable[[AsyncEngine], UnitOfWorkT],
) -> Callable[[AsyncEngine], Awaitable[UnitOfWorkT]]:
    """A dependency giving each request a unit of work on the app's engine."""

    async def provide(engine: Engine) -> UnitOfWorkT:
        return factory(engine)

    return provide


def service_config(kind: type[ConfigT]) -> Callable[[ServiceRuntime], Awaitable[ConfigT]]:
    """A dependency giving the service's own policy, as create_app was given it."""

    async def provide(runtime: ServiceRuntimeDep) -> ConfigT:
        return runtime.config_of(kind)

    return provide
