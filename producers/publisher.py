"""Publish notification events to the Service Bus queue.

One :class:`Publisher` holds one ``ServiceBusClient`` and one queue sender for its lifetime, so
every call after the first reuses the same AMQP connection and link::

    settings = load_settings()
    async with Publisher.from_settings(settings) as publisher:
        message_id = await publisher.publish(event)                      # "order-1001"
        await publisher.publish(reminder, send_at=visit - timedelta(days=1))
        ids = await publisher.publish_many(events)                       # validated first, then batched

Every event is validated and encoded before anything is sent; the messages are then packed into
as few size-limited batches (``create_message_batch``) as the queue's limit allows, and all batches
are built before the first one goes out, so an oversized event fails the call with nothing sent.
The client comes from the Service Bus adapter (:mod:`postbus.bus`), which also translates the
SDK's exceptions; here they become a :class:`PublishError` with a one-line message naming the
queue or the event. :class:`SyncPublisher` is the same API over the synchronous client.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from postbus.bus import (
    AccessDenied,
    AuthenticationFailed,
    BusBusy,
    BusError,
    BusTimeout,
    ConnectionLost,
    MessageSizeExceeded,
    QueueDisabled,
    QueueNotFound,
    QuotaExceeded,
    ServiceBusConnection,
    SyncServiceBusConnection,
    servicebus_errors,
)
from postbus.bus.errors import translate
from postbus.errors import PostbusError
from postbus.events import WireMessage
from postbus.logs import get_logger
from postbus.producers.outgoing import EventLike, Prepared, PropertiesHook, prepare, prepare_raw
from postbus.settings import Settings
from postbus.telemetry import PublishTrace, current_telemetry

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusMessageBatch
    from azure.servicebus import ServiceBusSender as SyncSender
    from azure.servicebus.aio import ServiceBusSender

__all__ = [
    "BATCH_HEADROOM_BYTES",
    "MAX_BATCH_MESSAGES",
    "PublishError",
    "Publisher",
    "SyncPublisher",
    "translate_error",
]

_log = get_logger(__name__)

#: Name of the thing being published in log lines and errors.
_PURPOSE: Final = "publishing"
#: Bytes kept free in every batch. The SDK sizes a batch before it copies the first message's id
#: (and partition key) onto the batch envelope, so a batch filled to the link limit goes out a few
#: dozen bytes over it and the broker rejects it with message-size-exceeded (seen on the emulator:
#: 262166 > 262144). Ids stop at 128 characters, so 512 bytes covers the envelope with room to spare.
BATCH_HEADROOM_BYTES: Final = 512
#: Service Bus refuses batches of more than 4500 messages whatever their size (Azure/azure-service-bus#397).
MAX_BATCH_MESSAGES: Final = 4500


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


class _Batch:
    """A ``ServiceBusMessageBatch`` with the ids of what went into it."""

    __slots__ = ("batch", "labels", "message_ids")

    def __init__(self, batch: ServiceBusMessageBatch) -> None:
        self.batch = batch
        self.labels: list[str] = []
        self.message_ids: list[str] = []

    def add(self, item: Prepared) -> bool:
        if len(self.message_ids) >= MAX_BATCH_MESSAGES:
            return False
        try:
            with servicebus_errors("add a message to the batch"):
                self.batch.add_message(item.message)
        except MessageSizeExceeded:
            return False
        self.labels.append(item.label)
        self.message_ids.append(item.message_id)
        return True


class _Progress:
    """What one publish call has done so far (for its log line, spans and errors)."""

    __slots__ = ("batches", "sent", "started")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.batches: list[_Batch] = []
        self.sent: list[str] = []


#: A packing plan: asks for an empty batch (``yield``) whenever it needs one; returns the full batches.
_Packing = Generator[None, "ServiceBusMessageBatch", list[_Batch]]


class _Core:
    """State and bookkeeping shared by the async and sync publishers (no I/O here)."""

    def __init__(
        self,
        *,
        queue: str,
        namespace: str,
        properties_hook: PropertiesHook | None,
        max_batch_bytes: int | None,
    ) -> None:
        self.queue = queue
        self.namespace = namespace
        self._properties_hook = properties_hook
        self._max_batch_bytes = max_batch_bytes
        self._batch_limit: int | None = None
        #: Batches sent over this publisher's lifetime (for benchmarks and tests).
        self.batches_sent = 0
        #: Messages sent over this publisher's lifetime.
        self.messages_sent = 0

    def _prepare(
        self, events: Iterable[EventLike], send_at: datetime | None
    ) -> tuple[list[Prepared], PublishTrace]:
        # One producer span per event; its context travels in the message's application properties.
        spans = current_telemetry().publishing(self.queue)
        try:
            prepared = prepare(events, send_at=send_at, properties_hook=spans.hook(self._properties_hook))
        except BaseException as exc:
            spans.finish((), exc)
            raise
        return prepared, spans

    def _learn_limit(self, link_limit: int) -> int:
        """The batch size to ask for: what the caller set, at most the link's limit less the headroom."""
        ceiling = max(1024, link_limit - BATCH_HEADROOM_BYTES)
        self._batch_limit = min(self._max_batch_bytes, ceiling) if self._max_batch_bytes else ceiling
        return self._batch_limit

    def _packing(self, prepared: Sequence[Prepared]) -> _Packing:
        """Pack ``prepared`` into as few batches as the limit allows; an oversized event fails the call."""
        batches: list[_Batch] = []
        current = _Batch((yield))
        for item in prepared:
            if current.add(item):
                continue
            if not current.labels:
                raise self._too_large(item, current.batch.max_size_in_bytes)
            batches.append(current)
            current = _Batch((yield))
            if not current.add(item):
                raise self._too_large(item, current.batch.max_size_in_bytes)
        if current.labels:
            batches.append(current)
        return batches

    def _too_large(self, item: Prepared, limit: int) -> PublishError:
        return PublishError(
            f"event {item.label!r} is larger than the {limit}-byte message limit of queue {self.queue!r}; "
            "nothing was sent"
        )

    @contextmanager
    def _calling(self, labels: Sequence[str], sent: Sequence[str]) -> Iterator[None]:
        """One Service Bus call on behalf of ``labels``; its failure becomes a :class:`PublishError`."""
        try:
            with servicebus_errors(f"send to queue {self.queue!r}"):
                yield
        except BusError as exc:
            raise translate_error(
                exc, queue=self.queue, namespace=self.namespace, labels=labels, published=sent
            ) from exc

    @contextmanager
    def _reporting(self, prepared: Sequence[Prepared], spans: PublishTrace | None) -> Iterator[_Progress]:
        """Log the call's line and end its spans, whether it succeeded or not."""
        progress = _Progress()
        try:
            yield progress
        except PublishError as error:
            self._logged(progress, prepared, error)
            if spans is not None:
                spans.finish(progress.sent, error)
            raise
        self._logged(progress, prepared)
        if spans is not None:
            spans.finish(progress.sent)

    def _record(self, progress: _Progress, batch: _Batch) -> None:
        progress.sent.extend(batch.message_ids)
        self.batches_sent += 1
        self.messages_sent += len(batch.message_ids)

    def _logged(
        self, progress: _Progress, prepared: Sequence[Prepared], error: PublishError | None = None
    ) -> None:
        fields: dict[str, Any] = {
            "queue": self.queue,
            "count": len(prepared),
            "scheduled": sum(1 for item in prepared if item.scheduled),
            "batches": len(progress.batches),
            "duration_ms": round((time.perf_counter() - progress.started) * 1000, 1),
        }
        if error is None:
            _log.info("publish", **fields)
        else:
            _log.warning("publish_failed", **fields, published=len(progress.sent), error=str(error))


class Publisher(_Core):
    """Async publisher over one :class:`~postbus.bus.ServiceBusConnection` and queue sender.

    ::

        async with Publisher.from_settings(settings) as publisher:
            ids = await publisher.publish_many(events)

    ``properties_hook(event) -> {name: value}`` adds application properties to each message (the
    telemetry seam). ``max_batch_bytes`` caps a batch below the queue's own limit. Calls made
    concurrently on one publisher are serialised (the SDK sender is not safe for concurrent use).
    """

    def __init__(
        self,
        connection: ServiceBusConnection,
        *,
        queue: str,
        properties_hook: PropertiesHook | None = None,
        max_batch_bytes: int | None = None,
    ) -> None:
        super().__init__(
            queue=queue,
            namespace=connection.namespace,
            properties_hook=properties_hook,
            max_batch_bytes=max_batch_bytes,
        )
        self._connection = connection
        self._sender: ServiceBusSender | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        properties_hook: PropertiesHook | None = None,
        max_batch_bytes: int | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> Publisher:
        """A publisher for ``settings.queue``: connection string if set, else namespace + DefaultAzureCredential.

        ``client_options`` go to the ``ServiceBusClient`` as keywords (e.g. ``retry_total``,
        ``retry_backoff_factor``); the SDK defaults retry three times over about 11 s.
        """
        connection = ServiceBusConnection.from_settings(
            settings, purpose=_PURPOSE, client_options=client_options
        )
        return cls(
            connection, queue=settings.queue, properties_hook=properties_hook, max_batch_bytes=max_batch_bytes
        )

    async def open(self) -> Self:
        """Create the client and sender (the link opens on first send); idempotent."""
        if self._sender is None:
            self._sender = self._connection.sender(self.queue)
        return self

    async def close(self) -> None:
        """Close the sender, the client and the credential."""
        sender, self._sender = self._sender, None
        try:
            if sender is not None:
                with servicebus_errors(f"close the sender of queue {self.queue!r}"):
                    await sender.close()
        except BusError as exc:
            _log.debug("publisher close failed", error=str(exc))
        finally:
            await self._connection.close()

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
        self, events: Iterable[EventLike], *, send_at: datetime | None = None
    ) -> list[str]:
        """Validate every event, then send them in size-limited batches; returns the message ids in order.

        Items are events, event documents (mappings) or objects with ``event`` and ``send_at``
        (their own ``send_at`` wins over the keyword). An invalid item raises ``InvalidEvent``
        naming its index and field, and nothing is sent.
        """
        return await self._send(*self._prepare(events, send_at))

    async def publish_raw(
        self, wires: Iterable[WireMessage], *, send_at: datetime | None = None
    ) -> list[str]:
        """For tests and demos: send wire messages exactly as given, without validating the body."""
        return await self._send(prepare_raw(wires, send_at=send_at))

    async def _pack(self, sender: ServiceBusSender, prepared: Sequence[Prepared]) -> list[_Batch]:
        packing = self._packing(prepared)
        next(packing)
        try:
            while True:
                if self._batch_limit is None:
                    # The first batch opens the link and tells us its limit.
                    self._learn_limit((await sender.create_message_batch()).max_size_in_bytes)
                packing.send(await sender.create_message_batch(self._batch_limit))
        except StopIteration as done:
            batches: list[_Batch] = done.value
            return batches

    async def _send(self, prepared: Sequence[Prepared], spans: PublishTrace | None = None) -> list[str]:
        if not prepared:
            return []
        await self.open()
        assert self._sender is not None
        async with self._lock:
            with self._reporting(prepared, spans) as progress:
                with self._calling([prepared[0].label], progress.sent):
                    progress.batches = await self._pack(self._sender, prepared)
                for batch in progress.batches:
                    with self._calling(batch.labels, progress.sent):
                        await self._sender.send_messages(batch.batch)
                    self._record(progress, batch)
        return [item.message_id for item in prepared]


class SyncPublisher(_Core):
    """The same API as :class:`Publisher` over the synchronous ``azure.servicebus`` client.

    ::

        with SyncPublisher.from_settings(settings) as publisher:
            publisher.publish(event)
    """

    def __init__(
        self,
        connection: SyncServiceBusConnection,
        *,
        queue: str,
        properties_hook: PropertiesHook | None = None,
        max_batch_bytes: int | None = None,
    ) -> None:
        super().__init__(
            queue=queue,
            namespace=connection.namespace,
            properties_hook=properties_hook,
            max_batch_bytes=max_batch_bytes,
        )
        self._connection = connection
        self._sender: SyncSender | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        properties_hook: PropertiesHook | None = None,
        max_batch_bytes: int | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> SyncPublisher:
        """Like :meth:`Publisher.from_settings`, with the synchronous client and credential."""
        connection = SyncServiceBusConnection.from_settings(
            settings, purpose=_PURPOSE, client_options=client_options
        )
        return cls(
            connection, queue=settings.queue, properties_hook=properties_hook, max_batch_bytes=max_batch_bytes
        )

    def open(self) -> Self:
        """Create the client and sender (the link opens on first send); idempotent."""
        if self._sender is None:
            self._sender = self._connection.client.get_queue_sender(self.queue)
        return self

    def close(self) -> None:
        """Close the sender, the client and the credential."""
        sender, self._sender = self._sender, None
        try:
            if sender is not None:
                with servicebus_errors(f"close the sender of queue {self.queue!r}"):
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

    def publish_many(self, events: Iterable[EventLike], *, send_at: datetime | None = None) -> list[str]:
        """See :meth:`Publisher.publish_many`."""
        return self._send(*self._prepare(events, send_at))

    def publish_raw(self, wires: Iterable[WireMessage], *, send_at: datetime | None = None) -> list[str]:
        """For tests and demos: send wire messages exactly as given, without validating the body."""
        return self._send(prepare_raw(wires, send_at=send_at))

    def _pack(self, sender: SyncSender, prepared: Sequence[Prepared]) -> list[_Batch]:
        packing = self._packing(prepared)
        next(packing)
        try:
            while True:
                if self._batch_limit is None:
                    self._learn_limit(sender.create_message_batch().max_size_in_bytes)
                packing.send(sender.create_message_batch(self._batch_limit))
        except StopIteration as done:
            batches: list[_Batch] = done.value
            return batches

    def _send(self, prepared: Sequence[Prepared], spans: PublishTrace | None = None) -> list[str]:
        if not prepared:
            return []
        self.open()
        assert self._sender is not None
        with self._lock, self._reporting(prepared, spans) as progress:
            with self._calling([prepared[0].label], progress.sent):
                progress.batches = self._pack(self._sender, prepared)
            for batch in progress.batches:
                with self._calling(batch.labels, progress.sent):
                    self._sender.send_messages(batch.batch)
                self._record(progress, batch)
        return [item.message_id for item in prepared]
