"""The saga's writes answered by a DirectWrite (services.common.direct_writes)
answer exactly as FastAPI's routes do.

Each request goes to two apps of one service, on databases of their own: one
as built, one with its DirectWrites taken out, so FastAPI answers everything.
Both must answer alike: the status, the headers and the body, generated ids
aside. Each case also says which route must have answered it in the app as
built: the DirectWrite for what the workers send when all is well (including
the domain's refusals, replays and a key reused, which the endpoint decides),
FastAPI's route for every refusal the route itself makes.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from services.common.direct_writes import DirectWrite
from tests.integration.services.support import (
    ADMIN,
    SERVICE_APPS,
    WORKER,
    Databases,
    charge,
    reservation,
    serving,
    shipment,
)

pytestmark = pytest.mark.asyncio

DIRECT, FASTAPI = "direct", "fastapi"
# Ids the services make up: the two apps make different ones.
_GENERATED_ID = re.compile(r'"(ch|res|shp)_[0-9a-f]+"')
# Headers that differ between any two answers.
_VARYING_HEADERS = {"date", "content-length"}


@dataclass
class Answered:
    """Which kind of route answered each request an app was sent."""

    routes: list[str] = field(default_factory=list)

    def wrap(self, app: FastAPI) -> Callable[[Scope, Receive, Send], Any]:
        async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
            await app(scope, receive, send)
            if scope["type"] == "http":
                route = scope.get("route")
                kind = DIRECT if isinstance(route, DirectWrite) else FASTAPI
                self.routes.append(kind if isinstance(route, DirectWrite | APIRoute) else "none")

        return recorded


@dataclass
class Twins:
    """One service twice: as built, and with FastAPI answering every request."""

    built: httpx.AsyncClient
    fastapi_only: httpx.AsyncClient
    answered: Answered

    async def post(
        self, path: str | tuple[str, str], *, expect: str, **request: Any
    ) -> tuple[httpx.Response, httpx.Response]:
        """POST to both (a pair of paths when ids differ between the twins);
        assert they answered alike and which route answered the built one."""
        built_path, fastapi_path = (path, path) if isinstance(path, str) else path
        headers = {**WORKER, **request.pop("headers", {})}
        built = await self.built.post(built_path, headers=headers, **request)
        fastapi = await self.fastapi_only.post(fastapi_path, headers=headers, **request)
        assert self.answered.routes[-1] == expect, (self.answered.routes[-1], built.text)
        assert built.status_code == fastapi.status_code, (built.text, fastapi.text)
        assert _comparable(built.text) == _comparable(fastapi.text)
        assert _headers(built) == _headers(fastapi)
        return built, fastapi

    async def made(self, collection: str, body: dict[str, Any], id_field: str) -> tuple[str, str]:
        """A resource made on both, through the direct route: its two ids."""
        built, fastapi = await self.post(
            collection, json=body, headers={"Idempotency-Key": _key()}, expect=DIRECT
        )
        assert built.status_code == 201, built.text
        return built.json()[id_field], fastapi.json()[id_field]


def _key() -> str:
    return uuid.uuid4().hex


def _comparable(text: str) -> str:
    return _GENERATED_ID.sub('"<id>"', text)


def _headers(response: httpx.Response) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in response.headers.items() if k not in _VARYING_HEADERS)


def _without_direct_writes(app: FastAPI) -> FastAPI:
    app.router.routes[:] = [r for r in app.router.routes if not isinstance(r, DirectWrite)]
    return app


@contextlib.asynccontextmanager
async def twins(databases: Databases, service: str) -> AsyncIterator[Twins]:
    make = SERVICE_APPS[service]
    built_app = make(await databases.new(f"{service}-built"))
    assert any(isinstance(r, DirectWrite) for r in built_app.router.routes)
    fastapi_app = _without_direct_writes(make(await databases.new(f"{service}-fastapi")))
    answered = Answered()
    async with (
        built_app.router.lifespan_context(built_app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=answered.wrap(built_app)),
            base_url="http://service.test",
            headers=WORKER,
        ) as built,
        serving(fastapi_app) as fastapi_only,
    ):
        yield Twins(built, fastapi_only, answered)


def _refusals_of_the_route(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Requests every write route refuses before its endpoint runs."""
    bad_key = {"Idempotency-Key": "a key with spaces"}
    return [
        {"json": body, "headers": {"Authorization": "", "Idempotency-Key": _key()}},
        {"json": body, "headers": {"Authorization": "Bearer not-a-credential"}},
        {"json": body, "headers": {**ADMIN, "Idempotency-Key": _key()}},
        {"json": body, "headers": {"Authorization": "Basic d29ya2VyOng="}},
        {"json": body},
        {"json": body, "headers": bad_key},
        {"json": body, "headers": {"Idempotency-Key": "k" * 256}},
        {"json": body, "headers": {"Idempotency-Key": _key(), "Request-Timeout": "-1"}},
        {"json": body, "headers": {"Idempotency-Key": _key(), "Request-Timeout": "soon"}},
    ]


def _bodies_the_route_refuses(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Bodies a create route's model refuses: each a 422 from FastAPI."""
    first = next(iter(body))
    return [
        {"content": b""},
        {"content": b"null", "headers": {"Content-Type": "application/json"}},
        {"json": []},
        {"json": {**body, "unexpected": 1}},
        {"json": {k: v for k, v in body.items() if k != first}},
        {"json": {**body, first: 12}},
        {"json": {**body, first: ""}},
    ]


CREATES = {
    "payments": ("/charges", lambda: charge(), {"payment_token": "tok_chargeDeclined"}),
    "shipping": ("/shipments", lambda: shipment(), {"address": shipment("AQ")["address"]}),
    "inventory": (
        "/reservations",
        lambda: reservation("sku_mug"),
        {"lines": [{"sku": "sku_none", "quantity": 1}]},
    ),
}


@pytest.mark.parametrize("service", sorted(CREATES))
async def test_a_create_answers_as_fastapi_does_and_only_refusals_are_handed_on(
    databases: Databases, service: str
) -> None:
    collection, new_body, refused_by_domain = CREATES[service]
    async with twins(databases, service) as both:
        for request in _refusals_of_the_route(new_body()):
            await both.post(collection, expect=FASTAPI, **request)
        for request in _bodies_the_route_refuses(new_body()):
            request.setdefault("headers", {})["Idempotency-Key"] = _key()
            built, _ = await both.post(collection, expect=FASTAPI, **request)
            assert built.status_code == 422, built.text

        key = {"Idempotency-Key": _key()}
        body = new_body()
        first, _ = await both.post(collection, json=body, headers=key, expect=DIRECT)
        assert first.status_code == 201, first.text
        again, _ = await both.post(collection, json=body, headers=key, expect=DIRECT)
        assert again.headers["Idempotent-Replayed"] == "true"
        reused, _ = await both.post(collection, json=new_body(), headers=key, expect=DIRECT)
        assert reused.json()["detail"]["code"] == "IDEMPOTENCY_KEY_REUSED"

        refused, _ = await both.post(
            collection,
            json={**new_body(), **refused_by_domain},
            headers={"Idempotency-Key": _key()},
            expect=DIRECT,
        )
        assert refused.status_code in (402, 422), refused.text

        # The caller's time is up before the commit: decided by the endpoint.
        late, _ = await both.post(
            collection,
            json=new_body(),
            headers={"Idempotency-Key": _key(), "Request-Timeout": "0"},
            expect=DIRECT,
        )
        assert late.json()["detail"]["code"] == "DEADLINE_EXCEEDED"


ACTIONS = {
    "payments": ("/charges", lambda: charge(), "charge_id", ["/refund"]),
    "shipping": ("/shipments", lambda: shipment(), "shipment_id", ["/cancel"]),
    "inventory": (
        "/reservations",
        lambda: reservation("sku_mug"),
        "reservation_id",
        ["/commit", "/release"],
    ),
}


@pytest.mark.parametrize("service", sorted(ACTIONS))
async def test_an_action_answers_as_fastapi_does_and_only_refusals_are_handed_on(
    databases: Databases, service: str
) -> None:
    collection, new_body, id_field, actions = ACTIONS[service]
    async with twins(databases, service) as both:
        for action in actions:
            built_id, fastapi_id = await both.made(collection, new_body(), id_field)
            paths = (f"{collection}/{built_id}{action}", f"{collection}/{fastapi_id}{action}")
            for request in _refusals_of_the_route({}):
                await both.post(paths, expect=FASTAPI, **request)
            for refused in ({"json": {"amount_cents": 1}}, {"json": [1]}, {"json": "x"}):
                built, _ = await both.post(
                    paths, headers={"Idempotency-Key": _key()}, expect=FASTAPI, **refused
                )
                assert built.status_code == 422, built.text
            for bad_id in ("x" * 256, "an id"):
                path = f"{collection}/{bad_id}{action}"
                built, _ = await both.post(
                    path, json={}, headers={"Idempotency-Key": _key()}, expect=FASTAPI
                )
                assert built.status_code == 422, built.text

            missing, _ = await both.post(
                f"{collection}/no_such_id{action}",
                json={},
                headers={"Idempotency-Key": _key()},
                expect=DIRECT,
            )
            assert missing.status_code == 404, missing.text
            # The three bodies an action takes: none, `{}` and `null`.
            for no_fields in (
                {"json": {}},
                {"content": b""},
                {"content": b"null", "headers": {"Content-Type": "application/json"}},
            ):
                headers = {**no_fields.pop("headers", {}), "Idempotency-Key": _key()}
                done, _ = await both.post(paths, headers=headers, expect=DIRECT, **no_fields)
                assert done.status_code in (200, 409), done.text


async def test_with_faults_configured_every_write_goes_through_fastapi(
    databases: Databases,
) -> None:
    async with twins(databases, "payments") as both:
        for client in (both.built, both.fastapi_only):
            put = await client.put("/admin/faults", json={"error_rate": 1.0}, headers=ADMIN)
            assert put.status_code == 200, put.text
        built, _ = await both.post(
            "/charges", json=charge(), headers={"Idempotency-Key": _key()}, expect=FASTAPI
        )
        assert built.json()["detail"]["code"] == "INJECTED_FAULT"
        for client in (both.built, both.fastapi_only):
            assert (await client.delete("/admin/faults", headers=ADMIN)).status_code == 204
        built, _ = await both.post(
            "/charges", json=charge(), headers={"Idempotency-Key": _key()}, expect=DIRECT
        )
        assert built.status_code == 201, built.text


async def test_the_metrics_label_a_direct_write_with_its_route_template(
    databases: Databases,
) -> None:
    async with twins(databases, "payments") as both:
        made, twin = await both.made("/charges", charge(), "charge_id")
        await both.post(
            (f"/charges/{made}/refund", f"/charges/{twin}/refund"),
            json={},
            headers={"Idempotency-Key": _key()},
            expect=DIRECT,
        )
        exposed = (await both.built.get("/metrics")).text
    assert re.search(r'requests_total\{method="POST",route="/charges",status="201"\} 1\.0', exposed)
    assert 'route="/charges/{charge_id}/refund",status="200"' in exposed
    assert "/charges/" + made not in exposed
