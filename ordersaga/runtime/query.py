"""Query strings read one way, shared by the API and the services.

Starlette keeps every value of a repeated query parameter and FastAPI hands a
route the last one, so `?status=FAILED&status=COMPLETED` would list COMPLETED
orders. The client meant one of them, and which one is not the server's to
guess: a route that reads query parameters takes `EACH_QUERY_PARAMETER_ONCE`
among its dependencies and answers such a request 422, naming the parameter,
in the error shape of every validation error. Only those routes pay for the
check.
"""

from __future__ import annotations

from collections import Counter

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError


async def each_query_parameter_once(request: Request) -> None:
    """RequestValidationError (422) for a query parameter given more than once."""
    counts = Counter(name for name, _value in request.query_params.multi_items())
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise RequestValidationError(
            [
                {"type": "repeated", "loc": ("query", name), "msg": "give this parameter once"}
                for name in repeated
            ]
        )


EACH_QUERY_PARAMETER_ONCE = Depends(each_query_parameter_once)
