"""The ACS Email adapter: one async ``EmailClient`` per process, exceptions translated here.

Every send carries ``operation_id`` (derived from the event id by the pipeline), so a resend of
the same event is recognised by ACS instead of producing a second email. Sends never poll
(``polling=False``): status reads have their own, smaller quota, and a 202 already means ACS took
the email. The SDK's own retries are off (``retry_total=0``): a 429 must pause the whole process,
not one sleeping coroutine, and the worker decides about resends itself.

This module is the only place that catches ``azure.core`` exceptions for ACS. :class:`FakeMailer`
is the seam for unit tests of the pipeline.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Protocol

from azure.communication.email.aio import EmailClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.rest import HttpRequest

from postbus.errors import SettingsError
from postbus.events import Address, NotificationEvent
from postbus.settings import Settings, env_name
from postbus.worker.errors import (
    AmbiguousSend,
    InvalidMessage,
    MessageTooLarge,
    ProcessingError,
    RecipientRejected,
    SystemicError,
    ThrottledError,
    TransientError,
)

__all__ = [
    "API_VERSION",
    "EVENT_ID_HEADER",
    "AcsMailer",
    "FakeMailer",
    "Mailer",
    "OperationStatus",
    "SendResult",
    "build_payload",
    "email_client",
    "parse_connection_string",
    "retry_after_seconds",
]

API_VERSION: Final = "2025-09-01"
#: Custom header on every email so support can find the event behind a message in any mailbox.
EVENT_ID_HEADER: Final = "X-Postbus-Event-Id"
#: When ACS throttles without saying for how long, wait this long (its windows are a minute wide).
DEFAULT_RETRY_AFTER: Final = 60.0


def _addresses(addresses: Sequence[Address]) -> list[dict[str, str]]:
    return [
        {"address": a.address, "displayName": a.display_name} if a.display_name else {"address": a.address}
        for a in addresses
    ]


def build_payload(
    event: NotificationEvent, *, subject: str, html: str, text: str, sender: str
) -> dict[str, Any]:
    """The ACS ``EmailMessage`` body for one event (2025-09-01 schema)."""
    recipients: dict[str, Any] = {"to": _addresses(event.to)}
    if event.cc:
        recipients["cc"] = _addresses(event.cc)
    if event.bcc:
        recipients["bcc"] = _addresses(event.bcc)
    payload: dict[str, Any] = {
        "senderAddress": sender,
        "content": {"subject": subject, "html": html, "plainText": text},
        "recipients": recipients,
        "headers": {**event.headers, EVENT_ID_HEADER: event.id},
    }
    if event.reply_to:
        payload["replyTo"] = _addresses(event.reply_to)
    if event.attachments:
        payload["attachments"] = [
            {"name": a.name, "contentType": a.content_type, "contentInBase64": a.content_base64}
            | ({"contentId": a.content_id} if a.content_id else {})
            for a in event.attachments
        ]
    return payload


class SendResult(Enum):
    """What ACS said to a send."""

    ACCEPTED = "accepted"
    #: The operation id exists already (409): an earlier attempt of this event got through.
    DUPLICATE = "duplicate"


class OperationStatus(Enum):
    """Status of an ACS send operation, as the status endpoint reports it."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Mailer(Protocol):
    """Sends one email to ACS; raises :mod:`worker.errors` exceptions, never SDK ones."""

    async def send(self, payload: Mapping[str, Any], *, operation_id: str) -> SendResult:
        """POST the email; returns when ACS has answered 202 (or 409 for a known operation)."""
        ...

    async def lookup(self, operation_id: str) -> OperationStatus | None:
        """The status of an earlier send, or ``None`` when ACS does not know the operation."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def parse_connection_string(value: str) -> tuple[str, str]:
    """Split ``endpoint=...;accesskey=...`` keeping the endpoint's scheme.

    The SDK's own ``from_connection_string`` forces ``https://``, which a local emulator on plain
    HTTP cannot serve.
    """
    parts = dict(
        (key.strip().lower(), val.strip())
        for key, _, val in (item.partition("=") for item in value.split(";") if item.strip())
    )
    endpoint, key = parts.get("endpoint", ""), parts.get("accesskey", "")
    if not endpoint or not key:
        raise SettingsError(f"{env_name('acs_connection_string')}: expected endpoint=...;accesskey=...")
    if not endpoint.lower().startswith("http"):
        endpoint = f"https://{endpoint}"
    return endpoint.rstrip("/"), key


def retry_after_seconds(headers: Mapping[str, str]) -> float:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``."""
    lowered = {key.lower(): value for key, value in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001)):
        if name in lowered:
            try:
                return max(0.0, float(lowered[name]) * scale)
            except ValueError:
                pass
    value = lowered.get("retry-after")
    if value is None:
        return DEFAULT_RETRY_AFTER
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else DEFAULT_RETRY_AFTER


def _error_text(exc: HttpResponseError) -> tuple[str, str]:
    code = exc.error.code if exc.error is not None and exc.error.code else ""
    message = exc.error.message if exc.error is not None and exc.error.message else str(exc.reason or "")
    target = exc.error.target if exc.error is not None and exc.error.target else ""
    return code or "", f"{code}: {message}".strip(": ") + (f" (target {target})" if target else "")


def translate(exc: BaseException) -> ProcessingError:
    """Map an SDK or transport failure to what the worker does next."""
    if isinstance(exc, ClientAuthenticationError):
        return SystemicError(f"ACS rejected the credentials ({exc.status_code}): {exc.message}")
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = exc.status_code
        code, text = _error_text(exc)
        if status == 429:
            headers = dict(getattr(exc.response, "headers", None) or {})
            return ThrottledError(
                f"ACS throttled the send (429): {text}", retry_after=retry_after_seconds(headers)
            )
        if status in (401, 403):
            return SystemicError(f"ACS refused access ({status}): {text}")
        if status == 404:
            return SystemicError(f"ACS endpoint has no email API (404): {text}")
        if status == 413:
            return MessageTooLarge(f"ACS refused the email as too large (413): {text}")
        if status == 400:
            lowered = text.lower()
            if "senderaddress" in lowered or "domain" in lowered:
                return SystemicError(f"ACS refused the sender (400): {text}")
            if "recipient" in lowered or "address" in lowered or code == "InvalidEmailAddress":
                return RecipientRejected(f"ACS refused the recipients (400): {text}")
            return InvalidMessage(f"ACS refused the email (400): {text}")
        if status >= 500:
            return AmbiguousSend(f"ACS answered {status} to the send: {text}")
        return TransientError(f"ACS answered {status}: {text}")
    if isinstance(exc, ServiceResponseError | TimeoutError):
        # The request left; ACS may have accepted it.
        return AmbiguousSend(f"no answer from ACS after sending: {type(exc).__name__}: {exc}")
    if isinstance(exc, ServiceRequestError):
        return TransientError(f"could not reach ACS: {exc}")
    if isinstance(exc, AzureError):
        return TransientError(f"ACS call failed: {type(exc).__name__}: {exc}")
    return TransientError(f"ACS call failed: {type(exc).__name__}: {exc}")


def email_client(settings: Settings, *, purpose: str, read_timeout: float) -> tuple[EmailClient, Any]:
    """The async ``EmailClient`` Postbus uses, and the credential to close with it (or ``None``).

    Endpoint + key, a connection string (parsed here, keeping an ``http://`` emulator endpoint), or
    DefaultAzureCredential. The SDK's retries are off: callers decide about resends themselves.
    """
    settings.require_acs(purpose)
    credential: Any
    owned: Any = None
    if settings.acs_connection_string is not None:
        endpoint, key = parse_connection_string(settings.acs_connection_string.get_secret_value())
        credential = AzureKeyCredential(key)
    elif settings.acs_access_key is not None:
        endpoint = settings.acs_endpoint or ""
        credential = AzureKeyCredential(settings.acs_access_key.get_secret_value())
    else:
        from azure.identity.aio import DefaultAzureCredential

        endpoint = settings.acs_endpoint or ""
        credential = owned = DefaultAzureCredential()
    client = EmailClient(
        endpoint,
        credential,
        retry_total=0,
        # Otherwise aiohttp looks up proxy variables and ~/.netrc in a thread for every
        # request: a quarter of the worker's CPU at a few hundred sends per second.
        use_env_settings=False,
        connection_timeout=min(10.0, read_timeout),
        read_timeout=read_timeout,
        logging_enable=False,
    )
    return client, owned


class AcsMailer:
    """:class:`Mailer` over the async ACS Email SDK (aiohttp transport).

    Example::

        mailer = AcsMailer.from_settings(settings)
        result = await mailer.send(payload, operation_id=str(uuid5(ns, event.id)))
        await mailer.close()
    """

    def __init__(self, client: EmailClient, *, timeout: float, credential: Any = None) -> None:
        self._client = client
        self._timeout = timeout
        self._credential = credential

    @classmethod
    def from_settings(cls, settings: Settings) -> AcsMailer:
        """Build the client from endpoint + key, connection string, or DefaultAzureCredential."""
        client, owned = email_client(
            settings, purpose="sending email", read_timeout=settings.send_timeout_seconds
        )
        return cls(client, timeout=settings.send_timeout_seconds, credential=owned)

    async def send(self, payload: Mapping[str, Any], *, operation_id: str) -> SendResult:
        try:
            async with asyncio.timeout(self._timeout + 5):
                await self._client.begin_send(dict(payload), operation_id=operation_id, polling=False)
        except HttpResponseError as exc:
            if exc.status_code == 409:
                return SendResult.DUPLICATE
            raise translate(exc) from exc
        except (AzureError, TimeoutError, OSError) as exc:
            raise translate(exc) from exc
        return SendResult.ACCEPTED

    async def lookup(self, operation_id: str) -> OperationStatus | None:
        request = HttpRequest(
            "GET", f"/emails/operations/{operation_id}", params={"api-version": API_VERSION}
        )
        try:
            async with asyncio.timeout(self._timeout + 5):
                response = await self._client.send_request(request)
                if response.status_code == 404:
                    return None
                response.raise_for_status()
                status = str(response.json().get("status", "")).lower()
        except HttpResponseError as exc:
            raise translate(exc) from exc
        except (AzureError, TimeoutError, OSError) as exc:
            raise translate(exc) from exc
        if status == "succeeded":
            return OperationStatus.SUCCEEDED
        if status in ("failed", "canceled"):
            return OperationStatus.FAILED
        return OperationStatus.RUNNING

    async def close(self) -> None:
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()


@dataclass
class FakeMailer:
    """An in-memory :class:`Mailer` for tests: records sends and fails on request.

    ``failures`` is consumed front to back: each send first pops one entry and raises it if it
    is an exception. Operations it accepted are known to :meth:`lookup`.
    """

    failures: list[BaseException | None] = field(default_factory=list)
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    known: dict[str, OperationStatus] = field(default_factory=dict)

    async def send(self, payload: Mapping[str, Any], *, operation_id: str) -> SendResult:
        if self.failures:
            failure = self.failures.pop(0)
            if failure is not None:
                raise failure
        if operation_id in self.known:
            return SendResult.DUPLICATE
        self.sent.append((operation_id, dict(payload)))
        self.known[operation_id] = OperationStatus.SUCCEEDED
        return SendResult.ACCEPTED

    async def lookup(self, operation_id: str) -> OperationStatus | None:
        return self.known.get(operation_id)

    async def close(self) -> None:
        return None

    def operation_ids(self) -> Sequence[str]:
        """Operation ids of the accepted sends, in order."""
        return [operation_id for operation_id, _ in self.sent]
