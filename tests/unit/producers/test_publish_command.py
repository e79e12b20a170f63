"""``postbus publish`` through the real root command, with the shipped fake behind the publisher seam."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import postbus.producers.cli
from postbus.cli import COMMANDS, LazyCommand, main
from postbus.events import PROP_SCHEMA
from postbus.producers.cli import FileSummary, publish_lines
from postbus.producers.fake import FakePublisher
from postbus.producers.jsonl import read_jsonl
from postbus.producers.publisher import PublishError

EMULATOR = (
    "Endpoint=sb://127.0.0.1:5673;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
)


def event(event_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "order.confirmation",
        "to": ["a@example.com"],
        "sender": "orders",
    } | overrides


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The lead registers `publish` in postbus/cli.py; until then the tests register it the same way.
    monkeypatch.setitem(
        COMMANDS, "publish", LazyCommand("postbus.producers.cli:app", "Publish notification events.")
    )
    # The command would set the process's OpenTelemetry providers (once per process, for good):
    # later tests would inherit a tracer that adds traceparent to what they publish.
    monkeypatch.setattr(postbus.producers.cli, "configure_telemetry", lambda settings: None)
    yield
    # The command configures logging on the captured stderr; do not leave a handler on a closed stream.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "postbus"]:
        root.removeHandler(handler)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakePublisher:
    monkeypatch.setenv("POSTBUS_SERVICEBUS_CONNECTION_STRING", EMULATOR)
    publisher = FakePublisher()
    monkeypatch.setattr(postbus.producers.cli, "open_publisher", lambda settings: publisher)
    return publisher


def write_lines(path: Path, documents: list[Any]) -> Path:
    path.write_text(
        "".join((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in documents), encoding="utf-8"
    )
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("postbus: error: ")
    return err.strip()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "nothing to publish: give --file, --json or event flags"),
        (
            ["--file", "{jsonl}", "--type", "a.b"],
            "give one of --file, --json or event flags, not --file and event flags",
        ),
        (["--json", "{jsonl}", "--file", "{jsonl}"], "not --file and --json"),
        (["--type", "a.b", "--send-at", "tomorrow"], "--send-at: not an ISO 8601 date-time: 'tomorrow'"),
        (["--type", "a.b", "--send-at", "2026-12-24T08:00:00"], "--send-at: needs a UTC offset or Z"),
        (["--type", "a.b", "--not-after", "2026-12-24"], "--not-after: needs a UTC offset or Z"),
        (["--type", "a.b", "--data", "{oops"], "--data: not valid JSON"),
        (
            ["--type", "a.b", "--data", "@/nonexistent/data.json"],
            "--data: cannot read '/nonexistent/data.json'",
        ),
        (["--file", "/nonexistent/events.jsonl"], "--file: cannot read '/nonexistent/events.jsonl'"),
        (["--file", "{jsonl}", "--send-at", "2026-12-24T08:00:00Z"], "--send-at: applies to one event"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(
    fake: FakePublisher, capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], expected: str
) -> None:
    jsonl = write_lines(tmp_path / "events.jsonl", [event("a")])
    argv = [arg.replace("{jsonl}", str(jsonl)) for arg in argv]
    assert main(["publish", *argv]) == 2
    assert expected in one_line_error(capsys)
    assert fake.sent == []


def test_missing_service_bus_settings_get_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", "--type", "a.b", "--to", "a@example.com", "--sender", "orders"]) == 2
    assert "POSTBUS_SERVICEBUS_CONNECTION_STRING or POSTBUS_SERVICEBUS_NAMESPACE" in one_line_error(capsys)


def test_one_event_from_flags_is_published_and_its_id_printed(
    fake: FakePublisher, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "data.json"
    data.write_text('{"order": {"number": "CO-7"}}', encoding="utf-8")
    argv = [
        "--id",
        "order-7",
        "--type",
        "order.confirmation",
        "--tenant",
        "contoso",
        "--to",
        "Jane <jane@example.com>",
    ]
    argv += [
        "--to",
        "joe@example.org",
        "--bcc",
        "audit@example.net",
        "--sender",
        "orders",
        "--locale",
        "de-DE",
    ]
    argv += [
        "--data",
        f"@{data}",
        "--not-after",
        "2026-12-31T00:00:00Z",
        "--send-at",
        "2026-12-24T08:00:00+01:00",
    ]
    assert main(["publish", *argv]) == 0
    assert capsys.readouterr().out == "order-7\n"
    [sent] = fake.sent
    message = sent.message
    assert message.scheduled_enqueue_time_utc == datetime(2026, 12, 24, 7, 0, tzinfo=UTC)
    body = json.loads(b"".join(message.body))
    assert body["to"] == [
        {"address": "jane@example.com", "display_name": "Jane"},
        {"address": "joe@example.org", "display_name": None},
    ]
    assert (body["tenant"], body["locale"], body["data"]) == (
        "contoso",
        "de-DE",
        {"order": {"number": "CO-7"}},
    )
    assert message.application_properties is not None
    assert PROP_SCHEMA in message.application_properties


def test_without_id_a_fresh_uuid_is_used(fake: FakePublisher, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["publish", "--type", "order.confirmation", "--to", "a@example.com", "--sender", "orders"]) == 0
    )
    printed = capsys.readouterr().out.strip()
    assert len(printed) == 36
    assert [item.message_id for item in fake.sent] == [printed]


def test_one_event_from_a_json_file(
    fake: FakePublisher, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event("from-file")), encoding="utf-8")
    assert main(["publish", "--json", str(path), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert [item.message_id for item in fake.sent] == ["from-file"]


def test_an_invalid_single_event_is_one_line_naming_the_field(
    fake: FakePublisher, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", "--type", "order.confirmation", "--to", "nobody", "--sender", "orders"]) == 2
    assert one_line_error(capsys) == "postbus: error: to.0.address: not a valid email address: 'nobody'"


def test_a_file_with_bad_lines_publishes_the_good_ones_reports_the_bad_and_exits_1(
    fake: FakePublisher, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_lines(
        tmp_path / "events.jsonl",
        [
            event("good-1"),
            event("bad-1", to=["x"]),
            "",
            {"event": event("good-2"), "send_at": "2026-12-24T08:00:00Z"},
            "{broken",
            event("good-3"),
        ],
    )
    assert main(["publish", "--file", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "good-1\ngood-2\ngood-3\n"
    assert captured.err.splitlines() == [
        "line 2: to.0.address: not a valid email address: 'x'",
        "line 5: not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        "published 3, failed 2",
    ]
    assert [item.scheduled for item in fake.sent] == [False, True, False]


def test_a_clean_file_exits_0(
    fake: FakePublisher, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "events.jsonl", [event(f"e-{n}") for n in range(5)])
    assert main(["publish", "-f", str(path), "-q"]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "published 5, failed 0\n")


def test_a_publish_failure_stops_the_file_and_counts_what_was_not_sent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("POSTBUS_SERVICEBUS_CONNECTION_STRING", EMULATOR)
    failing = FakePublisher(fail_after=2, error=PublishError("queue 'notifications' does not exist in ns"))
    monkeypatch.setattr(postbus.producers.cli, "open_publisher", lambda settings: failing)
    path = write_lines(tmp_path / "events.jsonl", [event(f"e-{n}") for n in range(5)])
    assert main(["publish", "--file", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "e-0\ne-1\n"
    assert captured.err.splitlines() == [
        "postbus: error: queue 'notifications' does not exist in ns",
        "published 2, failed 0, not sent 3",
    ]
    assert failing.closed


async def test_lines_go_out_in_chunks_in_file_order() -> None:
    contents = read_jsonl(json.dumps(event(f"e-{n}")) for n in range(5))
    fake, seen = FakePublisher(), []
    summary = FileSummary(lines=5, failed=0)
    await publish_lines(contents.good, fake, summary=summary, on_published=seen.extend, chunk_size=2)
    assert fake.calls == [["e-0", "e-1"], ["e-2", "e-3"], ["e-4"]]
    assert seen == ["e-0", "e-1", "e-2", "e-3", "e-4"]
    assert (summary.published, summary.exit_code) == (5, 0)


def test_on_a_terminal_log_lines_print_above_the_progress_bar(
    fake: FakePublisher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a terminal on stderr, and a publisher that logs while it publishes
    import io

    from rich.console import Console

    from postbus.logs import get_logger

    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=80, color_system=None)
    monkeypatch.setattr(postbus.producers.cli, "_stderr", lambda: terminal)
    monkeypatch.setenv("POSTBUS_LOG_FORMAT", "json")
    original = fake.publish_many

    async def publish_many(events: Any) -> list[str]:
        get_logger("postbus.producers.publisher").error("slow batch", note="logged mid-bar")
        return await original(events)

    monkeypatch.setattr(fake, "publish_many", publish_many)
    jsonl = write_lines(tmp_path / "events.jsonl", [event("p1"), event("p2")])

    # When the file is published
    assert main(["publish", "--file", str(jsonl), "--quiet"]) == 0

    # Then the log line went through the bar's console, whole, on a line of its own
    lines = screen.getvalue().splitlines()
    logged = [line for line in lines if "slow batch" in line]
    assert len(logged) == 1, lines
    # (the bar is erased first: everything before the last erase-line code is the bar's own)
    assert json.loads(logged[0].split("\x1b[2K")[-1])["note"] == "logged mid-bar"


def test_file_dash_reads_stdin_and_a_byte_order_mark_is_accepted(
    fake: FakePublisher, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    # A file saved by a Windows editor starts with a UTF-8 byte-order mark.
    lines = "\ufeff" + "".join(json.dumps(event(f"s-{n}")) + "\n" for n in range(3))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines.encode("utf-8"))))
    assert main(["publish", "--file", "-"]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("s-0\ns-1\ns-2\n", "published 3, failed 0\n")


def test_a_json_file_with_a_byte_order_mark_is_accepted(
    fake: FakePublisher, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "event.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(event("bom-1")).encode())
    assert main(["publish", "--json", str(path)]) == 0
    assert capsys.readouterr().out == "bom-1\n"


def test_a_json_lines_file_given_to_json_points_at_file(
    fake: FakePublisher, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "events.jsonl", [event("a"), event("b")])
    assert main(["publish", "--json", str(path)]) == 2
    assert one_line_error(capsys) == (
        "postbus: error: Invalid value for --json: not valid JSON: Extra data (line 2, column 1); "
        "one event per document (JSON Lines go to --file)"
    )
