"""The kernel's error root and the errors every entry point can report.

::

    PostbusError                 anything Postbus reports to a user (exit code 1)
    ├── SettingsError            a missing or contradictory setting (exit code 2)
    └── InvalidEvent             an event that breaks the contract; names the field

The worker keys its own failure classes (transient, throttled, ambiguous, systemic) on what it
does next; they live in ``worker.errors`` and derive from :class:`PostbusError` too.
"""

from __future__ import annotations

__all__ = ["Interrupted", "InvalidEvent", "PostbusError", "SettingsError"]


class PostbusError(Exception):
    """Base class for every error Postbus reports; ``str(err)`` is one line for a human."""

    exit_code: int = 1


class Interrupted(PostbusError):
    """A command was stopped by a second Ctrl-C or SIGTERM; the message says what it had done."""

    exit_code = 130


class SettingsError(PostbusError):
    """A setting is missing, malformed or contradicts another; the message names the variable."""

    exit_code = 2


class InvalidEvent(PostbusError):
    """An event (or wire message) that breaks the notification contract.

    ``field`` is the dotted path of the first offending field (``"to.0.address"``), or ``""``
    when the whole document is unreadable (bad JSON, wrong content type).
    """

    exit_code = 2

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field
