"""Who may call what: every service route but health, metrics and the public
catalogue takes a credential; the saga's writes are the workers' alone, the
reads are the workers' and an operator's, the admin routes an operator's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select

from services.common.idempotency import IDEMPOTENCY_KEYS
from tests.integration.services.support import (
    ADMIN,
    RESOURCES,
    SERVICE_APPS,
    WORKER,
    Databases,
    asgi_client,
    new_key,
    reservation,
    serving,
)

WORKER_ONLY, READERS, ADMIN_ONLY = "worker", "worker+admin", "admin"
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/products")}

# The routes every service has alike: the fence and the admin routes.
EVERY_SERVICE = {
    ("PUT", "/fences/{order_id}"): WORKER_ONLY,
    ("GET", "/admin/ledger"): ADMIN_ONLY,
    ("GET", "/admin/faults"): ADMIN_ONLY,
    ("PUT", "/admin/faults"): ADMIN_ONLY,
    ("DELETE", "/admin/faults"): ADMIN_ONLY,
}
# Every route of each service and who it admits (docs routes aside).
ROUTES = {
    "inventory": {
        ("POST", "/reservations"): WORKER_ONLY,
        ("POST", "/reservations/{reservation_id}/release"): WORKER_ONLY,
        ("POST", "/reservations/{reservation_id}/commit"): WORKER_ONLY,
        ("GET", "/reservations"): READERS,
        ("GET", "/stock/{sku}"): READERS,
        ("PUT", "/products/{sku}"): ADMIN_ONLY,
        ("GET", "/admin/stock"): ADMIN_ONLY,
        **EVERY_SERVICE,
    },
    "payments": {
        ("POST", "/charges"): WORKER_ONLY,
        ("POST", "/charges/{charge_id}/refund"): WORKER_ONLY,
        ("GET", "/charges"): READERS,
        **EVERY_SERVICE,
    },
    "shipping": {
        ("POST", "/shipments"): WORKER_ONLY,
        ("POST", "/shipments/{shipment_id}/cancel"): WORKER_ONLY,
        ("GET", "/shipments"): READERS,
        **EVERY_SERVICE,
    },
}
# What to fill each path template with, and a body that passes validation.
PATH_VALUES = {
    "{reservation_id}": "res_x",
    "{charge_id}": "ch_x",
    "{shipment_id}": "shp_x",
    "{sku}": "sku_mug",
    "{order_id}": "ord_x",
}
BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    **{resource.collection: resource.new_body for resource in RESOURCES.values()},
    "/products/{sku}": lambda: {"available": 100},
    "/admin/faults": lambda: {"error_rate": 0.0, "latency_ms": 0},
}


@dataclass
class Served:
    name: str
    app: FastAPI
    worker: httpx.AsyncClient
    anonymous: httpx.AsyncClient


@pytest.fixture(params=sorted(SERVICE_APPS))
async def served(request: pytest.FixtureRequest, databases: Databases) -> AsyncIterator[Served]:
    app = SERVICE_APPS[request.param](await databases.new(request.param))
    async with serving(app) as worker, asgi_client(app) as anonymous:
        yield Served(request.param, app, worker, anonymous)


async def routes_of(served: Served) -> set[tuple[str, str]]:
    """Every route the app documents (all but /metrics and the docs themselves)."""
    document = (await served.anonymous.get("/openapi.json")).json()
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }


async def call(
    client: httpx.AsyncClient, method: str, template: str, headers: dict[str, str]
) -> httpx.Response:
    path = template
    for placeholder, value in PATH_VALUES.items():
        path = path.replace(placeholder, value)
    body = BODIES.get(template)
    return await client.request(
        method,
        path,
        json=body() if body and method in ("POST", "PUT") else None,
        params={"order_id": "ord_x"} if method == "GET" and "{" not in template else None,
        headers={**new_key(), **headers},
    )


async def test_every_route_is_public_or_in_the_table(served: Served) -> None:
    """A route added later without a decision on its callers fails here."""
    assert await routes_of(served) - PUBLIC == set(ROUTES[served.name])


async def test_no_credential_or_a_wrong_one_is_401(served: Served) -> None:
    for (method, template), _admitted in ROUTES[served.name].items():
        for headers in (
            {},
            {"Authorization": "Bearer not-a-credential"},
            {"Authorization": "Bearer"},
            {"Authorization": "Basic dGVzdDp0ZXN0"},
            {"Authorization": "test-worker-token"},
        ):
            response = await call(served.anonymous, method, template, headers)
            assert response.status_code == 401, (method, template, headers, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert response.json()["detail"]["code"] == "UNAUTHORIZED"


async def test_a_caller_of_the_wrong_role_is_403(served: Served) -> None:
    for (method, template), admitted in ROUTES[served.name].items():
        callers = {"worker": WORKER, "admin": ADMIN}
        for name, headers in callers.items():
            response = await call(served.anonymous, method, template, headers)
            if name in admitted.split("+"):
                assert response.status_code not in (401, 403), (name, method, template)
            else:
                assert response.status_code == 403, (name, method, template, response.text)
                assert response.json()["detail"]["code"] == "FORBIDDEN"
                assert "WWW-Authenticate" not in response.headers


async def test_the_health_routes_and_the_catalogue_are_public(served: Served) -> None:
    for method, path in PUBLIC:
        if path == "/products" and served.name != "inventory":
            continue
        response = await served.anonymous.request(method, path)
        assert response.status_code == 200, (path, response.text)


async def test_the_openapi_document_declares_the_bearer_scheme(served: Served) -> None:
    document = (await served.anonymous.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["ServiceCredential"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["ServiceCredential"]["description"],
    }
    for (method, template), _ in ROUTES[served.name].items():
        operation = document["paths"][template][method.lower()]
        assert operation["security"] == [{"ServiceCredential": []}], (method, template)
    for method, path in PUBLIC:
        if path in document["paths"]:
            assert "security" not in document["paths"][path][method.lower()]


# --- idempotency keys belong to their caller ------------------------------------


async def test_an_operator_cannot_pre_claim_the_sagas_compensation_key(
    inventory: httpx.AsyncClient,
) -> None:
    body = reservation("sku_mug", 2)
    made = (await inventory.post("/reservations", json=body, headers=new_key())).json()
    key = {"Idempotency-Key": f"{body['order_id']}:release_inventory"}
    path = f"/reservations/{made['reservation_id']}/release"

    # Someone holding the admin token tries to take the saga's key first.
    pre_claim = await inventory.post(path, headers={**key, **ADMIN})
    released = await inventory.post(path, headers=key)

    assert pre_claim.status_code == 403
    assert released.status_code == 200, released.text
    assert "Idempotent-Replayed" not in released.headers
    assert released.json()["state"] == "released"


async def test_keys_of_different_callers_never_collide(service_app_and_client: Served) -> None:
    """A row an admin caller holds under the saga's very key is not the saga's
    answer: the workers' request runs, and the admin's row stays its own."""
    served = service_app_and_client
    key = "ord_X:release_inventory"
    async with served.app.state.runtime.engine.begin() as connection:
        await connection.execute(
            insert(IDEMPOTENCY_KEYS).values(
                caller="admin",
                key=key,
                request_fingerprint="0" * 64,
                status_code=200,
                response_body={"forged": True},
                created_at=datetime.now(UTC),
            )
        )
    resource = RESOURCES[served.name]

    response = await served.worker.post(
        resource.collection, json=resource.new_body(), headers={"Idempotency-Key": key}
    )

    assert response.status_code == 201, response.text
    assert "forged" not in response.text
    assert "Idempotent-Replayed" not in response.headers
    async with served.app.state.runtime.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(IDEMPOTENCY_KEYS.c.caller, IDEMPOTENCY_KEYS.c.status_code)
                .where(IDEMPOTENCY_KEYS.c.key == key)
                .order_by(IDEMPOTENCY_KEYS.c.caller)
            )
        ).all()
    assert [tuple(row) for row in rows] == [("admin", 200), ("worker", 201)]


@pytest.fixture
async def service_app_and_client(served: Served) -> Served:
    return served
