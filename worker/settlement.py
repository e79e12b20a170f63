"""Settlement: the one place where a processed message is completed, retried, dead-lettered or abandoned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from postbus.events import PROP_LAST_ERROR, WireMessage, encode
from postbus.worker.bus import SettlementFailed, SettlementPort
from postbus.worker.outcome import AlreadySent, DeadLetter, RetryLater, Sent, Systemic
from postbus.worker.pipeline import PROP_GENERATION, PROP_THROTTLED, Processed

__all__ = ["SYSTEMIC_ABANDONS", "SYSTEMIC_RETRY_DELAY", "retry_copy", "settle"]

#: Deliveries a message may be abandoned for during an outage before it is parked as a copy.
SYSTEMIC_ABANDONS: Final = 3
#: When a parked message comes back (the breaker decides when sending resumes).
SYSTEMIC_RETRY_DELAY: Final = 60.0


def retry_copy(processed: Processed, retry: RetryLater, *, now: datetime) -> WireMessage:
    """The scheduled copy of a message for a delayed retry.

    Same event, attempt + 1 (hence a new message id, which duplicate detection lets through), the
    original first-enqueued time, the last error, and every foreign property (trace context) kept.
    """
    decoded = processed.decoded
    if decoded is None:  # pragma: no cover - RetryLater is only produced after a successful decode
        raise ValueError("a retry needs the decoded event")
    properties = decoded.application_properties
    throttled = int(properties.get(PROP_THROTTLED, 0)) + (0 if retry.spend_attempt else 1)
    kept = {key: value for key, value in properties.items() if not key.startswith("postbus-")}
    extra: dict[str, str | int] = {**kept, PROP_THROTTLED: throttled, PROP_LAST_ERROR: retry.error[:500]}
    generation = int(properties.get(PROP_GENERATION, 0))
    if generation:
        extra[PROP_GENERATION] = generation
    return encode(
        decoded.event,
        attempt=decoded.attempt + 1,
        generation=generation,
        first_enqueued=decoded.first_enqueued or now,
        extra_properties=extra,
    )


async def settle(port: SettlementPort, message: Any, processed: Processed) -> None:
    """Act on the outcome; raises :class:`~worker.bus.SettlementFailed` when Service Bus refuses."""
    match processed.outcome:
        case Sent() | AlreadySent():
            await port.complete(message)
        case RetryLater() as retry:
            now = datetime.now(UTC)
            try:
                await port.schedule(
                    retry_copy(processed, retry, now=now), at=now + timedelta(seconds=retry.delay)
                )
            except SettlementFailed:
                # No copy exists, so the original must come back: let Service Bus redeliver it.
                await port.abandon(message)
                raise
            await port.complete(message)
        case DeadLetter(reason=reason, description=description):
            await port.dead_letter(message, reason=reason, description=description)
        case Systemic(error=error):
            if processed.decoded is None or processed.delivery_count + 1 < SYSTEMIC_ABANDONS:
                await port.abandon(message)
                return
            # Abandons count towards MaxDeliveryCount; a long outage must not dead-letter a good
            # message, so after a few abandons it waits as a fresh copy instead.
            retry = RetryLater(SYSTEMIC_RETRY_DELAY, "Systemic", error, spend_attempt=False)
            await settle(port, message, Processed(retry, processed.decoded, processed.operation_id))
