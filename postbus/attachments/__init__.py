"""Claim-check storage for attachments too large to travel in a Service Bus message.

Modules, one concept each:

- :mod:`~postbus.attachments.store`: the ``AttachmentStore`` protocol, the in-memory fake, and
  :func:`attachment_store` that picks the backend from ``POSTBUS_ATTACHMENT_STORE_URL``;
- :mod:`~postbus.attachments.local` and :mod:`~postbus.attachments.blob`: the local-directory and
  Azure Blob Storage backends (imported lazily by the factory);
- :mod:`~postbus.attachments.claimcheck`: moving attachments out of an event at publish
  (:func:`check_in`) and back in at send (:func:`check_out`), verified by size and SHA-256;
- :mod:`~postbus.attachments.location`: the URL setting, parsed without touching a store;
- :mod:`~postbus.attachments.errors`: ``AttachmentStoreUnavailable`` (retry) and
  ``AttachmentUnavailable`` (dead-letter).
"""

from __future__ import annotations

from postbus.attachments.claimcheck import ClaimCheck, check_in, check_out, content_key
from postbus.attachments.errors import AttachmentError, AttachmentStoreUnavailable, AttachmentUnavailable
from postbus.attachments.store import AttachmentStore, MemoryAttachmentStore, attachment_store

__all__ = [
    "AttachmentError",
    "AttachmentStore",
    "AttachmentStoreUnavailable",
    "AttachmentUnavailable",
    "ClaimCheck",
    "MemoryAttachmentStore",
    "attachment_store",
    "check_in",
    "check_out",
    "content_key",
]
