"""The replica roster: which worker replicas are alive now, so each send gate knows its share.

ACS's quota is shared by every replica, and before its first 429 a gate cannot tell from ACS's
answers how many others send beside it. The roster tells it: each replica joins with a random id,
heartbeats every ``POSTBUS_ROSTER_HEARTBEAT`` seconds, counts the replicas whose heartbeat is
younger than :data:`LIVE_HEARTBEATS` heartbeats, and leaves on a clean shutdown (a killed one ages
out). The store is the delivery record's (``POSTBUS_RECORD_URL``), so it needs nothing new.

* :mod:`.base`: the :class:`Roster` protocol, :class:`RosterUnavailable`, the :class:`MemoryRoster`
  fake (shared by several workers in one process) and :func:`roster_for` that picks the backend;
* :mod:`.sqlite`: :class:`SqliteRoster`, a ``replicas`` table in the record store's SQLite file, so
  the worker processes on one machine see each other;
* :mod:`.tables`: :class:`TableRoster`, an Azure Storage table beside the record table (the only
  place the roster imports ``azure.*`` exceptions);
* :mod:`.membership`: :class:`Membership`, one replica's join, heartbeat loop and leave, which
  feeds each count to the send gate and never lets a roster failure stop sending.
"""

from __future__ import annotations

from postbus.worker.roster.base import (
    LIVE_HEARTBEATS,
    MemoryRoster,
    Roster,
    RosterUnavailable,
    roster_for,
    roster_group,
    roster_table_name,
)
from postbus.worker.roster.membership import Membership

__all__ = [
    "LIVE_HEARTBEATS",
    "Membership",
    "MemoryRoster",
    "Roster",
    "RosterUnavailable",
    "roster_for",
    "roster_group",
    "roster_table_name",
]
