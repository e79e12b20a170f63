"""The captured mailbox: every accepted email, queryable in memory and optionally written to disk.

Example::

    [mail] = acs.mailbox.messages(recipient="ann@contoso.test")
    assert mail.subject == "Your order" and mail.attachments[0].name == "invoice.pdf"

With a directory, each email is also written as ``<received>_<operation id>.eml`` (RFC 5322,
``multipart/alternative`` bodies, attachments included) and a ``.json`` twin.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import TypeVar

__all__ = ["CapturedAttachment", "CapturedEmail", "Mailbox", "to_eml"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CapturedAttachment:
    """One attachment, decoded; ``content_id`` is set for inline attachments."""

    name: str
    content_type: str
    content: bytes
    content_id: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "contentType": self.content_type,
            "contentId": self.content_id,
            "size": len(self.content),
            "contentInBase64": base64.b64encode(self.content).decode("ascii"),
        }


@dataclass(frozen=True, slots=True)
class CapturedEmail:
    """An email the emulator accepted, as the service received it.

    ``outcome`` is the terminal status the operation reaches (``Succeeded`` or ``Failed``) and
    ``error_code`` the failure code, so tests can assert bounces without polling.
    """

    operation_id: str
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    reply_to: tuple[str, ...]
    subject: str
    html: str | None
    plain_text: str | None
    headers: Mapping[str, str] = field(hash=False)
    attachments: tuple[CapturedAttachment, ...]
    received_at: datetime
    api_version: str
    display_names: Mapping[str, str] = field(hash=False, default_factory=dict)
    outcome: str = "Succeeded"
    error_code: str | None = None

    @property
    def recipients(self) -> tuple[str, ...]:
        """All of to, cc and bcc."""
        return self.to + self.cc + self.bcc

    def to_json(self) -> dict[str, object]:
        return {
            "operationId": self.operation_id,
            "sender": self.sender,
            "to": list(self.to),
            "cc": list(self.cc),
            "bcc": list(self.bcc),
            "replyTo": list(self.reply_to),
            "displayNames": dict(self.display_names),
            "subject": self.subject,
            "html": self.html,
            "plainText": self.plain_text,
            "headers": dict(self.headers),
            "attachments": [a.to_json() for a in self.attachments],
            "receivedAt": self.received_at.isoformat(),
            "apiVersion": self.api_version,
            "outcome": self.outcome,
            "errorCode": self.error_code,
        }


def _fmt(address: str, names: Mapping[str, str]) -> str:
    name = names.get(address)
    if not name:
        return address
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{address}>'


def to_eml(mail: CapturedEmail) -> bytes:
    """Render ``mail`` as an RFC 5322 message (stdlib ``email``), Bcc kept since this is a capture."""
    msg = EmailMessage()
    names = mail.display_names
    msg["From"] = mail.sender
    msg["To"] = ", ".join(_fmt(a, names) for a in mail.to)
    if mail.cc:
        msg["Cc"] = ", ".join(_fmt(a, names) for a in mail.cc)
    if mail.bcc:
        msg["Bcc"] = ", ".join(_fmt(a, names) for a in mail.bcc)
    if mail.reply_to:
        msg["Reply-To"] = ", ".join(_fmt(a, names) for a in mail.reply_to)
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(mail.received_at)
    msg["Message-ID"] = make_msgid(idstring=mail.operation_id.replace("-", ""), domain="acs-emulator.local")
    msg["X-ACS-Operation-Id"] = mail.operation_id
    for name, value in mail.headers.items():
        if name.lower() not in {"from", "to", "cc", "bcc", "subject", "date", "message-id", "reply-to"}:
            msg[name] = value
    if mail.plain_text is not None:
        msg.set_content(mail.plain_text)
        if mail.html is not None:
            msg.add_alternative(mail.html, subtype="html")
    elif mail.html is not None:
        msg.set_content(mail.html, subtype="html")
    else:
        msg.set_content("")
    for att in mail.attachments:
        maintype, _, subtype = att.content_type.partition("/")
        if not subtype:
            maintype, subtype = "application", "octet-stream"
        disposition = "inline" if att.content_id else "attachment"
        msg.add_attachment(
            att.content,
            maintype=maintype,
            subtype=subtype,
            filename=att.name,
            disposition=disposition,
            cid=f"<{att.content_id}>" if att.content_id else None,
        )
    return bytes(msg)


def _resolve(future: asyncio.Future[T], value: T) -> None:
    """Set a waiter's result on its own loop, unless it finished (timed out) meanwhile."""
    if not future.done():
        future.set_result(value)


class Mailbox:
    """Thread-safe list of :class:`CapturedEmail`, in arrival order."""

    def __init__(self, directory: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._messages: list[CapturedEmail] = []
        self._watchers: list[Callable[[], None]] = []
        self.directory = directory
        if directory is not None:
            # Fail at start, not at the first accepted email: the directory must exist or be
            # creatable, and take files.
            directory.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=directory).close()

    def add(self, mail: CapturedEmail) -> None:
        with self._lock:
            self._messages.append(mail)
            watchers = tuple(self._watchers)
        for watcher in watchers:
            watcher()

    async def wait_for(
        self,
        count: int = 1,
        *,
        timeout: float,  # noqa: ASYNC109 - a test's deadline
        recipient: str | None = None,
    ) -> list[CapturedEmail]:
        """Wait until at least ``count`` emails (to ``recipient``, if given) arrived; returns them.

        Woken by each arrival, never polled; ``TimeoutError`` after ``timeout`` seconds::

            (mail,) = await acs.mailbox.wait_for(count=1, timeout=15)
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[CapturedEmail]] = loop.create_future()

        def check() -> None:
            if recipient is None and len(self) < count:
                return  # the common case, without copying the list on every arrival
            found = self.messages(recipient=recipient)
            if len(found) >= count:
                loop.call_soon_threadsafe(_resolve, done, found)

        with self._lock:
            self._watchers.append(check)
        try:
            check()
            async with asyncio.timeout(timeout):
                return await done
        finally:
            with self._lock:
                self._watchers.remove(check)

    def write(self, mail: CapturedEmail) -> None:
        """Write the ``.eml`` and ``.json`` files (blocking; the server calls it in a worker thread)."""
        if self.directory is None:
            return
        stem = f"{mail.received_at.strftime('%Y%m%dT%H%M%S%fZ')}_{mail.operation_id}"
        (self.directory / f"{stem}.eml").write_bytes(to_eml(mail))
        (self.directory / f"{stem}.json").write_text(json.dumps(mail.to_json(), indent=2), encoding="utf-8")

    def messages(
        self,
        recipient: str | None = None,
        subject: str | None = None,
        since: datetime | float | None = None,
    ) -> list[CapturedEmail]:
        """Emails matching every filter: a recipient in to/cc/bcc (case-insensitive), a subject
        substring, and a receive time at or after ``since`` (aware datetime or epoch seconds)."""
        if isinstance(since, int | float):
            since = datetime.fromtimestamp(since, UTC)
        wanted = recipient.lower() if recipient else None
        with self._lock:
            found = list(self._messages)
        return [
            m
            for m in found
            if (wanted is None or any(a.lower() == wanted for a in m.recipients))
            and (subject is None or subject in m.subject)
            and (since is None or m.received_at >= since)
        ]

    def get(self, operation_id: str) -> CapturedEmail | None:
        with self._lock:
            return next((m for m in self._messages if m.operation_id == operation_id), None)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)
