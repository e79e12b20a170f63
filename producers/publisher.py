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
Azure SDK exceptions are translated here, once, into :class:`PublishError` with a one-line message.
:class:`SyncPublisher` is the same API over the synchronous client.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.servicebus import exceptions as sb_errors

from postbus.errors import PostbusError, SettingsError
from postbus.events import WireMessage
from postbus.logs import get_logger
from postbus.producers.outgoing import EventLike, Prepared, PropertiesHook, prepare, prepare_raw
from postbus.settings import Settings, env_name
from postbus.telemetry import PublishTrace, current_telemetry

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusClient as SyncClient
    from azure.servicebus import ServiceBusMessageBatch
    from azure.servicebus import ServiceBusSender as SyncSender
    from azure.servicebus.aio import ServiceBusClient, ServiceBusSender

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


def _detail(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _what(labels: Sequence[str]) -> str:
    if len(labels) == 1:
        return f"event {labels[0]!r}"
    return f"a batch of {len(labels)} events starting with {labels[0]!r}"


def translate_error(
    exc: Exception, *, queue: str, namespace: str, labels: Sequence[str] = (), published: Sequence[str] = ()
) -> PublishError:
    """The one place azure exceptions become :class:`PublishError` (most specific class first)."""
    where = f"queue {queue!r} in {namespace}"
    message: str
    retryable = False
    if isinstance(exc, sb_errors.MessagingEntityNotFoundError):
        message = f"queue {queue!r} does not exist in {namespace}"
    elif isinstance(exc, sb_errors.MessageSizeExceededError):
        message = f"{_what(labels) if labels else 'a message'} is too large for {where}: {_detail(exc)}"
    elif isinstance(exc, sb_errors.ServiceBusAuthorizationError):
        message = f"not authorized to send to {where}: {_detail(exc)}"
    elif isinstance(exc, sb_errors.ServiceBusAuthenticationError | ClientAuthenticationError):
        message, retryable = f"could not authenticate to {namespace}: {_detail(exc)}", True
    elif isinstance(exc, sb_errors.ServiceBusQuotaExceededError):
        message, retryable = f"{where} is full (quota exceeded): {_detail(exc)}", True
    elif isinstance(exc, sb_errors.ServiceBusServerBusyError):
        message, retryable = f"Service Bus is busy ({where}); try again later", True
    elif isinstance(exc, sb_errors.OperationTimeoutError):
        message, retryable = f"timed out sending to {where}: {_detail(exc)}", True
    elif isinstance(exc, sb_errors.ServiceBusConnectionError | sb_errors.ServiceBusCommunicationError):
        message, retryable = f"cannot reach Service Bus at {namespace}: {_detail(exc)}", True
    elif isinstance(exc, sb_errors.MessagingEntityDisabledError):
        message = f"{where} is disabled"
    else:
        message, retryable = f"Service Bus error sending to {where}: {_detail(exc)}", True
    return PublishError(message, retryable=retryable, published=published)


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

    def _too_large(self, item: Prepared, limit: int) -> PublishError:
        return PublishError(
            f"event {item.label!r} is larger than the {limit}-byte message limit of queue {self.queue!r}; "
            "nothing was sent"
        )

    def _error(self, exc: Exception, labels: Sequence[str], published: Sequence[str]) -> PublishError:
        return translate_error(
            exc, queue=self.queue, namespace=self.namespace, labels=labels, published=published
        )

    def _logged(
        self,
        started: float,
        prepared: Sequence[Prepared],
        batches: int,
        sent: int,
        error: PublishError | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "queue": self.queue,
            "count": len(prepared),
            "scheduled": sum(1 for item in prepared if item.scheduled),
            "batches": batches,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        if error is None:
            _log.info("publish", **fields)
        else:
            _log.warning("publish_failed", **fields, published=sent, error=str(error))


def _connection_string(settings: Settings) -> tuple[str, str] | None:
    """``(connection string, namespace)``, or ``None`` when the namespace + credential path applies."""
    settings.require_servicebus(_PURPOSE)
    if settings.servicebus_connection_string is None:
        return None
    from azure.servicebus import parse_connection_string

    conn_str = settings.servicebus_connection_string.get_secret_value()
    try:
        namespace = parse_connection_string(conn_str).fully_qualified_namespace
    except ValueError:
        name = env_name("servicebus_connection_string")
        raise SettingsError(f"{name}: not a valid Service Bus connection string") from None
    return conn_str, namespace


class Publisher(_Core):
    """Async publisher over one ``azure.servicebus.aio`` client and queue sender.

    ::

        async with Publisher.from_settings(settings) as publisher:
            ids = await publisher.publish_many(events)

    ``properties_hook(event) -> {name: value}`` adds application properties to each message (the
    telemetry seam). ``max_batch_bytes`` caps a batch below the queue's own limit. Calls made
    concurrently on one publisher are serialised (the SDK sender is not safe for concurrent use).
    """

    def __init__(
        self,
        client_factory: Callable[[], ServiceBusClient],
        *,
        queue: str,
        namespace: str,
        properties_hook: PropertiesHook | None = None,
        max_batch_bytes: int | None = None,
        closers: Sequence[Callable[[], Any]] = (),
    ) -> None:
        super().__init__(
            queue=queue, namespace=namespace, properties_hook=properties_hook, max_batch_bytes=max_batch_bytes
        )
        self._client_factory = client_factory
        self._closers = tuple(closers)
        self._client: ServiceBusClient | None = None
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
        from azure.servicebus.aio import ServiceBusClient

        options = dict(client_options or {})
        if (found := _connection_string(settings)) is not None:
            conn_str, namespace = found
            return cls(
                lambda: ServiceBusClient.from_connection_string(conn_str, **options),
                queue=settings.queue,
                namespace=namespace,
                properties_hook=properties_hook,
                max_batch_bytes=max_batch_bytes,
            )
        from azure.identity.aio import DefaultAzureCredential

        namespace = settings.servicebus_namespace or ""
        credential = DefaultAzureCredential()
        return cls(
            lambda: ServiceBusClient(namespace, credential, **options),
            queue=settings.queue,
            namespace=namespace,
            properties_hook=properties_hook,
            max_batch_bytes=max_batch_bytes,
            closers=(credential.close,),
        )

    async def open(self) -> Self:
        """Create the client and sender (the link opens on first send); idempotent."""
        if self._sender is None:
            self._client = self._client_factory()
            self._sender = self._client.get_queue_sender(self.queue)
        return self

    async def close(self) -> None:
        """Close the sender, the client and the credential."""
        sender, client = self._sender, self._client
        self._sender = self._client = None
        if sender is not None:
            await sender.close()
        if client is not None:
            await client.close()
        for closer in self._closers:
            result = closer()
            if asyncio.iscoroutine(result):
                await result

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
        batches: list[_Batch] = []
        current = _Batch(await self._new_batch(sender), [])
        for item in prepared:
            if current.add(item):
                continue
            if not current.labels:
                raise self._too_large(item, current.batch.max_size_in_bytes)
            batches.append(current)
            current = _Batch(await self._new_batch(sender), [])
            if not current.add(item):
                raise self._too_large(item, current.batch.max_size_in_bytes)
        if current.labels:
            batches.append(current)
        return batches

    async def _new_batch(self, sender: ServiceBusSender) -> ServiceBusMessageBatch:
        if self._batch_limit is None:
            # The first batch opens the link and tells us its limit.
            self._learn_limit((await sender.create_message_batch()).max_size_in_bytes)
        return await sender.create_message_batch(self._batch_limit)

    async def _send(self, prepared: Sequence[Prepared], spans: PublishTrace | None = None) -> list[str]:
        started = time.perf_counter()
        if not prepared:
            return []
        await self.open()
        assert self._sender is not None
        sent: list[str] = []
        batches: list[_Batch] = []
        async with self._lock:
            try:
                try:
                    batches = await self._pack(self._sender, prepared)
                except (AzureError, ValueError) as exc:
                    raise self._error(exc, [prepared[0].label], sent) from exc
                for batch in batches:
                    try:
                        await self._sender.send_messages(batch.batch)
                    except (AzureError, ValueError) as exc:
                        raise self._error(exc, batch.labels, sent) from exc
                    sent.extend(batch.message_ids)
                    self.batches_sent += 1
                    self.messages_sent += len(batch.message_ids)
            except PublishError as error:
                self._logged(started, prepared, len(batches), len(sent), error)
                if spans is not None:
                    spans.finish(sent, error)
                raise
        self._logged(started, prepared, len(batches), len(sent))
        if spans is not None:
            spans.finish(sent)
        return [item.message_id for item in prepared]


class _Batch:
    """A ``ServiceBusMessageBatch`` with the ids of what went into it."""

    __slots__ = ("batch", "labels", "message_ids")

    def __init__(self, batch: ServiceBusMessageBatch, labels: list[str]) -> None:
        self.batch = batch
        self.labels = labels
        self.message_ids: list[str] = []

    def add(self, item: Prepared) -> bool:
        if len(self.message_ids) >= MAX_BATCH_MESSAGES:
            return False
        try:
            self.batch.add_message(item.message)
        except sb_errors.MessageSizeExceededError:
            return False
        self.labels.append(item.label)
        self.message_ids.append(item.message_id)
        return True


class SyncPublisher(_Core):
    """The same API as :class:`Publisher` over the synchronous ``azure.servicebus`` client.

    ::

        with SyncPublisher.from_settings(settings) as publisher:
            publisher.publish(event)
    """

    def __init__(
        self,
        client_factory: Callable[[], SyncClient],
        *,
        queue: str,
        namespace: str,
        properties_hook: PropertiesHook | None = None,
        max_batch_bytes: int | None = None,
        closers: Sequence[Callable[[], Any]] = (),
    ) -> None:
        super().__init__(
            queue=queue, namespace=namespace, properties_hook=properties_hook, max_batch_bytes=max_batch_bytes
        )
        self._client_factory = client_factory
        self._closers = tuple(closers)
        self._client: SyncClient | None = None
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
        from azure.servicebus import ServiceBusClient

        options = dict(client_options or {})
        if (found := _connection_string(settings)) is not None:
            conn_str, namespace = found
            return cls(
                lambda: ServiceBusClient.from_connection_string(conn_str, **options),
                queue=settings.queue,
                namespace=namespace,
                properties_hook=properties_hook,
                max_batch_bytes=max_batch_bytes,
            )
        from azure.identity import DefaultAzureCredential

        namespace = settings.servicebus_namespace or ""
        credential = DefaultAzureCredential()
        return cls(
            lambda: ServiceBusClient(namespace, credential, **options),
            queue=settings.queue,
            namespace=namespace,
            properties_hook=properties_hook,
            max_batch_bytes=max_batch_bytes,
            closers=(credential.close,),
        )

    def open(self) -> Self:
        """Create the client and sender (the link opens on first send); idempotent."""
        if self._sender is None:
            self._client = self._client_factory()
            self._sender = self._client.get_queue_sender(self.queue)
        return self

    def close(self) -> None:
        """Close the sender, the client and the credential."""
        sender, client = self._sender, self._client
        self._sender = self._client = None
        if sender is not None:
            sender.close()
        if client is not None:
            client.close()
        for closer in self._closers:
            closer()

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
        batches: list[_Batch] = []
        current = _Batch(self._new_batch(sender), [])
        for item in prepared:
            if current.add(item):
                continue
            if not current.labels:
                raise self._too_large(item, current.batch.max_size_in_bytes)
            batches.append(current)
            current = _Batch(self._new_batch(sender), [])
            if not current.add(item):
                raise self._too_large(item, current.batch.max_size_in_bytes)
        if current.labels:
            batches.append(current)
        return batches

    def _new_batch(self, sender: SyncSender) -> ServiceBusMessageBatch:
        if self._batch_limit is None:
            self._learn_limit(sender.create_message_batch().max_size_in_bytes)
        return sender.create_message_batch(self._batch_limit)

    def _send(self, prepared: Sequence[Prepared], spans: PublishTrace | None = None) -> list[str]:
        started = time.perf_counter()
        if not prepared:
            return []
        self.open()
        assert self._sender is not None
        sent: list[str] = []
        batches: list[_Batch] = []
        with self._lock:
            try:
                try:
                    batches = self._pack(self._sender, prepared)
                except (AzureError, ValueError) as exc:
                    raise self._error(exc, [prepared[0].label], sent) from exc
                for batch in batches:
                    try:
                        self._sender.send_messages(batch.batch)
                    except (AzureError, ValueError) as exc:
                        raise self._error(exc, batch.labels, sent) from exc
                    sent.extend(batch.message_ids)
                    self.batches_sent += 1
                    self.messages_sent += len(batch.message_ids)
            except PublishError as error:
                self._logged(started, prepared, len(batches), len(sent), error)
                if spans is not None:
                    spans.finish(sent, error)
                raise
        self._logged(started, prepared, len(batches), len(sent))
        if spans is not None:
            spans.finish(sent)
        return [item.message_id for item in prepared]
