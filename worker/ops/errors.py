"""Errors of the operations commands, keyed on what the operator does next.

::

    PostbusError (postbus.errors)
    └── OpsError                 an operation could not run (exit code 1): fix the cause, run again
        └── BadInput             a filter value, id or option is malformed or unknown (exit code 2)

Each is one line for a human; the root CLI prints ``postbus: error: <message>``.
"""

from __future__ import annotations

from postbus.errors import PostbusError

__all__ = ["BadInput", "OpsError"]


class OpsError(PostbusError):
    """A dead-letter, status or doctor operation could not run (unreachable queue, refused credentials)."""


class BadInput(OpsError):
    """A filter value, id or option is malformed or unknown; nothing was touched."""

    exit_code = 2
