"""Where the console's numbers come from: the demo's embedded emulators, or any deployment's settings.

A source answers :meth:`PipelineSource.sample` with a :class:`~postbus.pipeline_view.snapshot.PipelineSnapshot`.

- :class:`EmbeddedSource` is ``postbus demo``'s: both emulators run in the process, so it reads
  queue counts, dead-letter reasons, the mailbox and ACS's 429 count directly, and it knows when
  the demo published each event.
- :class:`SettingsSource` is ``postbus console``'s: queue depths from the emulator's admin endpoint
  (``--servicebus-admin``) or the Service Bus management API, dead letters by reason from that
  endpoint or by peeking the dead-letter queue, ACS's counts when the ACS endpoint is the emulator,
  latencies and delivery outcomes from the delivery record, and each worker's ``/readyz``.

A part that cannot be read (a worker down, a management API the emulator does not serve) becomes a
line in ``problems`` and an empty tile, never an exception: the console keeps drawing.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

import aiohttp

from postbus.logs import get_logger
from postbus.pipeline_view.snapshot import PipelineSnapshot, QueueSample, WorkerSample, percentiles

if TYPE_CHECKING:
    from postbus.emulators.acs_email import EmailEmulator
    from postbus.emulators.servicebus import ServiceBusEmulator
    from postbus.records import RecordStore
    from postbus.settings import Settings

__all__ = ["EmbeddedSource", "PipelineSource", "SettingsSource", "poll_workers", "watched_queues"]

log = get_logger(__name__)

_HTTP_TIMEOUT: Final = aiohttp.ClientTimeout(total=2.0)
#: Dead letters whose reasons ``postbus console`` counts by peeking, when no admin endpoint is given.
PEEK_LIMIT: Final = 250
#: How far back the record-based tiles look.
RECORD_WINDOW: Final = timedelta(hours=1)
_EVENT_ID_HEADER: Final = "X-Postbus-Event-Id"


class PipelineSource(Protocol):
    """Something the console can sample once a second."""

    async def sample(self) -> PipelineSnapshot: ...

    async def close(self) -> None: ...


async def poll_workers(session: aiohttp.ClientSession, urls: Sequence[str]) -> tuple[WorkerSample, ...]:
    """Each worker's ``/readyz`` (a base URL like ``http://127.0.0.1:8080``), concurrently."""

    async def one(n: int, url: str) -> WorkerSample:
        name = f"worker-{n}"
        try:
            async with session.get(url.rstrip("/") + "/readyz", timeout=_HTTP_TIMEOUT) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return WorkerSample(name, url, ready=False, detail={"error": type(exc).__name__})
        detail = body if isinstance(body, dict) else {}
        return WorkerSample(name, url, ready=bool(detail.pop("ready", False)), detail=detail)

    return tuple(await asyncio.gather(*(one(n, url) for n, url in enumerate(urls))))


class EmbeddedSource:
    """The demo's pipeline: emulators in this process, worker processes on known health ports.

    ``published_at`` maps event ids to the time the demo published them (epoch seconds); it may
    grow while the console runs.
    """

    def __init__(
        self,
        servicebus: ServiceBusEmulator,
        acs: EmailEmulator,
        *,
        quota_per_minute: int | None,
        published_at: Mapping[str, float],
        worker_urls: Sequence[str] = (),
        records: RecordStore | None = None,
    ) -> None:
        self._sb = servicebus
        self._acs = acs
        self._quota = quota_per_minute
        self._published_at = published_at
        self._worker_urls = tuple(worker_urls)
        self._records = records
        self._latencies: list[float] = []
        self._seen = 0
        self._since = datetime.now(UTC)
        self._session: aiohttp.ClientSession | None = None

    async def sample(self) -> PipelineSnapshot:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        counts = self._sb.all_counts()
        queues = tuple(
            QueueSample(name, c.active + c.locked, c.scheduled, c.dead_lettered) for name, c in counts.items()
        )
        dead: Counter[str] = Counter()
        for name in counts:
            dead.update(self._sb.dead_letter_reasons(name))
        mails = self._acs.mailbox.messages()
        for mail in mails[self._seen :]:
            published = self._published_at.get(mail.headers.get(_EVENT_ID_HEADER, ""))
            if published is not None:
                self._latencies.append(max(0.0, mail.received_at.timestamp() - published))
        self._seen = len(mails)
        throttled = self._acs.stats().get("throttled", 0)
        snapshot = PipelineSnapshot(
            at=time.time(),
            queues=queues,
            sent=len(mails),
            throttled=throttled if isinstance(throttled, int) else 0,
            quota_per_minute=self._quota,
            dead_letters=dict(dead),
            accepted_latency=percentiles(self._latencies),
            workers=await poll_workers(self._session, self._worker_urls),
            published=len(self._published_at),
        )
        if self._records is not None:
            snapshot = await _with_records(snapshot, self._records, since=self._since)
        return snapshot

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def watched_queues(settings: Settings) -> list[str]:
    """The queues the console shows for ``settings``: the events' queue; with lanes on, every lane's
    queue and the delivery reports' queue (when the worker consumes one)."""
    from postbus.lanes import lane_queues

    if not settings.lanes:
        return [settings.queue]
    return [*lane_queues(settings).values(), *([settings.reports_queue] if settings.reports_queue else [])]


class SettingsSource:
    """Any deployment the settings describe: the emulators on this machine, or Azure.

    ``servicebus_admin_url`` is the Service Bus emulator's admin endpoint (it does not serve the
    management API); without it, queue depths come from the management API.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        queues: Iterable[str],
        worker_urls: Sequence[str] = (),
        servicebus_admin_url: str | None = None,
        records: RecordStore | None = None,
    ) -> None:
        self._settings = settings
        self._queues = tuple(queues)
        self._worker_urls = tuple(worker_urls)
        self._admin_url = servicebus_admin_url.rstrip("/") if servicebus_admin_url else None
        self._records = records
        self._session: aiohttp.ClientSession | None = None
        self._connection: Any = None

    async def sample(self) -> PipelineSnapshot:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        problems: list[str] = []
        queues, dead = await self._queues_and_dead_letters(problems)
        sent, throttled = await self._acs_counts(problems)
        workers = await poll_workers(self._session, self._worker_urls)
        if sent is None:
            sent = sum(int(w.detail.get("counts", {}).get("sent", 0)) for w in workers)
        snapshot = PipelineSnapshot(
            at=time.time(),
            queues=queues,
            sent=sent,
            throttled=throttled or 0,
            quota_per_minute=self._settings.quota_per_minute or None,
            dead_letters=dead,
            workers=workers,
            problems=tuple(problems),
        )
        if self._records is not None:
            snapshot = await _with_records(snapshot, self._records, since=datetime.now(UTC) - RECORD_WINDOW)
        return snapshot

    async def _queues_and_dead_letters(
        self, problems: list[str]
    ) -> tuple[tuple[QueueSample, ...], dict[str, int]]:
        assert self._session is not None
        if self._admin_url is not None:
            try:
                async with self._session.get(f"{self._admin_url}/counts", timeout=_HTTP_TIMEOUT) as r:
                    counts = await r.json()
                async with self._session.get(f"{self._admin_url}/dead-letters", timeout=_HTTP_TIMEOUT) as r:
                    reasons = await r.json() if r.status == 200 else {}
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                problems.append(
                    f"Service Bus emulator admin endpoint {self._admin_url}: {type(exc).__name__}"
                )
                return (), {}
            queues = tuple(
                QueueSample(n, c["active"] + c.get("locked", 0), c["scheduled"], c["dead_lettered"])
                for n, c in counts.items()
                if n in self._queues
            )
            dead: Counter[str] = Counter()
            for name in self._queues:
                dead.update(reasons.get(name, {}))
            return queues, dict(dead)
        return await self._from_management_api(problems)

    async def _from_management_api(
        self, problems: list[str]
    ) -> tuple[tuple[QueueSample, ...], dict[str, int]]:
        from postbus.bus import BusError, QueueLinks, ServiceBusConnection

        if self._connection is None:
            self._connection = ServiceBusConnection.from_settings(self._settings, purpose="watch the queues")
        samples: list[QueueSample] = []
        dead: Counter[str] = Counter()
        for name in self._queues:
            try:
                depth = await self._connection.queue_depth(name)
            except BusError as exc:
                problems.append(f"queue {name}: {exc}")
                continue
            if depth is None:
                problems.append(f"queue {name} does not exist")
                continue
            samples.append(QueueSample(name, depth.active, depth.scheduled, depth.dead_lettered))
            if depth.dead_lettered:
                links = await QueueLinks(self._connection, name, dead_letters=True, send=False).open()
                try:
                    held = await links.peek(PEEK_LIMIT)
                except BusError as exc:
                    problems.append(f"dead letters of {name}: {exc}")
                    held = []
                finally:
                    await links.close()
                dead.update(d.dead_letter_reason or "(no reason)" for d in held)
        return tuple(samples), dict(dead)

    async def _acs_counts(self, problems: list[str]) -> tuple[int | None, int | None]:
        """ACS's own counts, which only the emulator serves (Azure's are in Azure Monitor)."""
        assert self._session is not None
        endpoint = self._settings.acs_endpoint
        if not endpoint or not endpoint.startswith(("http://127.", "http://localhost", "https://127.")):
            return None, None
        try:
            async with self._session.get(
                endpoint.rstrip("/") + "/_emulator/stats", timeout=_HTTP_TIMEOUT, ssl=False
            ) as response:
                stats = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            problems.append(f"ACS Email emulator at {endpoint}: {type(exc).__name__}")
            return None, None
        return int(stats.get("accepted", 0)), int(stats.get("throttled", 0))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


async def _with_records(
    snapshot: PipelineSnapshot, records: RecordStore, *, since: datetime
) -> PipelineSnapshot:
    """The snapshot with latency percentiles and delivery outcomes from the delivery record."""
    from postbus.records import RecordError

    try:
        summary = await records.summary(since=since, until=datetime.now(UTC) + timedelta(seconds=1))
    except RecordError as exc:
        log.warning("console cannot read the delivery record", error=str(exc))
        return replace(snapshot, problems=(*snapshot.problems, f"delivery record: {exc}"))
    return replace(
        snapshot,
        accepted_latency=snapshot.accepted_latency or percentiles(summary.accepted_seconds),
        delivered_latency=percentiles(summary.delivered_seconds),
        delivery={outcome.value: n for outcome, n in summary.by_outcome().items()},
    )
