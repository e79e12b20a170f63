"""Which dead-lettered messages an operation applies to, and how fast it may go.

Every value is checked before anything connects, so a typo fails with one line and touches
nothing::

    selection = Selection.parse(reasons=["RetriesExhausted"], types=["order.confirmation"],
                                since="2h", until=None)
    selection.matches(entry)          # entry: worker.ops.deadletters.DeadLetterEntry
    parse_rate("5/s")                 # 5.0 messages per second
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal

from postbus.events import TOKENS, valid_token
from postbus.reasons import DeadLetterReason
from postbus.worker.ops.errors import BadInput

if TYPE_CHECKING:
    from postbus.worker.ops.deadletters import DeadLetterEntry

__all__ = [
    "KNOWN_REASONS",
    "SERVICE_BUS_REASONS",
    "Selection",
    "TimeField",
    "parse_instant",
    "parse_rate",
]

#: Reasons Service Bus itself writes (delivery count exceeded, TTL expired on a queue that dead-letters).
SERVICE_BUS_REASONS: Final = ("MaxDeliveryCountExceeded", "TTLExpiredException")
KNOWN_REASONS: Final = (*(reason.value for reason in DeadLetterReason), *SERVICE_BUS_REASONS)

TimeField = Literal["enqueued", "first-enqueued"]

_RELATIVE_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")
_RATE_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|m|min|h|hour))?")
_UNITS: Final = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "w": 604800}


def _checked(values: Iterable[str], field: str) -> tuple[str, ...]:
    """The values, each checked against the contract's rule for ``field`` before anything connects."""
    out: list[str] = []
    for value in values:
        if not valid_token(field, value):
            raise BadInput(f"{value!r} is not a valid {TOKENS[field][1]}")
        out.append(value)
    return tuple(out)


def _reasons(values: Iterable[str]) -> tuple[str, ...]:
    canonical = {reason.lower(): reason for reason in KNOWN_REASONS}
    out: list[str] = []
    for value in values:
        reason = canonical.get(value.strip().lower())
        if reason is None:
            raise BadInput(f"unknown dead-letter reason {value!r} (known: {', '.join(KNOWN_REASONS)})")
        out.append(reason)
    return tuple(out)


def parse_instant(value: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 instant (naive means UTC) or a duration ago: ``30m``, ``2h``, ``1d``, ``1w``."""
    text = value.strip()
    relative = _RELATIVE_RE.fullmatch(text)
    if relative:
        seconds = float(relative.group(1)) * _UNITS[relative.group(2)]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"{value!r} is not an ISO 8601 time or a duration like 30m, 2h, 1d") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_rate(value: str | None) -> float | None:
    """Messages per second from ``N/s``, ``N/min``, ``N/h`` or a bare ``N`` (per second); ``None``: unpaced."""
    if value is None:
        return None
    match = _RATE_RE.fullmatch(value.strip())
    if not match or float(match.group(1)) <= 0:
        raise BadInput(f"--rate {value!r}: expected a positive rate like 5/s, 120/min or 1000/h")
    return float(match.group(1)) / _UNITS[match.group(2) or "s"]


@dataclass(frozen=True, slots=True)
class Selection:
    """A filter over dead-lettered messages; empty fields match everything."""

    reasons: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    event_ids: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    time_field: TimeField = "enqueued"

    @classmethod
    def parse(
        cls,
        *,
        reasons: Sequence[str] = (),
        types: Sequence[str] = (),
        tenants: Sequence[str] = (),
        event_ids: Sequence[str] = (),
        since: str | None = None,
        until: str | None = None,
        time_field: str = "enqueued",
        now: datetime | None = None,
    ) -> Selection:
        """Validate raw CLI values; raises :class:`BadInput` naming the bad one."""
        if time_field not in ("enqueued", "first-enqueued"):
            raise BadInput(f"--time-field {time_field!r}: expected enqueued or first-enqueued")
        start = parse_instant(since, now=now) if since else None
        end = parse_instant(until, now=now) if until else None
        if start is not None and end is not None and end < start:
            raise BadInput("--until is before --since")
        return cls(
            reasons=_reasons(reasons),
            types=_checked(types, "type"),
            tenants=_checked(tenants, "tenant"),
            event_ids=_checked(event_ids, "id"),
            since=start,
            until=end,
            time_field="first-enqueued" if time_field == "first-enqueued" else "enqueued",
        )

    def matches(self, entry: DeadLetterEntry) -> bool:
        """Whether ``entry`` passes every filter that is set."""
        if self.reasons and entry.reason not in self.reasons:
            return False
        if self.types and entry.type not in self.types:
            return False
        if self.tenants and entry.tenant not in self.tenants:
            return False
        if self.event_ids and entry.event_id not in self.event_ids:
            return False
        if self.since is None and self.until is None:
            return True
        when = entry.enqueued_at if self.time_field == "enqueued" else entry.first_enqueued_at
        if when is None:
            return False
        return (self.since is None or when >= self.since) and (self.until is None or when <= self.until)

    @property
    def empty(self) -> bool:
        """True when nothing is filtered (purge then asks for an explicit --all)."""
        return not (self.reasons or self.types or self.tenants or self.event_ids or self.since or self.until)
