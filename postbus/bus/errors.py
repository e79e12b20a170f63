"""Service Bus failures, keyed on what the caller does next, and the one translation of the SDK's.

::

    BusError (postbus.errors.PostbusError)   a Service Bus call failed; ``str`` is one line
    ├── BusUnavailable        try again later, on new links if need be
    │   ├── ConnectionLost        the connection or link is gone (the SDK shut its handler down)
    │   ├── BusTimeout            no answer in time: the outcome is unknown
    │   └── BusBusy               the namespace is throttling
    │       └── QuotaExceeded         the queue is full
    ├── BusRefused            retrying cannot help: fix the configuration
    │   ├── QueueNotFound
    │   ├── QueueDisabled
    │   ├── AccessDenied          authenticated, but the identity or key lacks the right
    │   └── AuthenticationFailed  no valid credential (a wrong key, no managed identity, no token)
    ├── LockLost              the message is no longer ours; it comes back when its lock expires
    └── MessageSizeExceeded   the message or batch is larger than the queue accepts

:func:`servicebus_errors` is the boundary, in the manner of httpx's transport exception mapping:
every call into ``azure.servicebus`` runs inside it, and whatever the SDK, ``azure.core`` or
``azure.identity`` raises leaves it as the most specific class above, chained to the original.
Nothing else in Postbus catches those exceptions::

    with servicebus_errors("complete the message"):
        await receiver.complete_message(message)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from azure.core.exceptions import AzureError, ClientAuthenticationError, ResourceNotFoundError
from azure.servicebus import exceptions as sb

from postbus.errors import PostbusError
from postbus.logs import redact

__all__ = [
    "AccessDenied",
    "AuthenticationFailed",
    "BusBusy",
    "BusError",
    "BusRefused",
    "BusTimeout",
    "BusUnavailable",
    "ConnectionLost",
    "LockLost",
    "MessageSizeExceeded",
    "QueueDisabled",
    "QueueNotFound",
    "QuotaExceeded",
    "servicebus_errors",
    "translate",
]


class BusError(PostbusError):
    """A Service Bus call failed: ``what`` was being done, ``detail`` is the first line of the cause."""

    def __init__(self, what: str, detail: str = "") -> None:
        super().__init__(f"could not {what}: {detail}" if detail else f"could not {what}")
        self.what = what
        self.detail = detail


class BusUnavailable(BusError):
    """Transient: the call may succeed later (on new links, if the old ones are gone)."""


class ConnectionLost(BusUnavailable):
    """The connection or link is gone; a receiver or sender that raised this is dead for good."""


class BusTimeout(BusUnavailable):
    """No answer in time; whether the call took effect is unknown."""


class BusBusy(BusUnavailable):
    """The namespace asked the client to back off."""


class QuotaExceeded(BusBusy):
    """The entity is full (its size quota is reached)."""


class BusRefused(BusError):
    """The namespace refused the call for a reason retrying cannot fix: correct the configuration."""


class QueueNotFound(BusRefused):
    """The queue does not exist in this namespace."""


class QueueDisabled(BusRefused):
    """The queue exists but is disabled."""


class AccessDenied(BusRefused):
    """The caller is known but lacks the right (send, listen or manage)."""


class AuthenticationFailed(BusRefused):
    """No usable credential: a wrong SAS key, or no token from DefaultAzureCredential."""


class LockLost(BusError):
    """The message's lock is gone (expired, already settled, receiver closed): it will come back."""


class MessageSizeExceeded(BusError):
    """The message or batch is larger than the queue accepts."""


#: SDK exception -> Postbus class, looked up along the exception's MRO, so the most specific wins.
#: ``ValueError`` is what the SDK raises on a receiver or sender whose handler it has shut down.
_MAPPING: Final[dict[type[BaseException], type[BusError]]] = {
    sb.MessageLockLostError: LockLost,
    sb.SessionLockLostError: LockLost,
    sb.MessageAlreadySettled: LockLost,
    sb.MessageSizeExceededError: MessageSizeExceeded,
    sb.MessagingEntityNotFoundError: QueueNotFound,
    ResourceNotFoundError: QueueNotFound,
    sb.MessagingEntityDisabledError: QueueDisabled,
    sb.ServiceBusAuthorizationError: AccessDenied,
    sb.ServiceBusAuthenticationError: AuthenticationFailed,
    # azure.identity's CredentialUnavailableError and AuthenticationRequiredError derive from it.
    ClientAuthenticationError: AuthenticationFailed,
    sb.ServiceBusQuotaExceededError: QuotaExceeded,
    sb.ServiceBusServerBusyError: BusBusy,
    sb.OperationTimeoutError: BusTimeout,
    TimeoutError: BusTimeout,
    sb.ServiceBusConnectionError: ConnectionLost,
    sb.ServiceBusCommunicationError: ConnectionLost,
    ValueError: ConnectionLost,
    OSError: ConnectionLost,
    sb.ServiceBusError: BusUnavailable,
    AzureError: BusUnavailable,
}
_CAUGHT: Final = (AzureError, ValueError, OSError, TimeoutError)


def _detail(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no answer in time"
    text = str(getattr(exc, "message", "") or exc).strip()
    return redact(text.splitlines()[0]) if text else type(exc).__name__


def translate(exc: BaseException, what: str) -> BusError:
    """The :class:`BusError` for an exception the SDK (or the transport under it) raised."""
    if isinstance(exc, BusError):
        return exc
    for cls in type(exc).__mro__:
        target = _MAPPING.get(cls)
        if target is not None:
            return target(what, _detail(exc))
    return BusUnavailable(what, _detail(exc))


@contextmanager
def servicebus_errors(what: str) -> Iterator[None]:
    """Run one Service Bus call; SDK exceptions leave it as the matching :class:`BusError`.

    ``what`` completes "could not ..." in the message (``"complete the message"``). Keep the block
    to the SDK call: a ``ValueError`` of one's own would be read as a closed receiver.
    """
    try:
        yield
    except _CAUGHT as exc:
        raise translate(exc, what) from exc
