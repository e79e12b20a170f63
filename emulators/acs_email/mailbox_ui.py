"""The mailbox console: captured email in the browser, live, at ``/_emulator/ui/``.

Routes (no auth, like the rest of ``/_emulator/``; the emulator binds 127.0.0.1 unless told
otherwise):

- ``GET /`` redirects to ``/_emulator/ui/``; the page, its script and stylesheet are static files.
- ``GET /_emulator/events``: server-sent events, one ``added``, ``updated`` (the delivery report's
  status arrived: ``deliveryStatus``), ``removed`` or ``cleared`` event per mailbox change, so the
  list fills while a spike drains without polling.
- ``GET /_emulator/messages/{id}/html``: the email's HTML, served with a ``sandbox`` Content-Security-
  Policy that forbids scripts, plugins, forms and every fetch except inline images: a hostile
  template cannot script the console even when the frame is opened on its own.
- ``GET /_emulator/messages/{id}/raw``: the RFC 5322 source; ``.../attachments/{n}``: one attachment
  as sent, as a download; ``DELETE /_emulator/messages/{id}``: forget one email.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Final

from aiohttp import web

from postbus.emulators.acs_email.dataplane import STATE_KEY
from postbus.emulators.acs_email.mailbox import CapturedEmail, MailboxChange, to_eml

__all__ = ["EMAIL_CSP", "UI_CSP", "add_mailbox_ui_routes"]

UI_PATH: Final = "/_emulator/ui/"

#: The console page itself: its own script and style only, frames only from this origin.
UI_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: A captured email's HTML: a unique opaque origin with scripts off (``sandbox`` with no
#: allowances), and nothing loaded from anywhere but inline styles and data: images.
EMAIL_CSP: Final = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
_STATIC: Final = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
}
# How often an idle event stream says it is alive, so proxies and the browser keep it open.
_KEEPALIVE_S: Final = 15.0


def add_mailbox_ui_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", _root)
    r.add_get(UI_PATH, _static)
    r.add_get(UI_PATH + "{name}", _static)
    r.add_get("/_emulator/events", _events)
    r.add_get("/_emulator/messages/{operation_id}/html", _html)
    r.add_get("/_emulator/messages/{operation_id}/raw", _raw)
    r.add_get("/_emulator/messages/{operation_id}/attachments/{index}", _attachment)
    r.add_delete("/_emulator/messages/{operation_id}", _delete)


async def _root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(UI_PATH)


async def _static(request: web.Request) -> web.Response:
    name = request.match_info.get("name") or "index.html"
    content_type = _STATIC.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    body = resources.files("postbus.emulators.acs_email.ui").joinpath(name).read_bytes()
    return web.Response(
        body=body,
        content_type=content_type,
        charset="utf-8",
        headers={
            "Content-Security-Policy": UI_CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


def _mail(request: web.Request) -> CapturedEmail:
    mail = request.app[STATE_KEY].mailbox.get(request.match_info["operation_id"])
    if mail is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": {"code": "NotFound", "message": "no such message"}}),
            content_type="application/json",
        )
    return mail


async def _html(request: web.Request) -> web.Response:
    mail = _mail(request)
    body = mail.html if mail.html is not None else "<p><em>This email has no HTML part.</em></p>"
    return web.Response(
        text=body,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": EMAIL_CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


async def _raw(request: web.Request) -> web.Response:
    mail = _mail(request)
    eml = await asyncio.to_thread(to_eml, mail)
    disposition = "attachment" if "download" in request.query else "inline"
    return web.Response(
        body=eml,
        content_type="text/plain",
        charset="utf-8",
        headers={
            "Content-Disposition": f'{disposition}; filename="{mail.file_stem}.eml"',
            "X-Content-Type-Options": "nosniff",
        },
    )


async def _attachment(request: web.Request) -> web.Response:
    mail = _mail(request)
    try:
        attachment = mail.attachments[int(request.match_info["index"])]
    except (ValueError, IndexError):
        raise web.HTTPNotFound() from None
    # Served as a download with a neutral type, so an HTML or SVG attachment never renders in
    # the console's origin.
    safe_name = attachment.name.replace('"', "").replace("\\", "")
    return web.Response(
        body=attachment.content,
        content_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{safe_name}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )


async def _delete(request: web.Request) -> web.Response:
    if not request.app[STATE_KEY].mailbox.remove(request.match_info["operation_id"]):
        raise web.HTTPNotFound()
    return web.Response(status=204)


def _event(change: MailboxChange) -> bytes:
    data = change.mail.summary() if change.mail is not None else {}
    return f"event: {change.kind}\ndata: {json.dumps(data)}\n\n".encode()


async def _next_change(queue: asyncio.Queue[MailboxChange], stopping: asyncio.Event) -> MailboxChange | None:
    """The next change; ``None`` when the stream has been idle for the keep-alive interval.
    Raises ``EOFError`` when the server stops, so an open console never holds a shutdown."""
    getter = asyncio.ensure_future(queue.get())
    stopper = asyncio.ensure_future(stopping.wait())
    try:
        done, _ = await asyncio.wait({getter, stopper}, timeout=_KEEPALIVE_S, return_when="FIRST_COMPLETED")
    finally:
        for task in (getter, stopper):
            task.cancel()
    if getter in done:
        return getter.result()
    if stopper in done:
        raise EOFError
    return None


async def _events(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[MailboxChange] = asyncio.Queue()

    def on_change(change: MailboxChange) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, change)

    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    stop_listening = state.mailbox.listen(on_change)
    stopping = state.stopping or asyncio.Event()
    try:
        await response.write(b": connected\n\n")
        while True:
            change = await _next_change(queue, stopping)
            await response.write(_event(change) if change is not None else b": keep-alive\n\n")
    except (EOFError, ConnectionResetError):
        pass  # the server is stopping, or the browser went away
    finally:
        stop_listening()
    return response
