"""Schemathesis over each service's own OpenAPI document: generated requests,
with the right credentials, never get a 5xx, and every answer matches the
document (status, content type, body schema).

Each service runs under uvicorn in a thread of its own, on a fresh SQLite file,
and schemathesis talks to it over HTTP, as a worker or an operator would.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.services.support import (
    ADMIN,
    SERVICE_APPS,
    WORKER,
)
from tests.ports import free_port

EXAMPLES_PER_OPERATION = 25


class ThreadedServer:
    """uvicorn on its own event loop in a daemon thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=asyncio.run, args=(self._server.serve(),))

    def __enter__(self) -> str:
        self._thread.start()
        for _ in range(1500):
            if self._server.started:
                return f"http://127.0.0.1:{self.port}"
            if not self._thread.is_alive():
                break
            threading.Event().wait(0.02)
        raise RuntimeError("the service did not start")

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


# No 5xx, and every answer as the document says (status, content type, headers,
# body). Not schemathesis' "positive data is accepted": a schema-valid order
# may well be refused for business reasons (402, 422 UNKNOWN_SKU), as documented.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def headers_for(case: Any) -> dict[str, str]:
    """The caller each route admits (operators for the admin routes, else the
    workers), and a fresh Idempotency-Key: generated ones repeat across cases,
    and a key reused for another body is rightly refused."""
    admin_route = case.path.startswith("/admin") or (
        case.method.upper() == "PUT" and case.path.startswith("/products")
    )
    headers = dict(ADMIN if admin_route else WORKER)
    if case.headers and "Idempotency-Key" in case.headers:
        headers["Idempotency-Key"] = uuid.uuid4().hex
    return headers


@pytest.mark.parametrize("name", sorted(SERVICE_APPS))
def test_each_service_answers_by_its_document(name: str, tmp_path: Path) -> None:
    app = SERVICE_APPS[name](f"sqlite+aiosqlite:///{tmp_path / name / 'fuzz.sqlite3'}")
    with ThreadedServer(app) as base_url:
        # Injected faults are 503s by design, and latency only slows the run.
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json").exclude(
            path="/admin/faults"
        )
        operations = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operations.append(result.ok())
        assert len(operations) >= 3
        for operation in operations:

            @FUZZ_SETTINGS
            @hypothesis.given(case=operation.as_strategy())
            def answers_by_the_document(case: Any) -> None:
                case.call_and_validate(headers=headers_for(case), checks=CHECKS)

            answers_by_the_document()


FUZZ_SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
