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

from .conftest import event_ids, failed, fill_dead_letters, garbage, make_event, mark_sent, queue_state, run

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
    rows = json.loads(out)
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
