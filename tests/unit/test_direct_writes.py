"""`services.common.direct_writes.install` serves only routes whose every
dependency and parameter a DirectWrite knows how to check; anything else stops
the app from being built, so that no check is skipped silently."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.common.auth import authenticate
from services.common.direct_writes import DirectWrite, install, servable
from services.common.runtime import inject_faults
from services.common.writes import worker_write


class Thing(BaseModel):
    name: str


Write = Annotated[Any, Depends(worker_write(lambda engine: engine, object))]


async def limit_rate() -> None:
    """A dependency a DirectWrite does not run."""


def _app(router: APIRouter) -> FastAPI:
    app = FastAPI()
    app.include_router(router, dependencies=[Depends(authenticate), Depends(inject_faults)])
    return app


def test_a_route_with_known_dependencies_gets_a_direct_write_ahead_of_it() -> None:
    router = APIRouter(prefix="/things")

    @servable
    @router.post("")
    async def create_thing(*, thing: Thing, write: Write) -> JSONResponse:
        raise AssertionError("not called")

    app = _app(router)
    install(app)

    first = app.router.routes[0]
    assert isinstance(first, DirectWrite)
    assert (first.path, first.methods, first.endpoint) == ("/things", {"POST"}, create_thing)


def test_a_route_with_another_dependency_is_refused_by_name() -> None:
    router = APIRouter(prefix="/things")

    @servable
    @router.post("", dependencies=[Depends(limit_rate)])
    async def create_thing(*, thing: Thing, write: Write) -> JSONResponse:
        raise AssertionError("not called")

    with pytest.raises(TypeError, match="create_thing depends on limit_rate"):
        install(_app(router))


def test_a_route_reading_a_header_itself_is_refused() -> None:
    router = APIRouter(prefix="/things")

    @servable
    @router.post("")
    async def create_thing(
        *, thing: Thing, write: Write, trace: Annotated[str, Header()]
    ) -> JSONResponse:
        raise AssertionError("not called")

    with pytest.raises(TypeError, match="trace is not a path id or a body"):
        install(_app(router))


def test_a_route_without_a_worker_write_is_refused() -> None:
    router = APIRouter(prefix="/things")

    @servable
    @router.post("")
    async def create_thing(*, thing: Thing) -> JSONResponse:
        raise AssertionError("not called")

    with pytest.raises(TypeError, match="must take one worker write and one body"):
        install(_app(router))


def test_only_a_post_route_can_be_served() -> None:
    router = APIRouter(prefix="/things")

    @servable
    @router.put("")
    async def replace_thing(*, thing: Thing, write: Write) -> JSONResponse:
        raise AssertionError("not called")

    with pytest.raises(TypeError, match="replace_thing is not a POST route"):
        install(_app(router))
