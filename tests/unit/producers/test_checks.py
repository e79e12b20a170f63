"""Publish-time checks: what the producer can know is refused at publish, not dead-lettered later."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from postbus.cli import main
from postbus.errors import InvalidEvent
from postbus.producers import FakePublisher, Publisher, SyncPublisher
from postbus.producers.checks import all_of, known_sender, not_expired, publish_checks
from postbus.settings import load_settings

CLOSED_PORT = (
    "Endpoint=sb://127.0.0.1:9;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
)
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def doc(event_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "order.confirmation",
        "to": ["a@example.com"],
        "sender": "orders",
    } | overrides


async def test_an_expired_event_is_refused_naming_the_field_and_nothing_is_sent() -> None:
    fake = FakePublisher(check=not_expired(lambda: NOW))
    with pytest.raises(
        InvalidEvent, match=r"^events\[1\]: not_after: 2026-12-07T11:00:00\+00:00 has already passed"
    ):
        await fake.publish_many([doc("a"), doc("b", not_after=(NOW - timedelta(hours=1)).isoformat())])
    assert fake.sent == []
    assert await fake.publish(doc("c", not_after=(NOW + timedelta(seconds=1)).isoformat())) == "c"


async def test_an_alias_the_settings_do_not_list_is_refused() -> None:
    fake = FakePublisher(check=known_sender({"orders", "care"}))
    with pytest.raises(
        InvalidEvent, match=r"sender: 'returns' is not an alias of POSTBUS_SENDERS \(known: care, orders\)"
    ):
        await fake.publish(doc("a", sender="returns"))
    assert fake.sent == []


def test_without_aliases_in_the_settings_the_sender_is_left_to_the_worker() -> None:
    check = publish_checks(load_settings(senders={}))
    check(_event(doc("a", sender="anything")))  # no error
    with pytest.raises(InvalidEvent, match="not_after"):
        check(_event(doc("b", not_after="2020-01-01T00:00:00Z")))


def test_all_of_stops_at_the_first_refusal() -> None:
    seen: list[str] = []

    def first(event: Any) -> None:
        seen.append("first")
        raise InvalidEvent("type: nope", field="type")

    def second(event: Any) -> None:
        seen.append("second")

    with pytest.raises(InvalidEvent, match="type: nope"):
        all_of(first, second)(_event(doc("a")))
    assert seen == ["first"]


@pytest.mark.parametrize("publisher_class", [Publisher, SyncPublisher])
def test_from_settings_checks_by_default_and_check_none_turns_it_off(publisher_class: Any) -> None:
    settings = load_settings(servicebus_connection_string=CLOSED_PORT, senders={"orders": "o@contoso.com"})
    default = publisher_class.from_settings(settings)
    unchecked = publisher_class.from_settings(settings, check=None)
    expired = doc("late", not_after="2020-01-01T00:00:00Z")
    # The check runs before any connection is made (the port is closed).
    with pytest.raises(InvalidEvent, match="not_after"):
        default._resolve([expired], None)
    resolved = unchecked._resolve([expired, doc("x", sender="nobody")], None)
    assert [r.event.id for r in resolved] == ["late", "x"]


def _event(document: dict[str, Any]) -> Any:
    from postbus.events import parse_event

    return parse_event(document)


# -- the command line ------------------------------------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePublisher]:
    import postbus.producers.cli

    monkeypatch.setenv("POSTBUS_SERVICEBUS_CONNECTION_STRING", CLOSED_PORT)
    monkeypatch.setenv("POSTBUS_SENDERS", '{"orders": "orders@contoso.com"}')
    fake = FakePublisher()
    monkeypatch.setattr(postbus.producers.cli, "open_publisher", lambda settings: fake)
    # The command would set the process's OpenTelemetry providers (once per process, for good):
    # later tests would inherit a tracer that adds traceparent to what they publish.
    monkeypatch.setattr(postbus.producers.cli, "configure_telemetry", lambda settings: None)
    yield fake
    # The command configures logging on the captured stderr; leave no handler on a closed stream.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "postbus"]:
        root.removeHandler(handler)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sender", "returns"], "sender: 'returns' is not an alias of POSTBUS_SENDERS (known: orders)"),
        (
            ["--sender", "orders", "--not-after", "2020-01-01T00:00:00Z"],
            "not_after: 2020-01-01T00:00:00+00:00 has already passed; the event would never be sent",
        ),
    ],
)
def test_publish_refuses_in_one_line_and_exit_2(
    environment: FakePublisher, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    argv = ["publish", "--type", "order.confirmation", "--to", "a@example.com", *flags]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == f"postbus: error: {message}\n"
    assert captured.out == ""
    assert environment.sent == []


def test_publish_file_reports_refused_lines_and_sends_the_rest(
    environment: FakePublisher, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import json

    path = tmp_path / "events.jsonl"
    lines = [doc("ok-1"), doc("bad-1", sender="nobody"), doc("bad-2", not_after="2020-01-01T00:00:00Z")]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert main(["publish", "--file", str(path), "--quiet"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "line 2: sender: 'nobody' is not an alias of POSTBUS_SENDERS (known: orders)",
        "line 3: not_after: 2020-01-01T00:00:00+00:00 has already passed; the event would never be sent",
        "published 1, failed 2",
    ]
    assert [item.message_id for item in environment.sent] == ["ok-1"]


def test_publish_check_renders_against_the_templates(
    environment: FakePublisher, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["publish", "--type", "invoice.paid", "--to", "a@example.com", "--sender", "orders"]
    assert main([*argv, "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("postbus: error: type: no template for notification type 'invoice.paid' (known: ")
    assert err.count("\n") == 1
    assert environment.sent == []
    # Without --check the type is the worker's business: a user template may exist only there.
    assert main(argv) == 0
    assert [item.message_id for item in environment.sent] != []


def test_publish_file_check_reports_data_that_does_not_render(
    environment: FakePublisher, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import json

    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(doc("no-data", data={})) + "\n", encoding="utf-8")
    assert main(["publish", "--check", "--file", str(path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "line 1: data: order.confirmation/en: 'order' is undefined in subject.txt.j2 line 1",
        "published 0, failed 1",
    ]
    assert environment.sent == []
