"""The links to one queue: receive, peek, settle, send, schedule and renew, every call translated.

:class:`QueueLinks` pairs a peek-lock receiver (on the queue or on its dead-letter subqueue) with a
sender to the queue. Links are opened once; after the SDK shuts a handler down (a dropped
connection, say) every call on it fails with :class:`~postbus.bus.errors.ConnectionLost`, and the
caller opens new links. Settlements are bounded by :data:`SETTLE_TIMEOUT`: the SDK would otherwise
wait a minute for an unanswered one and retry it through ``$management``. A settlement that fails
leaves the message locked until its lock expires; then it comes back::

    links = await QueueLinks(bus, "notifications", prefetch=16).open()
    try:
        for delivery in await links.receive(16, max_wait=1.0):
            async with links.keep_locked(delivery):
                ...
                await links.complete(delivery)
    finally:
        await links.close()
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from postbus.bus.connection import ServiceBusConnection
from postbus.bus.errors import BusError, ConnectionLost, servicebus_errors
from postbus.bus.messages import Delivery, delivery_from, to_servicebus_message
from postbus.bus.renewal import MIN_RENEW_INTERVAL, LockKeeper
from postbus.events import WireMessage
from postbus.logs import get_logger
from postbus.reasons import DeadLetterReason

if TYPE_CHECKING:
    from azure.servicebus.aio import AutoLockRenewer, ServiceBusReceiver, ServiceBusSender

__all__ = ["MAX_DESCRIPTION", "MAX_LOCK_RENEWAL", "MIN_RENEW_INTERVAL", "SETTLE_TIMEOUT", "QueueLinks"]

log = get_logger("postbus.bus")
T = TypeVar("T")

#: Longest wait for Service Bus to confirm one settlement or send.
SETTLE_TIMEOUT: Final = 15.0
#: Dead-letter descriptions are for humans; keep them well inside the property size limits.
MAX_DESCRIPTION: Final = 1024
#: Longest time one message's lock is kept renewed by :meth:`QueueLinks.keep_locked`.
MAX_LOCK_RENEWAL: Final = 300.0


class QueueLinks:
    """A receiver and a sender on one queue of a :class:`ServiceBusConnection`.

    ``dead_letters`` receives from the queue's dead-letter subqueue instead (the sender still
    sends to the queue); ``send=False`` opens no sender (for callers that only look). ``hold_for``
    keeps every received message locked (renewed) until it is settled, for up to that many
    seconds: for callers that hold messages while they work through others, as the dead-letter
    sweep does.
    """

    def __init__(
        self,
        connection: ServiceBusConnection,
        queue: str,
        *,
        dead_letters: bool = False,
        prefetch: int = 0,
        hold_for: float | None = None,
        send: bool = True,
    ) -> None:
        self.queue = queue
        self._connection = connection
        self._send = send
        self._dead_letters = dead_letters
        self._prefetch = prefetch
        self._hold_for = hold_for
        self._receiver: ServiceBusReceiver | None = None
        self._sender: ServiceBusSender | None = None
        self._renewer: AutoLockRenewer | None = None
        self._locks = LockKeeper(self._renew)

    @property
    def _entity(self) -> str:
        return f"the dead-letter queue of {self.queue!r}" if self._dead_letters else f"queue {self.queue!r}"

    async def open(self) -> QueueLinks:
        """Open the receiver and the sender; raises :class:`BusError` (the links are then closed)."""
        receiver = self._connection.receiver(
            self.queue, dead_letters=self._dead_letters, prefetch=self._prefetch
        )
        sender = self._connection.sender(self.queue) if self._send else None
        self._receiver, self._sender = receiver, sender
        if self._hold_for is not None:
            from azure.servicebus.aio import AutoLockRenewer

            self._renewer = AutoLockRenewer(max_lock_renewal_duration=self._hold_for)
        # Each link has its own connection, and the SDK polls a handshake one frame per 50 ms:
        # opening the two side by side halves the wait. A failure is raised once both are done.
        opening = [receiver.__aenter__()] + ([sender.__aenter__()] if sender is not None else [])
        try:
            with servicebus_errors(f"open {self._entity}"):
                for outcome in await asyncio.gather(*opening, return_exceptions=True):
                    if isinstance(outcome, BaseException):
                        raise outcome
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Close the links; failures are logged, never raised (the outcome that matters came first)."""
        await self._locks.close()
        renewer, sender, receiver = self._renewer, self._sender, self._receiver
        self._renewer = self._sender = self._receiver = None
        if renewer is not None:
            await self._close_one(renewer)  # first: it renews through the receiver
        # Side by side: each close may wait up to a second for its link's keep-alive task.
        await asyncio.gather(*(self._close_one(link) for link in (sender, receiver) if link is not None))

    async def _close_one(self, closable: AutoLockRenewer | ServiceBusSender | ServiceBusReceiver) -> None:
        try:
            with servicebus_errors(f"close {self._entity}"):
                await closable.close()
        except BusError as exc:
            log.debug("links close failed", error=str(exc))

    @property
    def receiver(self) -> ServiceBusReceiver:
        if self._receiver is None:
            raise ConnectionLost(f"use {self._entity}", "the links are not open")
        return self._receiver

    @property
    def sender(self) -> ServiceBusSender:
        if self._sender is None:
            raise ConnectionLost(f"use {self._entity}", "the links are not open")
        return self._sender

    # -- receiving ----------------------------------------------------------------------------------

    async def receive(self, max_count: int, *, max_wait: float) -> list[Delivery]:
        """Up to ``max_count`` locked messages, waiting at most ``max_wait`` seconds for the first."""
        receiver = self.receiver
        with servicebus_errors(f"receive from {self._entity}"):
            messages = await receiver.receive_messages(max_message_count=max_count, max_wait_time=max_wait)
        if self._renewer is not None:
            for message in messages:
                self._renewer.register(receiver, message)
        return [delivery_from(message) for message in messages]

    async def peek(self, max_count: int, *, from_sequence: int = 0) -> list[Delivery]:
        """Up to ``max_count`` messages from ``from_sequence`` on, without locking anything."""
        with servicebus_errors(f"peek {self._entity}"):
            messages = await self.receiver.peek_messages(
                max_message_count=max_count, sequence_number=from_sequence
            )
        return [delivery_from(message) for message in messages]

    # -- settling -----------------------------------------------------------------------------------

    async def complete(self, delivery: Delivery) -> None:
        """Remove the message: it was handled."""
        await self._settle("complete the message", self.receiver.complete_message(delivery.handle))

    async def abandon(self, delivery: Delivery) -> None:
        """Unlock the message for redelivery (its delivery count goes up)."""
        await self._settle("abandon the message", self.receiver.abandon_message(delivery.handle))

    async def dead_letter(self, delivery: Delivery, *, reason: DeadLetterReason, description: str) -> None:
        """Move the message to the dead-letter subqueue with a reason from the closed list."""
        call = self.receiver.dead_letter_message(
            delivery.handle,
            reason=DeadLetterReason(reason).value,
            error_description=description[:MAX_DESCRIPTION],
        )
        await self._settle("dead-letter the message", call)

    async def _settle(self, what: str, call: Awaitable[T]) -> T:
        with servicebus_errors(what):
            async with asyncio.timeout(SETTLE_TIMEOUT):
                return await call

    # -- sending ------------------------------------------------------------------------------------

    async def send(self, wire: WireMessage) -> None:
        """Send ``wire`` to the queue now."""
        await self._settle(
            f"send {wire.message_id} to {self.queue!r}",
            self.sender.send_messages(to_servicebus_message(wire)),
        )

    async def schedule(self, wire: WireMessage, *, at: datetime) -> None:
        """Enqueue ``wire`` so that it becomes visible at ``at``."""
        call = self.sender.schedule_messages(to_servicebus_message(wire), at)
        await self._settle(f"schedule {wire.message_id} on {self.queue!r}", call)

    # -- locks --------------------------------------------------------------------------------------

    def keep_locked(
        self, delivery: Delivery, *, up_to: float = MAX_LOCK_RENEWAL
    ) -> AbstractAsyncContextManager[None]:
        """Renew the message's lock while the block runs, and never after it.

        Not the SDK's ``AutoLockRenewer``: that renews until the message is marked settled, so a
        message whose settlement failed stays locked (up to its renewal limit) instead of coming
        back when its lock expires. Here renewal ends with the block, whatever happened in it. One
        task renews every held message (:class:`~postbus.bus.renewal.LockKeeper`).
        """
        return self._locks.hold(delivery, up_to=up_to)

    async def _renew(self, delivery: Delivery) -> None:
        message: Any = delivery.handle
        await self._settle("renew the lock", self.receiver.renew_message_lock(message))
