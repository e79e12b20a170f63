"""The JSONL format: bare events or {event, send_at} envelopes, bad lines reported by number."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from postbus.producers.jsonl import read_jsonl


def event(event_id: str, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": event_id,
        "type": "order.confirmation",
        "to": ["jane@example.com"],
        "sender": "orders",
    }
    document.update(overrides)
    return document


def line(document: Any) -> str:
    return json.dumps(document) + "\n"


def test_good_lines_keep_their_numbers_and_blank_lines_still_count() -> None:
    lines = [
        line(event("a")),
        "\n",
        "   \n",
        line({"event": event("b"), "send_at": "2026-12-24T08:00:00Z"}),
        line({"event": event("c")}),
    ]
    contents = read_jsonl(lines)
    assert contents.bad == []
    assert [(good.number, good.item.event.id) for good in contents.good] == [(1, "a"), (4, "b"), (5, "c")]
    assert contents.good[1].item.send_at == datetime(2026, 12, 24, 8, 0, tzinfo=UTC)
    assert contents.good[0].item.send_at is None


def test_each_bad_line_is_reported_with_its_number_and_reason() -> None:
    lines = [
        line(event("ok-1")),
        line(event("bad-1", to=["x"])),
        "{not json\n",
        "[1, 2]\n",
        line({"event": event("bad-2"), "send_at": "2026-12-24T08:00:00"}),
        line({"event": event("bad-3"), "send_at": "soon"}),
        line({"event": event("bad-4"), "priority": "high"}),
        line({"event": "nope"}),
        line(event("bad-5", extra=1)),
        line({"event": event("bad-6", sender="Orders Team")}),
        line(event("ok-2")),
    ]
    contents = read_jsonl(lines)
    assert [good.number for good in contents.good] == [1, 11]
    assert [str(bad) for bad in contents.bad] == [
        "line 2: to.0.address: not a valid email address: 'x'",
        "line 3: not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        "line 4: expected a JSON object, got list",
        "line 5: send_at: needs a UTC offset or Z: '2026-12-24T08:00:00'",
        "line 6: send_at: not an ISO 8601 date-time: 'soon'",
        "line 7: priority: unknown field (a line is an event or {event, send_at})",
        "line 8: event: expected a JSON object, got str",
        "line 9: extra: unknown field",
        "line 10: sender: 'Orders Team' is not a valid sender alias (1-64 of a-z 0-9 . _ -)",
    ]


def test_lines_are_validated_strictly_like_the_worker_reads_them() -> None:
    # A number where a string belongs would be coerced by lax validation; on the wire it is an error.
    contents = read_jsonl([line(event("n-1", locale=5))])
    assert [str(bad) for bad in contents.bad] == ["line 1: locale: Input should be a valid string"]
