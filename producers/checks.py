"""What a producer can check before publishing, beyond the event's shape.

The worker dead-letters an event whose ``not_after`` has passed, whose sender alias it does not
know, or whose template is missing or does not render. Two of these the producer knows for
itself, and :func:`publish_checks` refuses them at publish with :class:`InvalidEvent`, so the
caller hears about them at once instead of finding a dead letter later:

- ``not_after`` already past: always (the producer's clock decides);
- ``sender`` not an alias of ``POSTBUS_SENDERS``: only when the producer's settings list aliases
  (an app that publishes without them leaves the check to the worker).

The templates live with the workers, so checking the type and data is opt-in: pass a check that
renders (``postbus.worker.rendering.template_check``) or run ``postbus templates check`` on a
JSON Lines file first. A check is any callable that takes the event and raises ``InvalidEvent``
(all of these are exported by :mod:`postbus.producers`)::

    Publisher.from_settings(settings, check=all_of(publish_checks(settings), my_check))
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import TypeAlias

from postbus.errors import InvalidEvent
from postbus.events import NotificationEvent
from postbus.settings import Settings

__all__ = ["EventCheck", "all_of", "known_sender", "not_expired", "publish_checks"]

#: Takes an event, raises :class:`InvalidEvent` naming the field when the worker would refuse it.
EventCheck: TypeAlias = Callable[[NotificationEvent], None]


def not_expired(now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> EventCheck:
    """Refuse an event whose ``not_after`` has already passed (the worker would dead-letter it ``Expired``)."""

    def check(event: NotificationEvent) -> None:
        if event.not_after is not None and event.not_after <= now():
            raise InvalidEvent(
                f"not_after: {event.not_after.isoformat()} has already passed; the event would never be sent",
                field="not_after",
            )

    return check


def known_sender(aliases: Collection[str]) -> EventCheck:
    """Refuse a sender alias that is not one of ``aliases`` (the worker would dead-letter it ``SenderNotAllowed``)."""
    known = sorted(aliases)

    def check(event: NotificationEvent) -> None:
        if event.sender not in aliases:
            raise InvalidEvent(
                f"sender: {event.sender!r} is not an alias of POSTBUS_SENDERS (known: {', '.join(known)})",
                field="sender",
            )

    return check


def all_of(*checks: EventCheck) -> EventCheck:
    """Every check in turn; the first to refuse decides."""

    def check(event: NotificationEvent) -> None:
        for one in checks:
            one(event)

    return check


def publish_checks(settings: Settings) -> EventCheck:
    """What :meth:`Publisher.from_settings` checks by default: expiry, and aliases when configured."""
    checks = [not_expired()]
    if settings.senders:
        checks.append(known_sender(settings.senders))
    return all_of(*checks)
