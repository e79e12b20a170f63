"""The worker loop: receive, process, settle, one log line — until told to stop.

One process runs ``POSTBUS_CONCURRENCY`` handlers over a PEEK_LOCK receiver with prefetch. A
message's lock is renewed while its handler works and no longer. Settlements run concurrently
because each one is a round trip. On SIGTERM the loop stops receiving, gives in-flight work the
shutdown grace, abandons what is left so Service Bus redelivers it at once, and logs one summary
line.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusError

from postbus.logs import get_logger, recipient_domain
from postbus.settings import Settings
from postbus.telemetry import BREAKER_STATE_CODES, Processing, Telemetry, current_telemetry
from postbus.worker.breaker import CircuitBreaker
from postbus.worker.bus import ServiceBusPort, SettlementFailed, delivery_from, servicebus_client
from postbus.worker.health import HealthServer, HealthStatus
from postbus.worker.mailer import AcsMailer, Mailer
from postbus.worker.outcome import AlreadySent, DeadLetter, RetryLater, Sent, Systemic
from postbus.worker.pipeline import Pipeline, Processed, Renderer
from postbus.worker.settlement import settle
from postbus.worker.throttle import SendGate, gate_for_quota

__all__ = ["LoopHeartbeat", "Worker", "effective_prefetch", "holding_limit"]

log = get_logger("postbus.worker")

#: A prefetched message whose lock ends sooner than this is left to expire and come back.
MIN_LOCK_LEFT: Final = timedelta(seconds=2)
#: In-flight work gets this long to settle on the old links before a reconnect replaces them.
RECONNECT_GRACE: Final = 5.0
#: Seconds of paced sends a process holds messages for (see :func:`holding_limit`).
HOLD_SECONDS: Final = 2.0
#: Period of the event-loop heartbeat that tells a waiting receive from a spinning one.
HEARTBEAT_SECONDS: Final = 0.1
#: How long one receive call waits for messages (bounds how fast the loop notices a stop).
RECEIVE_WAIT: Final = 1.0


def effective_prefetch(settings: Settings) -> int:
    """Prefetch, bounded when a quota paces the sends.

    A buffered message's lock is not renewed until a handler takes it, and a replica's share of a
    shared quota can be small; a deep buffer would also keep messages from replicas that have
    quota to spare at the end of a spike. One round of handlers' worth is enough.
    """
    if settings.quota_per_minute <= 0 and settings.quota_per_hour <= 0:
        return settings.prefetch
    return min(settings.prefetch, settings.concurrency)


def holding_limit(rate: float, concurrency: int) -> int:
    """How many messages this process should hold at once when its sends are paced at ``rate``/s.

    Messages held beyond a couple of seconds of sends just wait for permits while other replicas,
    whose share of the quota is idle, could send them.
    """
    if not math.isfinite(rate):
        return concurrency
    return max(1, min(concurrency, math.ceil(rate * HOLD_SECONDS)))


class LoopHeartbeat:
    """Counts event-loop turns, to tell a receive that waited from one that spun without yielding.

    After some connection failures the SDK's receiver stops working without raising: a receive
    either polls the dead connection for its whole wait without suspending, or returns no messages
    at once, every time. Nothing else in the process runs meanwhile, not even the SIGTERM handler.
    An empty receive while this counter did not move is that case, and the worker replaces its
    links.
    """

    def __init__(self) -> None:
        self.beats = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopHeartbeat:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            self.beats += 1


def _outcome_name(processed: Processed) -> str:
    match processed.outcome:
        case Sent():
            return "sent"
        case AlreadySent():
            return "already_sent"
        case RetryLater():
            return "retry_scheduled"
        case DeadLetter():
            return "dead_lettered"
        case Systemic():
            return "abandoned"


class Worker:
    """Consumes the queue until ``stop`` is set.

    Example::

        stop = asyncio.Event()
        summary = await Worker(settings).run(stop)
    """

    def __init__(
        self,
        settings: Settings,
        *,
        renderer: Renderer | None = None,
        mailer: Mailer | None = None,
        gate: SendGate | None = None,
        breaker: CircuitBreaker | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._settings = settings
        self._telemetry = telemetry
        self._renderer = renderer
        self._mailer = mailer
        self._gate = gate or gate_for_quota(settings.quota_per_minute, settings.quota_per_hour)
        self._breaker = breaker or CircuitBreaker(
            cooldown=settings.breaker_cooldown_seconds, max_cooldown=settings.breaker_cooldown_max_seconds
        )
        self._connected = False
        self._inflight: set[asyncio.Task[None]] = set()
        self.counts: Counter[str] = Counter()

    @property
    def ready(self) -> bool:
        """Connected to the queue and the circuit breaker is closed."""
        return self._connected and self._breaker.ready

    def health(self) -> HealthStatus:
        """Snapshot for ``/healthz`` and ``/readyz``."""
        detail: dict[str, Any] = {
            "connected": self._connected,
            "breaker": self._breaker.state.name.lower(),
            "inflight": len(self._inflight),
            "send_rate": round(self._gate.rate, 3),
        }
        if not self._breaker.ready and self._breaker.last_error:
            detail["last_error"] = self._breaker.last_error
        return HealthStatus(live=True, ready=self.ready, detail=detail)

    async def run(self, stop: asyncio.Event) -> Counter[str]:
        """Run until ``stop`` is set; returns the count of messages by outcome."""
        settings = self._settings
        if self._renderer is None:
            from postbus.worker.rendering import TemplateRenderer

            self._renderer = TemplateRenderer(user_dir=settings.templates_dir)
        mailer = self._mailer or AcsMailer.from_settings(settings)
        telemetry = self._telemetry = self._telemetry or current_telemetry()
        pipeline = Pipeline(
            settings=settings, renderer=self._renderer, mailer=mailer, gate=self._gate, telemetry=telemetry
        )
        health = HealthServer(port=settings.health_port, status=self.health) if settings.health_port else None
        if health is not None:
            await health.start()
        prefetch = effective_prefetch(settings)
        log.info("worker starting", queue=settings.queue, concurrency=settings.concurrency, prefetch=prefetch)
        unwatch = telemetry.watch(
            send_rate=lambda: self._gate.rate,
            breaker_state=lambda: BREAKER_STATE_CODES[self._breaker.state.value],
        )
        try:
            async with servicebus_client(settings) as client:
                while not stop.is_set():
                    # A receiver the SDK has shut down (after a dropped connection, say) stays dead:
                    # every call on it fails. So each pass opens fresh links and, when receiving
                    # breaks, lets in-flight work settle before opening new ones.
                    receiver = client.get_queue_receiver(
                        settings.queue, receive_mode=ServiceBusReceiveMode.PEEK_LOCK, prefetch_count=prefetch
                    )
                    sender = client.get_queue_sender(settings.queue)
                    async with receiver, sender:
                        port = ServiceBusPort(receiver, sender)
                        self._connected = True
                        async with LoopHeartbeat() as heartbeat:
                            await self._receive_loop(stop, receiver, port, pipeline, heartbeat)
                        self._connected = False
                        await self._drain(port, final=stop.is_set())
                    if not stop.is_set():
                        self.counts["reconnects"] += 1
                        log.warning("reconnecting to the queue", reconnects=self.counts["reconnects"])
                        await self._wait_for(stop, asyncio.sleep(RECEIVE_WAIT))
        finally:
            unwatch()
            self._connected = False
            if self._mailer is None:
                await mailer.close()
            if health is not None:
                await health.stop()
        return self.counts

    async def _receive_loop(
        self,
        stop: asyncio.Event,
        receiver: ServiceBusReceiver,
        port: ServiceBusPort,
        pipeline: Pipeline,
        heartbeat: LoopHeartbeat,
    ) -> None:
        concurrency = self._settings.concurrency
        while not stop.is_set():
            probing = not self._breaker.ready
            if probing:
                # Open or half-open: nothing is received until the breaker lets one probe through.
                if not self._breaker.allow():
                    await self._wait_for(stop, self._breaker.wait_until_allowed())
                    continue
                free = 1
            else:
                free = holding_limit(self._gate.rate, concurrency) - len(self._inflight)
                if free <= 0:
                    await self._wait_for(
                        stop, asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)
                    )
                    continue
            beats, asked = heartbeat.beats, time.monotonic()
            try:
                messages = await receiver.receive_messages(max_message_count=free, max_wait_time=RECEIVE_WAIT)
            except (ServiceBusError, ValueError) as exc:
                # The SDK has already retried; its handler may now be shut down for good: reconnect.
                log.warning("receive failed", error=str(exc))
                if probing:
                    self._breaker.release_probe()
                return
            if not messages and heartbeat.beats == beats:
                # A healthy empty receive waits RECEIVE_WAIT with the loop turning. One that came back
                # empty without a single beat either spun for its whole wait or did not wait at all:
                # both are what the SDK does over a connection it has given up on without raising.
                self.counts["stalled_receives"] += 1
                log.warning(
                    "receiver returned without waiting; reconnecting",
                    waited_ms=round((time.monotonic() - asked) * 1000, 1),
                )
                if probing:
                    self._breaker.release_probe()
                return
            if probing and not messages:
                self._breaker.release_probe()
            for message in messages:
                task = asyncio.create_task(self._handle_safely(message, port, pipeline, probe=probing))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            # Yield on every pass, whatever the receiver did: handlers, renewals and the SIGTERM
            # handler must run even if a receive never suspends.
            await asyncio.sleep(0)

    @staticmethod
    async def _wait_for(stop: asyncio.Event, awaitable: Any) -> None:
        """Await ``awaitable`` or until ``stop`` is set, whichever comes first."""
        work = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (work, stopper):
                if not future.done():
                    future.cancel()

    async def _handle_safely(self, message: ServiceBusReceivedMessage, *args: Any, probe: bool) -> None:
        """Run :meth:`_handle`; a bug or an SDK surprise costs one message's lock, never the worker."""
        try:
            await self._handle(message, *args, probe=probe)
        except Exception:
            self.counts["failed"] += 1
            log.exception("message handling failed", message_id=message.message_id)
            if probe:
                self._breaker.release_probe()

    async def _handle(
        self,
        message: ServiceBusReceivedMessage,
        port: ServiceBusPort,
        pipeline: Pipeline,
        *,
        probe: bool,
    ) -> None:
        started = time.perf_counter()
        locked_until = message.locked_until_utc
        if locked_until is not None and locked_until - datetime.now(UTC) < MIN_LOCK_LEFT:
            # Waited too long in the prefetch buffer: it is (nearly) back on the queue already.
            log.info(
                "message skipped", reason="lock expired in prefetch buffer", message_id=message.message_id
            )
            self.counts["lock_expired"] += 1
            if probe:
                self._breaker.release_probe()
            return
        delivery = delivery_from(message)
        telemetry = self._telemetry or current_telemetry()
        # Everything from here to the log line runs inside the consumer span, so the line carries its ids.
        with telemetry.processing(
            queue=self._settings.queue,
            properties=delivery.application_properties,
            message_id=delivery.message_id,
            delivery_count=delivery.delivery_count,
        ) as processing:
            # The lock is renewed until settlement ends, and not after: a message whose
            # settlement failed must come back when its lock expires.
            async with port.keep_locked(message):
                try:
                    processed = await pipeline.process(delivery)
                except asyncio.CancelledError:
                    await asyncio.shield(self._abandon(port, message))
                    raise
                self._record_breaker(processed, probe=probe)
                settle_error = ""
                try:
                    await settle(port, message, processed)
                except SettlementFailed as exc:
                    settle_error = str(exc)
            outcome = _outcome_name(processed)
            self.counts[outcome] += 1
            fields = self._log_fields(
                processed, delivery.message_id, delivery.delivery_count, started, outcome, settle_error
            )
            _finish(processing, fields)
            log.info("message processed", **fields)

    def _record_breaker(self, processed: Processed, *, probe: bool) -> None:
        match processed.outcome:
            case Systemic(error=error):
                self._breaker.record_failure(error)
            case Sent() | AlreadySent():
                self._breaker.record_success()
            case _ if probe:
                self._breaker.release_probe()

    @staticmethod
    async def _abandon(port: ServiceBusPort, message: ServiceBusReceivedMessage) -> None:
        try:
            await port.abandon(message)
        except SettlementFailed as exc:
            log.warning("abandon failed", message_id=message.message_id, error=str(exc))

    async def _drain(self, port: ServiceBusPort, *, final: bool = True) -> None:
        """Let in-flight messages finish within the grace period; abandon the rest.

        Before a reconnect (``final`` false) the same applies: the old links are about to close,
        and what they could not settle comes back when its lock expires.
        """
        inflight = set(self._inflight)
        grace = (
            self._settings.shutdown_grace_seconds
            if final
            else min(self._settings.shutdown_grace_seconds, RECONNECT_GRACE)
        )
        if inflight:
            _, pending = await asyncio.wait(inflight, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            self.counts["abandoned_on_shutdown" if final else "abandoned_on_reconnect"] += len(pending)
        if not final:
            return
        log.info(
            "worker stopped",
            **{name: count for name, count in sorted(self.counts.items())},
            grace_seconds=self._settings.shutdown_grace_seconds,
        )

    @staticmethod
    def _log_fields(
        processed: Processed,
        message_id: str,
        delivery_count: int,
        started: float,
        outcome: str,
        settle_error: str,
    ) -> dict[str, Any]:
        event = processed.event
        fields: dict[str, Any] = {
            "outcome": outcome,
            "message_id": message_id,
            "delivery_count": delivery_count,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if event is not None and processed.decoded is not None:
            fields |= {
                "event_id": event.id,
                "type": event.type,
                "tenant": event.tenant,
                "attempt": processed.decoded.attempt,
                "recipient_domain": recipient_domain(event.to[0].address),
            }
        if processed.operation_id:
            fields["operation_id"] = processed.operation_id
        match processed.outcome:
            case DeadLetter(reason=reason, description=description):
                fields |= {"reason": reason, "description": description}
            case RetryLater(delay=delay, reason=reason, error=error):
                fields |= {"reason": reason, "retry_in_seconds": round(delay, 3), "error": error}
            case Systemic(error=error):
                fields |= {"reason": "Systemic", "error": error}
            case _:
                pass
        if settle_error:
            fields["settle_error"] = settle_error
        return fields


def _finish(processing: Processing, fields: dict[str, Any]) -> None:
    """Record the canonical line's verdict on the consumer span and in the metrics."""
    processing.finish(
        outcome=fields["outcome"],
        event_id=fields.get("event_id"),
        event_type=fields.get("type", ""),
        tenant=fields.get("tenant", ""),
        attempt=fields.get("attempt"),
        reason=fields.get("reason"),
        operation_id=fields.get("operation_id"),
        recipient_domain=fields.get("recipient_domain"),
        error=fields.get("settle_error"),
    )
