"""What every service does alike: admin auth, fault injection, health,
readiness, metrics and the error shape. Each test runs on all three."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Connection, insert
from sqlalchemy.ext.asyncio import create_async_engine

from contracts.fields import MAX_CUSTOMER_LIMIT_CENTS
from services.common.idempotency import IDEMPOTENCY_KEYS
from services.inventory import tables as inventory_tables
from services.inventory.app import create_app as create_inventory
from services.payments import tables as payments_tables
from services.payments.app import create_app as create_payments
from services.shipping import tables as shipping_tables
from services.shipping.app import create_app as create_shipping
from tests.integration.services.support import (
    ADMIN,
    SERVICE_APPS,
    Databases,
    Service,
    asgi_client,
    inventory_app,
    new_key,
    serving,
    serving_service,
)


@pytest.fixture(params=sorted(SERVICE_APPS))
async def service(request: pytest.FixtureRequest, databases: Databases) -> AsyncIterator[Service]:
    async with serving_service(Service, request.param, databases) as service:
        yield service


# --- building the app -----------------------------------------------------------


def test_no_app_is_built_without_both_credentials_or_with_a_limit_out_of_range() -> None:
    url = "sqlite+aiosqlite:///never-opened.sqlite3"

    def builders(admin: str, worker: str) -> list[Callable[[], FastAPI]]:
        a, w = SecretStr(admin), SecretStr(worker)
        return [
            lambda: create_inventory(database_url=url, admin_token=a, worker_token=w),
            lambda: create_payments(
                database_url=url, admin_token=a, worker_token=w, customer_limit_cents=1
            ),
            lambda: create_shipping(
                database_url=url, admin_token=a, worker_token=w, refused_countries=()
            ),
        ]

    for admin, worker, problem in (
        ("", "w", "non-empty admin token"),
        ("a", "", "non-empty worker token"),
        ("same", "same", "unlike the admin token"),
    ):
        for build in builders(admin, worker):
            with pytest.raises(ValueError, match=problem):
                build()
    for limit in (-1, MAX_CUSTOMER_LIMIT_CENTS + 1):
        with pytest.raises(ValueError, match="customer_limit_cents must be from 0 to"):
            create_payments(
                database_url=url,
                admin_token=SecretStr("a"),
                worker_token=SecretStr("w"),
                customer_limit_cents=limit,
            )


# --- admin and faults ---------------------------------------------------------


async def test_admin_endpoints_need_the_token(service: Service) -> None:
    faults = {"error_rate": 1.0, "latency_ms": 0}
    async with asgi_client(service.app) as anonymous:
        for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": "Bearer"}):
            get = await anonymous.get("/admin/faults", headers=headers)
            put = await anonymous.put("/admin/faults", json=faults, headers=headers)
            delete = await anonymous.delete("/admin/faults", headers=headers)
            for response in (get, put, delete):
                assert response.status_code == 401
                assert response.json()["detail"]["code"] == "UNAUTHORIZED"
                assert response.headers["WWW-Authenticate"] == "Bearer"
    # The workers' credential is not an operator's: it may neither set faults nor see them.
    for response in (
        await service.client.get("/admin/faults"),
        await service.client.put("/admin/faults", json=faults),
        await service.client.delete("/admin/faults"),
    ):
        assert response.status_code == 403
        assert response.json()["detail"]["code"] == "FORBIDDEN"
    assert (await service.client.get("/admin/faults", headers=ADMIN)).json() == {
        "error_rate": 0.0,
        "latency_ms": 0,
    }
    assert (await service.create()).status_code == 201


async def test_a_faults_put_changes_only_what_it_names(service: Service) -> None:
    async def put(body: dict[str, Any]) -> dict[str, Any]:
        response = await service.client.put("/admin/faults", json=body, headers=ADMIN)
        assert response.status_code == 200, response.text
        answered: dict[str, Any] = response.json()
        seen = await service.client.get("/admin/faults", headers=ADMIN)
        assert (seen.status_code, seen.json()) == (200, answered)
        return answered

    assert await put({"latency_ms": 150}) == {"error_rate": 0.0, "latency_ms": 150}
    assert await put({"error_rate": 0.25}) == {"error_rate": 0.25, "latency_ms": 150}
    # null is "not given", as for a product's update.
    assert await put({"error_rate": None, "latency_ms": 0}) == {"error_rate": 0.25, "latency_ms": 0}
    assert await put({"error_rate": 0, "latency_ms": 20}) == {"error_rate": 0.0, "latency_ms": 20}

    cleared = await service.client.delete("/admin/faults", headers=ADMIN)
    assert cleared.status_code == 204
    seen = await service.client.get("/admin/faults", headers=ADMIN)
    assert seen.json() == {"error_rate": 0.0, "latency_ms": 0}


async def test_bad_fault_settings_are_refused_and_change_nothing(service: Service) -> None:
    set_before = {"error_rate": 0.0, "latency_ms": 5}
    assert (
        await service.client.put("/admin/faults", json=set_before, headers=ADMIN)
    ).status_code == 200
    for body in (
        {"error_rate": 1.5, "latency_ms": 0},
        {"error_rate": -0.1, "latency_ms": 0},
        {"error_rate": 0.5, "latency_ms": -1},
        {"latency_ms": 60_001},
        {"error_rate": "often", "latency_ms": 0},
        {"error_rate": "NaN"},
        {"latency_ms": 1.5},
        {"latency_ms": 10, "surprise": True},
        [],
        "0.5",
        None,
    ):
        response = await service.client.put("/admin/faults", json=body, headers=ADMIN)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"]["code"] == "REQUEST_REJECTED"
    for empty in ({}, {"error_rate": None, "latency_ms": None}):
        response = await service.client.put("/admin/faults", json=empty, headers=ADMIN)
        assert response.status_code == 422, response.text
        (field,) = response.json()["detail"]["fields"]
        assert field["loc"] == ["body"]
        assert "give error_rate, latency_ms or both" in field["msg"]
    # Bytes that are not a JSON body at all: the HTTP guard's 400 and 415.
    for content, content_type, status in (
        (b'{"latency_ms": 1', "application/json", 400),
        (b'{"latency_ms": 1e999999}', "application/json", 400),
        (b'{"latency_ms": ' + b"9" * 50 + b"}", "application/json", 400),
        (b'{"error_rate": NaN}', "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b"latency_ms=10", "application/x-www-form-urlencoded", 415),
    ):
        response = await service.client.put(
            "/admin/faults",
            content=content,
            headers={**ADMIN, "Content-Type": content_type},
        )
        assert response.status_code == status, (content, response.text)
        assert set(response.json()["detail"]) >= {"code", "message"}
    seen = await service.client.get("/admin/faults", headers=ADMIN)
    assert seen.json() == set_before


async def test_injected_faults_fail_before_any_effect_and_clear(service: Service) -> None:
    body, key = service.new_body(), new_key()
    set_faults = await service.client.put(
        "/admin/faults", json={"error_rate": 1.0, "latency_ms": 0}, headers=ADMIN
    )
    assert set_faults.status_code == 200
    assert set_faults.json() == {"error_rate": 1.0, "latency_ms": 0}

    faulted = await service.client.post(service.collection, json=body, headers=key)
    listed = await service.client.get(service.collection, params={"order_id": body["order_id"]})
    health = await service.client.get("/healthz")
    ready = await service.client.get("/readyz")

    for response in (faulted, listed):
        assert response.status_code == 503
        assert response.json()["detail"]["code"] == "INJECTED_FAULT"
    assert (health.status_code, ready.status_code) == (200, 200)

    cleared = await service.client.delete("/admin/faults", headers=ADMIN)
    assert cleared.status_code == 204 and cleared.content == b""
    listed = await service.client.get(service.collection, params={"order_id": body["order_id"]})
    assert listed.json() == {"items": []}
    # The fault was not stored under the key: the retry really runs.
    retried = await service.client.post(service.collection, json=body, headers=key)
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers


async def test_injected_latency_delays_domain_endpoints_only(service: Service) -> None:
    await service.client.put(
        "/admin/faults", json={"error_rate": 0.0, "latency_ms": 150}, headers=ADMIN
    )

    started = time.perf_counter()
    created = await service.create()
    slowed = time.perf_counter() - started
    started = time.perf_counter()
    await service.client.get("/healthz")
    unslowed = time.perf_counter() - started

    assert created.status_code == 201
    assert slowed >= 0.15
    assert unslowed < 0.15


# --- idempotency ----------------------------------------------------------------


async def test_a_key_held_without_an_answer_is_503_and_runs_nothing(service: Service) -> None:
    """What a request meets when the twin that claimed its key rolled back
    between the claim and the read: retryable, neither a 500 nor a replay."""
    body, key = service.new_body(), new_key()
    async with service.app.state.runtime.engine.begin() as connection:
        await connection.execute(
            insert(IDEMPOTENCY_KEYS).values(
                caller="worker",
                key=key["Idempotency-Key"],
                request_fingerprint="0" * 64,
                created_at=datetime.now(UTC),
            )
        )

    response = await service.client.post(service.collection, json=body, headers=key)

    assert response.status_code == 503, response.text
    assert response.json()["detail"]["code"] == "SERVICE_UNAVAILABLE"
    assert "Idempotent-Replayed" not in response.headers
    listed = await service.client.get(service.collection, params={"order_id": body["order_id"]})
    assert listed.json() == {"items": []}


# --- health, readiness, metrics -----------------------------------------------


async def test_health_and_readiness(service: Service) -> None:
    for path in ("/healthz", "/readyz"):
        response = await service.client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


async def test_an_unreachable_database_is_503_not_500(service: Service) -> None:
    runtime = service.app.state.runtime
    real_engine = runtime.started_engine
    # Nothing listens on the discard port: connecting is refused at once.
    runtime.started_engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")
    try:
        ready = await service.client.get("/readyz")
        created = await service.create()
        listed = await service.client.get(service.collection, params={"order_id": "ord_x"})
    finally:
        await runtime.started_engine.dispose()
        runtime.started_engine = real_engine

    assert ready.status_code == 503
    assert ready.json()["detail"]["code"] == "SERVICE_UNAVAILABLE"
    for response in (created, listed):
        assert response.status_code == 503, response.text
        assert response.json()["detail"]["code"] == "SERVICE_UNAVAILABLE"
    assert (await service.client.get("/readyz")).status_code == 200


async def test_metrics_label_route_templates_never_ids(service: Service) -> None:
    created = await service.create()
    resource_id = created.json()[service.id_field]
    acted = await service.client.post(
        f"{service.collection}/{resource_id}/{service.action}", headers=new_key()
    )
    assert acted.status_code == 200
    await service.client.get("/no/such/route/ord_secret")

    metrics = await service.client.get("/metrics")

    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    template = f"{service.collection}/{{{service.id_field}}}/{service.action}"
    assert re.search(
        rf'http_requests_total\{{method="POST",route="{re.escape(template)}",status="200"\}} 1\.0',
        text,
    ), text
    assert f'route="{service.collection}",status="201"' in text
    assert "http_request_duration_seconds_bucket" in text
    assert 'route="<unmatched>",status="404"' in text
    assert resource_id not in text and "ord_secret" not in text


async def test_each_app_counts_its_own_requests(databases: Databases) -> None:
    async with (
        serving(inventory_app(await databases.new("a"))) as one,
        serving(inventory_app(await databases.new("b"))) as two,
    ):
        await one.get("/healthz")
        await one.get("/healthz")
        await two.get("/healthz")

        counted = [
            re.search(r'route="/healthz",status="200"\} (\S+)', (await c.get("/metrics")).text)
            for c in (one, two)
        ]

    assert [m.group(1) if m else None for m in counted] == ["2.0", "1.0"]


# --- the error shape ------------------------------------------------------------


async def test_unknown_routes_and_methods_answer_in_the_error_shape(service: Service) -> None:
    missing = await service.client.get("/nowhere")
    wrong_method = await service.client.delete(service.collection)

    assert missing.status_code == 404
    assert missing.json()["detail"]["code"] == "NOT_FOUND"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["detail"]["code"] == "REQUEST_REJECTED"
    # Every method the path takes, not only the first route's (POST, the create).
    assert wrong_method.headers["allow"] == "GET, HEAD, POST"


async def test_head_is_answered_as_the_get_without_its_body(service: Service) -> None:
    listing = f"{service.collection}?order_id=ord_head"
    got, head = await service.client.get(listing), await service.client.head(listing)

    assert (got.status_code, head.status_code) == (200, 200)
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]
    stranger = await service.client.head(listing, headers={"Authorization": "Bearer nope"})
    assert stranger.status_code == 401 and stranger.content == b""


async def test_the_listing_needs_an_order_id(service: Service) -> None:
    response = await service.client.get(service.collection)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["code"] == "REQUEST_REJECTED"
    assert detail["fields"] == [
        {"loc": ["query", "order_id"], "msg": "Field required", "type": "missing"}
    ]
    assert "query.order_id" in detail["message"]


async def test_the_listing_takes_its_order_id_once(service: Service) -> None:
    """The last of two would be read; which one the caller meant is not the
    service's to guess."""
    response = await service.client.get(
        service.collection, params=[("order_id", "ord_a"), ("order_id", "ord_b")]
    )

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["code"] == "REQUEST_REJECTED"
    assert detail["fields"] == [
        {"loc": ["query", "order_id"], "msg": "give this parameter once", "type": "repeated"}
    ]


async def test_the_listing_refuses_a_parameter_it_does_not_take(service: Service) -> None:
    """Ignored, `?orderid=` would be read as no order id at all."""
    response = await service.client.get(
        service.collection, params={"order_id": "ord_a", "orderid": "ord_b"}
    )

    assert response.status_code == 422
    assert response.json()["detail"]["fields"] == [
        {
            "loc": ["query", "orderid"],
            "msg": "no such parameter here (this route takes: order_id)",
            "type": "unknown",
        }
    ]


async def test_a_stranger_repeating_a_parameter_is_told_to_authenticate(service: Service) -> None:
    response = await service.client.get(
        service.collection,
        params=[("order_id", "ord_a"), ("order_id", "ord_b")],
        headers={"Authorization": ""},
    )

    assert response.status_code == 401


async def test_validation_errors_never_echo_the_input(service: Service) -> None:
    body = service.new_body()
    body["order_id"] = "secret value with spaces " * 3
    response = await service.client.post(service.collection, json=body, headers=new_key())

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["code"] == "REQUEST_REJECTED"
    assert {"loc": ["body", "order_id"]}.items() <= detail["fields"][0].items()
    assert "secret value" not in response.text


async def test_the_migrations_build_the_schema_the_code_describes(service: Service) -> None:
    metadata = {
        "inventory": inventory_tables,
        "payments": payments_tables,
        "shipping": shipping_tables,
    }[service.name].metadata

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "version_table": f"alembic_version_{service.name}"},
        )
        return list(compare_metadata(context, metadata))

    async with service.app.state.runtime.engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_the_openapi_document_describes_the_api(service: Service) -> None:
    response = await service.client.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert service.collection in paths
    assert "/admin/faults" in paths
    create = paths[service.collection]["post"]
    assert {"201", "400", "422", "503"} <= set(create["responses"])
    header_names = {p["name"] for p in create["parameters"] if p["in"] == "header"}
    assert "Idempotency-Key" in header_names
