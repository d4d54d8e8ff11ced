"""Calling a domain service and turning its answer into Temporal's terms.

A business refusal becomes a non-retryable ApplicationError whose type is the
service's stable error code; so does ORDER_FENCED, a forward request refused
because its order's compensation has already run in the service (it took no
effect, so there is nothing more to undo). 5xx answers, timeouts and
connection errors become retryable ApplicationErrors, so Temporal retries them
with backoff. Both carry the attempt number, so the workflow can record how
many attempts a step took.

Every write tells the service how long it will wait for the answer
(`Request-Timeout`), so a service that gets to it later commits nothing.

Each step's call is traced as a span named after the step (`orders.<step>`),
inside Temporal's RunActivity span, with the HTTP client span below it; the
order, workflow and step travel to the service as OpenTelemetry baggage, so
the service's log lines name them too.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor, RequestInfo
from opentelemetry.trace import Span
from pydantic import SecretStr
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from contracts import errors
from contracts.activities import StepOutcome

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


def attempt_number() -> int:
    return activity.info().attempt if activity.in_activity() else 1


# What services.common.deadlines reads: seconds the caller will still wait.
REQUEST_TIMEOUT_HEADER = "Request-Timeout"
# How much sooner than its activity attempt an HTTP call gives up.
TIMEOUT_MARGIN = 0.25
MIN_READ_SECONDS = 0.1


def activity_timeout() -> float | None:
    """Seconds an attempt of the running activity may take (start-to-close).

    The whole timeout, not what is left of it: what is left would compare the
    server's clock (when the attempt started) with this worker's, so clock
    skew could shrink it to nothing. A call made later in the attempt is
    allowed a little more than it has, which errs towards letting it through.
    """
    if not activity.in_activity():
        return None
    timeout = activity.info().start_to_close_timeout
    return timeout.total_seconds() if timeout is not None else None


@contextlib.contextmanager
def saga_step(step: str, order_id: str) -> Iterator[None]:
    """The span, log context and one log line of a saga step's service call."""
    workflow_id = activity.info().workflow_id if activity.in_activity() else order_id
    attempt = attempt_number()
    fields = {"order_id": order_id, "workflow_id": workflow_id, "step": step}
    ctx = context.get_current()
    for key, value in fields.items():
        ctx = baggage.set_baggage(key, value, ctx)
    token = context.attach(ctx)
    started = time.perf_counter()
    outcome = "failed"
    # INFO for what goes as planned (done, or refused by the domain); WARNING
    # for a fault that Temporal will retry or an operator must look at.
    level = logging.WARNING
    try:
        with tracer.start_as_current_span(
            f"orders.{step}",
            attributes={
                "ordersaga.order_id": order_id,
                "ordersaga.step": step,
                "ordersaga.attempt": attempt,
            },
        ):
            try:
                yield
                outcome = "completed"
                level = logging.INFO
            except ApplicationError as err:
                outcome = err.type or "failed"
                if err.type in errors.BUSINESS_REFUSALS:
                    level = logging.INFO
                raise
            finally:
                # The workflow decides what a failure means and logs it there;
                # here it is one line with its code, attempt and duration (and
                # the trace id, from the log context). No traceback: an
                # expected failure is not a bug, and the SDK is told so (BENIGN).
                log.log(
                    level,
                    "%s %s",
                    step,
                    outcome,
                    extra={
                        "outcome": outcome,
                        "attempt": attempt,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
    finally:
        context.detach(token)


class ServiceClient:
    """A pooled async HTTP client for one service. One instance per worker process.

    `token` is the workers' credential, sent as a bearer token on every request:
    the services take the saga's requests from the workers only.

    Every request carries the trace context and baggage (the order, workflow
    and step) in its headers. `client_spans` says whether it also makes an
    HTTP client span: pass False where the tracer provider records none (no
    exporter; ordersaga.runtime.telemetry.records_spans), and the headers are
    written without the instrumentation, whose span would be made and dropped
    for nothing: about 0.1 ms of CPU per call (docs/performance.md, round 5).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        service: str,
        *,
        token: SecretStr,
        client_spans: bool = True,
    ) -> None:
        if not token.get_secret_value():
            raise ValueError(f"the {service} client needs the workers' credential")
        if client_spans:
            HTTPXClientInstrumentor.instrument_client(http, request_hook=self._name_client_span)
        self._inject_context = not client_spans
        self._http = http
        self._service = service
        self._token = token

    async def _name_client_span(self, span: Span, request: RequestInfo) -> None:
        # "POST payments" rather than a bare "POST"; paths carry ids, names must not.
        method = request.method.decode() if isinstance(request.method, bytes) else request.method
        span.update_name(f"{method} {self._service}")

    async def post(
        self, path: str, *, idempotency_key: str, json: dict[str, Any] | None = None
    ) -> httpx.Response:
        return await self._send(
            "POST", path, json=json or {}, headers={"Idempotency-Key": idempotency_key}
        )

    async def get(self, path: str, *, params: dict[str, str] | None = None) -> httpx.Response:
        return await self._send("GET", path, params=params)

    def _wait_budget(self) -> float | None:
        """How long this call will wait for its answer: the read timeout, or
        less when the activity attempt times out sooner (a local attempt does)."""
        budgets = [
            budget for budget in (self._http.timeout.read, activity_timeout()) if budget is not None
        ]
        return min(budgets) if budgets else None

    def _timeout(self) -> httpx.Timeout:
        """The client's timeouts, the read one cut to the attempt's budget less a
        margin: the call must give up before its attempt does. A local attempt
        the SDK has already timed out cannot complete any more (the core warns
        "Tried to complete untracked local activity"), and the step would not
        learn that this attempt failed from the attempt itself."""
        configured = self._http.timeout
        attempt = activity_timeout()
        if (
            attempt is None
            or configured.read is None
            or configured.read <= attempt - TIMEOUT_MARGIN
        ):
            return configured
        return httpx.Timeout(
            connect=configured.connect,
            read=max(attempt - TIMEOUT_MARGIN, MIN_READ_SECONDS),
            write=configured.write,
            pool=configured.pool,
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {**(headers or {}), "Authorization": f"Bearer {self._token.get_secret_value()}"}
        if self._inject_context:
            # traceparent and baggage, as the instrumentation would send them.
            propagate.inject(headers)
        budget = self._wait_budget()
        if method != "GET" and budget is not None:
            # A write the service gets to after this has passed commits
            # nothing (services.common.deadlines): no one would learn of it.
            headers[REQUEST_TIMEOUT_HEADER] = f"{budget:.3f}"
        try:
            response = await self._http.request(
                method, path, headers=headers, timeout=self._timeout(), **kwargs
            )
        except httpx.TimeoutException as err:
            raise retryable(
                f"{self._service} {method} {path} timed out: {type(err).__name__}"
            ) from err
        except httpx.TransportError as err:
            raise retryable(
                f"{self._service} {method} {path} unreachable: {type(err).__name__}"
            ) from err
        if response.status_code >= 500:
            raise retryable(
                f"{self._service} {method} {path} answered {response.status_code}: "
                f"{error_message(response)}",
                error_type=error_code(response) or errors.SERVICE_UNAVAILABLE,
            )
        return response

    async def create(
        self, path: str, *, idempotency_key: str, json: dict[str, Any], id_field: str
    ) -> StepOutcome:
        """A forward step: create the resource, or raise the service's refusal."""
        created = await self.create_json(path, idempotency_key=idempotency_key, json=json)
        return StepOutcome(resource_id=str(created[id_field]), attempt=attempt_number())

    async def create_json(
        self, path: str, *, idempotency_key: str, json: dict[str, Any]
    ) -> dict[str, Any]:
        """A forward step's answer as the service gave it, or the service's refusal."""
        response = await self.post(path, idempotency_key=idempotency_key, json=json)
        if response.status_code in (200, 201):
            created: dict[str, Any] = response.json()
            return created
        raise self.refusal(response)

    async def undo(
        self,
        *,
        collection: str,
        action: str,
        order_id: str,
        resource_id: str | None,
        idempotency_key: str,
        id_field: str,
    ) -> StepOutcome:
        """A compensation: undo the resource the forward step made.

        First the order is fenced in the service: from then on no forward
        request for it takes effect there, however late it lands (a call this
        order gave up on may still be running in the service). Then, without
        a resource id, the forward step failed ambiguously (it may have taken
        effect), so look the order's resources up: the look-up runs after the
        fence, so it sees every effect that will ever exist, and finding none
        means there is nothing to undo. Undoing twice is harmless: the
        services treat an already released/refunded/cancelled resource as
        done, and fencing twice fences once.
        """
        await self.fence(order_id)
        if resource_id is not None:
            resource_ids = [resource_id]
        else:
            found = await self.list_for_order(collection, order_id)
            resource_ids = [str(item[id_field]) for item in found]
        if not resource_ids:
            return StepOutcome(resource_id=None, attempt=attempt_number(), nothing_to_undo=True)
        for rid in resource_ids:
            # One key per resource: a key names exactly one request.
            key = idempotency_key if len(resource_ids) == 1 else f"{idempotency_key}:{rid}"
            await self.act(collection, rid, action, idempotency_key=key)
        return StepOutcome(resource_id=resource_ids[0], attempt=attempt_number())

    async def fence(self, order_id: str) -> None:
        """`PUT /fences/{order_id}`: no forward request for the order takes effect after this."""
        response = await self._send("PUT", f"/fences/{quote(order_id, safe='')}")
        if response.status_code == 404:
            # Only a service from before fences has no such route: the
            # compensation waits (retried) until the service is upgraded.
            raise retryable(
                f"{self._service} cannot fence orders yet (404); deploy the services "
                "before the workers"
            )
        if response.status_code != 200:
            raise self.refusal(response)

    async def list_for_order(self, collection: str, order_id: str) -> list[dict[str, Any]]:
        """`GET /{collection}?order_id=`: what the service holds for the order."""
        listing = await self.get(f"/{collection}", params={"order_id": order_id})
        if listing.status_code != 200:
            raise self.refusal(listing)
        items: list[dict[str, Any]] = listing.json()["items"]
        return items

    async def act(
        self, collection: str, resource_id: str, action: str, *, idempotency_key: str
    ) -> StepOutcome:
        """An action on an existing resource: `POST /{collection}/{id}/{action}`."""
        response = await self.post(
            f"/{collection}/{resource_id}/{action}", idempotency_key=idempotency_key
        )
        if response.status_code != 200:
            raise self.refusal(response)
        return StepOutcome(resource_id=resource_id, attempt=attempt_number())

    def refusal(self, response: httpx.Response) -> ApplicationError:
        """A 4xx answer: the request was understood and refused; retrying cannot help."""
        code = error_code(response) or errors.REQUEST_REJECTED
        if code not in errors.NON_RETRYABLE and code != errors.NOT_FOUND:
            code = errors.REQUEST_REJECTED
        return ApplicationError(
            f"{self._service} refused ({response.status_code} {code}): {error_message(response)}",
            attempt_number(),
            type=code,
            non_retryable=True,
            # An answer the service chose is expected, not a bug: the SDK then
            # logs it at DEBUG without a traceback; saga_step logged its one
            # line, and the workflow, which decides what it means, logs that.
            category=ApplicationErrorCategory.BENIGN,
        )


def retryable(message: str, *, error_type: str = errors.SERVICE_UNAVAILABLE) -> ApplicationError:
    """A fault Temporal retries with backoff. Expected in a distributed system, so
    BENIGN: one structured line (saga_step's), not a traceback per attempt."""
    return ApplicationError(
        message,
        attempt_number(),
        type=error_type,
        non_retryable=False,
        category=ApplicationErrorCategory.BENIGN,
    )


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail")
    except (ValueError, AttributeError):
        return None


def error_code(response: httpx.Response) -> str | None:
    detail = _detail(response)
    if isinstance(detail, dict) and isinstance(detail.get("code"), str):
        return str(detail["code"])
    return None


def error_message(response: httpx.Response) -> str:
    detail = _detail(response)
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        return str(detail["message"])
    if detail is not None:
        return str(detail)[:200]
    return response.reason_phrase or "no reason given"
