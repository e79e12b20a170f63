"""``postbus dlq``/``postbus status`` end to end: the CLI on both emulators, and a replay interrupted by SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from postbus.cli import main
from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.settings import Settings

from .conftest import (
    event_ids,
    failed,
    fill_dead_letters,
    garbage,
    make_event,
    mark_sent,
    publish_events,
    queue_state,
    run,
)

ROOT = Path(__file__).resolve().parents[3]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_filters_summarises_and_masks_bodies(
    servicebus: ServiceBusEmulator, environ: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        fill_dead_letters(
            servicebus.connection_string,
            [
                failed(make_event("l1"), "RetriesExhausted", attempt=7, description="ACS answered 503"),
                failed(make_event("l2", tenant="fabrikam"), "RetriesExhausted"),
                failed(make_event("l3", type_="appointment.reminder"), "TemplateError"),
                garbage("l4"),
            ],
        )
    )
    capsys.readouterr()

    code, out, _ = _cli(
        capsys, "dlq", "list", "--json", "--reason", "retriesexhausted", "--tenant", "contoso"
    )
    assert code == 0
    (entry,) = json.loads(out)
    assert (entry["event_id"], entry["reason"], entry["attempt"], entry["description"]) == (
        "l1",
        "RetriesExhausted",
        7,
        "ACS answered 503",
    )
    assert "body" not in entry

    code, out, _ = _cli(capsys, "dlq", "list", "--json", "--summary")
    assert json.loads(out) == {
        "total": 4,
        "by_reason": {"RetriesExhausted": 2, "TemplateError": 1, "InvalidEvent": 1},
    }

    code, out, _ = _cli(capsys, "dlq", "list", "--json", "--body", "--event-id", "l1")
    (entry,) = json.loads(out)
    assert entry["body"]["to"][0]["address"] == "j***@example.com"
    assert "jane.doe@example.com" not in out

    code, out, _ = _cli(capsys, "dlq", "list", "--type", "appointment.reminder")
    assert code == 0
    assert "l3" in out
    assert "TemplateError" in out
    assert "l1" not in out


def test_purge_needs_yes_and_reports_what_it_removed(
    servicebus: ServiceBusEmulator, environ: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        fill_dead_letters(
            servicebus.connection_string,
            [failed(make_event("p1"), "Expired"), failed(make_event("p2"), "RetriesExhausted")],
        )
    )
    capsys.readouterr()

    code, out, err = _cli(capsys, "dlq", "purge", "--reason", "Expired")
    assert code == 2
    assert err.startswith("postbus: error: purge deletes")
    assert err.count("\n") == 1
    assert servicebus.counts("notifications").dead_lettered == 2

    code, out, _ = _cli(capsys, "dlq", "purge", "--reason", "Expired", "--yes", "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["removed"], [item["event_id"] for item in report["items"]]) == (1, ["p1"])
    assert servicebus.counts("notifications").dead_lettered == 1


def test_replay_dry_run_prints_a_summary_and_changes_nothing(
    servicebus: ServiceBusEmulator, environ: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    run(fill_dead_letters(servicebus.connection_string, [failed(make_event("y1"), "RetriesExhausted")]))
    capsys.readouterr()

    code, out, _ = _cli(capsys, "dlq", "replay", "--dry-run", "--wait", "0.5")

    assert code == 0
    assert "would replay 1, skipped 0, failed 0" in out
    assert servicebus.counts("notifications").dead_lettered == 1


def test_status_by_event_id_shows_each_generation_and_acs_errors(
    servicebus: ServiceBusEmulator, acs: EmailEmulator, environ: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    event = make_event("st1")
    first = mark_sent(acs, event)
    mark_sent(acs, event, generation=1, to="someone@bounce.test")

    code, out, _ = _cli(capsys, "status", "--event-id", "st1", "--generations", "2", "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["records"] == []  # nothing recorded, so ACS was asked
    rows = answer["acs"]
    assert [(r["generation"], r["status"], r["error_code"]) for r in rows] == [
        (0, "Succeeded", ""),
        (1, "Failed", "EmailDropped"),
        (2, "NotFound", ""),
    ]
    assert rows[0]["operation_id"] == first

    code, out, _ = _cli(capsys, "status", first)
    assert code == 0
    assert first in out
    assert "Succeeded" in out


def test_status_of_a_queued_or_dead_lettered_event_says_where_it_is(
    servicebus: ServiceBusEmulator, environ: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    run(fill_dead_letters(servicebus.connection_string, [failed(make_event("gone1"), "Expired")]))
    run(publish_events(servicebus.connection_string, [make_event("wait1")]))
    capsys.readouterr()

    code, out, _ = _cli(capsys, "status", "--event-id", "wait1")
    assert code == 0
    assert "queued: message 'wait1' waits in queue 'notifications'" in out

    code, out, _ = _cli(capsys, "status", "--event-id", "gone1")
    assert code == 0
    assert "dead-lettered: message 'gone1' is in the dead-letter queue of 'notifications': Expired" in out

    code, out, _ = _cli(capsys, "status", "--event-id", "gone1", "--json")
    [message] = json.loads(out)["messages"]
    assert (message["place"], message["reason"]) == ("dead-letter queue", "Expired")


def test_status_of_an_event_that_is_nowhere_is_one_line_and_exit_1(
    servicebus: ServiceBusEmulator, environ: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, "status", "0e4ef0b2-4c52-4b0a-9d7e-2f3a1c5d6e7f")
    assert (code, out) == (1, "")
    assert err == (
        "postbus: error: ACS does not know operation 0e4ef0b2-4c52-4b0a-9d7e-2f3a1c5d6e7f "
        "(never sent, or older than its retention)\n"
    )

    code, out, err = _cli(capsys, "status", "--event-id", "never-published")
    assert code == 1
    assert out == ""
    assert err == (
        "postbus: error: ACS has no send of event 'never-published' (generations 0-2), and it is in "
        "neither queue 'notifications' nor its dead-letter queue: was it published to this namespace?\n"
    )


def test_an_empty_dead_letter_queue_says_so(
    servicebus: ServiceBusEmulator, environ: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(capsys, "dlq", "list")
    assert (code, out) == (0, "no dead-lettered message in 'notifications'\n")
    code, out, _ = _cli(capsys, "dlq", "list", "--reason", "Expired", "--summary")
    assert (code, out) == (0, "no dead-lettered message in 'notifications' matches the filters\n")
    code, out, _ = _cli(capsys, "dlq", "list", "--json")
    assert (code, json.loads(out)) == (0, [])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("dlq", "list", "--event-id", "bad id!"), "is not a valid event id"),
        (("dlq", "list", "--since", "yesterday"), "is not an ISO 8601 time"),
        (("dlq", "replay", "--rate", "fast"), "--rate 'fast'"),
        (("status", "not-a-uuid"), "is not an ACS operation id"),
        (("status",), "give an operation id or --event-id"),
        (("doctor", "--azure"), "--azure needs --subscription"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = _cli(capsys, *argv)
    assert code == 2
    assert err.startswith("postbus: error: ")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_missing_configuration_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "dlq", "list")
    assert code == 2
    assert err == (
        "postbus: error: POSTBUS_SERVICEBUS_CONNECTION_STRING or POSTBUS_SERVICEBUS_NAMESPACE must be set "
        "for the dead-letter commands\n"
    )


async def test_a_replay_interrupted_by_sigterm_loses_nothing_and_duplicates_nothing(
    servicebus: ServiceBusEmulator, environ: Settings
) -> None:
    # Given eight dead-lettered events and a replay process paced at 4/s
    names = [f"k{i}" for i in range(8)]
    await fill_dead_letters(
        servicebus.connection_string, [failed(make_event(n), "RetriesExhausted") for n in names]
    )
    env = {key: value for key, value in os.environ.items() if key.startswith(("POSTBUS_", "PATH", "HOME"))}
    env["POSTBUS_LOG_FORMAT"] = "json"
    argv = [sys.executable, "-m", "postbus.cli", "dlq", "replay", "--force", "--rate", "4/s", "--json"]
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )

    # When it is sent SIGTERM once two replays have reached the queue
    try:
        await servicebus.wait_for("notifications", lambda counts: counts.active >= 2, timeout=60)
    finally:
        process.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)

    # Then it stops with 130, reports what it did, and every event is in exactly one place
    assert process.returncode == 130, err.decode()[-2000:]
    summary = json.loads(out)
    assert summary["interrupted"] is True
    main, dead = await queue_state(servicebus.connection_string)
    assert summary["replayed"] == len(main) < len(names)
    assert sorted(event_ids(main) + event_ids(dead)) == names


def test_dlq_commands_reach_each_lane_s_dead_letters(
    servicebus: ServiceBusEmulator,
    environ: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a dead letter on the bulk lane's queue only
    run(
        fill_dead_letters(
            servicebus.connection_string,
            [failed(make_event("bulk-1"), "RetriesExhausted")],
            queue="notifications-bulk",
        )
    )
    capsys.readouterr()
    # With lanes off, --lane names nothing but normal
    code, _, err = _cli(capsys, "dlq", "list", "--lane", "bulk")
    assert code == 2
    assert "lanes are off" in err
    monkeypatch.setenv("POSTBUS_LANES", "true")
    # Then --lane bulk lists it, the default (normal) lane does not, and an unknown lane is one line
    code, out, _ = _cli(capsys, "dlq", "list", "--json", "--lane", "bulk")
    assert code == 0
    assert [entry["event_id"] for entry in json.loads(out)] == ["bulk-1"]
    code, out, _ = _cli(capsys, "dlq", "list", "--json")
    assert (code, json.loads(out)) == (0, [])
    code, _, err = _cli(capsys, "dlq", "purge", "--lane", "urgent", "--yes")
    assert code == 2
    assert "unknown lane 'urgent'" in err
    assert len(err.strip().splitlines()) == 1


async def test_two_signals_during_replay_still_say_what_was_replayed(
    servicebus: ServiceBusEmulator, environ: Settings
) -> None:
    # Given eight dead-lettered events and a replay process paced at 4/s
    names = [f"k{i}" for i in range(8)]
    await fill_dead_letters(
        servicebus.connection_string, [failed(make_event(n), "RetriesExhausted") for n in names]
    )
    env = {key: value for key, value in os.environ.items() if key.startswith(("POSTBUS_", "PATH", "HOME"))}
    env["POSTBUS_LOG_FORMAT"] = "json"
    argv = [sys.executable, "-m", "postbus.cli", "dlq", "replay", "--force", "--rate", "4/s"]
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )

    # When two Ctrl-Cs arrive back to back once two replays have reached the queue
    try:
        await servicebus.wait_for("notifications", lambda counts: counts.active >= 2, timeout=60)
    finally:
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)

    # Then it exits 130 without a traceback, and either the summary (the first signal's clean stop)
    # or the one interrupted line (the second signal cancelled the message in hand) says how many
    # were replayed; no event is lost
    assert process.returncode == 130, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    main, dead = await queue_state(servicebus.connection_string)
    said = [
        line
        for line in out.decode().splitlines() + err.decode().splitlines()
        if line.startswith(("replayed ", "postbus: interrupted: stopped at the second signal; replayed "))
    ]
    assert len(said) == 1, (out + err).decode()[-2000:]
    assert any(f"replayed {n}," in said[0] for n in (len(main), len(main) - 1))
    assert sorted(set(event_ids(main) + event_ids(dead))) == names


@pytest.mark.parametrize(
    "argv",
    [
        ("dlq", "list"),
        ("dlq", "replay", "--force"),
        ("dlq", "purge", "--yes"),
    ],
    ids=" ".join,
)
def test_a_queue_the_namespace_lacks_is_one_line_naming_the_setting(
    servicebus: ServiceBusEmulator,
    environ: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
) -> None:
    monkeypatch.setenv("POSTBUS_QUEUE", "no-such-queue")
    code, out, err = _cli(capsys, *argv)
    assert code == 1
    # (the in-process emulator's own warning shares this stderr; the command's lines start "postbus:")
    ours = [line for line in err.splitlines() if line.startswith("postbus:")]
    assert ours == ["postbus: error: queue 'no-such-queue' does not exist in this namespace (POSTBUS_QUEUE)"]
    assert "Traceback" not in out + err


def test_status_without_service_bus_settings_says_where_else_to_look(
    acs: EmailEmulator, environ: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POSTBUS_SERVICEBUS_CONNECTION_STRING")
    code, _, err = _cli(capsys, "status", "--event-id", "never-published")
    assert code == 1
    assert err == (
        "postbus: error: ACS has no send of event 'never-published' (generations 0-2); set "
        "POSTBUS_SERVICEBUS_CONNECTION_STRING or POSTBUS_SERVICEBUS_NAMESPACE to look in the queue too\n"
    )


def test_status_still_answers_from_acs_when_the_queue_cannot_be_searched(
    servicebus: ServiceBusEmulator,
    acs: EmailEmulator,
    environ: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mark_sent(acs, make_event("sent-1"))
    monkeypatch.setenv("POSTBUS_QUEUE", "no-such-queue")
    missing = "queue 'no-such-queue' does not exist in this namespace (POSTBUS_QUEUE)"

    code, out, err = _cli(capsys, "status", "--event-id", "sent-1")
    assert code == 0
    assert "Succeeded" in out
    assert f"postbus: warning: the queue was not searched: {missing}" in err.splitlines()

    code, out, err = _cli(capsys, "status", "--event-id", "never-published")
    assert (code, out) == (1, "")
    ours = [line for line in err.splitlines() if line.startswith("postbus:")]
    assert ours == [
        f"postbus: error: ACS has no send of event 'never-published' and the queue could not be searched: {missing}"
    ]
