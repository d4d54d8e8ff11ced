"""Which dependencies the route answering a request declares, read before the
route runs.

The HTTP guard (ordersaga.runtime.http_guard) refuses a bad body before
FastAPI routes the request. To tell a caller the route would refuse its 401 or
403 rather than what was wrong with the body, the app asks which route the
request is for and what that route requires of its caller: the dependencies
it declares, its router's included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.applications import Starlette
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Scope

from ordersaga.runtime.http_guard import UNROUTED, CallerCheck, Refusal, Unrouted

Dependencies = frozenset[Callable[..., Any]]
# An app's refusal of a request's caller, given the dependencies of the route
# the request is for: its 401 or 403, else None.
RefuseCaller = Callable[[Scope, Dependencies], Awaitable[Refusal | None]]


class Shortcut(BaseRoute):
    """A route that answers some requests on behalf of another route of the
    app, which declares what those requests need (services.common.direct_writes).
    The app's questions about a request's route look past it to that route."""

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        # A URL by name is the other route's to give.
        raise NoMatchFound(name, path_params)


def check_caller_by_route(
    app: Starlette, *, authentication: Callable[..., Any], refuse: RefuseCaller
) -> CallerCheck:
    """The HTTP guard's `check_caller` for `app`: UNROUTED when no route takes
    the request; None (the guard's refusal stands) for a route that does not
    depend on `authentication`, a public one; else `refuse`'s answer."""

    async def check(scope: Scope) -> Refusal | Unrouted | None:
        required = dependencies_of_route(app.routes, scope)
        if required is None:
            return UNROUTED
        if authentication not in required:
            return None
        return await refuse(scope, required)

    return check


def dependencies_of_route(routes: Sequence[BaseRoute], scope: Scope) -> Dependencies | None:
    """The callables of every dependency, at any depth, of the route that would
    answer `scope`, its routers' included (none for a route that is not
    FastAPI's, such as /docs); None when no route answers its path and method.

    FastAPI keeps an included router as one lazy entry of `app.routes`;
    `iter_route_contexts` is its public way to see each route with the prefix
    and dependencies its inclusion gave it."""
    for route in iter_route_contexts(routes):
        if isinstance(route.original_route, Shortcut):
            continue
        match, _ = route.matches(scope)
        if match is Match.FULL:
            if isinstance(route.original_route, APIRoute):
                return frozenset(dependency_calls(route.dependant))
            return frozenset()
    return None


def dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """The callable of every dependency of `dependant`, at any depth."""
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from dependency_calls(dependency)
