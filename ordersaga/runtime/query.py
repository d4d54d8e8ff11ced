"""Query strings read one way, shared by the API and the services.

A route that reads query parameters takes `QUERY_PARAMETERS_CHECKED` among its
dependencies, and answers 422, naming the parameter, in the error shape of
every validation error:

- **a parameter given more than once.** Starlette keeps every value and
  FastAPI hands a route the last one, so `?status=FAILED&status=COMPLETED`
  would list COMPLETED orders. The client meant one of them, and which one is
  not the server's to guess;
- **a parameter the route does not take.** FastAPI ignores it, so a misspelt
  filter (`?stauts=FAILED`) would answer every order as if it had filtered.

Only those routes pay for the check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute


async def check_query_parameters(request: Request) -> None:
    """RequestValidationError (422) for a query parameter given more than once,
    or one the route does not declare."""
    counts = Counter(name for name, _value in request.query_params.multi_items())
    route = request.scope.get("route")
    declared = _declared_query_parameters(route) if isinstance(route, APIRoute) else None
    problems = [
        {"type": "repeated", "loc": ("query", name), "msg": "give this parameter once"}
        for name in sorted(name for name, count in counts.items() if count > 1)
    ]
    if declared is not None:
        takes = ", ".join(sorted(declared)) or "none"
        problems += [
            {
                "type": "unknown",
                "loc": ("query", name),
                "msg": f"no such parameter here (this route takes: {takes})",
            }
            for name in sorted(counts.keys() - declared)
        ]
    if problems:
        raise RequestValidationError(problems)


def _declared_query_parameters(route: APIRoute) -> frozenset[str]:
    # A walk of a handful of dependencies, on the few routes that take a query.
    return frozenset(field.alias for field in _query_fields(route.dependant))


def _query_fields(dependant: Dependant) -> Iterator[Any]:
    yield from dependant.query_params
    for dependency in dependant.dependencies:
        yield from _query_fields(dependency)


QUERY_PARAMETERS_CHECKED = Depends(check_query_parameters)
