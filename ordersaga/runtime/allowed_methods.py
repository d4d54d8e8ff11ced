"""The `Allow` header of a 405: every method the app answers at the path.

Starlette's router hands a request whose path matches but whose method does
not to the first such route, and that route's 405 names its own methods only:
`DELETE /charges` was told `Allow: POST` although `GET /charges` exists too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi.routing import iter_route_contexts
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import Scope


def methods_allowed_at(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The `Allow` value for `scope`'s path: the methods of every route whose
    path it matches (included routers' routes too), sorted."""
    allowed: set[str] = set()
    # FastAPI keeps an included router as one lazy entry of `app.routes`;
    # iter_route_contexts is its public way to see each route in it.
    for route in iter_route_contexts(routes):
        match, _ = route.matches(scope)
        methods = getattr(route.original_route, "methods", None)
        if match is not Match.NONE and methods:
            allowed |= methods
    if "GET" in allowed:
        allowed.add("HEAD")  # ordersaga.runtime.head_requests
    return ", ".join(sorted(allowed))


def headers_of_405(request: Request, headers: Mapping[str, str] | None) -> dict[str, str]:
    """A 405's headers: `headers` (the exception's own) with `Allow` naming
    every method of the request's path, as an error handler answers it."""
    return {**(headers or {}), "Allow": methods_allowed_at(request.app.routes, request.scope)}
