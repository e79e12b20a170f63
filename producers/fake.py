"""An in-memory stand-in for :class:`~producers.publisher.Publisher`, for unit tests of code that publishes.

It validates and encodes exactly as the real publisher does (same :func:`~producers.outgoing.prepare`),
records what would have gone on the queue, and can be told to fail::

    fake = FakePublisher()
    await run_my_code(publisher=fake)
    assert [m.message_id for m in fake.sent] == ["order-1001"]

    fake = FakePublisher(fail_after=2, error=PublishError("Service Bus is busy", retryable=True))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Self

from postbus.events import WireMessage
from postbus.producers.checks import EventCheck
from postbus.producers.outgoing import EventLike, Prepared, PropertiesHook, prepare, prepare_raw
from postbus.producers.publisher import PublishError

__all__ = ["FakePublisher"]


class FakePublisher:
    """Records published messages in :attr:`sent`; one ``publish_many`` call is one entry in :attr:`calls`.

    ``check`` runs on every event as the real publisher's does (``from_settings`` gives the real one
    :func:`~postbus.producers.checks.publish_checks` by default). ``fail_after=n`` lets ``n`` messages through (across calls) and then raises ``error`` (default: a
    retryable :class:`PublishError`), reporting what went out before the failure in ``published``.
    """

    def __init__(
        self,
        *,
        queue: str = "notifications",
        properties_hook: PropertiesHook | None = None,
        fail_after: int | None = None,
        error: PublishError | None = None,
        check: EventCheck | None = None,
    ) -> None:
        self.queue = queue
        self._check = check
        self.sent: list[Prepared] = []
        self.calls: list[list[str]] = []
        self.closed = False
        self._properties_hook = properties_hook
        self._fail_after = fail_after
        self._error = error

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Mark the fake closed (the real one closes its client)."""
        self.closed = True

    async def publish(self, event: EventLike, send_at: datetime | None = None) -> str:
        """Record one event; returns its message id."""
        return (await self.publish_many([event], send_at=send_at))[0]

    async def publish_many(
        self, events: Iterable[EventLike], *, send_at: datetime | None = None
    ) -> list[str]:
        """Validate like the real publisher, then record every message."""
        prepared = prepare(events, send_at=send_at, properties_hook=self._properties_hook, check=self._check)
        return self._record(prepared)

    async def publish_raw(
        self, wires: Iterable[WireMessage], *, send_at: datetime | None = None
    ) -> list[str]:
        """Record wire messages as given."""
        return self._record(prepare_raw(wires, send_at=send_at))

    def _record(self, prepared: Sequence[Prepared]) -> list[str]:
        ids: list[str] = []
        for item in prepared:
            if self._fail_after is not None and len(self.sent) >= self._fail_after:
                error = self._error or PublishError(f"queue {self.queue!r} is unavailable", retryable=True)
                self.calls.append(ids)
                raise PublishError(str(error), retryable=error.retryable, published=ids)
            self.sent.append(item)
            ids.append(item.message_id)
        self.calls.append(ids)
        return ids
