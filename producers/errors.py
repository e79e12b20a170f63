"""What a failed publish tells its caller: :class:`PublishError`, one line, retryable or not."""

from __future__ import annotations

from collections.abc import Sequence

from postbus.bus import (
    AccessDenied,
    AuthenticationFailed,
    BusBusy,
    BusTimeout,
    ConnectionLost,
    MessageSizeExceeded,
    QueueDisabled,
    QueueNotFound,
    QuotaExceeded,
)
from postbus.bus.errors import translate
from postbus.errors import PostbusError

__all__ = ["PublishError", "translate_error"]


class PublishError(PostbusError):
    """Publishing failed; ``str(err)`` is one line naming the queue, namespace or event.

    ``retryable`` says whether trying again later may succeed (busy, timeout, connection lost);
    ``published`` holds the message ids that reached the queue before the failure, so a caller can
    resume without re-sending (re-sends are harmless anyway: duplicate detection drops them).
    """

    def __init__(self, message: str, *, retryable: bool = False, published: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.published = tuple(published)


def _what(labels: Sequence[str]) -> str:
    if len(labels) == 1:
        return f"event {labels[0]!r}"
    return f"a batch of {len(labels)} events starting with {labels[0]!r}"


def translate_error(
    exc: BaseException,
    *,
    queue: str,
    namespace: str,
    labels: Sequence[str] = (),
    published: Sequence[str] = (),
) -> PublishError:
    """The :class:`PublishError` for a Service Bus failure (a ``BusError``, or what the SDK raised)."""
    error = translate(exc, f"send to queue {queue!r}")
    where = f"queue {queue!r} in {namespace}"
    detail = error.detail or type(exc).__name__
    message: str
    retryable = False
    match error:
        case QueueNotFound():
            message = f"queue {queue!r} does not exist in {namespace}"
        case MessageSizeExceeded():
            message = f"{_what(labels) if labels else 'a message'} is too large for {where}: {detail}"
        case AccessDenied():
            message = f"not authorized to send to {where}: {detail}"
        case AuthenticationFailed():
            # A token endpoint that is not ready yet (managed identity at start-up) passes.
            message, retryable = f"could not authenticate to {namespace}: {detail}", True
        case QuotaExceeded():
            message, retryable = f"{where} is full (quota exceeded): {detail}", True
        case BusBusy():
            message, retryable = f"Service Bus is busy ({where}); try again later", True
        case BusTimeout():
            message, retryable = f"timed out sending to {where}: {detail}", True
        case ConnectionLost():
            message, retryable = f"cannot reach Service Bus at {namespace}: {detail}", True
        case QueueDisabled():
            message = f"{where} is disabled"
        case _:
            message, retryable = f"Service Bus error sending to {where}: {detail}", True
    return PublishError(message, retryable=retryable, published=published)
