"""Errors of the delivery record, keyed on what the caller does next.

::

    PostbusError                      (postbus.errors)
    └── RecordError                   anything the record layer reports
        ├── RecordStoreUnavailable    the store did not take or give the data: count, log, retry later
        └── InvalidReport             a delivery report that cannot be used: dead-letter it with ``reason``

Each storage adapter translates its driver's exceptions (``sqlite3``, ``azure.core``) into
:class:`RecordStoreUnavailable` in one place, so the worker catches exactly one class around a
record write and never an SDK exception.
"""

from __future__ import annotations

from typing import Final, Literal

from postbus.errors import PostbusError

__all__ = ["REPORT_REASONS", "InvalidReport", "RecordError", "RecordStoreUnavailable", "ReportReason"]

#: Dead-letter reasons for reports, a fixed list like the worker's own.
ReportReason = Literal["MalformedReport", "UnsupportedEventType", "UnknownStatus"]
REPORT_REASONS: Final[tuple[ReportReason, ...]] = ("MalformedReport", "UnsupportedEventType", "UnknownStatus")


class RecordError(PostbusError):
    """Base class of the delivery record's errors."""


class RecordStoreUnavailable(RecordError):
    """The record store could not be reached or refused the operation; nothing was lost by us.

    The message names the store and the cause in one line (``sqlite records.db: database is
    locked``). Writes are idempotent, so the caller retries the same write later.
    """


class InvalidReport(RecordError):
    """A delivery or engagement report that is malformed, of another event type, or unknown.

    ``reason`` is one of :data:`REPORT_REASONS` (the dead-letter reason); ``str(err)`` is the
    description, e.g. ``data.messageId: Field required``.
    """

    exit_code = 2

    def __init__(self, message: str, *, reason: ReportReason = "MalformedReport") -> None:
        super().__init__(message)
        self.reason: ReportReason = reason
