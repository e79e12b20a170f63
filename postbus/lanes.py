"""Priority lanes: which queue an event travels on, so urgent mail never waits behind a spike.

There are three lanes, most urgent first: ``critical`` (one-time codes, password resets,
same-day reminders), ``normal`` (order and booking confirmations) and ``bulk`` (shipping
updates, review requests: anything that may wait). With ``POSTBUS_LANES=true`` each lane is
its own Service Bus queue, so one lane's backlog never blocks another and each can be watched
and scaled on its own; the worker receives from all three and gives the send quota to critical
first and to normal and bulk by weight (``worker/scheduler.py``).

A notification type's default lane is the one word in ``<type>/lane.txt`` of the template
catalogue (shipped or ``POSTBUS_TEMPLATES_DIR``; ``normal`` when there is none). An event may
ask for a lower lane (``"lane": "bulk"``); only a producer allowed to may ask for a higher one::

    lane = choose_lane(event, may_raise=settings.lane_raise_allowed,
                       default=default_lane(event.type, templates_dir=settings.templates_dir))
    queue = lane_queues(settings)[lane]
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from postbus.errors import InvalidEvent, SettingsError

if TYPE_CHECKING:
    from postbus.events import NotificationEvent
    from postbus.settings import Settings

__all__ = [
    "LANES",
    "LANE_FILE",
    "Lane",
    "LaneNotAllowed",
    "choose_lane",
    "default_lane",
    "lane_catalog",
    "lane_queues",
    "parse_lane",
]

#: The file of a catalogue type folder that names its default lane.
LANE_FILE: Final = "lane.txt"
#: Where the shipped catalogue lives (``postbus/worker`` is the worker package).
_SHIPPED_TEMPLATES: Final = Path(__file__).resolve().parent / "worker" / "templates"


class Lane(enum.StrEnum):
    """A priority lane; :attr:`rank` 0 is the most urgent."""

    CRITICAL = "critical"
    NORMAL = "normal"
    BULK = "bulk"

    @property
    def rank(self) -> int:
        """0 for critical, 1 for normal, 2 for bulk."""
        return LANES.index(self)


#: Every lane, most urgent first.
LANES: Final = (Lane.CRITICAL, Lane.NORMAL, Lane.BULK)


class LaneNotAllowed(InvalidEvent):
    """An event asks for a lane above its type's default and its producer may not raise lanes."""


def parse_lane(value: str, *, where: str = "lane") -> Lane:
    """``value`` as a :class:`Lane`; an unknown name raises :class:`InvalidEvent` naming the known ones."""
    try:
        return Lane(value.strip().lower())
    except ValueError:
        known = ", ".join(LANES)
        raise InvalidEvent(f"{where}: unknown lane {value!r} (known: {known})", field="lane") from None


def choose_lane(event: NotificationEvent, *, default: Lane, may_raise: bool) -> Lane:
    """The lane ``event`` travels on: its own ``lane`` if it asked for one, else ``default``.

    Asking for a lower lane is always allowed; a higher one only when ``may_raise`` (the
    ``POSTBUS_LANE_RAISE_ALLOWED`` setting for the library and the CLI, a client policy for an API).
    """
    requested = event.lane
    if requested is None:
        return default
    lane = Lane(requested)
    if lane.rank < default.rank and not may_raise:
        raise LaneNotAllowed(
            f"event {event.id!r}: lane {lane.value!r} is above the {default.value!r} lane of type "
            f"{event.type!r} and this producer may not raise lanes (POSTBUS_LANE_RAISE_ALLOWED)",
            field="lane",
        )
    return lane


def lane_catalog(templates_dir: Path | None = None) -> Mapping[str, Lane]:
    """Default lane of every catalogue type that names one (a user folder wins over the shipped one)."""
    return _catalog(_SHIPPED_TEMPLATES, templates_dir.resolve() if templates_dir is not None else None)


def default_lane(event_type: str, *, templates_dir: Path | None = None) -> Lane:
    """The catalogue's default lane of ``event_type``; ``normal`` for a type that names none."""
    return lane_catalog(templates_dir).get(event_type, Lane.NORMAL)


@functools.cache
def _catalog(shipped: Path, user: Path | None) -> Mapping[str, Lane]:
    lanes: dict[str, Lane] = {}
    for root in (shipped, user):
        if root is None or not root.is_dir():
            continue
        for path in sorted(root.glob(f"*/{LANE_FILE}")):
            where = f"{path}"
            try:
                lanes[path.parent.name] = parse_lane(path.read_text(encoding="utf-8"), where=where)
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{where}: cannot read: {exc}") from None
            except InvalidEvent as exc:
                raise SettingsError(str(exc)) from None
    return lanes


def lane_queues(settings: Settings) -> dict[Lane, str]:
    """The queue of every lane the deployment runs: all three with lanes on, else only ``normal``."""
    if not settings.lanes:
        return {Lane.NORMAL: settings.queue}
    return {
        Lane.CRITICAL: settings.queue_critical or f"{settings.queue}-critical",
        Lane.NORMAL: settings.queue,
        Lane.BULK: settings.queue_bulk or f"{settings.queue}-bulk",
    }
