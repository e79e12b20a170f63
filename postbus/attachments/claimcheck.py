"""The claim check: move attachment bytes out of an event into the store, and bring them back.

Publisher side, :func:`check_in`: every attachment larger than the inline threshold goes to the
store; then, while the event's JSON is still larger than the queue's message budget, the largest
attachment still inline goes too. Each moved attachment is written once under ``sha256/<hex>``
and the event carries an :class:`~postbus.events.AttachmentRef` (key, size, SHA-256) instead of
the bytes. ACS's limits (10 MB of base64, allowed types) were checked when the event was built,
so nothing is uploaded for an event ACS would refuse.

Worker side, :func:`check_out`: fetch each referenced blob and prove it is the one published
(size, then SHA-256) before the email is built.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from postbus.attachments.errors import AttachmentUnavailable
from postbus.attachments.store import AttachmentStore
from postbus.events import Attachment, AttachmentRef, NotificationEvent

__all__ = ["ClaimCheck", "check_in", "check_out", "content_key"]


def content_key(sha256: str) -> str:
    """The store key of content with this SHA-256 (hex)."""
    return f"sha256/{sha256}"


@dataclass(frozen=True, slots=True)
class ClaimCheck:
    """What :func:`check_in` did to one event: the event to publish and the blobs it moved."""

    event: NotificationEvent
    moved: int = 0
    uploaded: int = 0
    moved_bytes: int = 0


def _plan(event: NotificationEvent, *, inline_max_bytes: int, body_budget: int) -> set[int]:
    """Indexes of the attachments to move: those over the threshold, then the largest until it fits."""
    inline = [(i, a) for i, a in enumerate(event.attachments) if a.content_base64 is not None]
    chosen = {i for i, a in inline if len(a.content_base64 or "") * 3 // 4 > inline_max_bytes}
    size = len(event.to_json()) - sum(len(a.content_base64 or "") for i, a in inline if i in chosen)
    # A moved attachment still costs its reference (~200 bytes of JSON); count it generously.
    size += 256 * len(chosen)
    for i, a in sorted(inline, key=lambda item: -len(item[1].content_base64 or "")):
        if size <= body_budget:
            break
        if i not in chosen:
            chosen.add(i)
            size -= len(a.content_base64 or "") - 256
    return chosen


async def check_in(
    event: NotificationEvent, store: AttachmentStore, *, inline_max_bytes: int, body_budget: int
) -> ClaimCheck:
    """Move what must travel outside the message to ``store``; the event to publish instead."""
    chosen = _plan(event, inline_max_bytes=inline_max_bytes, body_budget=body_budget)
    if not chosen:
        return ClaimCheck(event)
    attachments: list[Attachment] = []
    uploaded = moved_bytes = 0
    for index, attachment in enumerate(event.attachments):
        if index not in chosen:
            attachments.append(attachment)
            continue
        data = attachment.content()
        digest = hashlib.sha256(data).hexdigest()
        key = content_key(digest)
        uploaded += await store.put(key, data, content_type=attachment.content_type)
        moved_bytes += len(data)
        ref = AttachmentRef(key=key, size=len(data), sha256=digest)
        attachments.append(attachment.model_copy(update={"content_base64": None, "content_ref": ref}))
    moved = event.model_copy(update={"attachments": tuple(attachments)})
    return ClaimCheck(moved, moved=len(chosen), uploaded=uploaded, moved_bytes=moved_bytes)


async def check_out(event: NotificationEvent, store: AttachmentStore) -> NotificationEvent:
    """The event with every referenced attachment's bytes back inline, each verified.

    Raises :class:`AttachmentUnavailable` for a missing blob or one whose size or SHA-256 differs
    from the reference, and ``AttachmentStoreUnavailable`` when the store does not answer.
    """
    if all(a.content_ref is None for a in event.attachments):
        return event
    attachments: list[Attachment] = []
    for attachment in event.attachments:
        ref = attachment.content_ref
        if ref is None:
            attachments.append(attachment)
            continue
        data = await store.get(ref.key)
        if len(data) != ref.size:
            raise AttachmentUnavailable(
                f"attachment {attachment.name!r} ({ref.key}) is {len(data)} bytes in {store.location}, "
                f"the event says {ref.size}"
            )
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise AttachmentUnavailable(
                f"attachment {attachment.name!r} ({ref.key}) in {store.location} does not match its SHA-256"
            )
        inline = base64.b64encode(data).decode()
        attachments.append(attachment.model_copy(update={"content_base64": inline, "content_ref": None}))
    return event.model_copy(update={"attachments": tuple(attachments)})
