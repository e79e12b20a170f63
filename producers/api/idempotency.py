"""Idempotent ingestion: a retried request gets the first answer, not a second email.

A request is remembered under (client, key), the key being the ``Idempotency-Key`` header or the
event id, together with a fingerprint of the event (its canonical JSON). While the first request
is still publishing, a concurrent retry with the same key waits for it and returns its answer, so
concurrent retries put exactly one message on the queue; a retry with a different body gets 409.
A first attempt that fails is forgotten, so its retry publishes again.

Keys are kept in this process's memory for ``ttl`` (24 h by default), at most ``max_entries``
(200,000; the oldest go first).
That is enough for one replica. Across replicas (or after a restart) the backstop is the queue:
the event id is the Service Bus message id, and duplicate detection drops a second message with
the same id inside the queue's window (10 minutes in the shipped infrastructure).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from postbus.producers.api.problems import Problem

__all__ = ["DEFAULT_MAX_ENTRIES", "DEFAULT_TTL_SECONDS", "IdempotencyStore", "fingerprint"]

DEFAULT_TTL_SECONDS: Final = 24 * 3600.0
#: Most keys kept (a few hundred bytes each): about 100 MB at most in a 1 GiB replica.
DEFAULT_MAX_ENTRIES: Final = 200_000
_T = TypeVar("_T")


def fingerprint(body: bytes) -> str:
    """A stable digest of a canonical request body."""
    return hashlib.sha256(body).hexdigest()


@dataclass(slots=True)
class _Entry(Generic[_T]):
    fingerprint: str
    answer: asyncio.Future[_T]
    expires: float


class IdempotencyStore(Generic[_T]):
    """Remembered answers by (client, key); :meth:`run` publishes at most once per key."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry[_T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def answered(self, client: str, key: str) -> _T | None:
        """The remembered answer for ``key``, if its first request succeeded and has not expired."""
        entry = self._live(client, key)
        if entry is None or not entry.answer.done() or entry.answer.exception() is not None:
            return None
        return entry.answer.result()

    def _live(self, client: str, key: str) -> _Entry[_T] | None:
        entry = self._entries.get((client, key))
        if entry is not None and entry.expires <= self._clock():
            del self._entries[(client, key)]
            return None
        return entry

    def _evict(self) -> None:
        now = self._clock()
        while self._entries:
            (first_key, first) = next(iter(self._entries.items()))
            if first.expires > now and len(self._entries) < self._max:
                break
            if not first.answer.done():
                break  # never forget a request still in flight
            del self._entries[first_key]

    def begin(self, client: str, key: str, digest: str) -> tuple[asyncio.Future[_T], bool]:
        """Claim ``key``: ``(answer, True)`` if this request must publish and then :meth:`finish`,
        or ``(answer, False)`` to await the first request's answer.

        Raises a 409 :class:`Problem` when ``key`` was used with another fingerprint.
        """
        entry = self._live(client, key)
        if entry is not None:
            if entry.fingerprint != digest:
                raise Problem(
                    "idempotency-conflict",
                    f"idempotency key {key.partition(':')[2]!r} was already used with a different body",
                    field="Idempotency-Key" if key.startswith("key:") else "id",
                )
            return entry.answer, False
        self._evict()
        answer: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._entries[(client, key)] = _Entry(digest, answer, self._clock() + self._ttl)
        return answer, True

    def finish(self, client: str, key: str, answer: asyncio.Future[_T], outcome: _T | BaseException) -> None:
        """Settle a claimed key: a result is remembered, an exception forgets the key (a retry publishes)."""
        if answer.done():
            return
        if isinstance(outcome, BaseException):
            entry = self._entries.get((client, key))
            if entry is not None and entry.answer is answer:
                del self._entries[(client, key)]
            answer.set_exception(outcome)
            answer.exception()  # retrieved: a failure nobody else waited for is not an error
        else:
            answer.set_result(outcome)

    async def run(
        self, client: str, key: str, digest: str, publish: Callable[[], Awaitable[_T]]
    ) -> tuple[_T, bool]:
        """The answer for ``key``: ``publish()``'s on first use, the remembered one after.

        Returns ``(answer, replayed)``. The publish runs in its own task, so a caller that
        disconnects does not cancel it: its answer stays for the retry.
        """
        answer, first = self.begin(client, key, digest)
        if not first:
            return await asyncio.shield(answer), True
        task: asyncio.Task[_T] = asyncio.ensure_future(publish())

        def settle(done: asyncio.Task[_T]) -> None:
            if done.cancelled():
                self.finish(client, key, answer, asyncio.CancelledError())
            elif (exc := done.exception()) is not None:
                self.finish(client, key, answer, exc)
            else:
                self.finish(client, key, answer, done.result())

        task.add_done_callback(settle)
        return await asyncio.shield(answer), False
