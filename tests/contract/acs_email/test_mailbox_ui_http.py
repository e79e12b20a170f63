"""The mailbox console's HTTP side, over real sockets: pages, live events, filters, safe serving."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
from azure.communication.email.aio import EmailClient
from azure.core.credentials import AzureKeyCredential

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.acs_email.mailbox_ui import EMAIL_CSP


async def _send(
    acs: EmailEmulator, event_id: str, *, tenant: str = "contoso", html: str = "<p>hi</p>"
) -> str:
    message = {
        "senderAddress": "DoNotReply@contoso.test",
        "recipients": {"to": [{"address": f"{tenant}@example.test"}]},
        "content": {"subject": f"About {event_id}", "html": html, "plainText": "hi"},
        "headers": {"X-Postbus-Event-Id": event_id, "X-Postbus-Tenant": tenant},
        "attachments": [
            {
                "name": "a.html",
                "contentType": "text/html",
                "contentInBase64": base64.b64encode(b"<b>x</b>").decode(),
            }
        ],
    }
    async with EmailClient(acs.endpoint, AzureKeyCredential(acs.access_key)) as client:
        poller = await client.begin_send(message)
        return str((await poller.result())["id"])


async def test_the_root_leads_to_the_console_page_under_a_strict_policy(acs: EmailEmulator) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{acs.endpoint}/", allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"] == "/_emulator/ui/"
        async with http.get(f"{acs.endpoint}/_emulator/ui/") as response:
            assert response.status == 200
            policy = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy
            assert "unsafe-inline" not in policy
            assert "<title>Mailbox" in await response.text()
        async with http.get(f"{acs.endpoint}/_emulator/ui/app.js") as response:
            assert response.status == 200
            assert response.content_type == "text/javascript"
        async with http.get(f"{acs.endpoint}/_emulator/ui/../server.py") as response:
            assert response.status == 404


async def test_an_emails_html_is_served_sandboxed_and_attachments_only_as_downloads(
    acs: EmailEmulator,
) -> None:
    operation_id = await _send(acs, "evt-1", html="<script>alert(1)</script><p>x</p>")
    base = f"{acs.endpoint}/_emulator/messages/{operation_id}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/html") as response:
            assert response.headers["Content-Security-Policy"] == EMAIL_CSP
            assert EMAIL_CSP.startswith("sandbox;")
            assert "script-src" not in EMAIL_CSP
            assert "<script>" in await response.text()  # served as sent; the policy is what disarms it
        async with http.get(f"{base}/attachments/0") as response:
            assert response.content_type == "application/octet-stream"
            assert response.headers["Content-Disposition"] == 'attachment; filename="a.html"'
            assert await response.read() == b"<b>x</b>"
        async with http.get(f"{base}/attachments/1") as response:
            assert response.status == 404
        async with http.get(f"{base}/raw") as response:
            raw = await response.text()
            assert "X-Postbus-Event-Id: evt-1" in raw
            assert f"X-ACS-Operation-Id: {operation_id}" in raw
        async with http.get(f"{acs.endpoint}/_emulator/messages/nope/html") as response:
            assert response.status == 404


async def test_filters_find_an_event_by_id_and_by_free_text(acs: EmailEmulator) -> None:
    await _send(acs, "evt-a", tenant="contoso")
    await _send(acs, "evt-b", tenant="fabrikam")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{acs.endpoint}/_emulator/messages", params={"event_id": "evt-b"}) as response:
            [found] = await response.json()
            assert found["eventId"] == "evt-b"
            assert found["tenant"] == "fabrikam"
        async with http.get(
            f"{acs.endpoint}/_emulator/messages", params={"q": "FABRIKAM", "summary": "1"}
        ) as r:
            [summary] = await r.json()
            assert summary["eventId"] == "evt-b"
            assert "html" not in summary
            assert summary["attachments"] == [{"name": "a.html", "contentType": "text/html", "size": 8}]
        async with http.get(f"{acs.endpoint}/_emulator/messages", params={"event_id": "evt"}) as response:
            assert await response.json() == []


async def test_the_event_stream_reports_each_arrival_and_removal(acs: EmailEmulator) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{acs.endpoint}/_emulator/events") as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert await stream.content.readline() == b": connected\n"
        await stream.content.readline()
        operation_id = await _send(acs, "evt-live")
        assert await stream.content.readline() == b"event: added\n"
        added = json.loads((await stream.content.readline()).removeprefix(b"data: "))
        assert added["operationId"] == operation_id
        assert added["eventId"] == "evt-live"
        await stream.content.readline()

        async with http.delete(f"{acs.endpoint}/_emulator/messages/{operation_id}") as response:
            assert response.status == 204
        assert await stream.content.readline() == b"event: removed\n"
        removed = json.loads((await stream.content.readline()).removeprefix(b"data: "))
        assert removed["operationId"] == operation_id
        async with http.delete(f"{acs.endpoint}/_emulator/messages/{operation_id}") as response:
            assert response.status == 404


async def test_mailbox_files_are_named_so_a_person_finds_an_events_email(tmp_path: Path) -> None:
    async with EmailEmulator(mailbox_dir=tmp_path) as acs:
        operation_id = await _send(acs, "order/1001 (retry)")
        await _send(acs, "order-1002")
    names = sorted(p.name for p in tmp_path.iterdir())  # noqa: ASYNC240 - the emulator has stopped
    assert sum(n.endswith(f"_order-1001-retry-_{operation_id}.eml") for n in names) == 1
    assert sum("_order-1002_" in n and n.endswith(".json") for n in names) == 1
