"""The registry of domains (contracts/domains.py) is the one place that lists them.

A stub fourth domain, "loyalty" (tests/stub_domain: an activities class and an
app factory), is added by one registry line below; the worker, the settings,
`ordersaga service` and the dev stack then each handle it like the others.
"""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from activities.http import ServiceClient
from contracts import task_queues
from contracts.domains import DOMAINS, Domain, DomainConfigError, Registry, UnknownDomainError
from ordersaga.cli import service_app
from ordersaga.devstack import DevStack, listeners
from ordersaga.runtime.domains import resolve
from ordersaga.runtime.settings import Settings, parse_queues
from workers.main import queue_activities, service_http_client

STUB = Domain(
    "loyalty",
    "loyalty",
    8004,
    activities="tests.stub_domain.activities:LoyaltyActivities",
    app="tests.stub_domain.app:create_app",
    app_settings={"currency": "catalog_currency"},
)
WITH_STUB = Registry((*DOMAINS, STUB))
WORKER_TOKEN = SecretStr("worker-token-for-tests")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, catalog_currency="CHF")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def client_for(domain: Domain) -> ServiceClient:
    return ServiceClient(httpx.AsyncClient(), domain.name, token=WORKER_TOKEN)


# --- the stub domain, by its one registry line --------------------------------------


async def test_a_worker_on_the_stub_queue_registers_its_activities() -> None:
    clients: dict[str, ServiceClient] = {}

    async def client_of(domain: Domain) -> ServiceClient:
        return clients.setdefault(domain.name, client_for(domain))

    [award_points] = await queue_activities("loyalty", client_of, WITH_STUB)
    assert award_points.__name__ == "award_points"
    assert award_points.__self__.client is clients["loyalty"]
    assert list(clients) == ["loyalty"]


async def test_the_orders_worker_runs_the_stub_domain_activities_locally_too() -> None:
    async def client_of(domain: Domain) -> ServiceClient:
        return client_for(domain)

    names = {a.__name__ for a in await queue_activities(task_queues.ORDERS, client_of, WITH_STUB)}
    assert {"award_points", "reserve_inventory", "charge_payment", "create_shipment"} <= names
    real = {a.__name__ for a in await queue_activities(task_queues.ORDERS, client_of)}
    assert "award_points" not in real


def test_settings_give_the_stub_domain_its_default_port_url_and_database(
    settings: Settings,
) -> None:
    assert settings.service_port("loyalty", WITH_STUB) == 8004
    assert settings.service_url("loyalty", WITH_STUB) == "http://127.0.0.1:8004"
    assert settings.database_url("loyalty", WITH_STUB) == (
        f"sqlite+aiosqlite:///{settings.data_dir.resolve() / 'loyalty.sqlite3'}"
    )
    assert parse_queues("orders,loyalty", WITH_STUB) == ["orders", "loyalty"]
    with pytest.raises(UnknownDomainError, match="loyalty"):
        settings.service_port("loyalty")
    with pytest.raises(ValueError, match="unknown task queue"):
        parse_queues("loyalty")


async def test_the_workers_http_client_calls_the_stub_service(settings: Settings) -> None:
    async with service_http_client(settings, "loyalty", WITH_STUB) as client:
        assert str(client.base_url) == "http://127.0.0.1:8004"


def test_ordersaga_service_builds_the_stub_app_from_its_entry(settings: Settings) -> None:
    app = service_app("loyalty", settings, WORKER_TOKEN, WITH_STUB)
    assert app.title == "loyalty"
    assert app.state.currency == "CHF"  # app_settings: catalog_currency
    assert app.state.worker_token is WORKER_TOKEN
    assert app.state.database_url == settings.database_url("loyalty", WITH_STUB)
    assert app.state.database_pool_size == settings.service_database_pool_size


async def test_the_dev_stack_would_start_the_stub_service(
    settings: Settings, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    stack = DevStack(settings, tmp_path, http, domains=WITH_STUB)
    specs = {spec.name: spec for stage in stack.stages for spec in stage}
    assert specs["loyalty"].argv[-2:] == ["service", "loyalty"]
    assert stack.service_urls["loyalty"] == "http://127.0.0.1:8004"
    assert specs["worker"].argv[-1] == "orders,inventory,payments,shipping,loyalty"
    [stub_listener] = [x for x in listeners(settings, WITH_STUB) if x.port == 8004]
    assert stub_listener.variable == "ORDERSAGA_LOYALTY_PORT"


# --- the real registry --------------------------------------------------------------


def test_every_real_domain_resolves_and_has_its_own_settings(settings: Settings) -> None:
    for domain in DOMAINS:
        assert isinstance(resolve(domain, "activities"), type)
        app = service_app(domain.name, settings, WORKER_TOKEN)
        assert app.title == f"ordersaga {domain.name} service"
        for setting in ("port", "url", "database_url"):
            assert f"{domain.name}_{setting}" in Settings.model_fields
    assert DOMAINS.task_queues == ("orders", "inventory", "payments", "shipping")


def test_every_real_domain_service_is_in_the_independence_contract() -> None:
    """pyproject.toml cannot read the registry: a new service must be named there
    by hand, or nothing stops it importing another service."""
    config = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    [independence] = [c for c in contracts if c["type"] == "independence"]
    packages = {domain.app.partition(":")[0].rpartition(".")[0] for domain in DOMAINS}
    assert packages <= set(independence["modules"]), "name them in pyproject.toml"


def test_a_real_domain_is_configured_by_its_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSAGA_PAYMENTS_PORT", "9102")
    monkeypatch.setenv("ORDERSAGA_SHIPPING_URL", "http://shipping.internal")
    monkeypatch.setenv("ORDERSAGA_INVENTORY_DATABASE_URL", "postgresql+asyncpg://db/inventory")
    settings = Settings()
    assert settings.service_port("payments") == 9102
    assert settings.service_url("payments") == "http://127.0.0.1:9102"
    assert settings.service_url("shipping") == "http://shipping.internal"
    assert settings.database_url("inventory") == "postgresql+asyncpg://db/inventory"
    assert settings.service_port("inventory") == 8001


# --- bad registry input -------------------------------------------------------------


def stub(**changes: str) -> Domain:
    entry = {"activities": STUB.activities, "app": STUB.app, **changes}
    return Domain("broken", "broken", 8009, **entry)


async def test_activities_that_do_not_import_name_the_domain() -> None:
    broken = stub(activities="tests.stub_domain.nowhere:LoyaltyActivities")
    with pytest.raises(DomainConfigError, match=r"domain 'broken': activities .*nowhere"):
        await queue_activities("broken", _no_client, Registry((broken,)))


async def test_activities_without_any_activity_name_the_domain() -> None:
    broken = stub(activities="tests.stub_domain.activities:NoActivities")
    with pytest.raises(DomainConfigError, match=r"domain 'broken': .* no @activity.defn"):
        await queue_activities("broken", _no_client, Registry((broken,)))


@pytest.mark.parametrize(
    ("app", "problem"),
    [
        ("tests.stub_domain.app:create_ap", "has no create_ap"),
        ("tests.stub_domain.app:NOT_A_FACTORY", "NOT_A_FACTORY is not callable"),
    ],
)
def test_an_app_that_does_not_resolve_names_the_domain(
    settings: Settings, app: str, problem: str
) -> None:
    with pytest.raises(DomainConfigError, match=rf"domain 'broken': app .*{problem}"):
        service_app("broken", settings, WORKER_TOKEN, Registry((stub(app=app),)))


def test_app_settings_naming_no_setting_name_the_domain(settings: Settings) -> None:
    broken = Domain(
        "broken", "broken", 8009, STUB.activities, STUB.app, app_settings={"currency": "nope"}
    )
    with pytest.raises(DomainConfigError, match=r"domain 'broken': app_settings .*'nope'"):
        service_app("broken", settings, WORKER_TOKEN, Registry((broken,)))


def test_an_app_factory_that_returns_no_app_names_the_domain(settings: Settings) -> None:
    broken = stub(app="tests.stub_domain.app:create_no_app")
    with pytest.raises(DomainConfigError, match=r"domain 'broken': .* returned no FastAPI app"):
        service_app("broken", settings, WORKER_TOKEN, Registry((broken,)))


def test_an_app_factory_taking_other_arguments_names_the_domain(settings: Settings) -> None:
    broken = stub(app="tests.stub_domain.activities:AwardPointsInput")
    with pytest.raises(DomainConfigError, match=r"domain 'broken': .* cannot take the arguments"):
        service_app("broken", settings, WORKER_TOKEN, Registry((broken,)))


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: stub(app="services.inventory.app.create_app"), "not a 'module:attribute'"),
        (lambda: Domain("Loyalty", "loyalty", 8004, STUB.activities, STUB.app), "lower-case"),
        (lambda: Domain("loyalty", "orders", 8004, STUB.activities, STUB.app), "workflow's own"),
        (lambda: Domain("loyalty", "loyalty", 0, STUB.activities, STUB.app), "not a TCP port"),
    ],
)
def test_a_malformed_entry_is_refused(make: Callable[[], Domain], problem: str) -> None:
    with pytest.raises(DomainConfigError, match=problem):
        make()


@pytest.mark.parametrize(
    ("twin", "what"),
    [
        (Domain("inventory", "loyalty", 8004, STUB.activities, STUB.app), "name inventory"),
        (Domain("loyalty", "payments", 8004, STUB.activities, STUB.app), "task queue payments"),
        (Domain("loyalty", "loyalty", 8003, STUB.activities, STUB.app), "default port 8003"),
    ],
)
def test_two_domains_cannot_share_a_name_queue_or_port(twin: Domain, what: str) -> None:
    with pytest.raises(DomainConfigError, match=f"more than one domain has the {what}"):
        Registry((*DOMAINS, twin))


async def _no_client(domain: Domain) -> ServiceClient:
    return client_for(domain)
