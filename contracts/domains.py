"""The domains of the saga, each on one line of DOMAINS: the only list of them.

A domain is a service that owns its data, the activities that call it and the
task queue they run on. Whatever goes over every domain (the workers' queues,
the settings, `ordersaga service`, the dev stack) iterates a registry, so a new
domain is its own packages plus one line here.

Its activities class and its service's app factory live in layers above
contracts, so they are named by "module:attribute" import strings and resolved
where they are needed (ordersaga.runtime.domains). Importing this module
therefore imports neither: the workflow sandbox imports contracts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from contracts import task_queues

# It becomes part of settings' names (inventory_port, ORDERSAGA_INVENTORY_URL).
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_IMPORT_STRING = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class DomainConfigError(Exception):
    """A registry entry is unusable; the message names the domain."""


class UnknownDomainError(LookupError):
    """No domain of the registry has that name or task queue."""


@dataclass(frozen=True)
class Domain:
    name: str
    task_queue: str
    # Where its service listens unless ORDERSAGA_<NAME>_PORT says otherwise.
    default_port: int
    # "module:Class", built with the domain's ServiceClient; every method that is
    # a Temporal activity (@activity.defn) is registered with its workers.
    activities: str
    # "module:function", called with the keywords database_url, admin_token and
    # worker_token, plus those of app_settings; returns the service's ASGI app.
    app: str
    # The app factory's further keywords, each with the Settings field it comes from.
    app_settings: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise DomainConfigError(
                f"domain {self.name!r}: a name is lower-case letters, digits and _"
            )
        if self.task_queue == task_queues.ORDERS:
            raise DomainConfigError(
                f"domain {self.name!r}: task queue {task_queues.ORDERS!r} is the workflow's own"
            )
        if not 1 <= self.default_port <= 65535:
            raise DomainConfigError(
                f"domain {self.name!r}: default_port {self.default_port} is not a TCP port"
            )
        for part, target in (("activities", self.activities), ("app", self.app)):
            if not _IMPORT_STRING.fullmatch(target):
                raise DomainConfigError(
                    f"domain {self.name!r}: {part} {target!r} is not a 'module:attribute' string"
                )


@dataclass(frozen=True)
class Registry:
    domains: tuple[Domain, ...]

    def __post_init__(self) -> None:
        for what, values in (
            ("name", [d.name for d in self.domains]),
            ("task queue", [d.task_queue for d in self.domains]),
            ("default port", [str(d.default_port) for d in self.domains]),
        ):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise DomainConfigError(f"more than one domain has the {what} {repeated[0]}")

    def __iter__(self) -> Iterator[Domain]:
        return iter(self.domains)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(domain.name for domain in self.domains)

    @property
    def task_queues(self) -> tuple[str, ...]:
        """Every queue a worker can serve: the workflow's, then each domain's."""
        return (task_queues.ORDERS, *(domain.task_queue for domain in self.domains))

    def named(self, name: str) -> Domain:
        for domain in self.domains:
            if domain.name == name:
                return domain
        raise UnknownDomainError(f"no domain {name!r}; choose from {', '.join(self.names)}")

    def serving(self, task_queue: str) -> Domain:
        for domain in self.domains:
            if domain.task_queue == task_queue:
                return domain
        raise UnknownDomainError(f"no domain's activities run on task queue {task_queue!r}")


DOMAINS = Registry(
    (
        Domain(
            "inventory",
            task_queues.INVENTORY,
            8001,
            activities="activities.inventory:InventoryActivities",
            app="services.inventory.app:create_app",
            app_settings={"catalog_currency": "catalog_currency"},
        ),
        Domain(
            "payments",
            task_queues.PAYMENTS,
            8002,
            activities="activities.payments:PaymentActivities",
            app="services.payments.app:create_app",
            app_settings={"customer_limit_cents": "payments_customer_limit_cents"},
        ),
        Domain(
            "shipping",
            task_queues.SHIPPING,
            8003,
            activities="activities.shipping:ShippingActivities",
            app="services.shipping.app:create_app",
            app_settings={"refused_countries": "shipping_refused_countries"},
        ),
    )
)
