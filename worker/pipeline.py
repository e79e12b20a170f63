"""Processing one message, from bytes to an :data:`~worker.outcome.Outcome`.

The steps read like the runbook: decode and validate, check ``not_after``, resolve the sender
alias, render, (for a redelivered message) ask ACS whether it already has the email, wait for a
send permit, send. Each failure class becomes a value; nothing here settles a message.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from uuid import UUID, uuid5

from postbus.errors import InvalidEvent
from postbus.events import MAX_REQUEST_BYTES, DecodedMessage, NotificationEvent, decode
from postbus.settings import Settings
from postbus.telemetry import Telemetry, current_telemetry
from postbus.worker.errors import (
    AmbiguousSend,
    PermanentError,
    ProcessingError,
    SystemicError,
    ThrottledError,
    TransientError,
)
from postbus.worker.mailer import Mailer, SendResult, build_payload
from postbus.worker.outcome import AlreadySent, DeadLetter, Outcome, RetryLater, Sent, Systemic
from postbus.worker.retry import RetryBudget, backoff
from postbus.worker.throttle import SendGate

__all__ = [
    "PROP_GENERATION",
    "PROP_THROTTLED",
    "Delivery",
    "Pipeline",
    "Processed",
    "Renderer",
    "operation_id_for",
]

#: Delayed retries that spend no attempt (throttling, a systemic outage): not counted in the budget.
PROP_THROTTLED: Final = "postbus-throttled"
#: Send generation after a dead-letter replay; each generation gets its own ACS operation id.
PROP_GENERATION: Final = "postbus-replay"
#: Longest 429 pause the pipeline sits out while holding the message (the lock is being renewed).
MAX_INLINE_THROTTLE_WAIT: Final = 30.0
#: Pause between quick in-process retries of a transient failure (doubled each time, jittered).
QUICK_RETRY_DELAY: Final = 0.2


class Renderer(Protocol):
    """Renders an event's subject, HTML and text (``worker.rendering.TemplateRenderer``)."""

    def render(self, event_type: str, *, locale: str, data: Mapping[str, Any], tenant: str = "") -> Any:
        """Return an object with ``subject``, ``html`` and ``text``; raise a PermanentError subclass."""
        ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """A received queue message, free of SDK types."""

    body: bytes
    content_type: str | None
    application_properties: Mapping[Any, Any]
    message_id: str
    delivery_count: int
    sequence_number: int | None = None


@dataclass(frozen=True, slots=True)
class Processed:
    """The outcome of one message and what the log line and settlement need to know about it."""

    outcome: Outcome
    decoded: DecodedMessage | None = None
    operation_id: str | None = None
    delivery_count: int = 0

    @property
    def event(self) -> NotificationEvent | None:
        """The event, when the body decoded."""
        return self.decoded.event if self.decoded else None


def operation_id_for(event_id: str, *, namespace: UUID, generation: int = 0) -> str:
    """The ACS operation id of an event: stable across redeliveries and retries of one generation."""
    name = event_id if generation == 0 else f"{event_id}#replay{generation}"
    return str(uuid5(namespace, name))


def _int_property(properties: Mapping[str, str | int], name: str) -> int:
    value = properties.get(name, 0)
    try:
        return max(0, int(value))
    except ValueError:
        return 0


class Pipeline:
    """Turns one :class:`Delivery` into one :class:`Processed`.

    Example::

        pipeline = Pipeline(settings=settings, renderer=renderer, mailer=mailer, gate=gate)
        processed = await pipeline.process(delivery)
    """

    def __init__(
        self,
        *,
        settings: Settings,
        renderer: Renderer,
        mailer: Mailer,
        gate: SendGate,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._settings = settings
        self._telemetry = telemetry or current_telemetry()
        self._renderer = renderer
        self._mailer = mailer
        self._gate = gate
        self._now = now
        self._rng = rng or random.Random()
        self._budget = RetryBudget(
            max_attempts=settings.retry_max_attempts, max_age=settings.retry_max_age_seconds
        )

    async def process(self, delivery: Delivery) -> Processed:
        """Decode, validate, render and send one message."""
        try:
            decoded = decode(
                delivery.body,
                content_type=delivery.content_type,
                application_properties=delivery.application_properties,
            )
        except InvalidEvent as exc:
            return Processed(DeadLetter("InvalidEvent", str(exc)))
        event = decoded.event
        if event.not_after is not None and event.not_after <= self._now():
            description = f"not_after {event.not_after.isoformat()} had passed when the worker got it"
            return Processed(DeadLetter("Expired", description), decoded)
        sender = self._settings.senders.get(event.sender)
        if sender is None:
            known = ", ".join(sorted(self._settings.senders)) or "none configured"
            description = f"sender alias {event.sender!r} is not allowed (known: {known})"
            return Processed(DeadLetter("SenderNotAllowed", description), decoded)
        try:
            with self._telemetry.render(event.type):
                rendered = self._renderer.render(
                    event.type, locale=event.locale, data=event.data, tenant=event.tenant
                )
        except PermanentError as exc:
            return Processed(DeadLetter(exc.reason, str(exc)), decoded)
        payload = build_payload(
            event, subject=rendered.subject, html=rendered.html, text=rendered.text, sender=sender
        )
        size = len(json.dumps(payload))
        if size > MAX_REQUEST_BYTES:
            description = f"rendered email is {size} bytes, ACS accepts at most {MAX_REQUEST_BYTES}"
            return Processed(DeadLetter("MessageTooLarge", description), decoded)
        generation = _int_property(decoded.application_properties, PROP_GENERATION)
        operation_id = operation_id_for(
            event.id, namespace=self._settings.operation_namespace, generation=generation
        )
        outcome = await self._send(payload, operation_id, decoded, redelivered=delivery.delivery_count > 0)
        return Processed(outcome, decoded, operation_id, delivery.delivery_count)

    async def _send(
        self, payload: Mapping[str, Any], operation_id: str, decoded: DecodedMessage, *, redelivered: bool
    ) -> Outcome:
        if (redelivered or decoded.attempt > 0) and await self._known_to_acs(operation_id):
            return AlreadySent(operation_id)
        last: TransientError | None = None
        quick_tries = self._settings.retry_quick_attempts + 1
        throttle_waited = 0.0
        tries = 0
        while tries < quick_tries:
            await self._gate.acquire()
            try:
                with self._telemetry.acs_send(operation_id=operation_id) as call:
                    result = await self._mailer.send(payload, operation_id=operation_id)
                    call.result = result.value
            except ThrottledError as exc:
                self._telemetry.record_throttle()
                self._gate.on_throttled(exc.retry_after)
                throttle_waited += exc.retry_after
                if throttle_waited > MAX_INLINE_THROTTLE_WAIT:
                    return RetryLater(exc.retry_after, "Throttled", str(exc), spend_attempt=False)
                continue  # the gate holds every send in the process until Retry-After has passed
            except PermanentError as exc:
                return DeadLetter(exc.reason, str(exc))
            except SystemicError as exc:
                return Systemic(str(exc))
            except TransientError as exc:
                last = exc
                tries += 1
                if tries < quick_tries:
                    await asyncio.sleep(self._rng.uniform(0, QUICK_RETRY_DELAY * 2**tries))
                continue
            self._gate.on_accepted()
            if result is SendResult.ACCEPTED:
                event = decoded.event
                self._telemetry.record_accepted(
                    decoded.first_enqueued, event_type=event.type, tenant=event.tenant
                )
                return Sent(operation_id)
            return AlreadySent(operation_id)
        assert last is not None
        return self._delayed_retry(decoded, last)

    async def _known_to_acs(self, operation_id: str) -> bool:
        """Whether ACS already has this operation; unknown answers mean "send" (same id is safe)."""
        try:
            return await self._mailer.lookup(operation_id) is not None
        except ProcessingError:
            return False

    def _delayed_retry(self, decoded: DecodedMessage, error: TransientError) -> Outcome:
        reason = "Ambiguous" if isinstance(error, AmbiguousSend) else "Transient"
        spent = decoded.attempt - _int_property(decoded.application_properties, PROP_THROTTLED)
        exhausted = self._budget.exhausted(
            attempt=spent, first_enqueued=decoded.first_enqueued, now=self._now()
        )
        if exhausted is not None:
            return DeadLetter("RetriesExhausted", f"{error} ({exhausted})")
        delay = backoff(
            spent,
            base=self._settings.retry_backoff_base_seconds,
            cap=self._settings.retry_backoff_cap_seconds,
            rng=self._rng,
        )
        return RetryLater(delay, reason, str(error))
