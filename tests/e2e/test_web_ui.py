"""The Temporal Web UI, driven in a real browser the way an operator uses it.

A dev server with its Web UI runs on free ports, its codec endpoint pointing at
a codec server of the test's own; the real stack (encrypting every payload, as
in production) places orders through the API. Headless Debian chromium, driven
by Playwright, shows an order's input as ciphertext until the operator signs
in on the codec server's login page, and decrypted after: the session's
SameSite=Strict cookie travels from the UI's port to the codec server's. It
also shows the order columns, filters by OrderStatus, CustomerId and
OrderTotalCents typed into the query box, opens the failed order and finds the
workflow's summary and the activities' summaries (payloads too, so read
through the codec). Screenshots land in test-artifacts/web-ui/.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Response, async_playwright, expect
from temporalio.testing import WorkflowEnvironment

from contracts.orders import OrderResult, format_money
from ordersaga.binaries import temporal_cli
from ordersaga.codec_server import create_codec_app
from ordersaga.runtime.codec import EncryptionCodec
from tests.http_server import serving_with_uvicorn
from tests.integration.stack import Stack, running_stack
from tests.keys import TEST_KEYRING
from tests.orders import PAYMENT_TOKEN, STREET, order_body
from tests.ports import free_port
from tests.tokens import as_customer, new_customer_id, operator_token, verifier_for_tests
from workflows.search_attributes import FAILED_STEP_KEY, ORDER_SEARCH_ATTRIBUTES

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web-ui"
NAMESPACE = "default"
# The UI polls and renders client-side; generous for a slow CI machine.
UI_TIMEOUT_MS = 30_000

UNITS = 2
CODEC_REFUSED = "Codec Server could not connect"


def chromium_or_skip() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"{CHROMIUM} not found: install Debian's chromium (sudo apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the Web UI test needs a browser in CI; {message}")
    pytest.skip(message)


@dataclass(frozen=True)
class PlacedOrder:
    order_id: str
    customer_id: str
    total_cents: int


@dataclass
class WebUi:
    env: WorkflowEnvironment
    stack: Stack
    url: str
    codec_url: str


@pytest.fixture(scope="module")
async def web_ui(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WebUi]:
    chromium_or_skip()
    ui_port, codec_port = free_port(), free_port()
    # Both on 127.0.0.1, as `make dev` prints them: one site to the browser.
    ui_url, codec_url = f"http://127.0.0.1:{ui_port}", f"http://127.0.0.1:{codec_port}"
    codec_app = create_codec_app(
        codec=EncryptionCodec(TEST_KEYRING),
        verifier=verifier_for_tests(),
        namespace=NAMESPACE,
        cors_origins=[ui_url, f"http://localhost:{ui_port}"],
    )
    env = await WorkflowEnvironment.start_local(
        ui=True,
        ui_port=ui_port,
        dev_server_existing_path=str(temporal_cli()),
        search_attributes=ORDER_SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        dev_server_extra_args=["--ui-disable-news-fetch", "--ui-codec-endpoint", codec_url],
    )
    try:
        async with (
            serving_with_uvicorn(codec_app, codec_port),
            running_stack(env.client, tmp_path_factory.mktemp("web-ui")) as stack,
        ):
            yield WebUi(env, stack, ui_url, codec_url)
    finally:
        await env.shutdown()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    executable = chromium_or_skip()
    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(
            executable_path=str(executable), headless=True
        )
        try:
            context = await browser.new_context(viewport={"width": 1920, "height": 1000})
            page = await context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            yield page
        finally:
            await browser.close()


def send_credentials_to(codec_url: str) -> str:
    """A script giving the UI the codec settings an operator sets once per browser.

    `temporal server start-dev` has no flag for "Include cross-origin
    credentials" (its /api/v1/settings always answers IncludeCredentials:
    false). The UI's Codec Server dialog keeps the browser's own choice in
    localStorage, as JSON, under these keys: "Use my browser setting and ignore
    Cluster-level setting", the endpoint, and the credentials box.
    """
    settings = {
        "overrideRemoteCodecConfiguration": True,
        "endpoint": codec_url,
        "includeCredentials": True,
    }
    return "".join(
        f"localStorage.setItem({json.dumps(key)}, {json.dumps(json.dumps(value))});"
        for key, value in settings.items()
    )


async def sign_in(page: Page, ui: WebUi) -> None:
    """What an operator does once: paste their token on the codec server's page."""
    await page.goto(f"{ui.codec_url}/login")
    await page.get_by_label("Operator token").fill(operator_token())
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("status")).to_contain_text("Signed in as")


async def sign_out(page: Page, ui: WebUi) -> None:
    await page.goto(f"{ui.codec_url}/login")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("Operator token")).to_be_visible()


async def place_and_finish(ui: WebUi, *, country: str, expect_status: str) -> PlacedOrder:
    # A SKU and a price of its own, so that filtering by the total finds
    # exactly this order (the catalog prices it; the body has no price).
    sku = f"sku_ui_{uuid.uuid4().hex[:8]}"
    price_cents = 1000 + int(uuid.uuid4().int % 9000)
    await ui.stack.stock(sku, 20, price_cents=price_cents)
    customer_id = new_customer_id()
    response = await ui.stack.api.post(
        "/orders",
        json=order_body(sku=sku, quantity=UNITS, country=country),
        headers=as_customer(customer_id),
    )
    assert response.status_code == 202, response.text
    order_id = str(response.json()["order_id"])
    # The result is a payload too: only a client with the stack's codec reads it.
    handle = ui.stack.temporal.get_workflow_handle(order_id, result_type=OrderResult)
    result = await handle.result()
    assert result.status == expect_status, result
    return PlacedOrder(order_id, customer_id, UNITS * price_cents)


async def wait_until_listed(ui: WebUi, query: str, order_id: str) -> None:
    """Visibility is updated after the history: wait until a query sees the order."""
    async with asyncio.timeout(30):
        while True:
            found = [execution.id async for execution in ui.env.client.list_workflows(query)]
            if order_id in found:
                return
            await asyncio.sleep(0.1)


async def filter_by(page: Page, query: str) -> None:
    """Type a query into the list's query box and run it, as an operator does."""
    box = page.get_by_test_id("workflow-manual-search-input")
    if not await box.is_visible():
        await page.get_by_test_id("toggle-manual-query").click()
    await box.fill(query)
    await box.press("Enter")
    await expect(page).to_have_url(re.compile(r"[?&]query="))


def row_of(page: Page, order_id: str) -> Any:
    return page.get_by_role("row").filter(has_text=order_id)


async def test_the_order_input_is_decrypted_only_for_a_signed_in_operator(
    web_ui: WebUi, page: Page
) -> None:
    order = await place_and_finish(web_ui, country="DE", expect_status="COMPLETED")
    await page.context.add_init_script(send_credentials_to(web_ui.codec_url))
    order_page = f"{web_ui.url}/namespaces/{NAMESPACE}/workflows/{order.order_id}"
    decode_answers: list[int] = []
    # The UI has no token to pass: only the session cookie can speak for it.
    bearer_sent: list[str] = []

    def on_response(response: Response) -> None:
        if response.url.startswith(f"{web_ui.codec_url}/decode"):
            decode_answers.append(response.status)
            if "authorization" in response.request.headers:
                bearer_sent.append(response.url)

    page.on("response", on_response)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    try:
        # No session: the UI asks the codec server, is refused, shows ciphertext.
        await page.goto(order_page)
        await expect(page.locator("#content").get_by_text(CODEC_REFUSED)).to_be_visible()
        assert 401 in decode_answers, decode_answers
        page_text = await page.locator("body").inner_text()
        assert STREET not in page_text and PAYMENT_TOKEN not in page_text
        await page.screenshot(path=ARTIFACTS / "order-input-encrypted.png")

        # Signed in on the codec server: the same page shows the order itself,
        # the cookie having gone along with the UI's credentialed fetch.
        await sign_in(page, web_ui)
        decode_answers.clear()
        await page.goto(order_page)
        for secret in (STREET, PAYMENT_TOKEN):
            await expect(page.get_by_text(secret).first).to_be_visible()
        await expect(page.get_by_text(CODEC_REFUSED)).to_have_count(0)
        assert decode_answers and set(decode_answers) == {200}, decode_answers
        assert not bearer_sent, bearer_sent
        await page.screenshot(path=ARTIFACTS / "order-input-decrypted.png")

        # Signed out: ciphertext again.
        await sign_out(page, web_ui)
        await page.goto(order_page)
        await expect(page.locator("#content").get_by_text(CODEC_REFUSED)).to_be_visible()
        assert STREET not in await page.locator("body").inner_text()
    except BaseException:
        await page.screenshot(path=ARTIFACTS / "failure.png", full_page=True)
        raise


async def test_an_operator_finds_a_failed_order_and_reads_its_summary(
    web_ui: WebUi, page: Page
) -> None:
    failed = await place_and_finish(web_ui, country="AQ", expect_status="FAILED")
    completed = await place_and_finish(web_ui, country="DE", expect_status="COMPLETED")
    await wait_until_listed(web_ui, 'OrderStatus="FAILED"', failed.order_id)
    await wait_until_listed(web_ui, 'OrderStatus="COMPLETED"', completed.order_id)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    try:
        # Summaries are encrypted payloads too: the operator signs in first.
        await page.context.add_init_script(send_credentials_to(web_ui.codec_url))
        await sign_in(page, web_ui)
        await page.goto(f"{web_ui.url}/namespaces/{NAMESPACE}/workflows")
        await expect(row_of(page, failed.order_id)).to_be_visible()

        # The order columns, added the way the UI offers: Configure Columns.
        await page.get_by_test_id("workflows-summary-table-configuration-button").click()
        for column in ("OrderStatus", "CustomerId", "OrderTotalCents"):
            await page.get_by_role("button", name=f"Add {column} column").click()
        # Room for them in the screenshot: every order has the same type.
        for column in ("Run ID", "Type"):
            await page.get_by_role("button", name=f"Remove {column} column").click()
        await page.get_by_role("button", name="Close Workflows Table configuration").click()
        header = page.get_by_role("row").first
        for column in ("OrderStatus", "CustomerId", "OrderTotalCents"):
            await expect(header).to_contain_text(column)

        # OrderStatus="FAILED": the failed order, with its columns; not the other.
        await filter_by(page, 'OrderStatus="FAILED"')
        await expect(row_of(page, completed.order_id)).to_have_count(0)
        failed_row = row_of(page, failed.order_id)
        await expect(failed_row).to_be_visible()
        for cell in ("FAILED", failed.customer_id, str(failed.total_cents)):
            await expect(failed_row).to_contain_text(cell)
        await page.screenshot(path=ARTIFACTS / "orders-filtered-by-status.png")

        # CustomerId and OrderTotalCents filter just as well.
        await filter_by(page, f'CustomerId="{completed.customer_id}"')
        await expect(row_of(page, failed.order_id)).to_have_count(0)
        await expect(row_of(page, completed.order_id)).to_contain_text("COMPLETED")
        await filter_by(page, f"OrderTotalCents = {failed.total_cents}")
        await expect(row_of(page, completed.order_id)).to_have_count(0)
        await expect(row_of(page, failed.order_id)).to_contain_text(failed.customer_id)
        # And the step that failed, combined with the status.
        failed_step = FAILED_STEP_KEY.name
        await filter_by(page, f'OrderStatus="FAILED" AND {failed_step}="charge_payment"')
        await expect(row_of(page, failed.order_id)).to_have_count(0)
        await filter_by(page, f'OrderStatus="FAILED" AND {failed_step}="create_shipment"')
        await expect(row_of(page, failed.order_id)).to_be_visible()

        # Open it: the timeline names every step, compensations included. They
        # ran as local activities (workflows/order.py), which the timeline
        # shows by activity type; the event history shows each one's summary.
        await filter_by(page, 'OrderStatus="FAILED"')
        await row_of(page, failed.order_id).get_by_role("link", name=failed.order_id).click()
        await expect(page).to_have_url(re.compile(f"/workflows/{failed.order_id}/"))
        for step in (
            "reserve_inventory",
            "charge_payment",
            "create_shipment",
            "refund_payment",
            "release_inventory",
        ):
            await expect(
                page.get_by_role("button", name=re.compile(f"^Event {step}\\b")).first
            ).to_be_visible()
        await page.screenshot(path=ARTIFACTS / "failed-order-timeline.png")
        await page.get_by_role("tab", name=re.compile("^Event History")).click()
        money = format_money(failed.total_cents, "EUR")
        for step_summary in (
            f"reserve {UNITS} units of 1 SKU(s)",
            f"charge {money}",
            f"ship {UNITS} units",
            f"undo: refund {money}",
            f"undo: release {UNITS} reserved units",
        ):
            await expect(page.get_by_text(step_summary, exact=True).first).to_be_visible()
        await page.screenshot(path=ARTIFACTS / "failed-order-history.png")

        # The workflow's own summary: what the order is, without the address
        # or the card token.
        await page.get_by_role("tab", name="User Metadata").click()
        # The UI renders it as markdown, in a frame of its own.
        summary_frame = page.frame_locator("#user-metadata-summary")
        summary = f"{UNITS} items, customer {failed.customer_id}"
        await expect(summary_frame.get_by_text(summary, exact=True)).to_be_visible()
        summary_text = await summary_frame.locator("body").inner_text()
        assert STREET not in summary_text and PAYMENT_TOKEN not in summary_text, summary_text
        await page.screenshot(path=ARTIFACTS / "failed-order-summary.png")
    except BaseException:
        await page.screenshot(path=ARTIFACTS / "failure.png", full_page=True)
        raise
