"""One Service Bus namespace: the SDK client built from the settings, and the credential it owns.

The settings name either a connection string (SAS, or the local emulator) or a fully qualified
namespace, which is reached with ``DefaultAzureCredential`` (managed identity in Azure). Either
way the client is built here and nowhere else, lazily (constructing a connection does no I/O),
and closing the connection closes the client *and* the credential::

    async with ServiceBusConnection.from_settings(settings, purpose="the worker") as bus:
        links = QueueLinks(bus, settings.queue)

:class:`SyncServiceBusConnection` is the same for the synchronous client (``SyncPublisher``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from postbus.bus.errors import QueueNotFound, servicebus_errors
from postbus.errors import SettingsError
from postbus.settings import Settings, env_name

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusClient as SyncClient
    from azure.servicebus import ServiceBusSender as SyncSender
    from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
    from azure.servicebus.aio.management import ServiceBusAdministrationClient

__all__ = ["QueueSettings", "ServiceBusConnection", "SyncServiceBusConnection", "namespace_of"]

#: Longest wait for the management API's answer about a queue.
_ADMIN_TIMEOUT: Final = 20.0


def namespace_of(settings: Settings, purpose: str) -> tuple[str, str | None]:
    """``(namespace, connection string or None)``; a missing or malformed setting is a :class:`SettingsError`.

    The error never echoes the connection string: it holds the key.
    """
    settings.require_servicebus(purpose)
    if settings.servicebus_connection_string is None:
        return settings.servicebus_namespace or "", None
    from azure.servicebus import parse_connection_string

    conn_str = settings.servicebus_connection_string.get_secret_value()
    try:
        namespace = parse_connection_string(conn_str).fully_qualified_namespace
    except ValueError:
        name = env_name("servicebus_connection_string")
        raise SettingsError(f"{name}: not a valid Service Bus connection string") from None
    return namespace, conn_str


def _duration(value: timedelta | str | None) -> timedelta:
    """The SDK reports durations as ``timedelta`` (ISO 8601 text from older API versions)."""
    if value is None:
        return timedelta(0)
    if isinstance(value, timedelta):
        return value
    from pydantic import TypeAdapter

    return TypeAdapter(timedelta).validate_python(value)


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """The queue properties Postbus relies on, as the management API reports them."""

    requires_duplicate_detection: bool
    duplicate_detection_history_time_window: timedelta
    max_delivery_count: int
    lock_duration: timedelta
    requires_session: bool


class _Namespace:
    """A namespace and how to reach it: a connection string, or a token credential built on demand.

    ``client_options`` go to ``ServiceBusClient`` (``retry_total``, ``retry_backoff_factor``, ...);
    the SDK's defaults retry three times over about 11 s. ``socket_timeout`` and ``keep_alive``
    (seconds, 0 for none) go to every receiver and sender (the SDK reads them there, not from the
    client's options): the SDK pings an idle link every ``keep_alive`` seconds, and a link's close
    waits for its pinging task to notice (up to a second).
    """

    def __init__(
        self,
        namespace: str,
        *,
        connection_string: str | None,
        client_options: Mapping[str, Any] | None = None,
        keep_alive: int = 30,
        socket_timeout: float | None = None,
    ) -> None:
        self.namespace = namespace
        self._conn_str = connection_string
        self._options = dict(client_options or {})
        self.keep_alive = keep_alive
        self._socket_timeout = socket_timeout
        self._credential: Any = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, purpose: str, client_options: Mapping[str, Any] | None = None
    ) -> Self:
        """The namespace the settings name; raises :class:`SettingsError` (naming ``purpose``) if none."""
        namespace, conn_str = namespace_of(settings, purpose)
        return cls(
            namespace,
            connection_string=conn_str,
            client_options=client_options,
            keep_alive=settings.servicebus_keep_alive_seconds,
            socket_timeout=settings.socket_timeout,
        )


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """What a queue holds right now, as the management API counts it."""

    active: int
    scheduled: int
    dead_lettered: int


class ServiceBusConnection(_Namespace):
    """The async client of one namespace, created on first use, and the credential it owns."""

    _client: ServiceBusClient | None = None

    @property
    def client(self) -> ServiceBusClient:
        """The SDK client (for the adapter's links; nothing outside :mod:`postbus.bus` uses it)."""
        if self._client is None:
            from azure.servicebus.aio import ServiceBusClient

            if self._conn_str is not None:
                self._client = ServiceBusClient.from_connection_string(self._conn_str, **self._options)
            else:
                self._client = ServiceBusClient(self.namespace, self._token_credential(), **self._options)
        return self._client

    def receiver(self, queue: str, *, dead_letters: bool = False, prefetch: int = 0) -> ServiceBusReceiver:
        """A peek-lock receiver on ``queue`` or its dead-letter subqueue (not opened yet)."""
        from azure.servicebus import ServiceBusReceiveMode, ServiceBusSubQueue

        return self.client.get_queue_receiver(
            queue,
            sub_queue=ServiceBusSubQueue.DEAD_LETTER if dead_letters else None,
            receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
            prefetch_count=prefetch,
            # Without prefetch the SDK pings every 5 s whatever this says.
            keep_alive=self.keep_alive,
            # Each settlement waits for the broker's echo by polling the connection one read at a
            # time behind a shared lock; an echo that another coroutine's read already took is
            # noticed only when this read times out, so the timeout is the settlement latency.
            socket_timeout=self._socket_timeout,
        )

    def sender(self, queue: str) -> ServiceBusSender:
        """A sender on ``queue`` (its link opens on first use)."""
        return self.client.get_queue_sender(
            queue, keep_alive=self.keep_alive, socket_timeout=self._socket_timeout
        )

    async def queue_settings(self, queue: str) -> QueueSettings | None:
        """The queue's properties from the management API; ``None`` when the queue does not exist.

        Raises :class:`~postbus.bus.errors.BusError` when the API cannot be reached (the local
        emulator does not serve it).
        """
        admin = self._admin()
        try:
            with servicebus_errors(f"read the properties of queue {queue!r}"):
                async with asyncio.timeout(_ADMIN_TIMEOUT), admin:
                    found = await admin.get_queue(queue)
        except QueueNotFound:
            return None
        return QueueSettings(
            requires_duplicate_detection=bool(found.requires_duplicate_detection),
            duplicate_detection_history_time_window=_duration(found.duplicate_detection_history_time_window),
            max_delivery_count=int(found.max_delivery_count or 0),
            lock_duration=_duration(found.lock_duration),
            requires_session=bool(found.requires_session),
        )

    async def queue_depth(self, queue: str) -> QueueDepth | None:
        """Active, scheduled and dead-lettered counts from the management API; ``None`` when the
        queue does not exist. Raises :class:`~postbus.bus.errors.BusError` when the API cannot be
        reached (the local emulator serves the counts on its admin endpoint instead)."""
        admin = self._admin()
        try:
            with servicebus_errors(f"read the runtime counts of queue {queue!r}"):
                async with asyncio.timeout(_ADMIN_TIMEOUT), admin:
                    found = await admin.get_queue_runtime_properties(queue)
        except QueueNotFound:
            return None
        return QueueDepth(
            active=int(found.active_message_count or 0),
            scheduled=int(found.scheduled_message_count or 0),
            dead_lettered=int(found.dead_letter_message_count or 0),
        )

    async def close(self) -> None:
        """Close the client and the credential (each only if it was created)."""
        client, credential = self._client, self._credential
        self._client = self._credential = None
        try:
            if client is not None:
                await client.close()
        finally:
            if credential is not None:
                await credential.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _token_credential(self) -> Any:
        if self._credential is None:
            from azure.identity.aio import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    def _admin(self) -> ServiceBusAdministrationClient:
        from azure.servicebus.aio.management import ServiceBusAdministrationClient

        if self._conn_str is not None:
            return ServiceBusAdministrationClient.from_connection_string(self._conn_str, retry_total=0)
        return ServiceBusAdministrationClient(self.namespace, self._token_credential(), retry_total=0)


class SyncServiceBusConnection(_Namespace):
    """:class:`ServiceBusConnection` for the synchronous client (same settings, same ownership)."""

    _client: SyncClient | None = None

    @property
    def client(self) -> SyncClient:
        """The synchronous SDK client, created on first use."""
        if self._client is None:
            from azure.servicebus import ServiceBusClient

            if self._conn_str is not None:
                self._client = ServiceBusClient.from_connection_string(self._conn_str, **self._options)
            else:
                from azure.identity import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
                self._client = ServiceBusClient(self.namespace, self._credential, **self._options)
        return self._client

    def sender(self, queue: str) -> SyncSender:
        """A sender on ``queue`` (its link opens on first use)."""
        return self.client.get_queue_sender(
            queue, keep_alive=self.keep_alive, socket_timeout=self._socket_timeout
        )

    def close(self) -> None:
        """Close the client and the credential (each only if it was created)."""
        client, credential = self._client, self._credential
        self._client = self._credential = None
        try:
            if client is not None:
                client.close()
        finally:
            if credential is not None:
                credential.close()
