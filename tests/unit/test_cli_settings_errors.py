"""Bad connection strings and keys: every command that needs them fails in one line, before any I/O."""

from __future__ import annotations

import pytest

from postbus.cli import main

KEY = "c2VjcmV0LWtleS12YWx1ZQ=="
SERVICEBUS = {
    "garbage": (
        "garbage",
        "not a Service Bus connection string (Connection string is either blank or malformed)",
    ),
    "no key": (
        "Endpoint=sb://pb.servicebus.windows.net/;SharedAccessKeyName=send",
        "not a Service Bus connection string (Connection string must have both SharedAccessKeyName and "
        "SharedAccessKey)",
    ),
    "another queue": (
        f"Endpoint=sb://pb.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={KEY};EntityPath=x",
        "its EntityPath 'x' is another queue than POSTBUS_QUEUE 'notifications'",
    ),
}
COMMANDS = [
    ["worker"],
    ["dlq", "list"],
    ["dlq", "replay", "--dry-run"],
    ["dlq", "purge", "--yes"],
    ["publish", "--type", "order.confirmation", "--to", "jane@example.com", "--sender", "orders"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("case", list(SERVICEBUS))
def test_a_bad_service_bus_connection_string_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], case: str
) -> None:
    value, reason = SERVICEBUS[case]
    monkeypatch.setenv("POSTBUS_SERVICEBUS_CONNECTION_STRING", value)
    monkeypatch.setenv("POSTBUS_SENDERS", '{"orders": "orders@contoso.com"}')
    monkeypatch.setenv("POSTBUS_ACS_CONNECTION_STRING", f"endpoint=http://127.0.0.1:9/;accesskey={KEY}")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"postbus: error: POSTBUS_SERVICEBUS_CONNECTION_STRING: {reason}")
    assert captured.err.count("\n") == 1
    assert KEY not in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("argv", [["worker"], ["status", "--event-id", "order-1"]], ids=" ".join)
@pytest.mark.parametrize(
    ("variables", "reason"),
    [
        (
            {
                "POSTBUS_ACS_ENDPOINT": "https://acs1.communication.azure.com",
                "POSTBUS_ACS_ACCESS_KEY": "garbage",
            },
            "POSTBUS_ACS_ACCESS_KEY: not valid base64",
        ),
        (
            {
                "POSTBUS_ACS_CONNECTION_STRING": "endpoint=https://acs1.communication.azure.com/;accesskey=garbage"
            },
            "POSTBUS_ACS_CONNECTION_STRING: accesskey: not valid base64",
        ),
    ],
)
def test_an_access_key_that_is_not_base64_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    variables: dict[str, str],
    reason: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POSTBUS_SENDERS", '{"orders": "orders@contoso.com"}')
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"postbus: error: {reason}")
    assert err.count("\n") == 1


def test_doctor_reports_a_bad_key_as_its_failed_settings_row(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTBUS_ACS_ENDPOINT", "https://acs1.communication.azure.com")
    monkeypatch.setenv("POSTBUS_ACS_ACCESS_KEY", "garbage")
    assert main(["doctor", "--json"]) == 1
    out = capsys.readouterr().out
    assert '"status": "fail"' in out
    assert "POSTBUS_ACS_ACCESS_KEY: not valid base64" in out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    "argv", [["worker"], ["status", "--event-id", "order-1"], ["report", "--since", "1h"]], ids=" ".join
)
def test_a_wrong_record_url_is_one_line_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setenv("POSTBUS_RECORD_URL", "postgres://db/records")
    monkeypatch.setenv("POSTBUS_SENDERS", '{"orders": "orders@contoso.com"}')
    monkeypatch.setenv("POSTBUS_ACS_CONNECTION_STRING", f"endpoint=http://127.0.0.1:9/;accesskey={KEY}")
    monkeypatch.setenv(
        "POSTBUS_SERVICEBUS_CONNECTION_STRING",
        f"Endpoint=sb://pb.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={KEY}",
    )
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(
        "postbus: error: POSTBUS_RECORD_URL: 'postgres://db/records' is not a record"
    )
    assert captured.err.count("\n") == 1
    assert captured.out == ""
