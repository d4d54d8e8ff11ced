"""The saga's writes, answered without FastAPI's per-request machinery when
nothing about the request needs it.

A service spends most of its CPU on the saga's idempotent writes, and a
profile of one (docs/performance.md, round 20) put a third of it in FastAPI's
handling around our code: routing through included routers, solving the
route's dependencies and validating the body, the same work every time for
what the workers send. A `DirectWrite` is a route placed ahead of FastAPI's
that answers such a request itself, by calling the very endpoint FastAPI
would have called with the very arguments it would have built.

It takes a request only when every check the FastAPI route makes would pass:
the workers' credential, no faults configured, a valid `Idempotency-Key` and
`Request-Timeout`, a path id and a JSON body the route's own types accept. It
makes those checks with the same functions and types. Anything else (a
stranger, an operator, a malformed key or body, faults on) it hands, body and
all, to the FastAPI route, which refuses it as it always has. So every
refusal still comes from one place, the route OpenAPI documents; the direct
route answers only what that route would have answered through its endpoint,
including the domain's refusals and the replays, which the endpoint decides.

Only a route whose dependencies this module knows (authentication, injected
faults, the write's own `worker_write`) can be served so: `install` refuses
to build an app in which a write route gained another dependency, which the
direct route would otherwise skip.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

from fastapi import FastAPI, params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from ordersaga.runtime.http_guard import parsed_body, replaying
from ordersaga.runtime.route_dependencies import Shortcut, dependency_calls
from services.common.auth import Caller, authenticate, bearer_scheme, caller_of_scope
from services.common.errors import ServiceError
from services.common.idempotency import HEADER as KEY_HEADER
from services.common.runtime import inject_faults, runtime_of

Endpoint = Callable[..., Awaitable[Response]]
# A worker_write dependency: (request, caller, key) to the route's WorkerWrite.
WriteProvider = Callable[[Request, Caller, str | None], Awaitable[Any]]

# The endpoints declared servable, and the worker_write providers; filled as
# the routes are declared (services.common.writes).
_SERVABLE: set[Endpoint] = set()
_PROVIDERS: set[WriteProvider] = set()
# Where a request that a DirectWrite handed on is marked, so that it does not
# take it again when the router runs once more.
_HANDED_ON = "ordersaga.direct_write.handed_on"


def servable(endpoint: Endpoint) -> Endpoint:
    """Declare a worker write's endpoint servable by a DirectWrite (`install`
    checks it can be)."""
    _SERVABLE.add(endpoint)
    return endpoint


def write_provider(provider: WriteProvider) -> WriteProvider:
    """Declare a `worker_write` dependency, which a DirectWrite calls itself."""
    _PROVIDERS.add(provider)
    return provider


class Declined(Exception):
    """The request is not one the direct route answers: FastAPI's route does."""


@dataclass(frozen=True)
class _Parameter:
    name: str
    adapter: TypeAdapter[Any]
    required: bool
    default: Any


@dataclass(frozen=True)
class _Parameters:
    """An endpoint's parameters as a DirectWrite fills them."""

    write: str
    provider: WriteProvider
    ids: list[_Parameter]
    body: _Parameter


class DirectWrite(Shortcut):
    """POST at one FastAPI route's path, answered by that route's endpoint (see
    the module)."""

    def __init__(self, path: str, endpoint: Endpoint, router: ASGIApp) -> None:
        self.path = path
        self.endpoint = endpoint
        self.name = endpoint.__name__
        self.methods = {"POST"}
        self._router = router
        self.path_regex, self.path_format, self.param_convertors = compile_path(path)
        self._parameters = _parameters_of(endpoint)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get(_HANDED_ON):
            return Match.NONE, {}
        found = self.path_regex.match(scope["path"])
        if found is None:
            return Match.NONE, {}
        path_params = {
            name: self.param_convertors[name].convert(value)
            for name, value in found.groupdict().items()
        }
        return Match.FULL, {"path_params": path_params, "endpoint": self.endpoint, "route": self}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = await request.body()
        try:
            arguments = await self._arguments(request, body)
        except Declined:
            scope[_HANDED_ON] = True
            await self._router(scope, replaying(body, receive), send)
            return
        response = await self.endpoint(**arguments)
        await response(scope, receive, send)

    async def _arguments(self, request: Request, body: bytes) -> dict[str, Any]:
        """The endpoint's arguments as FastAPI would build them; Declined when
        any check FastAPI's route makes would not pass."""
        runtime = runtime_of(request)
        if caller_of_scope(runtime, request.scope) is not Caller.WORKER:
            raise Declined
        if runtime.faults.configured:
            raise Declined
        declared = self._parameters
        path_params = request.path_params
        arguments = {id_.name: _valid(id_.adapter, path_params[id_.name]) for id_ in declared.ids}
        arguments[declared.body.name] = _body_argument(request, body, declared.body)
        try:
            arguments[declared.write] = await declared.provider(
                request, Caller.WORKER, request.headers.get(KEY_HEADER)
            )
        except ServiceError:
            raise Declined from None
        return arguments


# What a write route's router adds (services.common.app): FastAPI's bearer
# scheme and authentication, which `caller_of_scope` replaces, and the faults,
# which a DirectWrite declines while any are configured.
_KNOWN_DEPENDENCIES: frozenset[Callable[..., Any]] = frozenset(
    {authenticate, bearer_scheme, inject_faults}
)


def install(app: FastAPI) -> None:
    """Put a DirectWrite ahead of every servable route of `app` (its included
    routers' too); refuse a servable route whose dependencies it does not know."""
    for path, endpoint, dependant in list(_servable_routes(app)):
        unknown = set(dependency_calls(dependant)) - _KNOWN_DEPENDENCIES - _PROVIDERS
        if unknown:
            names = ", ".join(sorted(getattr(call, "__name__", repr(call)) for call in unknown))
            raise TypeError(
                f"{endpoint.__name__} depends on {names}, which a DirectWrite does not "
                "run: serve it through FastAPI alone, or teach services.common.direct_writes"
            )
        app.router.routes.insert(0, DirectWrite(path, endpoint, app.router))


def _servable_routes(app: FastAPI) -> Iterator[tuple[str, Endpoint, Dependant]]:
    for route in iter_route_contexts(app.routes):
        original = route.original_route
        if isinstance(original, APIRoute) and original.endpoint in _SERVABLE:
            if route.methods != {"POST"}:
                raise TypeError(f"{original.endpoint.__name__} is not a POST route")
            yield str(route.path), original.endpoint, route.dependant


def _parameters_of(endpoint: Endpoint) -> _Parameters:
    """The endpoint's worker_write parameter, its path ids and its body, from
    its signature: keyword-only parameters, annotated as FastAPI reads them."""
    write: tuple[str, WriteProvider] | None = None
    ids: list[_Parameter] = []
    bodies: list[_Parameter] = []
    for parameter in inspect.signature(endpoint, eval_str=True).parameters.values():
        annotation = parameter.annotation
        marks = get_args(annotation)[1:] if get_origin(annotation) is Annotated else ()
        depends = [mark for mark in marks if isinstance(mark, params.Depends)]
        if depends:
            if depends[0].dependency not in _PROVIDERS:
                raise TypeError(f"{endpoint.__name__}: {parameter.name} is not a worker write")
            write = (parameter.name, depends[0].dependency)
            continue
        if any(isinstance(mark, (params.Header, params.Query, params.Cookie)) for mark in marks):
            raise TypeError(f"{endpoint.__name__}: {parameter.name} is not a path id or a body")
        required = parameter.default is inspect.Parameter.empty
        default = None if required else parameter.default
        declared = _Parameter(parameter.name, TypeAdapter(annotation), required, default)
        is_path = any(isinstance(mark, params.Path) for mark in marks)
        (ids if is_path else bodies).append(declared)
    if write is None or len(bodies) != 1:
        raise TypeError(f"{endpoint.__name__} must take one worker write and one body")
    return _Parameters(write[0], write[1], ids, bodies[0])


def _valid(adapter: TypeAdapter[Any], value: Any) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        raise Declined from None


def _body_argument(request: Request, body: bytes, declared: _Parameter) -> Any:
    """The body parameter's value as FastAPI builds it: the JSON body validated
    by the parameter's type; its default when there is no body or it is
    `null`, and a 422 (so: Declined) when it has none."""
    value = None
    if body:
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise Declined  # FastAPI reads other JSON types too, or none: it decides
        try:
            value = parsed_body(request.scope, body)
        except ValueError:
            raise Declined from None
    if value is None:
        if declared.required:
            raise Declined
        return declared.default
    return _valid(declared.adapter, value)
