"""The ACS Email emulator's mailbox console, in a real browser, against the real pipeline."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from azure.communication.email.aio import EmailClient
from azure.core.credentials import AzureKeyCredential
from playwright.async_api import Page, expect

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.producers.publisher import Publisher
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.runner import Worker

TIMEOUT_MS = 30_000


_renderer = TemplateRenderer()


def _event(n: int, tenant: str = "contoso") -> dict[str, Any]:
    data = _renderer.sample_data("order.confirmation")
    data["order"] = {**data["order"], "number": f"CO-UI-{n:03d}"}
    return {
        "id": f"order-ui-{n:03d}",
        "type": "order.confirmation",
        "tenant": tenant,
        "to": [f"customer{n}@example.test"],
        "sender": "orders",
        "data": data,
    }


async def _send_raw(acs: EmailEmulator, html: str, attachment: bytes | None = None) -> str:
    """Send one email straight through the ACS SDK (the console must cope with any HTML)."""
    message: dict[str, object] = {
        "senderAddress": "DoNotReply@contoso.test",
        "recipients": {"to": [{"address": "reader@example.test"}]},
        "content": {"subject": "Hostile template", "html": html, "plainText": "plain part"},
        "headers": {"X-Postbus-Event-Id": "raw-1"},
    }
    if attachment is not None:
        message["attachments"] = [
            {
                "name": "label.pdf",
                "contentType": "application/pdf",
                "contentInBase64": base64.b64encode(attachment).decode("ascii"),
            }
        ]
    async with EmailClient(acs.endpoint, AzureKeyCredential(acs.access_key)) as client:
        poller = await client.begin_send(message)
        result = await poller.result()
    return str(result["id"])


async def test_the_list_fills_live_while_a_spike_drains_and_search_finds_one_event(
    page: Page, acs: EmailEmulator, worker: Worker, publisher: Publisher
) -> None:
    await page.goto(f"{acs.endpoint}/")
    await expect(page.locator("#live")).to_have_text("live", timeout=TIMEOUT_MS)
    await expect(page.locator("#empty")).to_be_visible()

    events = [_event(n, tenant="contoso" if n % 2 else "fabrikam") for n in range(12)]
    await publisher.publish_many(events)

    rows = page.locator(".message")
    await expect(rows).to_have_count(len(events), timeout=TIMEOUT_MS)
    assert await page.locator("#count").inner_text() == str(len(events))

    await page.fill("#search", "order-ui-007")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-event-id", "order-ui-007")
    await expect(page).to_have_url(f"{acs.endpoint}/_emulator/ui/?q=order-ui-007")

    await page.fill("#search", "fabrikam")
    await expect(rows).to_have_count(6)

    await page.fill("#search", "")
    await rows.filter(has_text="order-ui-003").click()
    await expect(page.locator("#d-event")).to_have_text("order-ui-003")
    await expect(page.locator("#d-tenant")).to_have_text("contoso")
    await expect(page.locator("#d-to")).to_have_text("customer3@example.test")
    frame = page.frame_locator("#html-frame")
    await expect(frame.locator("body")).to_contain_text("CO-UI-003")


async def test_html_renders_in_a_sandbox_where_scripts_do_not_run(page: Page, acs: EmailEmulator) -> None:
    hostile = (
        '<p id="hello">Hello from the template</p>'
        "<script>parent.document.title = 'pwned'; document.body.innerHTML = '<p id=ran>ran</p>';</script>"
        "<img src=x onerror=\"parent.document.title='pwned by onerror'\">"
    )
    operation_id = await _send_raw(acs, hostile)
    await page.goto(f"{acs.endpoint}/_emulator/ui/")
    title = await page.title()
    await page.locator(f'.message[data-operation-id="{operation_id}"]').click()

    frame = page.frame_locator("#html-frame")
    await expect(frame.locator("#hello")).to_have_text("Hello from the template", timeout=TIMEOUT_MS)
    await expect(frame.locator("#ran")).to_have_count(0)
    assert await page.title() == title
    assert await page.locator("#html-frame").get_attribute("sandbox") == ""

    # Opened on its own, outside the frame, the HTML still runs no script (CSP sandbox).
    alone = await page.context.new_page()
    await alone.goto(f"{acs.endpoint}/_emulator/messages/{operation_id}/html")
    await expect(alone.locator("#hello")).to_be_visible()
    await expect(alone.locator("#ran")).to_have_count(0)


async def test_an_attachment_downloads_byte_identical(page: Page, acs: EmailEmulator) -> None:
    content = secrets.token_bytes(300 * 1024)
    operation_id = await _send_raw(acs, "<p>Your return label</p>", attachment=content)
    await page.goto(f"{acs.endpoint}/_emulator/ui/#{operation_id}")
    await expect(page.locator("#d-operation")).to_have_text(operation_id, timeout=TIMEOUT_MS)
    await page.get_by_role("tab", name="Attachments").click()
    async with page.expect_download() as info:
        await page.get_by_role("link", name="label.pdf").click()
    download = await info.value
    assert download.suggested_filename == "label.pdf"
    path = await download.path()
    assert path.read_bytes() == content


async def test_delete_one_and_all_update_every_open_console(page: Page, acs: EmailEmulator) -> None:
    first = await _send_raw(acs, "<p>one</p>")
    await _send_raw(acs, "<p>two</p>")
    await page.goto(f"{acs.endpoint}/_emulator/ui/")
    rows = page.locator(".message")
    await expect(rows).to_have_count(2, timeout=TIMEOUT_MS)

    await page.locator(f'.message[data-operation-id="{first}"]').click()
    await page.locator("#delete-one").click()
    await expect(rows).to_have_count(1)
    assert acs.mailbox.get(first) is None

    page.once("dialog", lambda dialog: dialog.accept())
    await page.locator("#delete-all").click()
    await expect(rows).to_have_count(0)
    await expect(page.locator("#empty")).to_be_visible()
    assert len(acs.mailbox) == 0


async def test_at_phone_width_the_list_and_the_message_take_turns(page: Page, acs: EmailEmulator) -> None:
    operation_id = await _send_raw(acs, "<p>small screen</p>")
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(f"{acs.endpoint}/_emulator/ui/")
    await page.locator(f'.message[data-operation-id="{operation_id}"]').click()
    await expect(page.locator(".list-pane")).to_be_hidden()
    await page.get_by_role("button", name="Desktop").is_visible()
    await page.get_by_role("button", name="Mobile").click()
    await expect(page.locator("#html-frame")).to_have_class("mobile")
    await page.get_by_role("button", name="← All mail").click()
    await expect(page.locator(".list-pane")).to_be_visible()


async def test_an_email_shows_the_delivery_report_the_emulator_sent_for_it(
    page: Page, servicebus: ServiceBusEmulator
) -> None:
    async with EmailEmulator(report_servicebus=servicebus.connection_string, report_delay=0.5) as acs:
        await page.goto(f"{acs.endpoint}/")
        await expect(page.locator("#live")).to_have_text("live", timeout=TIMEOUT_MS)
        message = {
            "senderAddress": "DoNotReply@contoso.test",
            "recipients": {"to": [{"address": "bounce@example.test"}]},
            "content": {"subject": "Your receipt", "plainText": "thanks"},
        }
        async with EmailClient(acs.endpoint, AzureKeyCredential(acs.access_key)) as client:
            operation_id = str((await (await client.begin_send(message)).result())["id"])
        row = page.locator(f'.message[data-operation-id="{operation_id}"]')
        # Accepted by ACS first (no badge), then the report's status arrives on the live stream.
        await expect(row.locator(".badge")).to_have_text("Bounced", timeout=TIMEOUT_MS)
        await row.click()
        await expect(page.locator("#d-outcome .badge")).to_have_text("Bounced")
