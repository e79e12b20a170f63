"""Processing one message, from bytes to an :data:`~worker.outcome.Outcome`.

The steps read like the runbook: decode and validate, (for a redelivered message) ask ACS whether
it already has the email, check ``not_after``, resolve the sender alias, skip suppressed recipients
(when the suppression list is on), render, fetch claim-checked attachments, wait for a send permit,
send. Each failure class becomes a value; nothing here settles a message. Retry
timings come from the :class:`~worker.retry.RetryPolicy`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from postbus.attachments import (
    AttachmentStore,
    AttachmentStoreUnavailable,
    AttachmentUnavailable,
    attachment_store,
    check_out,
)
from postbus.bus import Delivery
from postbus.errors import InvalidEvent
from postbus.events import MAX_REQUEST_BYTES, DecodedMessage, EventIdentity, NotificationEvent, identify
from postbus.logs import mask_address
from postbus.reasons import DeadLetterReason, RetryReason
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
from postbus.worker.mailer import Mailer, SendResult, build_payload, operation_id_for, oversize
from postbus.worker.outcome import AlreadySent, DeadLetter, Outcome, RetryLater, Sent, Systemic
from postbus.worker.retry import RetryPolicy
from postbus.worker.suppression import SuppressionList
from postbus.worker.throttle import SendGate

__all__ = ["Permits", "Pipeline", "Processed", "Renderer"]


class Renderer(Protocol):
    """Renders an event's subject, HTML and text (``worker.rendering.TemplateRenderer``)."""

    def render(self, event_type: str, *, locale: str, data: Mapping[str, Any], tenant: str = "") -> Any:
        """Return an object with ``subject``, ``html`` and ``text``; raise a PermanentError subclass."""
        ...


@dataclass(frozen=True, slots=True)
class Processed:
    """The outcome of one message and what the log line and settlement need to know about it.

    ``undecoded`` identifies an event whose body did not decode (read best-effort from its JSON);
    ``gate_wait`` and ``acs`` are the seconds spent waiting for send permits and in ACS calls;
    ``attachments`` the seconds spent fetching claim-checked attachments (``None``: the event had none).
    """

    outcome: Outcome
    decoded: DecodedMessage | None = None
    operation_id: str | None = None
    delivery_count: int = 0
    undecoded: EventIdentity | None = None
    gate_wait: float = 0.0
    acs: float = 0.0
    attachments: float | None = None

    @property
    def event(self) -> NotificationEvent | None:
        """The event, when the body decoded."""
        return self.decoded.event if self.decoded else None

    @property
    def identity(self) -> EventIdentity | None:
        """Id, type and tenant of the event, from the decoded event or the raw body."""
        event = self.event
        if event is not None:
            return EventIdentity(event.id, event.type, event.tenant)
        return self.undecoded


class _Clock:
    """Seconds one message spends waiting for permits and in ACS calls."""

    __slots__ = ("acs", "gate_wait")

    def __init__(self) -> None:
        self.gate_wait = 0.0
        self.acs = 0.0


class Permits(Protocol):
    """Who hands this pipeline its send permits by tenant (a lane of ``worker.scheduler.LaneScheduler``)."""

    @property
    def lane(self) -> str:
        """The lane whose messages this pipeline sends (a metric dimension)."""
        ...

    async def acquire(self, tenant: str) -> None:
        """Wait for a permit to send a message of ``tenant``."""
        ...


class Pipeline:
    """Turns one :class:`~postbus.bus.Delivery` into one :class:`Processed`.

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
        policy: RetryPolicy | None = None,
        permits: Permits | None = None,
        suppression: SuppressionList | None = None,
        attachments: AttachmentStore | None = None,
    ) -> None:
        self._settings = settings
        # Permits come from the lane scheduler when there is one; verdicts always go to the gate.
        self._permits = permits
        self._suppression = suppression
        # The caller that passes a store owns it; the default (a local directory) holds nothing open.
        self._attachments = attachments if attachments is not None else attachment_store(settings)
        self._telemetry = telemetry or current_telemetry()
        self._renderer = renderer
        self._mailer = mailer
        self._gate = gate
        self._now = now
        self._rng = rng or random.Random()
        self._policy = policy or RetryPolicy.from_settings(settings)

    async def process(self, delivery: Delivery) -> Processed:
        """Decode, validate, render and send one message."""
        try:
            decoded = delivery.decode()
        except InvalidEvent as exc:
            return Processed(
                DeadLetter(DeadLetterReason.INVALID_EVENT, str(exc)), undecoded=identify(delivery.body)
            )
        event = decoded.event
        operation_id = operation_id_for(
            event.id, namespace=self._settings.operation_namespace, generation=decoded.generation
        )
        clock = _Clock()
        if (delivery.delivery_count > 0 or decoded.attempt > 0) and await self._known_to_acs(
            operation_id, clock
        ):
            # Sent before a crash or a lost settlement. Asked first, because what the checks below
            # would say now (a deadline passed, a recipient suppressed, an attachment pruned since)
            # must not dead-letter an email that went out.
            already = AlreadySent(operation_id)
            return Processed(already, decoded, operation_id, delivery.delivery_count, acs=clock.acs)
        if event.not_after is not None and event.not_after <= self._now():
            description = f"not_after {event.not_after.isoformat()} had passed when the worker got it"
            return Processed(DeadLetter(DeadLetterReason.EXPIRED, description), decoded)
        sender = self._settings.senders.get(event.sender)
        if sender is None:
            known = ", ".join(sorted(self._settings.senders)) or "none configured"
            description = f"sender alias {event.sender!r} is not allowed (known: {known})"
            return Processed(DeadLetter(DeadLetterReason.SENDER_NOT_ALLOWED, description), decoded)
        if self._suppression is not None:
            recipients = (a.address for a in (*event.to, *event.cc, *event.bcc))
            if (address := self._suppression.first_of(recipients)) is not None:
                description = (
                    f"recipient {mask_address(address)} bounced or was suppressed within the last "
                    f"{self._settings.suppress_days:g} days"
                )
                return Processed(DeadLetter(DeadLetterReason.RECIPIENT_SUPPRESSED, description), decoded)
        try:
            # No span of its own: rendering is a few hundred microseconds of CPU inside the consumer
            # span, and a failure is on that span as the TemplateError dead-letter reason.
            rendered = self._renderer.render(
                event.type, locale=event.locale, data=event.data, tenant=event.tenant
            )
        except PermanentError as exc:
            return Processed(DeadLetter(exc.reason, str(exc)), decoded)
        fetching: float | None = None
        if any(a.content_ref is not None for a in event.attachments):
            started = time.perf_counter()
            try:
                event = await check_out(event, self._attachments)
            except AttachmentUnavailable as exc:
                dead = DeadLetter(DeadLetterReason.ATTACHMENT_UNAVAILABLE, str(exc))
                return Processed(dead, decoded, attachments=time.perf_counter() - started)
            except AttachmentStoreUnavailable as exc:
                # The blob outlives every retry, so waiting for the store costs nothing but time.
                later = self._delayed_retry(decoded, TransientError(str(exc)))
                return Processed(later, decoded, attachments=time.perf_counter() - started)
            fetching = time.perf_counter() - started
        payload = build_payload(
            event, subject=rendered.subject, html=rendered.html, text=rendered.text, sender=sender
        )
        if (size := oversize(payload, MAX_REQUEST_BYTES)) is not None:
            description = f"rendered email is {size} bytes, ACS accepts at most {MAX_REQUEST_BYTES}"
            return Processed(DeadLetter(DeadLetterReason.MESSAGE_TOO_LARGE, description), decoded)
        outcome = await self._send(payload, operation_id, decoded, clock)
        return Processed(
            outcome,
            decoded,
            operation_id,
            delivery.delivery_count,
            gate_wait=clock.gate_wait,
            acs=clock.acs,
            attachments=fetching,
        )

    async def _send(
        self,
        payload: Mapping[str, Any],
        operation_id: str,
        decoded: DecodedMessage,
        clock: _Clock,
    ) -> Outcome:
        policy = self._policy
        last: TransientError | None = None
        quick_tries = policy.quick_attempts + 1
        throttle_waited = 0.0
        tries = 0
        while tries < quick_tries:
            await self._permit(clock, decoded.event.tenant)
            try:
                result = await self._call_acs(payload, operation_id, clock)
            except ThrottledError as exc:
                self._telemetry.record_throttle()
                self._gate.on_throttled(exc.retry_after)
                throttle_waited += exc.retry_after
                if throttle_waited > policy.max_inline_throttle_wait:
                    return RetryLater(exc.retry_after, RetryReason.THROTTLED, str(exc), spend_attempt=False)
                continue  # the gate holds every send in the process until Retry-After has passed
            except PermanentError as exc:
                return DeadLetter(exc.reason, str(exc))
            except SystemicError as exc:
                return Systemic(str(exc))
            except TransientError as exc:
                last = exc
                tries += 1
                if tries < quick_tries:
                    await asyncio.sleep(policy.quick_retry(tries, rng=self._rng))
                continue
            self._gate.on_accepted()
            if result is SendResult.ACCEPTED:
                event = decoded.event
                self._telemetry.record_accepted(
                    decoded.first_enqueued,
                    event_type=event.type,
                    tenant=event.tenant,
                    lane=self._permits.lane if self._permits is not None else "",
                )
                return Sent(operation_id)
            return AlreadySent(operation_id)
        assert last is not None
        return self._delayed_retry(decoded, last)

    async def _permit(self, clock: _Clock, tenant: str) -> None:
        started = time.perf_counter()
        try:
            if self._permits is not None:
                await self._permits.acquire(tenant)
            else:
                await self._gate.acquire()
        finally:
            clock.gate_wait += time.perf_counter() - started

    async def _call_acs(self, payload: Mapping[str, Any], operation_id: str, clock: _Clock) -> SendResult:
        started = time.perf_counter()
        try:
            with self._telemetry.acs_send(operation_id=operation_id) as call:
                result = await self._mailer.send(payload, operation_id=operation_id)
                call.result = result.value
                return result
        finally:
            clock.acs += time.perf_counter() - started

    async def _known_to_acs(self, operation_id: str, clock: _Clock) -> bool:
        """Whether ACS already has this operation; unknown answers mean "send" (same id is safe)."""
        started = time.perf_counter()
        try:
            return await self._mailer.lookup(operation_id) is not None
        except ProcessingError:
            return False
        finally:
            clock.acs += time.perf_counter() - started

    def _delayed_retry(self, decoded: DecodedMessage, error: TransientError) -> Outcome:
        reason = RetryReason.AMBIGUOUS if isinstance(error, AmbiguousSend) else RetryReason.TRANSIENT
        exhausted = self._policy.budget.exhausted(
            attempt=decoded.spent, first_enqueued=decoded.first_enqueued, now=self._now()
        )
        if exhausted is not None:
            return DeadLetter(DeadLetterReason.RETRIES_EXHAUSTED, f"{error} ({exhausted})")
        delay = self._policy.delayed_retry(spent=decoded.spent, rng=self._rng)
        return RetryLater(delay, reason, str(error))
