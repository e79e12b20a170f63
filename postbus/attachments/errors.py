"""Attachment store errors, keyed on what the caller does next.

::

    PostbusError (postbus.errors)
    └── AttachmentError
        ├── AttachmentStoreUnavailable   the store did not answer (network, auth, outage): try again later
        └── AttachmentUnavailable        the blob is gone or is not what the event says: dead-letter

Each backend translates its own exceptions into these, once, where it calls its SDK or the OS.
"""

from __future__ import annotations

from postbus.errors import PostbusError

__all__ = ["AttachmentError", "AttachmentStoreUnavailable", "AttachmentUnavailable"]


class AttachmentError(PostbusError):
    """Base class of attachment store failures; ``str(err)`` is one line."""


class AttachmentStoreUnavailable(AttachmentError):
    """The store could not be reached or refused the call; the same call may work later."""


class AttachmentUnavailable(AttachmentError):
    """The attachment is missing, or its bytes do not match the event's size and SHA-256."""
