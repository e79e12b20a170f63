"""The roster seam: the :class:`Roster` protocol, its error, the in-memory fake and the factory.

A backend keeps one row per replica with the time of its last heartbeat. :meth:`Roster.beat` writes
this replica's row and answers how many rows are younger than the backend's ``expiry`` (this one
included), in one round trip where the store allows; rows older than that are removed on the way,
so a killed replica leaves no trace beyond its expiry. Every backend raises
:class:`RosterUnavailable` and nothing else from its driver.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from postbus.connection_strings import servicebus_namespace
from postbus.errors import PostbusError
from postbus.records.url import SqliteLocation, TableLocation, parse_record_url

if TYPE_CHECKING:
    from postbus.settings import Settings

__all__ = [
    "LIVE_HEARTBEATS",
    "MemoryRoster",
    "Roster",
    "RosterUnavailable",
    "roster_for",
    "roster_group",
    "roster_table_name",
]

#: A replica counts as live while its last heartbeat is younger than this many heartbeats: two
#: missed beats (a slow store, a long pause of the event loop) do not make it vanish and reappear.
LIVE_HEARTBEATS: Final = 3
_MAX_TABLE_NAME: Final = 63
_SUFFIX: Final = "replicas"


class RosterUnavailable(PostbusError):
    """The roster's store could not be reached or refused the operation.

    The worker logs it once, keeps its last count and tries again on the next heartbeat: a roster
    failure never stops sending.
    """


class Roster(Protocol):
    """Where replicas register their heartbeats. Methods raise :class:`RosterUnavailable` only."""

    async def beat(self, replica: str) -> int:
        """Record that ``replica`` is alive now; return the number of live replicas, it included."""
        ...

    async def leave(self, replica: str) -> None:
        """Remove ``replica`` at once (a clean shutdown); unknown ids are ignored."""
        ...

    async def close(self) -> None:
        """Release connections and credentials."""
        ...


class MemoryRoster:
    """A :class:`Roster` in a dict: the fake for unit tests and the virtual-clock benchmark.

    Several workers in one process share one instance, as replicas share a store. ``clock`` is any
    monotonic clock (a fake one, or the virtual loop's time); ``fail_with`` makes every call raise it
    (e.g. ``RosterUnavailable("down")``); ``beats`` counts the heartbeats that got through.

    >>> roster = MemoryRoster(clock=lambda: 0.0, expiry=15.0)
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, expiry: float = 15.0) -> None:
        self.seen: dict[str, float] = {}
        self.beats = 0
        self.fail_with: Exception | None = None
        self._clock = clock
        self._expiry = expiry

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def live(self) -> int:
        """The replicas whose heartbeat is younger than the expiry (without beating)."""
        now = self._clock()
        return sum(1 for at in self.seen.values() if now - at < self._expiry)

    async def beat(self, replica: str) -> int:
        """Stamp ``replica`` now, forget expired ones, count the rest."""
        self._check()
        now = self._clock()
        self.seen[replica] = now
        for other, at in list(self.seen.items()):
            if now - at >= self._expiry:
                del self.seen[other]
        self.beats += 1
        return len(self.seen)

    async def leave(self, replica: str) -> None:
        """Forget ``replica``."""
        self._check()
        self.seen.pop(replica, None)

    async def close(self) -> None:
        """Nothing to release."""


def roster_group(settings: Settings) -> str:
    """Which replicas count together: those consuming the same queue of the same namespace.

    A record store may serve more than one pipeline (a staging and a production deployment, a
    benchmark beside a local worker); replicas of another pipeline do not share this one's quota
    use. A digest, because a table's partition key may not hold ``/`` and the like.
    """
    if settings.servicebus_connection_string is not None:
        namespace = servicebus_namespace(settings.servicebus_connection_string.get_secret_value())
    else:
        namespace = settings.servicebus_namespace or ""
    digest = hashlib.sha256(f"{namespace.lower()}/{settings.queue}".encode()).hexdigest()
    return f"q{digest[:32]}"


def roster_table_name(record_table: str) -> str:
    """The roster's table beside the record table: its name plus ``replicas``, within 63 characters."""
    return record_table[: _MAX_TABLE_NAME - len(_SUFFIX)] + _SUFFIX


def roster_for(settings: Settings) -> Roster:
    """The roster in the store ``POSTBUS_RECORD_URL`` names (validated by the settings); not opened.

    SQLite: a ``roster`` table in the same file. Azure Table Storage: the table named by
    :func:`roster_table_name` in the same account, with the same credentials.
    """
    expiry = LIVE_HEARTBEATS * settings.roster_heartbeat
    group = roster_group(settings)
    location = parse_record_url(settings.record_url)
    if isinstance(location, SqliteLocation):
        from postbus.worker.roster.sqlite import SqliteRoster

        return SqliteRoster(location.path, expiry=expiry, group=group)
    assert isinstance(location, TableLocation)
    from postbus.worker.roster.tables import TableRoster

    key = settings.record_account_key
    return TableRoster(
        TableLocation(
            endpoint=location.endpoint, account=location.account, table=roster_table_name(location.table)
        ),
        expiry=expiry,
        group=group,
        account_key=key.get_secret_value() if key is not None else None,
        timeout=settings.roster_heartbeat,
    )
