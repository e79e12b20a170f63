"""QueueLinks opens its receiver and sender side by side; a failure of either closes both, raised once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from azure.servicebus.exceptions import MessagingEntityNotFoundError

from postbus.bus import QueueLinks, QueueNotFound, ServiceBusConnection


class _Link:
    """Stands in for an SDK handler: records its open and close; ``fail`` makes the open raise."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.opening = asyncio.Event()
        self.other: _Link | None = None
        self.closed = False

    async def __aenter__(self) -> _Link:
        self.opening.set()
        assert self.other is not None
        # Only opens that run side by side both get past this: each waits for the other's to start.
        async with asyncio.timeout(5):
            await self.other.opening.wait()
        if self.fail:
            raise MessagingEntityNotFoundError(message="The messaging entity 'gone' could not be found.")
        return self

    async def close(self) -> None:
        self.closed = True


class _Connection(ServiceBusConnection):
    def __init__(self, *, fail_sender: bool) -> None:
        super().__init__("test.servicebus.windows.net", connection_string=None)
        self.receiver_link = _Link()
        self.sender_link = _Link(fail=fail_sender)
        self.receiver_link.other, self.sender_link.other = self.sender_link, self.receiver_link

    def receiver(self, queue: str, *, dead_letters: bool = False, prefetch: int = 0) -> Any:
        return self.receiver_link

    def sender(self, queue: str) -> Any:
        return self.sender_link


async def test_both_links_open_side_by_side_and_close_together() -> None:
    connection = _Connection(fail_sender=False)
    links = await QueueLinks(connection, "work").open()
    assert not connection.receiver_link.closed
    await links.close()
    assert connection.receiver_link.closed
    assert connection.sender_link.closed


async def test_a_link_that_fails_to_open_is_raised_translated_and_both_are_closed() -> None:
    connection = _Connection(fail_sender=True)
    with pytest.raises(QueueNotFound):
        await QueueLinks(connection, "gone").open()
    assert connection.receiver_link.closed
    assert connection.sender_link.closed
