"""The one settings class. Read once at process start and passed down as values.

Workflows never read it: a workflow's behaviour must depend only on its history.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.domains import DOMAINS, Registry
from contracts.fields import MAX_CUSTOMER_LIMIT_CENTS

DEV_ADMIN_TOKEN = "dev-admin-token"
ENV_PREFIX = "ORDERSAGA_"
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
# The domain services' names (contracts.domains), each with its own port, URL
# and database settings below.
SERVICES = DOMAINS.names
# What Settings.service_database_pool_size defaults to (it says why), and what
# a service app built without settings (tests, embedding) keeps open.
DEFAULT_SERVICE_DATABASE_POOL_SIZE = 20


# Outside dev mode a secret token or key is at least this long (openssl rand -hex 32
# gives 64 characters); dev mode makes its own up and accepts the dev admin token.
MIN_SECRET_LENGTH = 32
# The database URLs a service can run on (services.common.db.create_engine):
# SQLAlchemy's asyncio extension needs an async driver, and these are the ones installed.
DATABASE_URL_SCHEMES = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}

# One line, after the variable's name: why a component will not start with it.
CODEC_DISABLED_OUTSIDE_DEV_MODE = (
    "refused outside dev mode: it turns payload encryption off and is for "
    "`ordersaga bench` only; unset it"
)


class MissingSecretError(ValueError):
    """A secret that production must be given is missing."""


def short_secret_problem(secret: str) -> str | None:
    """Why `secret` is too short to be a secret outside dev mode, or None."""
    if len(secret) < MIN_SECRET_LENGTH:
        return (
            f"is {len(secret)} characters; outside dev mode use at least {MIN_SECRET_LENGTH} "
            "random ones (e.g. openssl rand -hex 32)"
        )
    return None


def parse_queues(value: str | Iterable[str], domains: Registry = DOMAINS) -> list[str]:
    """Task queue names from `a,b,c` (or a list); ValueError names any unknown one."""
    raw = value.split(",") if isinstance(value, str) else list(value)
    queues = list(dict.fromkeys(q.strip() for q in raw if q.strip()))
    choices = ", ".join(domains.task_queues)
    if not queues:
        raise ValueError(f"no task queue given; choose from {choices}")
    unknown = [q for q in queues if q not in domains.task_queues]
    if unknown:
        raise ValueError(f"unknown task queue(s) {', '.join(unknown)}; choose from {choices}")
    return queues


def env_var_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def describe_validation_error(error: ValidationError) -> list[str]:
    """One line per problem, each naming the environment variable to fix.

    Input values are left out: one of them may be the admin token.
    """
    lines: list[str] = []
    for item in error.errors(include_url=False, include_input=False):
        field = str(item["loc"][0]) if item["loc"] else ""
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{env_var_name(field)}: {message}" if field else message)
    return lines


def http_url_problem(value: str, *, bare: bool = False) -> str | None:
    """Why `value` is not an absolute http(s) URL with a host, or None. `bare`
    also refuses a query and a fragment (a base URL that paths are added to)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - ValueError for a port that is not one
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected an absolute http:// or https:// URL with a host, got {value!r}"
    if bare and (parts.query or parts.fragment):
        return f"expected a URL without a query or fragment, got {value!r}"
    return None


def url_for_logs(url: str) -> str:
    """`url` as it may be logged or shown: without its user and password, its
    query or its fragment (a provider or a Redis URL may carry a key there)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed IPv6 host, say: nothing of it is shown
        return "(not a URL)"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _valid_service_url(value: str | None) -> str | None:
    if value:  # unset or empty: service_host and the service's port
        problem = http_url_problem(value.strip(), bare=True)
        if problem:
            raise ValueError(problem)
        return value.strip()
    return value


def database_url_problem(value: str) -> str | None:
    """Why a service cannot run on the database URL `value`, or None.

    Never quotes the URL: it may carry the database password.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    expected = " or ".join(f"{b}+{d}://..." for b, d in DATABASE_URL_SCHEMES.items())
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        return f"not a database URL (expected {expected})"
    backend = url.get_backend_name()
    if backend not in DATABASE_URL_SCHEMES:
        return f"{backend} databases are not supported; expected {expected}"
    driver = url.get_driver_name()  # without "+driver", SQLAlchemy's default one
    if driver != DATABASE_URL_SCHEMES[backend]:
        return f"{backend} driver {driver} is not supported (not async); expected {expected}"
    return _asyncpg_query_problem(url.query) if driver == "asyncpg" else None


# The URL query parameters SQLAlchemy's asyncpg dialect takes for itself; it
# passes every other one to asyncpg's connect() as a keyword argument.
_SQLALCHEMY_ASYNCPG_PARAMETERS = frozenset(
    {"prepared_statement_cache_size", "prepared_statement_name_func"}
)
# asyncpg's connect() arguments no URL can carry (objects, not strings).
_NOT_FROM_A_URL = frozenset({"dsn", "loop", "connection_class", "record_class"})


def _asyncpg_query_problem(query: Mapping[str, str | tuple[str, ...]]) -> str | None:
    """Why asyncpg would refuse a URL with this query, or None.

    SQLAlchemy hands every query parameter to asyncpg's connect() as a keyword,
    so a libpq parameter (sslmode=require, as psycopg and psql take it) would
    fail each connection with a TypeError. Only sslmode's value is quoted:
    another parameter's may be a secret.
    """
    # Imported here: only a PostgreSQL URL needs it, and it has no type hints.
    connect = importlib.import_module("asyncpg").connect
    taken = set(inspect.signature(connect).parameters) - _NOT_FROM_A_URL
    for name in query:
        if name in taken or name in _SQLALCHEMY_ASYNCPG_PARAMETERS:
            continue
        if name == "sslmode":
            mode = query[name]
            mode = mode if isinstance(mode, str) else "require"
            return f"sslmode is libpq's parameter, not asyncpg's: write ssl={mode} instead"
        return f"asyncpg takes no URL parameter {name!r}"
    return None


def _valid_database_url(value: SecretStr | None) -> SecretStr | None:
    if value is not None and value.get_secret_value().strip():
        problem = database_url_problem(value.get_secret_value().strip())
        if problem:
            raise ValueError(problem)
    return value


def _per_domain_fields(domains: Registry) -> type[BaseSettings]:
    """ORDERSAGA_<DOMAIN>_PORT, _URL and _DATABASE_URL for every domain of the
    registry, so a new domain is configured like the others without a line here."""
    fields: dict[str, Any] = {}
    validators: dict[str, Callable[..., Any]] = {}
    for domain in domains:
        fields[f"{domain.name}_port"] = (int, Field(default=domain.default_port, ge=1, le=65535))
        # Where activities reach the service; defaults to service_host and the port above.
        fields[f"{domain.name}_url"] = (str | None, None)
        # A SQLAlchemy async URL; defaults to a SQLite file under data_dir.
        # Secret: a production URL carries the database password.
        fields[f"{domain.name}_database_url"] = (SecretStr | None, None)
    urls = [f"{domain.name}_url" for domain in domains]
    database_urls = [f"{domain.name}_database_url" for domain in domains]
    if urls:
        validators["_valid_service_urls"] = field_validator(*urls)(_valid_service_url)
        validators["_valid_database_urls"] = field_validator(*database_urls)(_valid_database_url)
    return create_model(
        "DomainSettings", __base__=BaseSettings, __validators__=validators, **fields
    )


if TYPE_CHECKING:
    # mypy cannot see generated fields; they are read through the methods
    # service_port, service_url and database_url below.
    _DomainSettings = BaseSettings
else:
    _DomainSettings = _per_domain_fields(DOMAINS)


class Settings(_DomainSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # Dev mode allows the well-known admin token; `ordersaga dev` turns it on.
    dev_mode: bool = False
    data_dir: Path = Path(".ordersaga")
    log_level: str = "INFO"
    # "auto": JSON lines when stderr is not a terminal, readable lines when it is.
    log_format: Literal["auto", "json", "text"] = "auto"

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)

    # Where the domain services listen; each domain's port, URL and database
    # come from the registry (_per_domain_fields above).
    service_host: str = "127.0.0.1"

    admin_token: SecretStr = SecretStr(DEV_ADMIN_TOKEN)
    # The workers' credential to the services (Authorization: Bearer). Required
    # outside dev mode; dev mode makes one up in data_dir (ordersaga.runtime.dev_secrets).
    worker_token: SecretStr | None = None
    # Prices in the catalog are in this currency; an order in another is refused.
    catalog_currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")

    # Customers and operators authenticate with OAuth 2.0 bearer JWTs from any
    # OIDC provider: its JWKS URL, issuer and this API's audience. Required
    # outside dev mode; dev mode is its own issuer (ordersaga.runtime.auth.DevIssuer).
    auth_jwks_url: str | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    # The scope (in `scope` or `scp`) that makes a token's subject a customer,
    # and the one that makes it an operator.
    auth_customer_scope: str = Field(default="orders:customer", min_length=1)
    auth_operator_scope: str = Field(default="orders:operator", min_length=1)
    auth_leeway_seconds: int = Field(default=30, ge=0, le=300)

    # The API's edge.
    # Signs list page tokens (HMAC), so a forged one is refused before Temporal.
    # Required outside dev mode, and the same on every replica.
    api_page_token_key: SecretStr | None = None
    api_max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Orders one customer may place, in the `limits` notation ("30/minute").
    api_order_rate_limit: str = "30/minute"
    api_max_open_orders_per_customer: int = Field(default=50, ge=1)
    # Where rate limits are counted: "memory://" (one process) or a Redis URL
    # ("redis://127.0.0.1:6379") shared by every API replica.
    rate_limit_storage_url: SecretStr = SecretStr("memory://")
    # Every API call to Temporal answers within this, or the API answers 503
    # (with Retry-After). An unreachable server is known at once; this bounds a
    # slow or hung one. 1 s was too tight for bursts on a loaded machine (the
    # chaos suite's duplicate and oversell bursts got 503s from a healthy server).
    api_temporal_rpc_timeout_seconds: float = Field(default=2.0, gt=0, le=60)

    # --- Payload encryption and the codec server (ordersaga.runtime.codec, issue 14) ---
    # The keyring, "k2:<base64 of 32 bytes>,k1:<base64 of 32 bytes>": the first
    # key (or codec_current_key_id) encrypts, every key decrypts. Required by
    # every Temporal client outside dev mode; dev mode makes one key up in data_dir.
    codec_keys: SecretStr | None = None
    codec_current_key_id: str | None = None
    # Temporal's remote codec endpoints (/encode, /decode) for the Web UI and CLI.
    codec_server_host: str = "127.0.0.1"
    codec_server_port: int = Field(default=8081, ge=1, le=65535)
    # Browser origins (the Temporal Web UI) allowed to call it, comma-separated.
    # Empty: none, but in dev mode the local Web UI (127.0.0.1 and localhost).
    codec_server_cors_origins: Annotated[list[str], NoDecode] = []
    # For `ordersaga bench` only: its second embedded stack runs without the codec
    # (docs/performance.md), to measure what encryption costs. Refused outside dev
    # mode by every component (below, and ordersaga.runtime.codec.payload_keyring), so
    # production payloads are always encrypted. Deliberately not in the README.
    codec_disabled_for_benchmark: bool = False

    @field_validator("codec_keys")
    @classmethod
    def _valid_keyring(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            from ordersaga.runtime.keyring import Keyring

            keyring = Keyring.parse(value.get_secret_value())  # KeyringError is a ValueError
            if not info.data.get("dev_mode", False):
                for key_id, key in keyring.keys.items():
                    if len(set(key)) == 1:
                        raise ValueError(
                            f"key {key_id!r} is one byte repeated, not a secret; outside dev "
                            "mode give random keys (e.g. k1:$(openssl rand -base64 32))"
                        )
        return value

    @field_validator("auth_jwks_url")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        if not value:  # unset, or set empty: auth_problem says what is missing
            return None
        problem = http_url_problem(value.strip())
        if problem:
            raise ValueError(problem)
        return value.strip()

    @field_validator("worker_token", "api_page_token_key")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None or not value.get_secret_value() or info.data.get("dev_mode", False):
            return value  # unset: dev_secret says it is required outside dev mode
        if info.field_name == "worker_token" and value.get_secret_value() == DEV_ADMIN_TOKEN:
            raise ValueError(
                "is the public dev default admin token; give the workers a secret credential "
                "(e.g. openssl rand -hex 32)"
            )
        problem = short_secret_problem(value.get_secret_value())
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("codec_current_key_id")
    @classmethod
    def _current_key_in_keyring(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            return None
        keys = info.data.get("codec_keys")
        if keys is None or not keys.get_secret_value().strip():
            raise ValueError(f"set, but {env_var_name('codec_keys')} is not")
        from ordersaga.runtime.keyring import Keyring

        Keyring.parse(keys.get_secret_value(), value)
        return value

    @field_validator("codec_disabled_for_benchmark")
    @classmethod
    def _codec_off_only_in_dev_mode(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("dev_mode", False):
            raise ValueError(CODEC_DISABLED_OUTSIDE_DEV_MODE)
        return value

    @field_validator("codec_server_cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value

    def codec_cors_origins(self) -> list[str]:
        if self.codec_server_cors_origins or not self.dev_mode:
            return list(self.codec_server_cors_origins)
        port = self.temporal_ui_port
        return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]

    payments_customer_limit_cents: int = Field(default=1_000_000, ge=0, le=MAX_CUSTOMER_LIMIT_CENTS)
    shipping_refused_countries: Annotated[list[str], NoDecode] = ["AQ"]

    http_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    http_read_timeout_seconds: float = Field(default=5.0, gt=0)
    http_max_connections: int = Field(default=100, ge=1)
    # Connections each service process keeps open to its PostgreSQL database
    # (SQLite's are not pooled this way). SQLAlchemy's default of 5 is below
    # the concurrency a worker sends (up to http_max_connections per service):
    # every transaction past it opened a connection and closed it after, about
    # a tenth of a service's CPU per request under load (docs/performance.md).
    # A burst past the pool still gets up to 10 more, closed after use.
    service_database_pool_size: int = Field(
        default=DEFAULT_SERVICE_DATABASE_POOL_SIZE, ge=1, le=1000
    )
    # How long an HTTP server (API, services) lets in-flight requests finish on SIGTERM.
    http_shutdown_timeout_seconds: int = Field(default=5, ge=0)

    worker_queues: Annotated[list[str], NoDecode] = list(DOMAINS.task_queues)
    worker_grace_period_seconds: float = Field(default=10.0, ge=0)
    worker_max_concurrent_activities: int = Field(default=100, ge=1)
    worker_max_concurrent_workflow_tasks: int = Field(default=100, ge=1)
    # The worker's own small HTTP port for orchestrator probes (/healthz, /readyz);
    # 0 turns it off. Several workers on one host each need their own port.
    worker_listen_host: str = "127.0.0.1"
    worker_health_port: int = Field(default=8010, ge=0, le=65535)
    # The Temporal SDK runtime's Prometheus endpoint (SDK and saga metrics); 0 = off.
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    # Worker Versioning: each task queue is its own deployment, named
    # f"{worker_deployment_name}-{queue}", so each queue rolls out on its own.
    worker_versioning: bool = True
    worker_deployment_name: str = Field(default="ordersaga", min_length=1)
    # Defaults to the package version plus the git commit (see ordersaga.runtime.version).
    worker_build_id: str | None = None
    # Bootstrap only: make this build current when its deployment has no current
    # version yet (a first deploy). Later rollouts are explicit operator commands.
    worker_set_current_if_unset: bool = True

    # `ordersaga dev`: how long each process may take to become ready.
    dev_startup_timeout_seconds: float = Field(default=90.0, gt=0)

    @field_validator("shipping_refused_countries", mode="before")
    @classmethod
    def _split_countries(cls, value: object) -> object:
        if isinstance(value, str):
            return [c.strip().upper() for c in value.split(",") if c.strip()]
        return value

    @field_validator("worker_queues", mode="before")
    @classmethod
    def _split_queues(cls, value: object) -> object:
        # parse_queues (below) strips the names and drops blanks and duplicates.
        return value.split(",") if isinstance(value, str) else value

    @field_validator("worker_queues")
    @classmethod
    def _known_queues(cls, value: list[str]) -> list[str]:
        return parse_queues(value)

    @field_validator("worker_deployment_name")
    @classmethod
    def _deployment_name(cls, value: str) -> str:
        # Temporal writes a version as "<deployment>.<build id>" and splits at the first dot.
        if "." in value or not value.strip() or any(c.isspace() for c in value):
            raise ValueError(f"expected a name without dots or spaces, got {value!r}")
        return value

    @field_validator("worker_build_id")
    @classmethod
    def _build_id(cls, value: str | None) -> str | None:
        if not value:  # unset, or set empty (e.g. by compose): the default
            return None
        if any(c.isspace() for c in value) or len(value) > 255:
            raise ValueError("expected 1-255 characters without spaces")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r}; choose from {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("temporal_address")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, sep, port = value.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"expected host:port, got {value!r}")
        return value.strip()

    @property
    def temporal_port(self) -> int:
        return int(self.temporal_address.rpartition(":")[2])

    def _domain_setting(self, service: str, setting: str, domains: Registry) -> Any:
        """The domain's own field, e.g. payments_port; None for a domain that has
        none (one of a registry other than DOMAINS, as in tests)."""
        domains.named(service)  # UnknownDomainError for a name no registry knows
        name = f"{service}_{setting}"
        return getattr(self, name) if name in _DomainSettings.model_fields else None

    def service_url(self, service: str, domains: Registry = DOMAINS) -> str:
        explicit: str | None = self._domain_setting(service, "url", domains)
        return explicit or f"http://{self.service_host}:{self.service_port(service, domains)}"

    def service_port(self, service: str, domains: Registry = DOMAINS) -> int:
        configured: int | None = self._domain_setting(service, "port", domains)
        return domains.named(service).default_port if configured is None else configured

    def configured_database_url(self, service: str, domains: Registry = DOMAINS) -> str | None:
        """The database URL set for the service, or None for its default SQLite file."""
        explicit: SecretStr | None = self._domain_setting(service, "database_url", domains)
        if explicit is not None and explicit.get_secret_value():
            return explicit.get_secret_value()
        return None

    def database_url(self, service: str, domains: Registry = DOMAINS) -> str:
        return self.configured_database_url(service, domains) or (
            f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.sqlite3').resolve()}"
        )

    def dev_secret(self, name: str, configured: SecretStr | None) -> str:
        """A secret from settings, or in dev mode the one dev mode keeps in data_dir.

        Outside dev mode a missing one is a start-up error naming its variable.
        """
        if configured is not None and configured.get_secret_value():
            return configured.get_secret_value()
        if not self.dev_mode:
            raise MissingSecretError(
                f"{env_var_name(name)} is not set; it is required outside dev mode"
            )
        from ordersaga.runtime.dev_secrets import read_or_create_text

        return read_or_create_text(self.data_dir, name)

    def worker_token_value(self) -> str:
        return self.dev_secret("worker_token", self.worker_token)

    def page_token_key_value(self) -> str:
        return self.dev_secret("api_page_token_key", self.api_page_token_key)

    def auth_problem(self) -> str | None:
        """Why the API cannot authenticate anyone with these settings, or None."""
        if self.dev_mode and not self.auth_jwks_url:
            return None  # dev mode is its own issuer
        missing = [
            env_var_name(name)
            for name in ("auth_jwks_url", "auth_issuer", "auth_audience")
            if not getattr(self, name)
        ]
        if missing:
            return f"{', '.join(missing)} not set; point them at your OIDC provider"
        return None

    def admin_token_problem(self) -> str | None:
        """Why the admin token may not be used outside dev mode, or None when it may."""
        if self.dev_mode:
            return None
        token = self.admin_token.get_secret_value()
        if not token:
            return "ORDERSAGA_ADMIN_TOKEN is empty; set a secret token outside dev mode"
        if token == DEV_ADMIN_TOKEN:
            return (
                "ORDERSAGA_ADMIN_TOKEN is the public dev default; set a secret token "
                "(or ORDERSAGA_DEV_MODE=true for local use)"
            )
        problem = short_secret_problem(token)
        return f"ORDERSAGA_ADMIN_TOKEN {problem}" if problem else None
