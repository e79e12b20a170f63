"""The publishing side: validate notification events and put them on the queue.

This is the API for code that publishes (a checkout service, a Django or FastAPI app)::

    from postbus.producers import NotificationEvent, Publisher, PublishError, load_settings

    async with Publisher.from_settings(load_settings()) as publisher:
        await publisher.publish(NotificationEvent(id="order-1001", type="order.confirmation", ...))

Importing it configures nothing and prints nothing: lines go to the standard ``logging`` loggers
under ``postbus`` (see :mod:`postbus.logs`). The submodules (``outgoing``, ``simulate``, ``cli``,
...) are internal or for the demo and may change; what is listed in ``__all__`` is kept stable.
"""

from __future__ import annotations

from postbus.errors import InvalidEvent, SettingsError
from postbus.events import Address, Attachment, NotificationEvent
from postbus.producers.checks import EventCheck, all_of, known_sender, not_expired, publish_checks
from postbus.producers.fake import FakePublisher
from postbus.producers.outgoing import EventLike, ScheduledEvent
from postbus.producers.publisher import Publisher, PublishError, SyncPublisher
from postbus.settings import Settings, load_settings

__all__ = [
    "Address",
    "Attachment",
    "EventCheck",
    "EventLike",
    "FakePublisher",
    "InvalidEvent",
    "NotificationEvent",
    "PublishError",
    "Publisher",
    "ScheduledEvent",
    "Settings",
    "SettingsError",
    "SyncPublisher",
    "all_of",
    "known_sender",
    "load_settings",
    "not_expired",
    "publish_checks",
]
