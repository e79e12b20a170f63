"""The Service Bus adapter of the worker: client construction, deliveries, settlement calls.

This is the only worker module that catches ``azure.servicebus`` exceptions. A failed settlement
becomes :class:`SettlementFailed`; the message then comes back when its lock expires, and the
stable ACS operation id keeps that redelivery from sending a second email.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from azure.servicebus.exceptions import MessageAlreadySettled, MessageLockLostError, ServiceBusError

from postbus.errors import PostbusError
from postbus.events import WireMessage, to_servicebus_message
from postbus.logs import get_logger
from postbus.settings import Settings
from postbus.worker.pipeline import Delivery

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_LOCK_RENEWAL",
    "SETTLE_TIMEOUT",
    "ServiceBusPort",
    "SettlementFailed",
    "SettlementPort",
    "delivery_from",
    "servicebus_client",
]

log = get_logger("postbus.worker")

#: Longest wait for Service Bus to confirm one settlement.
SETTLE_TIMEOUT = 15.0
#: Dead-letter descriptions are for humans; keep them well inside the property size limits.
MAX_DESCRIPTION = 1024
#: Longest time one message's lock is kept renewed; ACS sends take seconds, so this is generous.
MAX_LOCK_RENEWAL: Final = 300.0
#: Shortest pause between two renewals of one lock.
MIN_RENEW_INTERVAL: Final = 0.5


class SettlementFailed(PostbusError):
    """Service Bus did not take a settlement; ``lock_lost`` means the message will come back."""

    def __init__(self, message: str, *, lock_lost: bool) -> None:
        super().__init__(message)
        self.lock_lost = lock_lost


class SettlementPort(Protocol):
    """What settlement needs from the queue (the seam for unit tests)."""

    async def complete(self, message: Any) -> None:
        """Remove the message: it was handled."""
        ...

    async def abandon(self, message: Any) -> None:
        """Unlock the message for redelivery (delivery count + 1)."""
        ...

    async def dead_letter(self, message: Any, *, reason: str, description: str) -> None:
        """Move the message to the dead-letter subqueue."""
        ...

    async def schedule(self, wire: WireMessage, *, at: datetime) -> None:
        """Enqueue ``wire`` so that it becomes visible at ``at``."""
        ...


def servicebus_client(settings: Settings) -> ServiceBusClient:
    """An async client from the connection string, or the namespace with DefaultAzureCredential."""
    settings.require_servicebus("the worker")
    if settings.servicebus_connection_string is not None:
        return ServiceBusClient.from_connection_string(
            settings.servicebus_connection_string.get_secret_value()
        )
    from azure.identity.aio import DefaultAzureCredential

    return ServiceBusClient(settings.servicebus_namespace or "", DefaultAzureCredential())


def delivery_from(message: ServiceBusReceivedMessage) -> Delivery:
    """The SDK-free view of a received message."""
    body = message.body
    raw = body if isinstance(body, bytes) else b"".join(body) if body is not None else b""
    return Delivery(
        body=raw,
        content_type=message.content_type,
        application_properties=message.application_properties or {},
        message_id=str(message.message_id or ""),
        delivery_count=int(message.delivery_count or 0),
        sequence_number=message.sequence_number,
    )


class ServiceBusPort:
    """:class:`SettlementPort` over one receiver (settlement) and one sender (delayed retries)."""

    def __init__(self, receiver: ServiceBusReceiver, sender: ServiceBusSender) -> None:
        self._receiver = receiver
        self._sender = sender

    async def complete(self, message: ServiceBusReceivedMessage) -> None:
        await self._settle("complete", self._receiver.complete_message(message))

    async def abandon(self, message: ServiceBusReceivedMessage) -> None:
        await self._settle("abandon", self._receiver.abandon_message(message))

    async def dead_letter(self, message: ServiceBusReceivedMessage, *, reason: str, description: str) -> None:
        call = self._receiver.dead_letter_message(
            message, reason=reason, error_description=description[:MAX_DESCRIPTION]
        )
        await self._settle("dead-letter", call)

    async def schedule(self, wire: WireMessage, *, at: datetime) -> None:
        try:
            await self._sender.schedule_messages(to_servicebus_message(wire), at)
        except ServiceBusError as exc:
            raise SettlementFailed(
                f"could not schedule retry {wire.message_id}: {exc}", lock_lost=False
            ) from exc

    @contextlib.asynccontextmanager
    async def keep_locked(
        self, message: ServiceBusReceivedMessage, *, up_to: float = MAX_LOCK_RENEWAL
    ) -> AsyncIterator[None]:
        """Renew the message's lock while the block runs, and never after it.

        Not the SDK's ``AutoLockRenewer``: that renews until the message is marked settled, so a
        message whose settlement failed stays locked (up to its renewal limit) instead of coming
        back when its lock expires. Here renewal ends with the handler, whatever happened in it.
        """
        renewal = asyncio.create_task(self._renew(message, up_to), name=f"renew {message.message_id}")
        try:
            yield
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal

    async def _renew(self, message: ServiceBusReceivedMessage, up_to: float) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + up_to
        while True:
            locked_until = message.locked_until_utc
            if locked_until is None:
                return
            # Renew halfway through what is left: a 5 s lock every 2.5 s, the default minute every 30 s.
            left = (locked_until - datetime.now(UTC)).total_seconds()
            wait = max(MIN_RENEW_INTERVAL, left / 2)
            if loop.time() + wait > give_up:
                return
            await asyncio.sleep(wait)
            try:
                async with asyncio.timeout(SETTLE_TIMEOUT):
                    await self._receiver.renew_message_lock(message)
            except (TimeoutError, ServiceBusError, ValueError) as exc:
                # The lock is lost or the receiver is gone: the message comes back when it expires.
                log.warning("lock renewal failed", message_id=message.message_id, error=str(exc))
                return

    @staticmethod
    async def _settle(action: str, call: Any) -> None:
        try:
            # The SDK waits up to a minute for an unanswered settlement and then retries through
            # $management; a handler must not sit that long. The lock expires and the message comes
            # back, and its operation id keeps the redelivery from sending twice.
            async with asyncio.timeout(SETTLE_TIMEOUT):
                await call
        except TimeoutError as exc:
            raise SettlementFailed(
                f"{action} not confirmed within {SETTLE_TIMEOUT:.0f} s", lock_lost=True
            ) from exc
        except (MessageLockLostError, MessageAlreadySettled) as exc:
            raise SettlementFailed(f"{action} failed, lock lost: {exc}", lock_lost=True) from exc
        except ServiceBusError as exc:
            raise SettlementFailed(f"{action} failed: {exc}", lock_lost=False) from exc
        except ValueError as exc:
            # The SDK raises ValueError once its handler has shut down (e.g. after a dropped
            # connection); the lock is unusable and the message comes back when it expires.
            raise SettlementFailed(f"{action} failed, receiver closed: {exc}", lock_lost=True) from exc
