"""The captured mailbox: every accepted email, queryable in memory and optionally written to disk.

Example::

    [mail] = acs.mailbox.messages(recipient="ann@contoso.test")
    assert mail.subject == "Your order" and mail.attachments[0].name == "invoice.pdf"

With a directory, each email is also written as ``<received>_<event id>_<operation id>.eml``
(RFC 5322, ``multipart/alternative`` bodies, attachments included) and a ``.json`` twin, so a person
can find an event's email with ``ls *<event id>*``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Literal, TypeVar

__all__ = [
    "EVENT_ID_HEADER",
    "TENANT_HEADER",
    "CapturedAttachment",
    "CapturedEmail",
    "Mailbox",
    "MailboxChange",
    "to_eml",
]

T = TypeVar("T")

#: Headers the Postbus worker puts on every email; the emulator indexes and searches by them.
EVENT_ID_HEADER = "X-Postbus-Event-Id"
TENANT_HEADER = "X-Postbus-Tenant"

# File names keep what a shell glob can match safely; anything else in an event id becomes "-".
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


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
    ``delivery_status`` is what the emulator's delivery report said afterwards (``Delivered``,
    ``Bounced``, ...; the worst over the recipients), ``None`` until it reported.
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
    delivery_status: str | None = None

    @property
    def recipients(self) -> tuple[str, ...]:
        """All of to, cc and bcc."""
        return self.to + self.cc + self.bcc

    def header(self, name: str) -> str | None:
        """A custom header's value, matched case-insensitively as mail headers are."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    @property
    def event_id(self) -> str | None:
        """The Postbus event behind this email, when a Postbus worker sent it."""
        return self.header(EVENT_ID_HEADER)

    @property
    def tenant(self) -> str | None:
        return self.header(TENANT_HEADER)

    @property
    def file_stem(self) -> str:
        """``<received>_<event id>_<operation id>``: sortable by time, findable by event id."""
        event = _UNSAFE_IN_NAME.sub("-", self.event_id)[:80] if self.event_id else "no-event-id"
        return f"{self.received_at.strftime('%Y%m%dT%H%M%S%fZ')}_{event}_{self.operation_id}"

    def matches(self, query: str) -> bool:
        """Whether ``query`` (case-insensitive) occurs in the event id, a recipient, the subject,
        the tenant, the sender or the operation id: the console's search box."""
        needle = query.lower()
        fields = (self.event_id, self.tenant, self.subject, self.sender, self.operation_id, *self.recipients)
        return any(needle in f.lower() for f in fields if f)

    def summary(self) -> dict[str, object]:
        """The list view's row: no bodies, no attachment content."""
        return {
            "operationId": self.operation_id,
            "eventId": self.event_id,
            "tenant": self.tenant,
            "sender": self.sender,
            "to": list(self.to),
            "cc": list(self.cc),
            "subject": self.subject,
            "receivedAt": self.received_at.isoformat(),
            "outcome": self.outcome,
            "errorCode": self.error_code,
            "deliveryStatus": self.delivery_status,
            "attachments": [
                {"name": a.name, "contentType": a.content_type, "size": len(a.content)}
                for a in self.attachments
            ],
        }

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
            "deliveryStatus": self.delivery_status,
            "eventId": self.event_id,
            "tenant": self.tenant,
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


@dataclass(frozen=True, slots=True)
class MailboxChange:
    """What happened to the mailbox: ``added``, ``updated`` (its delivery report came) or
    ``removed`` (with the email), or ``cleared``."""

    kind: Literal["added", "updated", "removed", "cleared"]
    mail: CapturedEmail | None


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
        self._listeners: list[Callable[[MailboxChange], None]] = []
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
        self._notify(MailboxChange("added", mail))

    def listen(self, listener: Callable[[MailboxChange], None]) -> Callable[[], None]:
        """Call ``listener`` (on the adding thread) for every addition and removal; returns the
        function that stops it. The console's live list is built on this."""
        with self._lock:
            self._listeners.append(listener)

        def stop() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return stop

    def _notify(self, change: MailboxChange) -> None:
        with self._lock:
            listeners = tuple(self._listeners)
        for listener in listeners:
            listener(change)

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
        stem = mail.file_stem
        (self.directory / f"{stem}.eml").write_bytes(to_eml(mail))
        (self.directory / f"{stem}.json").write_text(json.dumps(mail.to_json(), indent=2), encoding="utf-8")

    def messages(
        self,
        recipient: str | None = None,
        subject: str | None = None,
        since: datetime | float | None = None,
        *,
        event_id: str | None = None,
        query: str | None = None,
    ) -> list[CapturedEmail]:
        """Emails matching every filter, in arrival order: a recipient in to/cc/bcc
        (case-insensitive), a subject substring, a receive time at or after ``since`` (aware
        datetime or epoch seconds), the exact Postbus event id, and a free-text ``query`` (see
        :meth:`CapturedEmail.matches`)."""
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
            and (event_id is None or m.event_id == event_id)
            and (query is None or m.matches(query))
        ]

    def get(self, operation_id: str) -> CapturedEmail | None:
        with self._lock:
            return next((m for m in self._messages if m.operation_id == operation_id), None)

    def set_delivery_status(self, operation_id: str, status: str) -> None:
        """Note the delivery report's status on a captured email (gone already: nothing to do)."""
        with self._lock:
            index = next((i for i, m in enumerate(self._messages) if m.operation_id == operation_id), None)
            if index is None:
                return
            mail = self._messages[index] = replace(self._messages[index], delivery_status=status)
        self._notify(MailboxChange("updated", mail))

    def remove(self, operation_id: str) -> bool:
        """Forget one email (its files on disk stay); whether it was there."""
        with self._lock:
            mail = next((m for m in self._messages if m.operation_id == operation_id), None)
            if mail is not None:
                self._messages.remove(mail)
        if mail is None:
            return False
        self._notify(MailboxChange("removed", mail))
        return True

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
        self._notify(MailboxChange("cleared", None))

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)
