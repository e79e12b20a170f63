"""The worker loop: receive, process, settle, one log line — until told to stop.

One process runs ``POSTBUS_CONCURRENCY`` handlers over the links of a
:class:`~postbus.bus.MessageSource` (the Service Bus queue, or an in-memory broker in tests). A
message's lock is renewed while its handler works and no longer. When the links break the loop
lets in-flight work settle on them for a short grace, then opens new ones. Whatever the loop is
doing when SIGTERM arrives (receiving, reconnecting, waiting out the breaker), the stop path is
the same: stop receiving, give in-flight work the shutdown grace, abandon what is left so Service
Bus redelivers it at once, and log one ``worker stopped`` summary line.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import structlog

from postbus.attachments import AttachmentStore, attachment_store
from postbus.bus import (
    BusError,
    BusRefused,
    Delivery,
    Links,
    MessageSource,
    ServiceBusConnection,
    ServiceBusSource,
    route_sdk_logs,
)
from postbus.logs import get_logger
from postbus.records import RecordStore, record_store
from postbus.settings import Settings
from postbus.telemetry import BREAKER_STATE_CODES, Telemetry, current_telemetry
from postbus.worker.breaker import CircuitBreaker
from postbus.worker.canonical import CanonicalLine
from postbus.worker.errors import CannotStart
from postbus.worker.flow import LoopHeartbeat, effective_prefetch, holding_limit
from postbus.worker.health import HealthServer, HealthStatus
from postbus.worker.mailer import AcsMailer, Mailer
from postbus.worker.outcome import AlreadySent, Sent, Systemic
from postbus.worker.pipeline import Pipeline, Processed, Renderer
from postbus.worker.recording import RecordWriter
from postbus.worker.reports import ReportConsumer
from postbus.worker.retry import RetryPolicy
from postbus.worker.settlement import give_back, settle
from postbus.worker.suppression import SuppressionList
from postbus.worker.throttle import SendGate, gate_for_quota

__all__ = ["Worker"]

log = get_logger("postbus.worker")
T = TypeVar("T")

#: A prefetched message whose lock ends sooner than this is left to expire and come back.
MIN_LOCK_LEFT: Final = timedelta(seconds=2)
#: In-flight work gets this long to settle on the old links before a reconnect replaces them.
RECONNECT_GRACE: Final = 5.0
#: How long one receive call waits for messages (bounds how fast the loop notices a stop).
RECEIVE_WAIT: Final = 1.0
#: Pause before new links are opened after the old ones broke.
RECONNECT_PAUSE: Final = 1.0
#: Failed opens before a worker that has never reached its queue gives up. Each open already
#: carries the SDK's own retries (about 12 s against a closed port), so this is a wrong address,
#: not a blip; once the worker has been connected, it reconnects for as long as it runs.
STARTUP_ATTEMPTS: Final = 2


class _LinksBroken(Exception):
    """The links cannot be used any more; ``cause`` names why (the reconnect metric's attribute)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


async def _until_stopped(stop: asyncio.Event, awaitable: Awaitable[T]) -> T | None:
    """Await ``awaitable`` unless ``stop`` is set first (then it is cancelled and ``None`` returned)."""
    work = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
    return None if work.cancelled() else work.result()


class Worker:
    """Consumes a queue until ``stop`` is set.

    Example::

        stop = asyncio.Event()
        summary = await Worker(settings).run(stop)

    Every collaborator can be passed in: ``source`` (an
    :class:`~postbus.bus.InMemoryBroker` in unit tests), ``mailer`` (a
    :class:`~worker.mailer.FakeMailer`), ``renderer``, ``gate``, ``breaker``, ``telemetry``,
    ``records`` (the delivery-record store; by default the one ``POSTBUS_RECORD_URL`` names),
    ``reports`` (the source of the report consumer: by default ``POSTBUS_REPORTS_QUEUE`` on the
    same namespace, unless ``source`` was passed in; none when that setting is empty),
    ``attachments`` (the claim-check store; by default the one the settings name, closed at the end).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        source: MessageSource | None = None,
        renderer: Renderer | None = None,
        mailer: Mailer | None = None,
        gate: SendGate | None = None,
        breaker: CircuitBreaker | None = None,
        telemetry: Telemetry | None = None,
        records: RecordStore | None = None,
        reports: MessageSource | None = None,
        attachments: AttachmentStore | None = None,
    ) -> None:
        self._settings = settings
        self._records = records
        self._reports = reports
        self._suppression = (
            SuppressionList(settings.suppress_days * 86400) if settings.suppress_days > 0 else None
        )
        #: What the report consumer did so far, by outcome (empty when it does not run).
        self.report_counts: Counter[str] = Counter()
        self._writer: RecordWriter | None = None
        self._source = source
        self._attachments = attachments
        self._telemetry = telemetry
        self._renderer = renderer
        self._mailer = mailer
        self._gate = gate or gate_for_quota(settings.quota_per_minute, settings.quota_per_hour)
        self._breaker = breaker or CircuitBreaker(
            cooldown=settings.breaker_cooldown_seconds, max_cooldown=settings.breaker_cooldown_max_seconds
        )
        self._policy = RetryPolicy.from_settings(settings)
        self._queue = source.queue if source is not None else settings.queue
        self._connected = False
        self._ever_connected = False
        self._failed_opens = 0
        self._inflight: set[asyncio.Task[None]] = set()
        self.counts: Counter[str] = Counter()

    @property
    def ready(self) -> bool:
        """Connected to the queue and the circuit breaker is closed."""
        return self._connected and self._breaker.ready

    def health(self) -> HealthStatus:
        """Snapshot for ``/healthz`` and ``/readyz``."""
        rate = self._gate.rate
        detail: dict[str, Any] = {
            "connected": self._connected,
            "breaker": self._breaker.state.name.lower(),
            "inflight": len(self._inflight),
            # An unlimited gate has no rate to report (and JSON has no Infinity).
            "send_rate": round(rate, 3) if math.isfinite(rate) else None,
            # Messages handled since start, by outcome: what `postbus console` sums across workers.
            "counts": dict(self.counts),
        }
        if not self._breaker.ready and self._breaker.last_error:
            detail["last_error"] = self._breaker.last_error
        if self.report_counts:
            # What the report consumer did so far (recorded, dead_lettered, abandoned).
            detail["reports"] = dict(sorted(self.report_counts.items()))
        if self._writer is not None and self._writer.failures:
            detail["record_write_failures"] = self._writer.failures
        return HealthStatus(live=True, ready=self.ready, detail=detail)

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> Counter[str]:
        """Run until ``stop`` is set; returns the count of messages by outcome."""
        settings = self._settings
        route_sdk_logs()
        if self._renderer is None:
            from postbus.worker.rendering import TemplateRenderer

            self._renderer = TemplateRenderer(user_dir=settings.templates_dir)
        telemetry = self._telemetry = self._telemetry or current_telemetry()
        prefetch = effective_prefetch(settings)
        source = self._source or ServiceBusSource(
            ServiceBusConnection.from_settings(settings, purpose="the worker"),
            settings.queue,
            prefetch=prefetch,
        )
        mailer = self._mailer or AcsMailer.from_settings(settings)
        # The store opens on first use: a worker starts (and sends) while its store is down.
        records = self._records or record_store(settings)
        self._writer = RecordWriter(records, namespace=settings.operation_namespace, telemetry=telemetry)
        attachments = self._attachments or attachment_store(settings)
        pipeline = Pipeline(
            attachments=attachments,
            settings=settings,
            renderer=self._renderer,
            mailer=mailer,
            gate=self._gate,
            telemetry=telemetry,
            policy=self._policy,
            suppression=self._suppression,
        )
        reports = self._report_source(settings)
        health = HealthServer(port=settings.health_port, status=self.health) if settings.health_port else None
        log.info(
            "worker starting",
            queue=source.queue,
            concurrency=settings.concurrency,
            prefetch=prefetch,
            quota_per_minute=settings.quota_per_minute or None,
            quota_per_hour=settings.quota_per_hour or None,
        )
        unwatch = telemetry.watch(
            send_rate=lambda: self._gate.rate,
            breaker_state=lambda: BREAKER_STATE_CODES[self._breaker.state.value],
        )
        consumer: asyncio.Task[Counter[str]] | None = None
        # Set when the send loop ends, for whatever reason: the consumer then stops too.
        reports_stop = asyncio.Event()
        if reports is not None:
            report_consumer = ReportConsumer(
                reports,
                records,
                telemetry=telemetry,
                concurrency=settings.report_concurrency,
                grace=settings.shutdown_grace_seconds,
                suppression=self._suppression,
            )
            self.report_counts = report_consumer.counts  # live, for health and tests
            consumer = asyncio.create_task(report_consumer.run(reports_stop), name="report consumer")
        try:
            if health is not None:
                await health.start()
            await self._serve(stop, source, pipeline)
        finally:
            # The one stop path, whatever the loop was doing: in-flight work gets the grace, the rest
            # is abandoned, and the summary line is written.
            reports_stop.set()
            self._connected = False
            await self._drain(stop, reconnecting=False)
            log.info(
                "worker stopped",
                **{name: count for name, count in sorted(self.counts.items())},
                grace_seconds=settings.shutdown_grace_seconds,
            )
            unwatch()
            if consumer is not None:
                # Its own stop path (grace, abandon) runs on the same stop event.
                try:
                    await consumer
                except Exception:
                    log.exception("report consumer failed")
                if self._reports is None and reports is not None:
                    await reports.close()
            if self._source is None:
                await source.close()
            if self._mailer is None:
                await mailer.close()
            if self._records is None:
                await records.close()
            if self._attachments is None:
                await attachments.close()
            if health is not None:
                await health.stop()
        return self.counts

    def _report_source(self, settings: Settings) -> MessageSource | None:
        if self._reports is not None:
            return self._reports
        if self._source is not None or not settings.reports_queue:
            return None
        connection = ServiceBusConnection.from_settings(settings, purpose="the report consumer")
        return ServiceBusSource(connection, settings.reports_queue)

    async def _serve(self, stop: asyncio.Event, source: MessageSource, pipeline: Pipeline) -> None:
        """Open links, consume until they break, let in-flight work settle on them, reopen."""
        while not stop.is_set():
            try:
                links = await _until_stopped(stop, source.open())
            except BusRefused:
                raise  # a wrong queue name or credential: no reconnect can fix it
            except BusError as exc:
                self._failed_opens += 1
                if not self._ever_connected and self._failed_opens >= STARTUP_ATTEMPTS:
                    raise CannotStart(
                        f"{exc} ({self._failed_opens} tries); check the address in "
                        "POSTBUS_SERVICEBUS_CONNECTION_STRING or POSTBUS_SERVICEBUS_NAMESPACE "
                        "and that this machine can reach it"
                    ) from None
                await self._reconnect(stop, "open_failed", str(exc))
                continue
            if links is None:
                return
            cause: str | None = None
            try:
                self._connected = self._ever_connected = True
                async with LoopHeartbeat() as heartbeat:
                    await self._consume(stop, links, pipeline, heartbeat)
            except _LinksBroken as broken:
                cause = broken.cause
            finally:
                self._connected = False
                # In-flight work settles on these links before they close.
                await self._drain(stop, reconnecting=cause is not None)
                await links.close()
            if cause is not None:
                await self._reconnect(stop, cause, "")

    async def _reconnect(self, stop: asyncio.Event, cause: str, error: str) -> None:
        if stop.is_set():
            return
        self.counts["reconnects"] += 1
        if self._telemetry is not None:
            self._telemetry.record_reconnect(cause)
        fields = {"error": error} if error else {}
        log.warning("reconnecting to the queue", cause=cause, reconnects=self.counts["reconnects"], **fields)
        await _until_stopped(stop, asyncio.sleep(RECONNECT_PAUSE))

    async def _consume(
        self, stop: asyncio.Event, links: Links, pipeline: Pipeline, heartbeat: LoopHeartbeat
    ) -> None:
        """Receive and start handlers until ``stop`` is set; raises :class:`_LinksBroken`."""
        concurrency = self._settings.concurrency
        while not stop.is_set():
            if not self._breaker.ready:
                # Open or half-open: one probe message at a time, after the cool-down.
                await _until_stopped(stop, self._probe(links, pipeline, heartbeat))
                continue
            free = holding_limit(self._gate.rate, concurrency) - len(self._inflight)
            if free <= 0:
                await _until_stopped(
                    stop, asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)
                )
                continue
            for delivery in await self._receive(links, free, heartbeat):
                self._start(delivery, links, pipeline)
            # Yield on every pass, whatever the receiver did: handlers, renewals and the SIGTERM
            # handler must run even if a receive never suspends.
            await asyncio.sleep(0)

    async def _probe(self, links: Links, pipeline: Pipeline, heartbeat: LoopHeartbeat) -> None:
        async with self._breaker.probe():
            for delivery in await self._receive(links, 1, heartbeat):
                # The probe's verdict comes from its handler; a stop meanwhile leaves it to the drain.
                await asyncio.wait({self._start(delivery, links, pipeline)})

    async def _receive(self, links: Links, count: int, heartbeat: LoopHeartbeat) -> list[Delivery]:
        beats, asked = heartbeat.beats, time.monotonic()
        try:
            deliveries = await links.receive(count, max_wait=RECEIVE_WAIT)
        except BusError as exc:
            # The SDK has already retried; its handler may now be shut down for good: reconnect.
            log.warning("receive failed", error=str(exc))
            raise _LinksBroken("receive_failed") from exc
        if not deliveries and heartbeat.beats == beats:
            # A healthy empty receive waits RECEIVE_WAIT with the loop turning. One that came back
            # empty without a single beat either spun for its whole wait or did not wait at all:
            # both are what the SDK does over a connection it has given up on without raising.
            self.counts["stalled_receives"] += 1
            log.warning(
                "receiver returned without waiting; reconnecting",
                waited_ms=round((time.monotonic() - asked) * 1000, 1),
            )
            raise _LinksBroken("stalled")
        return deliveries

    def _start(self, delivery: Delivery, links: Links, pipeline: Pipeline) -> asyncio.Task[None]:
        task = asyncio.create_task(self._handle_safely(delivery, links, pipeline))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    async def _drain(self, stop: asyncio.Event, *, reconnecting: bool) -> None:
        """Let in-flight messages finish within the grace period; cancel (and so abandon) the rest.

        Before a reconnect the grace is short; a stop that arrives meanwhile turns it into the
        shutdown grace, counted from the stop.
        """
        pending = set(self._inflight)
        if not pending:
            return
        grace = self._settings.shutdown_grace_seconds
        if reconnecting and not stop.is_set():
            pending = await self._wait_for_inflight(pending, min(grace, RECONNECT_GRACE), until=stop)
        if pending and (stop.is_set() or not reconnecting):
            pending = await self._wait_for_inflight(pending, grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            before_reconnect = reconnecting and not stop.is_set()
            self.counts["abandoned_on_reconnect" if before_reconnect else "abandoned_on_shutdown"] += len(
                pending
            )

    @staticmethod
    async def _wait_for_inflight(
        pending: set[asyncio.Task[None]], within: float, *, until: asyncio.Event | None = None
    ) -> set[asyncio.Task[None]]:
        """Wait until ``pending`` is done, ``within`` seconds have passed or ``until`` is set; returns what is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        stopper = asyncio.ensure_future(until.wait()) if until is not None else None
        try:
            while pending and (until is None or not until.is_set()):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                waiting: set[asyncio.Future[Any]] = {*pending, *([stopper] if stopper else [])}
                await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                pending = {task for task in pending if not task.done()}
        finally:
            if stopper is not None:
                stopper.cancel()
        return pending

    # -- one message ------------------------------------------------------------------------------

    async def _handle_safely(self, delivery: Delivery, links: Links, pipeline: Pipeline) -> None:
        """Run :meth:`_handle`; a bug or an SDK surprise costs one message's lock, never the worker."""
        with structlog.contextvars.bound_contextvars(
            message_id=delivery.message_id, delivery_count=delivery.delivery_count
        ):
            try:
                await self._handle(delivery, links, pipeline)
            except Exception:
                self.counts["failed"] += 1
                log.exception("message handling failed")

    async def _handle(self, delivery: Delivery, links: Links, pipeline: Pipeline) -> None:
        started = time.perf_counter()
        if delivery.locked_until is not None and delivery.locked_until - datetime.now(UTC) < MIN_LOCK_LEFT:
            # Waited too long in the prefetch buffer: it is (nearly) back on the queue already.
            log.info("message skipped", reason="lock expired in prefetch buffer")
            self.counts["lock_expired"] += 1
            return
        telemetry = self._telemetry or current_telemetry()
        # Everything from here to the log line runs inside the consumer span, so the line carries its ids.
        with telemetry.processing(
            queue=self._queue,
            properties=delivery.application_properties,
            message_id=delivery.message_id,
            delivery_count=delivery.delivery_count,
        ) as processing:
            # The lock is renewed until settlement ends, and not after: a message whose
            # settlement failed must come back when its lock expires.
            async with links.keep_locked(delivery):
                try:
                    processed = await pipeline.process(delivery)
                except asyncio.CancelledError:
                    await asyncio.shield(self._give_back(links, delivery))
                    raise
                with structlog.contextvars.bound_contextvars(**_event_context(processed)):
                    self._record_breaker(processed)
                    # Before settling, so a crash in between leaves the message to be redelivered.
                    try:
                        if self._writer is not None and not await self._writer.write(
                            processed, enqueued_at=delivery.enqueued_at
                        ):
                            self.counts["record_write_failures"] += 1
                    except asyncio.CancelledError:
                        # Redelivery finds the operation at ACS and writes the record then.
                        await asyncio.shield(self._give_back(links, delivery))
                        raise
                    settle_error = ""
                    try:
                        await settle(links, delivery, processed, policy=self._policy)
                    except BusError as exc:
                        settle_error = str(exc)
            line = CanonicalLine.of(
                processed, delivery, duration=time.perf_counter() - started, settle_error=settle_error
            )
            self.counts[line.outcome] += 1
            line.record(processing)
            log.info("message processed", **line.fields())

    def _record_breaker(self, processed: Processed) -> None:
        match processed.outcome:
            case Systemic(error=error):
                self._breaker.record_failure(error)
            case Sent() | AlreadySent():
                self._breaker.record_success()
            case _:
                pass  # no verdict: a probe is handed back when its block ends

    @staticmethod
    async def _give_back(links: Links, delivery: Delivery) -> None:
        try:
            await give_back(links, delivery)
        except BusError as exc:
            log.warning("abandon failed", error=str(exc))


def _event_context(processed: Processed) -> dict[str, Any]:
    """What to bind for the rest of the message's log lines once its event is known."""
    context: dict[str, Any] = {}
    if (identity := processed.identity) is not None:
        context["event_id"] = identity.id
    if processed.decoded is not None:
        context["attempt"] = processed.decoded.attempt
    return context
