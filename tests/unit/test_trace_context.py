"""An HTTP app whose spans nobody records still joins its caller's trace, so its
log lines carry the caller's trace id (ordersaga.runtime.trace_context)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace

from ordersaga.runtime.telemetry import build_tracer_provider, instrument_fastapi
from ordersaga.runtime.trace_context import UnsampledTraceContext

CALLER_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER_SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{CALLER_TRACE_ID:032x}-{CALLER_SPAN_ID:016x}-01"


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/seen")
    async def seen() -> dict[str, object]:
        span = trace.get_current_span()
        ids = span.get_span_context()
        return {"trace_id": ids.trace_id, "span_id": ids.span_id, "recording": span.is_recording()}

    provider = build_tracer_provider("test", environ={})
    instrument_fastapi(app, provider)
    return app


async def _seen(app: FastAPI, headers: dict[str, str | bytes]) -> dict[str, object]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/seen", headers=headers)
    assert response.status_code == 200
    seen: dict[str, object] = response.json()
    return seen


def test_without_an_exporter_the_app_gets_the_lean_middleware() -> None:
    app = _app()
    assert [m.cls for m in app.user_middleware] == [UnsampledTraceContext]


@pytest.mark.asyncio
async def test_a_request_joins_the_callers_trace_in_a_span_of_its_own() -> None:
    seen = await _seen(_app(), {"traceparent": TRACEPARENT})
    assert seen["trace_id"] == CALLER_TRACE_ID
    assert seen["span_id"] not in (0, CALLER_SPAN_ID)
    assert seen["recording"] is False


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": "garbage"},
        {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},  # all-zero ids are invalid
        {"traceparent": b"00-\xff\xfe-01"},  # not ASCII
    ],
    ids=["none", "garbage", "zero-ids", "latin-1"],
)
async def test_a_request_without_a_usable_traceparent_starts_a_trace(
    headers: dict[str, str | bytes],
) -> None:
    seen = await _seen(_app(), headers)
    assert isinstance(seen["trace_id"], int) and seen["trace_id"] != 0
    assert seen["trace_id"] != CALLER_TRACE_ID
