"""``postbus worker`` against the Service Bus emulator: a queue that does not exist is one line."""

from __future__ import annotations

import pytest

from postbus.cli import main
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.logs import configure_logging
from postbus.worker import cli as worker_cli

KEY = "c2VjcmV0LWtleS12YWx1ZQ=="


def test_a_missing_queue_stops_the_worker_with_one_line_naming_the_setting(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_logging(fmt="json")  # onto this test's stderr, not one an earlier test closed
    # The command would set the process's OpenTelemetry providers for good; later tests must not inherit them.
    monkeypatch.setattr(worker_cli, "configure_telemetry", lambda settings: None)
    with ServiceBusEmulator() as servicebus:
        monkeypatch.setenv("POSTBUS_SERVICEBUS_CONNECTION_STRING", servicebus.connection_string)
        monkeypatch.setenv("POSTBUS_QUEUE", "no-such-queue")
        monkeypatch.setenv("POSTBUS_ACS_CONNECTION_STRING", f"endpoint=http://127.0.0.1:9/;accesskey={KEY}")
        monkeypatch.setenv("POSTBUS_SENDERS", '{"orders": "orders@contoso.com"}')
        monkeypatch.setenv("POSTBUS_HEALTH_PORT", "0")
        monkeypatch.setenv("POSTBUS_LOG_FORMAT", "json")
        code = main(["worker"])
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("postbus: error:")]
    assert code == 1
    assert len(errors) == 1, err
    assert errors[0].startswith("postbus: error: could not open queue 'no-such-queue'")
    assert errors[0].endswith("; set POSTBUS_QUEUE to a queue of this namespace")
    assert "Traceback" not in err
