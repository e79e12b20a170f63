"""Settlement: the one place where a processed message is completed, retried, dead-lettered or abandoned.

:func:`settle` is one ``match`` on the outcome; :func:`give_back` is the abandon of a message
whose handler was cancelled (shutdown). Both raise :class:`~postbus.bus.errors.BusError` when
Service Bus refuses; the message then comes back when its lock expires, and its ACS operation id
keeps the redelivery from sending twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from postbus.bus import BusError, Delivery, SettlementPort
from postbus.events import retry_wire
from postbus.reasons import RetryReason
from postbus.worker.outcome import AlreadySent, DeadLetter, RetryLater, Sent, Systemic
from postbus.worker.pipeline import Processed
from postbus.worker.retry import RetryPolicy

__all__ = ["give_back", "settle"]


async def settle(
    port: SettlementPort, delivery: Delivery, processed: Processed, *, policy: RetryPolicy
) -> None:
    """Act on the outcome of ``delivery``."""
    match processed.outcome:
        case Sent() | AlreadySent():
            await port.complete(delivery)
        case RetryLater() as retry:
            await _retry_later(port, delivery, processed, retry)
        case DeadLetter(reason=reason, description=description):
            await port.dead_letter(delivery, reason=reason, description=description)
        case Systemic(error=error) if processed.decoded is not None and policy.parks_systemic(
            processed.delivery_count
        ):
            # Abandons count towards MaxDeliveryCount; a long outage must not dead-letter a good
            # message, so after a few abandons it waits as a fresh copy that spends no attempt.
            parked = RetryLater(policy.systemic_retry_delay, RetryReason.SYSTEMIC, error, spend_attempt=False)
            await _retry_later(port, delivery, processed, parked)
        case Systemic():
            await port.abandon(delivery)


async def give_back(port: SettlementPort, delivery: Delivery) -> None:
    """Abandon a message whose handling was cut short, so Service Bus redelivers it at once."""
    await port.abandon(delivery)


async def _retry_later(
    port: SettlementPort, delivery: Delivery, processed: Processed, retry: RetryLater
) -> None:
    """Schedule the retry copy, then complete the original; abandon it if no copy could be made."""
    if processed.decoded is None:  # pragma: no cover - RetryLater is only produced after a successful decode
        raise ValueError("a retry needs the decoded event")
    now = datetime.now(UTC)
    copy = retry_wire(processed.decoded, error=retry.error, spend_attempt=retry.spend_attempt, now=now)
    try:
        await port.schedule(copy, at=now + timedelta(seconds=retry.delay))
    except BusError:
        # No copy exists, so the original must come back: let Service Bus redeliver it.
        await port.abandon(delivery)
        raise
    await port.complete(delivery)
