"""What every Temporal client, worker and replayer of ordersaga must agree on.

The replay gate (tests/replay) replays histories with exactly these, so a change
here that would break in-flight workflows is caught there, not in production.
"""

from __future__ import annotations

import functools
import inspect
from datetime import timedelta
from types import CodeType
from typing import Any

from opentelemetry.trace import TracerProvider
from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from contracts.search_attributes import SEARCH_ATTRIBUTE_TYPES
from ordersaga.runtime.codec import EncryptionCodec
from ordersaga.runtime.keyring import Keyring

# Every type a payload is read as, with its pydantic validator built once per
# process; bounded because the hints are the contracts' types.
_type_adapter = functools.lru_cache(maxsize=256)(TypeAdapter)


class _SharedAdapterJSONConverter(PydanticJSONPlainPayloadConverter):
    """Pydantic's JSON converter, reading through validators shared by every instance.

    The SDK makes a payload converter for each workflow run, so the converter's
    own cache of validators would start empty in each: building one costs more
    than the SDK's default conversion.
    """

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        try:
            adapter = _type_adapter(Any if type_hint is None else type_hint)
        except TypeError:
            # An unhashable hint, or one pydantic refuses: the converter's own way.
            return super().from_payload(payload, type_hint)
        return adapter.validate_json(payload.data)


class PayloadConverter(CompositePayloadConverter):
    """The SDK's default converters, with JSON through pydantic (see data_converter)."""

    def __init__(self) -> None:
        super().__init__(
            *(
                _SharedAdapterJSONConverter()
                if isinstance(each, JSONPlainPayloadConverter)
                else each
                for each in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


def data_converter(keyring: Keyring | None) -> DataConverter:
    """The JSON/dataclass converter, every payload encrypted under `keyring`.

    JSON is written and read by pydantic (validators compiled once per type)
    rather than the SDK's default converter, which reads a dataclass by
    evaluating the annotations of it and of every dataclass inside it on each
    call: 0.74 to 0.78 ms to read an OrderView, against 27 us
    (docs/performance.md, round 6). The JSON is the same apart from key order,
    so either converter reads what the other wrote: histories recorded before,
    and clients that still use the default converter.

    Failures too: their message and stack trace move into an encrypted payload
    (the server keeps only "Encoded failure"), since an error from a domain
    service may quote the order it failed on.

    `keyring=None` is the same converter without the codec: for the benchmark's
    comparison only, as ordersaga.runtime.codec.payload_keyring returns None in dev mode
    and nowhere else.
    """
    return DataConverter(
        payload_converter_class=PayloadConverter,
        payload_codec=EncryptionCodec(keyring) if keyring is not None else None,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def missing_search_attributes(client: Client, *, rpc_timeout: timedelta) -> list[str]:
    """The saga's custom search attributes the client's namespace lacks, sorted.

    Without them Temporal refuses every order's start and the workflow's every
    upsert: a Temporal that answers is not enough to be ready. `ordersaga dev`
    registers them, a deployment's setup step must (README, "Running in
    production")."""
    registered = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace), timeout=rpc_timeout
    )
    return sorted(set(SEARCH_ATTRIBUTE_TYPES) - set(registered.custom_attributes))


def search_attributes_problem(missing: list[str], namespace: str) -> str:
    """What a readiness probe says when `missing` is not empty."""
    return (
        f"Temporal namespace {namespace!r} lacks the search attributes "
        f"{', '.join(missing)}; register them (README, 'Running in production')"
    )


def temporal_interceptors(
    tracer_provider: TracerProvider | None = None,
) -> list[TracingInterceptor]:
    """Interceptors for Client.connect (workers inherit them) and for Replayer.

    Tracing spans Temporal's own calls (StartWorkflow, RunWorkflow, StartActivity,
    RunActivity) and carries the trace context through the workflow's headers.
    With no tracer provider configured it records nothing; `tracer_provider`
    (default: the global one) lets a test tell the API's spans from the worker's.
    """
    tracer = tracer_provider.get_tracer(__name__) if tracer_provider is not None else None
    return [TracingInterceptor(tracer)]


# Imported by the saga's workflow code and free of side effects and state, so one
# copy can serve every workflow run: the sandbox stays on (workflow code is still
# checked for non-determinism) but stops re-importing these for each run.
WORKFLOW_PASSTHROUGH_MODULES = (
    "contracts",
    "activities",
    "pydantic",
    "pydantic_core",
    "httpx",
    "opentelemetry",
)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The workflow runner for every worker and the replayer: the sandbox, with
    WORKFLOW_PASSTHROUGH_MODULES passed through."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(
        *WORKFLOW_PASSTHROUGH_MODULES
    )
    if precompiling_instance_class() is None:
        return SandboxedWorkflowRunner(restrictions=restrictions)
    return _PrecompiledSandboxedWorkflowRunner(restrictions=restrictions)


# --- the sandbox's glue code, compiled once ---------------------------------------
#
# The SDK's sandbox enters a workflow run through a few lines of source it runs
# with exec(): once per activation, and once per payload sequence it encodes or
# decodes (to ask the run for its serialization context). exec() of a string
# compiles it every time: 9 % of the saga worker's CPU under bench load in a
# py-spy profile (about 100 compiles of 20 us per order). The strings are a
# handful of constants (and one per workflow class for the import), so each is
# compiled once here and exec() runs the code object: the same code, in the
# same sandbox, with the same globals.
# The function's name and parameters are checked by tests/unit/test_sandbox_runner.py.


@functools.lru_cache(maxsize=64)
def _compiled(source: str) -> CodeType:
    # "<string>" is the name exec() gives a string's code: tracebacks read the same.
    return compile(source, "<string>", "exec")


@functools.cache
def precompiling_instance_class() -> type[WorkflowInstance] | None:
    """The sandbox's instance class, running its glue code precompiled; None when
    the installed SDK no longer has the private class and method this overrides
    (then the plain sandbox runs: the same behaviour, a little more CPU).
    tests/unit/test_sandbox_runner.py fails in that case, so an upgrade says so."""
    try:
        from temporalio.worker.workflow_sandbox._runner import _Instance
    except ImportError:
        return None
    if list(inspect.signature(_Instance._run_code).parameters) != ["self", "code", "extra_globals"]:
        return None

    class PrecompiledInstance(_Instance):
        def _run_code(self, code: Any, **extra_globals: Any) -> None:
            # exec() takes a code object where the SDK passes a string.
            compiled: Any = _compiled(code) if isinstance(code, str) else code
            super()._run_code(compiled, **extra_globals)

    return PrecompiledInstance


class _PrecompiledSandboxedWorkflowRunner(SandboxedWorkflowRunner):
    """SandboxedWorkflowRunner whose instances exec precompiled glue code."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        instance_class: Any = precompiling_instance_class()
        return instance_class(det, self.runner_class, self.restrictions)  # type: ignore[no-any-return]
