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
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
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
from postbus.lanes import Lane, lane_queues
from postbus.logs import get_logger
from postbus.records import RecordStore, record_store
from postbus.settings import Settings
from postbus.telemetry import BREAKER_STATE_CODES, Telemetry, current_telemetry
from postbus.worker.breaker import CircuitBreaker
from postbus.worker.canonical import CanonicalLine
from postbus.worker.errors import CannotStart
from postbus.worker.flow import LoopHeartbeat, holding_limit, lane_prefetch
from postbus.worker.health import HealthServer, HealthStatus
from postbus.worker.mailer import AcsMailer, Mailer
from postbus.worker.outcome import AlreadySent, Sent, Systemic
from postbus.worker.pipeline import Pipeline, Processed, Renderer
from postbus.worker.recording import RecordWriter
from postbus.worker.reports import ReportConsumer
from postbus.worker.retry import RetryPolicy
from postbus.worker.roster import Membership, Roster, roster_for
from postbus.worker.scheduler import LaneScheduler
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
#: Pause before a lane whose queue was refused (deleted, disabled, access revoked) tries again.
REFUSED_PAUSE: Final = 30.0


@dataclass(eq=False)
class _LaneState:
    """One lane the worker consumes: its source, its pipeline and the messages it holds."""

    lane: Lane
    source: MessageSource
    pipeline: Pipeline | None = None
    inflight: set[asyncio.Task[None]] = field(default_factory=set)
    connected: bool = False


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
    """Consumes a queue, or the three lane queues, until ``stop`` is set.

    Example::

        stop = asyncio.Event()
        summary = await Worker(settings).run(stop)

    Every collaborator can be passed in: ``source`` (an
    :class:`~postbus.bus.InMemoryBroker` in unit tests) or ``sources`` (one per lane), ``mailer``
    (a :class:`~worker.mailer.FakeMailer`), ``renderer``, ``gate``, ``breaker``, ``telemetry``,
    ``records`` (the delivery-record store; by default the one ``POSTBUS_RECORD_URL`` names),
    ``reports`` (the source of the report consumer: by default ``POSTBUS_REPORTS_QUEUE`` on the
    same namespace, unless ``source`` or ``sources`` was passed in; none when that setting is empty),
    ``attachments`` (the claim-check store; by default the one the settings name, closed at the end),
    ``roster`` (the replica roster; by default in the record store, unless ``POSTBUS_ROSTER_ENABLED``
    is off): the worker joins it before its first receive, tells the gate every count, and leaves it
    on the way out.
    Each lane has its own receive loop, holding limit and reconnects; all share the gate, whose
    permits the :class:`~worker.scheduler.LaneScheduler` hands out (critical first).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        source: MessageSource | None = None,
        sources: Mapping[Lane, MessageSource] | None = None,
        renderer: Renderer | None = None,
        mailer: Mailer | None = None,
        gate: SendGate | None = None,
        breaker: CircuitBreaker | None = None,
        telemetry: Telemetry | None = None,
        records: RecordStore | None = None,
        reports: MessageSource | None = None,
        attachments: AttachmentStore | None = None,
        roster: Roster | None = None,
    ) -> None:
        self._settings = settings
        self._roster = roster
        self._membership: Membership | None = None
        if source is not None and sources is not None:
            raise ValueError("pass source or sources, not both")
        given = (
            dict(sources) if sources is not None else ({Lane.NORMAL: source} if source is not None else None)
        )
        self._given_sources = given
        self._records = records
        self._reports = reports
        self._suppression = (
            SuppressionList(settings.suppress_days * 86400) if settings.suppress_days > 0 else None
        )
        #: What the report consumer did so far, by outcome (empty when it does not run).
        self.report_counts: Counter[str] = Counter()
        self._writer: RecordWriter | None = None
        self._attachments = attachments
        self._telemetry = telemetry
        self._renderer = renderer
        self._mailer = mailer
        self._gate = gate or gate_for_quota(settings.quota_per_minute, settings.quota_per_hour)
        self._breaker = breaker or CircuitBreaker(
            cooldown=settings.breaker_cooldown_seconds, max_cooldown=settings.breaker_cooldown_max_seconds
        )
        self._policy = RetryPolicy.from_settings(settings)
        self._scheduler = LaneScheduler(
            self._gate,
            weights={Lane.NORMAL: settings.lane_normal_weight, Lane.BULK: settings.lane_bulk_weight},
        )
        self._lanes: list[_LaneState] = []
        self._ever_connected = False
        self._failed_opens = 0
        self.counts: Counter[str] = Counter()
        #: Messages sent (or found already sent) per lane.
        self.sent_by_lane: Counter[Lane] = Counter()

    @property
    def scheduler(self) -> LaneScheduler:
        """Who hands out this worker's send permits (how many wait per lane, how many each got)."""
        return self._scheduler

    @property
    def _inflight(self) -> set[asyncio.Task[None]]:
        return {task for lane in self._lanes for task in lane.inflight}

    @property
    def _connected(self) -> bool:
        return bool(self._lanes) and all(lane.connected for lane in self._lanes)

    @property
    def ready(self) -> bool:
        """Connected to the queue and the circuit breaker is closed."""
        return self._connected and self._breaker.ready

    def ready_to_send(self) -> bool:
        """The circuit breaker lets messages through (closed)."""
        return self._breaker.ready

    def health(self) -> HealthStatus:
        """Snapshot for ``/healthz`` and ``/readyz``."""
        rate = self._gate.rate
        detail: dict[str, Any] = {
            "connected": self._connected,
            "breaker": self._breaker.state.name.lower(),
            "inflight": len(self._inflight),
            "lanes": {
                state.lane.value: {"connected": state.connected, "inflight": len(state.inflight)}
                for state in self._lanes
            },
            # An unlimited gate has no rate to report (and JSON has no Infinity).
            "send_rate": round(rate, 3) if math.isfinite(rate) else None,
            # Live replicas by the roster's last heartbeat (null: no roster): the gate's 1/n before a 429.
            "replicas": self._membership.count if self._membership is not None else None,
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
        queues = lane_queues(settings)
        prefetch = lane_prefetch(
            settings, len(queues if self._given_sources is None else self._given_sources)
        )
        connection: ServiceBusConnection | None = None
        if self._given_sources is None:
            # One AMQP connection carries every lane's links.
            connection = ServiceBusConnection.from_settings(settings, purpose="the worker")
            sources: dict[Lane, MessageSource] = {
                lane: ServiceBusSource(connection, queue, prefetch=prefetch) for lane, queue in queues.items()
            }
        else:
            sources = self._given_sources
        mailer = self._mailer or AcsMailer.from_settings(settings)
        # The store opens on first use: a worker starts (and sends) while its store is down.
        records = self._records or record_store(settings)
        self._writer = RecordWriter(records, namespace=settings.operation_namespace, telemetry=telemetry)
        attachments = self._attachments or attachment_store(settings)
        self._lanes = [
            _LaneState(lane, sources[lane]) for lane in sorted(sources, key=lambda lane: lane.rank)
        ]
        for state in self._lanes:
            state.pipeline = Pipeline(
                attachments=attachments,
                settings=settings,
                renderer=self._renderer,
                mailer=mailer,
                gate=self._gate,
                telemetry=telemetry,
                policy=self._policy,
                suppression=self._suppression,
                permits=self._scheduler.permits(state.lane),
            )
        reports = self._report_source(settings)
        heartbeats: asyncio.Task[None] | None = None
        health = HealthServer(port=settings.health_port, status=self.health) if settings.health_port else None
        log.info(
            "worker starting",
            queue=sources[Lane.NORMAL].queue if len(sources) == 1 and Lane.NORMAL in sources else None,
            lanes={state.lane.value: state.source.queue for state in self._lanes}
            if len(sources) > 1
            else None,
            lane_weights=f"{settings.lane_normal_weight}:{settings.lane_bulk_weight}"
            if len(sources) > 1
            else None,
            concurrency=settings.concurrency,
            prefetch=prefetch,
            quota_per_minute=settings.quota_per_minute or None,
            quota_per_hour=settings.quota_per_hour or None,
        )
        unwatch = telemetry.watch(
            send_rate=lambda: self._gate.rate,
            breaker_state=lambda: BREAKER_STATE_CODES[self._breaker.state.value],
        )
        # Set when the send loop ends, for whatever reason: the consumer then stops too.
        reports_stop = asyncio.Event()
        consumer = self._start_reports(reports, records, telemetry, reports_stop)
        try:
            if health is not None:
                await health.start()
            heartbeats = await self._join_roster()
            await self._serve_lanes(stop)
        finally:
            # The one stop path, whatever the loop was doing: in-flight work gets the grace, the rest
            # is abandoned, and the summary line is written.
            reports_stop.set()
            for state in self._lanes:
                state.connected = False
            await self._drain(stop, self._lanes, reconnecting=False)
            await self._scheduler.close()
            by_lane = {f"sent_{lane.value}": count for lane, count in sorted(self.sent_by_lane.items())}
            log.info(
                "worker stopped",
                **{name: count for name, count in sorted(self.counts.items())},
                **(by_lane if len(self._lanes) > 1 else {}),
                grace_seconds=settings.shutdown_grace_seconds,
            )
            unwatch()
            await self._leave_roster(heartbeats)
            await self._stop_reports(consumer, reports)
            if connection is not None:
                await connection.close()
            if self._mailer is None:
                await mailer.close()
            if self._records is None:
                await records.close()
            if self._attachments is None:
                await attachments.close()
            if health is not None:
                await health.stop()
        return self.counts

    async def _join_roster(self) -> asyncio.Task[None] | None:
        """Join the replica roster (before the first receive, so the first permit is already the
        count's share) and start the heartbeats; ``None`` when the roster is off."""
        settings = self._settings
        roster = self._roster or (roster_for(settings) if settings.roster_enabled else None)
        if roster is None:
            return None
        membership = self._membership = Membership(
            roster, heartbeat=settings.roster_heartbeat, on_count=self._gate.set_replicas
        )
        await membership.join()
        return asyncio.create_task(membership.run(), name="postbus-roster")

    async def _leave_roster(self, heartbeats: asyncio.Task[None] | None) -> None:
        """Stop the heartbeats and leave, so the others count without this replica at once."""
        if heartbeats is not None:
            heartbeats.cancel()
            await asyncio.gather(heartbeats, return_exceptions=True)
        membership = self._membership
        if membership is None:
            return
        await membership.leave()
        if self._roster is None:
            await membership.roster.close()

    def _start_reports(
        self, reports: MessageSource | None, records: RecordStore, telemetry: Telemetry, stop: asyncio.Event
    ) -> asyncio.Task[Counter[str]] | None:
        if reports is None:
            return None
        settings = self._settings
        report_consumer = ReportConsumer(
            reports,
            records,
            telemetry=telemetry,
            concurrency=settings.report_concurrency,
            grace=settings.shutdown_grace_seconds,
            suppression=self._suppression,
        )
        self.report_counts = report_consumer.counts  # live, for health and tests
        return asyncio.create_task(report_consumer.run(stop), name="report consumer")

    async def _stop_reports(
        self, consumer: asyncio.Task[Counter[str]] | None, reports: MessageSource | None
    ) -> None:
        if consumer is not None:
            # Its own stop path (grace, abandon) runs on the same stop event.
            try:
                await consumer
            except Exception:
                log.exception("report consumer failed")
            if self._reports is None and reports is not None:
                await reports.close()

    def _report_source(self, settings: Settings) -> MessageSource | None:
        if self._reports is not None:
            return self._reports
        if self._given_sources is not None or not settings.reports_queue:
            return None
        connection = ServiceBusConnection.from_settings(settings, purpose="the report consumer")
        return ServiceBusSource(connection, settings.reports_queue)

    async def _serve_lanes(self, stop: asyncio.Event) -> None:
        """Check every lane's queue, then consume each lane in its own loop until ``stop``.

        A lane's queue refused at start (missing, disabled, no access) stops the worker with one
        line naming the lane: that is a deployment to fix. Once running, a lane whose links break
        or whose queue goes away reconnects on its own while the other lanes carry on.
        """
        first = await self._open_lanes(stop) if len(self._lanes) > 1 else {}
        if stop.is_set():
            for links in first.values():
                await links.close()
            return
        tasks = [
            asyncio.create_task(
                self._serve(stop, state, first.get(state.lane)), name=f"postbus-lane-{state.lane}"
            )
            for state in self._lanes
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _open_lanes(self, stop: asyncio.Event) -> dict[Lane, Links]:
        """Open every lane's links at once; a lane that cannot be reached yet is left to its loop.

        At once, because against an unreachable namespace each open spends the SDK's whole retry
        budget: one lane after the other would take three times as long to give up. A refused
        queue raises, naming the lane.
        """
        opens = {state: asyncio.ensure_future(state.source.open()) for state in self._lanes}
        try:
            await _until_stopped(stop, asyncio.wait(opens.values()))
        finally:
            for task in opens.values():
                task.cancel()
            await asyncio.gather(*opens.values(), return_exceptions=True)
        finished = {state: task for state, task in opens.items() if not task.cancelled()}
        opened = {state.lane: task.result() for state, task in finished.items() if task.exception() is None}
        failed = {state: task.exception() for state, task in finished.items() if task.exception() is not None}
        unexpected = next((exc for exc in failed.values() if not isinstance(exc, BusError)), None)
        refused = next(((state, exc) for state, exc in failed.items() if isinstance(exc, BusRefused)), None)
        if unexpected is not None or refused is not None:
            for links in opened.values():
                await links.close()
        if unexpected is not None:
            raise unexpected
        if refused is not None:
            state, exc = refused
            raise type(exc)(
                f"open the {state.lane.value} lane's queue {state.source.queue!r}", exc.detail
            ) from exc
        for state, error in failed.items():
            log.warning("lane unavailable", lane=state.lane.value, error=str(error))
        if failed:
            self._failed_opens += 1  # one attempt at the namespace, however many lanes it failed
        return opened

    async def _serve(self, stop: asyncio.Event, state: _LaneState, links: Links | None) -> None:
        """Open links, consume until they break, let in-flight work settle on them, reopen."""
        lanes = len(self._lanes) > 1
        while not stop.is_set():
            if links is None:
                try:
                    links = await _until_stopped(stop, state.source.open())
                except BusRefused as exc:
                    if not lanes:
                        raise  # a wrong queue name or credential: no reconnect can fix it
                    # One lane's queue gone must not stop the others; it is tried again, slowly.
                    await self._reconnect(stop, state, "refused", str(exc), pause=REFUSED_PAUSE)
                    continue
                except BusError as exc:
                    self._failed_opens += 1
                    if not self._ever_connected and self._failed_opens >= STARTUP_ATTEMPTS:
                        raise CannotStart(
                            f"{exc} ({self._failed_opens} tries); check the address in "
                            "POSTBUS_SERVICEBUS_CONNECTION_STRING or POSTBUS_SERVICEBUS_NAMESPACE "
                            "and that this machine can reach it"
                        ) from None
                    await self._reconnect(stop, state, "open_failed", str(exc))
                    continue
                if links is None:
                    return
            cause: str | None = None
            try:
                state.connected = self._ever_connected = True
                async with LoopHeartbeat() as heartbeat:
                    await self._consume(stop, state, links, heartbeat)
            except _LinksBroken as broken:
                cause = broken.cause
            finally:
                state.connected = False
                # In-flight work settles on these links before they close.
                await self._drain(stop, [state], reconnecting=cause is not None)
                await links.close()
                links = None
            if cause is not None:
                await self._reconnect(stop, state, cause, "")

    async def _reconnect(
        self,
        stop: asyncio.Event,
        state: _LaneState,
        cause: str,
        error: str,
        *,
        pause: float = RECONNECT_PAUSE,
    ) -> None:
        if stop.is_set():
            return
        self.counts["reconnects"] += 1
        if self._telemetry is not None:
            self._telemetry.record_reconnect(cause)
        fields: dict[str, Any] = {"error": error} if error else {}
        if len(self._lanes) > 1:
            fields["lane"] = state.lane.value
        log.warning("reconnecting to the queue", cause=cause, reconnects=self.counts["reconnects"], **fields)
        await _until_stopped(stop, asyncio.sleep(pause))

    async def _consume(
        self, stop: asyncio.Event, state: _LaneState, links: Links, heartbeat: LoopHeartbeat
    ) -> None:
        """Receive and start handlers until ``stop`` is set; raises :class:`_LinksBroken`."""
        concurrency = self._settings.concurrency
        while not stop.is_set():
            if not self._breaker.ready:
                # Open or half-open: one probe message at a time, after the cool-down.
                await _until_stopped(stop, self._probe(state, links, heartbeat))
                continue
            # Each lane holds up to the limit: a lane's held messages never take another lane's room,
            # so a critical message is received at once whatever normal and bulk hold.
            free = holding_limit(self._gate.rate, concurrency) - len(state.inflight)
            if free <= 0:
                await _until_stopped(
                    stop, asyncio.wait(set(state.inflight), return_when=asyncio.FIRST_COMPLETED)
                )
                continue
            deliveries = await self._receive(links, free, heartbeat)
            if deliveries and not self.ready_to_send():
                # The breaker opened while this receive waited: these go back untouched, and the next
                # message through is the breaker's probe.
                for delivery in deliveries:
                    await self._give_back(links, delivery)
                continue
            for delivery in deliveries:
                self._start(delivery, links, state)
            # Yield on every pass, whatever the receiver did: handlers, renewals and the SIGTERM
            # handler must run even if a receive never suspends.
            await asyncio.sleep(0)

    async def _probe(self, state: _LaneState, links: Links, heartbeat: LoopHeartbeat) -> None:
        async with self._breaker.probe():
            for delivery in await self._receive(links, 1, heartbeat):
                # The probe's verdict comes from its handler; a stop meanwhile leaves it to the drain.
                await asyncio.wait({self._start(delivery, links, state)})

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

    def _start(self, delivery: Delivery, links: Links, state: _LaneState) -> asyncio.Task[None]:
        task = asyncio.create_task(self._handle_safely(delivery, links, state))
        state.inflight.add(task)
        task.add_done_callback(state.inflight.discard)
        return task

    async def _drain(self, stop: asyncio.Event, lanes: list[_LaneState], *, reconnecting: bool) -> None:
        """Let in-flight messages finish within the grace period; cancel (and so abandon) the rest.

        Before a reconnect the grace is short; a stop that arrives meanwhile turns it into the
        shutdown grace, counted from the stop.
        """
        pending = {task for state in lanes for task in state.inflight}
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

    async def _handle_safely(self, delivery: Delivery, links: Links, state: _LaneState) -> None:
        """Run :meth:`_handle`; a bug or an SDK surprise costs one message's lock, never the worker."""
        lane = {"lane": state.lane.value} if len(self._lanes) > 1 else {}
        with structlog.contextvars.bound_contextvars(
            message_id=delivery.message_id, delivery_count=delivery.delivery_count, **lane
        ):
            try:
                await self._handle(delivery, links, state)
            except Exception:
                self.counts["failed"] += 1
                log.exception("message handling failed")

    async def _handle(self, delivery: Delivery, links: Links, state: _LaneState) -> None:
        pipeline = state.pipeline
        assert pipeline is not None  # set in run() before any loop starts
        started = time.perf_counter()
        if delivery.locked_until is not None and delivery.locked_until - datetime.now(UTC) < MIN_LOCK_LEFT:
            # Waited too long in the prefetch buffer: it is (nearly) back on the queue already.
            log.info("message skipped", reason="lock expired in prefetch buffer")
            self.counts["lock_expired"] += 1
            return
        telemetry = self._telemetry or current_telemetry()
        # Everything from here to the log line runs inside the consumer span, so the line carries its ids.
        with telemetry.processing(
            queue=state.source.queue,
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
            if isinstance(processed.outcome, Sent | AlreadySent):
                self.sent_by_lane[state.lane] += 1
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
