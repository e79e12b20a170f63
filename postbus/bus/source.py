"""Where the worker loop gets its messages: the :class:`MessageSource` seam and its Service Bus side.

A source is one queue (with lanes, one of several). The loop asks it for :class:`Links`, receives
and settles through them until they break, and then asks for new ones; it never sees an SDK type.
:class:`ServiceBusSource` is the real thing; :class:`~postbus.bus.memory.InMemoryBroker` ships
beside it for unit tests::

    source = ServiceBusSource(connection, "notifications", prefetch=16)
    links = await source.open()
    deliveries = await links.receive(16, max_wait=1.0)
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from postbus.bus.connection import ServiceBusConnection
from postbus.bus.links import QueueLinks
from postbus.bus.messages import Delivery
from postbus.events import WireMessage
from postbus.reasons import DeadLetterReason

__all__ = ["Links", "MessageSource", "ServiceBusSource", "SettlementPort"]


class SettlementPort(Protocol):
    """What settling a message needs from the queue."""

    async def complete(self, delivery: Delivery) -> None:
        """Remove the message: it was handled."""
        ...

    async def abandon(self, delivery: Delivery) -> None:
        """Unlock the message for redelivery (delivery count + 1)."""
        ...

    async def dead_letter(self, delivery: Delivery, *, reason: DeadLetterReason, description: str) -> None:
        """Move the message to the dead-letter subqueue."""
        ...

    async def schedule(self, wire: WireMessage, *, at: datetime) -> None:
        """Enqueue ``wire`` so that it becomes visible at ``at``."""
        ...


class Links(SettlementPort, Protocol):
    """A source's open links: receive, settle, keep a lock. Dead for good once a call raised ``ConnectionLost``."""

    async def receive(self, max_count: int, *, max_wait: float) -> list[Delivery]:
        """Up to ``max_count`` locked messages; empty when none came within ``max_wait`` seconds."""
        ...

    def keep_locked(self, delivery: Delivery) -> AbstractAsyncContextManager[None]:
        """Keep the message locked while the block runs, and not after it."""
        ...

    async def close(self) -> None:
        """Close the links (never raises)."""
        ...


class MessageSource(Protocol):
    """A queue the worker consumes: it opens fresh links on demand."""

    @property
    def queue(self) -> str:
        """The queue's name (span names, log lines)."""
        ...

    async def open(self) -> Links:
        """New links; raises :class:`~postbus.bus.errors.BusError` when they cannot be opened."""
        ...

    async def close(self) -> None:
        """Release the source itself (its connection)."""
        ...


class ServiceBusSource:
    """:class:`MessageSource` over one Service Bus queue, with ``prefetch`` messages buffered ahead."""

    def __init__(self, connection: ServiceBusConnection, queue: str, *, prefetch: int = 0) -> None:
        self._connection = connection
        self._queue = queue
        self._prefetch = prefetch

    @property
    def queue(self) -> str:
        return self._queue

    async def open(self) -> QueueLinks:
        return await QueueLinks(self._connection, self._queue, prefetch=self._prefetch).open()

    async def close(self) -> None:
        await self._connection.close()
