"""Publish notification events to the Service Bus queue.

One :class:`Publisher` holds one ``ServiceBusClient`` and one queue sender for its lifetime, so
every call after the first reuses the same AMQP connection and link::

    settings = load_settings()
    async with Publisher.from_settings(settings) as publisher:
        message_id = await publisher.publish(event)                      # "order-1001"
        await publisher.publish(reminder, send_at=visit - timedelta(days=1))
        ids = await publisher.publish_many(events)                       # validated first, then batched

Every event is validated and encoded before anything is sent, then packed into as few
size-limited batches as the queue allows (:mod:`postbus.producers.batching`), so an oversized
event fails the call with nothing sent. The client comes from the Service Bus adapter (:mod:`postbus.bus`), which also translates the
SDK's exceptions; here they become a :class:`PublishError` with a one-line message naming the
queue or the event. :class:`SyncPublisher` is the same API over the synchronous client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

from postbus.attachments import AttachmentStore, attachment_store
from postbus.bus import BusError, ServiceBusConnection, SyncServiceBusConnection, servicebus_errors
from postbus.events import WireMessage
from postbus.lanes import lane_queues
from postbus.logs import get_logger
from postbus.producers.batching import (
    BATCH_HEADROOM_BYTES,
    MAX_BATCH_MESSAGES,
    Batch,
    LanePolicy,
    PublisherCore,
)
from postbus.producers.checks import EventCheck, publish_checks
from postbus.producers.errors import PublishError, translate_error
from postbus.producers.outgoing import (
    EventLike,
    Prepared,
    PropertiesHook,
    Resolved,
    prepare_raw,
)
from postbus.settings import Settings
from postbus.telemetry import PublishTrace

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusSender as SyncSender
    from azure.servicebus.aio import ServiceBusSender

# PublishError, translate_error and the batch limits are part of the publisher's public names.
__all__ = [
    "BATCH_HEADROOM_BYTES",
    "DEFAULT_CHECKS",
    "MAX_BATCH_MESSAGES",
    "LanePolicy",
    "PublishError",
    "Publisher",
    "SyncPublisher",
    "lane_policy",
    "translate_error",
]

_log = get_logger(__name__)

_T = TypeVar("_T")

#: Name of the thing being published in log lines and errors.
_PURPOSE: Final = "publishing"


def lane_policy(settings: Settings) -> LanePolicy:
    """The lanes of ``settings``: each lane's queue, whether this producer may raise a lane, the catalogue."""
    return LanePolicy(
        queues=lane_queues(settings),
        may_raise=settings.lane_raise_allowed,
        templates_dir=settings.templates_dir,
    )


class _Default:
    """The type of :data:`DEFAULT_CHECKS`."""

    def __repr__(self) -> str:
        return "DEFAULT_CHECKS"


#: ``from_settings(check=...)`` default: :func:`~postbus.producers.checks.publish_checks` of the settings.
DEFAULT_CHECKS: Final = _Default()


class Publisher(PublisherCore):
    """Async publisher over one :class:`~postbus.bus.ServiceBusConnection` and queue sender.

    ::

        async with Publisher.from_settings(settings) as publisher:
            ids = await publisher.publish_many(events)

    ``properties_hook(event) -> {name: value}`` adds application properties to each message (the
    telemetry seam). ``max_batch_bytes`` caps a batch below the queue's own limit. Calls made
    concurrently on one publisher are serialised (the SDK sender is not safe for concurrent use).
    ``attachments`` is the claim-check store (:mod:`postbus.attachments`), which the publisher owns
    and closes: attachments over ``inline_max_bytes``, and any that would make the message larger
    than the queue takes, are written there and travel as references. Without it (``None``) an
    event that does not fit is refused.
    """

    def __init__(
        self,
        connection: ServiceBusConnection,
        *,
        queue: str,
        properties_hook: PropertiesHook | None = None,
        max_batch_bytes: int | None = None,
        lanes: LanePolicy | None = None,
        attachments: AttachmentStore | None = None,
        inline_max_bytes: int = 64 * 1024,
        check: EventCheck | None = None,
    ) -> None:
        super().__init__(
            queue=queue,
            namespace=connection.namespace,
            properties_hook=properties_hook,
            max_batch_bytes=max_batch_bytes,
            lanes=lanes,
            attachments=attachments,
            inline_max_bytes=inline_max_bytes,
            check=check,
        )
        self._connection = connection
        self._senders: dict[str, ServiceBusSender] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        properties_hook: PropertiesHook | None = None,
        max_batch_bytes: int | None = None,
        client_options: Mapping[str, Any] | None = None,
        check: EventCheck | _Default | None = DEFAULT_CHECKS,
    ) -> Publisher:
        """A publisher for ``settings.queue``: connection string if set, else namespace + DefaultAzureCredential.

        ``client_options`` go to the ``ServiceBusClient`` as keywords (e.g. ``retry_total``,
        ``retry_backoff_factor``); the SDK defaults retry three times over about 11 s. ``check``
        runs on every event before anything is sent: by default :func:`publish_checks` (an
        expired ``not_after``; a sender alias ``POSTBUS_SENDERS`` does not list, when it lists
        any); ``None`` turns it off, for code that publishes what the worker must refuse.
        """
        connection = ServiceBusConnection.from_settings(
            settings, purpose=_PURPOSE, client_options=client_options
        )
        return cls(
            connection,
            queue=settings.queue,
            properties_hook=properties_hook,
            max_batch_bytes=max_batch_bytes,
            lanes=lane_policy(settings),
            attachments=attachment_store(settings),
            inline_max_bytes=settings.attachment_inline_max_bytes,
            check=publish_checks(settings) if isinstance(check, _Default) else check,
        )

    async def open(self) -> Self:
        """Create the client and sender (the link opens on first send); idempotent."""
        self._sender_for(self.queue)
        return self

    def _sender_for(self, queue: str) -> ServiceBusSender:
        sender = self._senders.get(queue)
        if sender is None:
            sender = self._senders[queue] = self._connection.sender(queue)
        return sender

    async def close(self) -> None:
        """Close the senders, the client and the credential."""
        senders, self._senders = self._senders, {}
        try:
            for queue, sender in senders.items():
                try:
                    with servicebus_errors(f"close the sender of queue {queue!r}"):
                        await sender.close()
                except BusError as exc:
                    _log.debug("publisher close failed", error=str(exc))
        finally:
            try:
                await self._connection.close()
            finally:
                if self.attachments is not None:
                    await self.attachments.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def publish(self, event: EventLike, send_at: datetime | None = None) -> str:
        """Publish one event (``send_at``: aware datetime, the scheduled enqueue time); returns its message id."""
        ids = await self.publish_many([event], send_at=send_at)
        return ids[0]

    async def publish_many(
        self,
        events: Iterable[EventLike],
        *,
        send_at: datetime | None = None,
        may_raise_lanes: bool | None = None,
    ) -> list[str]:
        """Validate every event, then send them in size-limited batches; returns the message ids in order.

        Items are events, event documents (mappings) or objects with ``event`` and ``send_at``
        (their own ``send_at`` wins over the keyword). An invalid item raises ``InvalidEvent``
        naming its index and field, and nothing is sent; so does an event asking for a lane above
        its type's default when this call may not raise lanes (``may_raise_lanes``, by default the
        publisher's :class:`LanePolicy`). Each event goes to its lane's queue.
        """
        resolved = self._resolve(events, send_at, may_raise_lanes)
        store = self.attachments
        if store is not None and self._needs_claim_check(resolved, store=store):
            if self._batch_limit is None:
                # The queue's limit decides what must move; the first batch opens the link and tells it.
                await self.open()
                sender = self._sender_for(self.queue)
                async with self._lock:
                    with self._calling([resolved[0].event.id], []):
                        self._learn_limit((await sender.create_message_batch()).max_size_in_bytes)
            resolved = await self._check_in_all(store, resolved)
        return await self._send(*self._encode(resolved))

    async def publish_raw(
        self, wires: Iterable[WireMessage], *, send_at: datetime | None = None
    ) -> list[str]:
        """For tests and demos: send wire messages exactly as given, without validating the body."""
        return await self._send(prepare_raw(wires, send_at=send_at))

    async def _pack(self, sender: ServiceBusSender, prepared: Sequence[Prepared], queue: str) -> list[Batch]:
        packing = self._packing(prepared, queue)
        next(packing)
        try:
            while True:
                if self._batch_limit is None:
                    # The first batch opens the link and tells us its limit.
                    self._learn_limit((await sender.create_message_batch()).max_size_in_bytes)
                packing.send(await sender.create_message_batch(self._batch_limit))
        except StopIteration as done:
            batches: list[Batch] = done.value
            return batches

    async def _send(self, prepared: Sequence[Prepared], spans: PublishTrace | None = None) -> list[str]:
        if not prepared:
            return []
        async with self._lock:
            with self._reporting(prepared, spans) as progress:
                # Every lane's batches are packed before the first goes out: an oversized event sends nothing.
                plan: list[tuple[str, ServiceBusSender, list[Batch]]] = []
                for queue, group in self._by_queue(prepared):
                    sender = self._sender_for(queue)
                    with self._calling([group[0].label], progress.sent, queue):
                        plan.append((queue, sender, await self._pack(sender, group, queue)))
                progress.batches = [batch for _, _, batches in plan for batch in batches]
                for queue, sender, batches in plan:
                    for batch in batches:
                        with self._calling(batch.labels, progress.sent, queue):
                            await sender.send_messages(batch.batch)
                        self._record(progress, batch)
        return [item.message_id for item in prepared]


def _run_private(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` on a new event loop in its own thread (the caller's thread may have a loop)."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="postbus-claim-check") as pool:
        return pool.submit(asyncio.run, coroutine).result()


class SyncPublisher(PublisherCore):
    """The same API as :class:`Publisher` over the synchronous ``azure.servicebus`` client.

    ::

        with SyncPublisher.from_settings(settings) as publisher:
            publisher.publish(event)

    The attachment store is asynchronous: ``attachments_factory`` opens one for each call that
    has attachments to move, and the call runs it to completion on a private event loop.
    """

    def __init__(
        self,
        connection: SyncServiceBusConnection,
        *,
        queue: str,
        properties_hook: PropertiesHook | None = None,
        max_batch_bytes: int | None = None,
        lanes: LanePolicy | None = None,
        attachments_factory: Callable[[], AttachmentStore] | None = None,
        inline_max_bytes: int = 64 * 1024,
        check: EventCheck | None = None,
    ) -> None:
        super().__init__(
            queue=queue,
            namespace=connection.namespace,
            properties_hook=properties_hook,
            max_batch_bytes=max_batch_bytes,
            lanes=lanes,
            inline_max_bytes=inline_max_bytes,
            check=check,
        )
        self._attachments_factory = attachments_factory
        self._connection = connection
        self._senders: dict[str, SyncSender] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        properties_hook: PropertiesHook | None = None,
        max_batch_bytes: int | None = None,
        client_options: Mapping[str, Any] | None = None,
        check: EventCheck | _Default | None = DEFAULT_CHECKS,
    ) -> SyncPublisher:
        """Like :meth:`Publisher.from_settings`, with the synchronous client and credential."""
        connection = SyncServiceBusConnection.from_settings(
            settings, purpose=_PURPOSE, client_options=client_options
        )
        return cls(
            connection,
            queue=settings.queue,
            properties_hook=properties_hook,
            max_batch_bytes=max_batch_bytes,
            lanes=lane_policy(settings),
            attachments_factory=lambda: attachment_store(settings),
            inline_max_bytes=settings.attachment_inline_max_bytes,
            check=publish_checks(settings) if isinstance(check, _Default) else check,
        )

    def open(self) -> Self:
        """Create the client and sender (the link opens on first send); idempotent."""
        self._sender_for(self.queue)
        return self

    def _sender_for(self, queue: str) -> SyncSender:
        sender = self._senders.get(queue)
        if sender is None:
            sender = self._senders[queue] = self._connection.sender(queue)
        return sender

    def close(self) -> None:
        """Close the senders, the client and the credential."""
        senders, self._senders = self._senders, {}
        try:
            for queue, sender in senders.items():
                try:
                    with servicebus_errors(f"close the sender of queue {queue!r}"):
                        sender.close()
                except BusError as exc:
                    _log.debug("publisher close failed", error=str(exc))
        finally:
            self._connection.close()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def publish(self, event: EventLike, send_at: datetime | None = None) -> str:
        """See :meth:`Publisher.publish`."""
        return self.publish_many([event], send_at=send_at)[0]

    def publish_many(
        self,
        events: Iterable[EventLike],
        *,
        send_at: datetime | None = None,
        may_raise_lanes: bool | None = None,
    ) -> list[str]:
        """See :meth:`Publisher.publish_many`."""
        resolved = self._resolve(events, send_at, may_raise_lanes)
        factory = self._attachments_factory
        if factory is not None and self._needs_claim_check(resolved, store=factory):
            if self._batch_limit is None:
                self.open()
                sender = self._sender_for(self.queue)
                with self._lock, self._calling([resolved[0].event.id], []):
                    self._learn_limit(sender.create_message_batch().max_size_in_bytes)
            resolved = _run_private(self._check_in_with(factory, resolved))
        return self._send(*self._encode(resolved))

    async def _check_in_with(
        self, factory: Callable[[], AttachmentStore], resolved: Sequence[Resolved]
    ) -> list[Resolved]:
        store = factory()
        try:
            return await self._check_in_all(store, resolved)
        finally:
            await store.close()

    def publish_raw(self, wires: Iterable[WireMessage], *, send_at: datetime | None = None) -> list[str]:
        """For tests and demos: send wire messages exactly as given, without validating the body."""
        return self._send(prepare_raw(wires, send_at=send_at))

    def _pack(self, sender: SyncSender, prepared: Sequence[Prepared], queue: str) -> list[Batch]:
        packing = self._packing(prepared, queue)
        next(packing)
        try:
            while True:
                if self._batch_limit is None:
                    self._learn_limit(sender.create_message_batch().max_size_in_bytes)
                packing.send(sender.create_message_batch(self._batch_limit))
        except StopIteration as done:
            batches: list[Batch] = done.value
            return batches

    def _send(self, prepared: Sequence[Prepared], spans: PublishTrace | None = None) -> list[str]:
        if not prepared:
            return []
        with self._lock, self._reporting(prepared, spans) as progress:
            plan: list[tuple[str, SyncSender, list[Batch]]] = []
            for queue, group in self._by_queue(prepared):
                sender = self._sender_for(queue)
                with self._calling([group[0].label], progress.sent, queue):
                    plan.append((queue, sender, self._pack(sender, group, queue)))
            progress.batches = [batch for _, _, batches in plan for batch in batches]
            for queue, sender, batches in plan:
                for batch in batches:
                    with self._calling(batch.labels, progress.sent, queue):
                        sender.send_messages(batch.batch)
                    self._record(progress, batch)
        return [item.message_id for item in prepared]
