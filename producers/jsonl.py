"""The JSON Lines format of ``postbus publish --file``: one event per line.

A line is either a bare event document or an envelope with a scheduled enqueue time::

    {"id": "order-1001", "type": "order.confirmation", "to": ["jane@example.com"], "sender": "orders", "data": {}}
    {"event": {"id": "appt-7", "type": "appointment.reminder", ...}, "send_at": "2026-12-24T08:00:00+01:00"}

Blank lines are ignored. Events are validated strictly, exactly as the worker will read them off
the queue; a bad line becomes a :class:`BadLine` with its 1-based number and the reason
(``line 7: to.0.address: not a valid email address: 'x'``), and the good lines still go out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from postbus.errors import InvalidEvent
from postbus.events import parse_event
from postbus.producers.checks import EventCheck
from postbus.producers.outgoing import ScheduledEvent, check_send_at

__all__ = ["BadLine", "GoodLine", "JsonlContents", "parse_line", "parse_send_at", "read_jsonl"]

_ENVELOPE_KEYS: Final = frozenset({"event", "send_at"})


@dataclass(frozen=True, slots=True)
class GoodLine:
    """A valid line: its number and the event (with ``send_at`` if the line had one)."""

    number: int
    item: ScheduledEvent


@dataclass(frozen=True, slots=True)
class BadLine:
    """An invalid line: its number and one line saying why."""

    number: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.reason}"


@dataclass(frozen=True, slots=True)
class JsonlContents:
    """Every non-blank line of a file, sorted into good and bad."""

    good: list[GoodLine] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)


def parse_send_at(value: Any, *, where: str = "send_at") -> datetime:
    """An ISO 8601 instant with an offset (``2026-12-24T08:00:00Z``), else :class:`InvalidEvent`."""
    if not isinstance(value, str):
        raise InvalidEvent(f"{where}: expected an ISO 8601 string, got {type(value).__name__}", field=where)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(f"{where}: not an ISO 8601 date-time: {value[:60]!r}", field=where) from None
    if parsed.tzinfo is None:
        raise InvalidEvent(f"{where}: needs a UTC offset or Z: {value[:60]!r}", field=where)
    check_send_at(parsed)
    return parsed


def parse_line(text: str) -> ScheduledEvent:
    """Parse one line (bare event or envelope); raises :class:`InvalidEvent` with the reason."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(document, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(document).__name__}")
    if "event" not in document:
        # Validate the line's own text: strict JSON mode, the same rules the worker applies.
        return ScheduledEvent(parse_event(text))
    unknown = sorted(set(document) - _ENVELOPE_KEYS)
    if unknown:
        raise InvalidEvent(f"{unknown[0]}: unknown field (a line is an event or {{event, send_at}})")
    inner = document["event"]
    if not isinstance(inner, dict):
        raise InvalidEvent(f"event: expected a JSON object, got {type(inner).__name__}", field="event")
    send_at = document.get("send_at")
    # Field paths stay relative to the event (``to.0.address``), as for a bare line.
    event = parse_event(json.dumps(inner))
    return ScheduledEvent(event, parse_send_at(send_at) if send_at is not None else None)


def read_jsonl(lines: Iterable[str], *, check: EventCheck | None = None) -> JsonlContents:
    """Parse every line (and run ``check`` on its event); numbering starts at 1 and counts blank lines too."""
    contents = JsonlContents()
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            item = parse_line(text)
            if check is not None:
                check(item.event)
            contents.good.append(GoodLine(number, item))
        except InvalidEvent as exc:
            contents.bad.append(BadLine(number, str(exc)))
    return contents
