"""The root command warns once per unknown POSTBUS_ variable, on stderr, before the command runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from postbus.cli import main
from postbus.errors import SettingsError
from postbus.worker.ops.doctor import run_doctor


def test_each_unknown_variable_gets_one_warning_line_and_the_command_still_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a typo in the environment and another in the env file
    (tmp_path / "local.env").write_text("POSTBUS_SENDRS={}\n", encoding="utf-8")
    monkeypatch.setenv("POSTBUS_ENV_FILE", str(tmp_path / "local.env"))
    monkeypatch.setenv("POSTBUS_QUOTA_PER_MINUT", "0")
    # When a command runs
    assert main(["templates", "list"]) == 0
    captured = capsys.readouterr()
    # Then stderr holds exactly one line per unknown variable, and the command's output follows
    assert captured.err.splitlines() == [
        "postbus: warning: POSTBUS_QUOTA_PER_MINUT (from the environment) is not a Postbus setting and is "
        "ignored; did you mean POSTBUS_QUOTA_PER_MINUTE?",
        f"postbus: warning: POSTBUS_SENDRS (from the env file {tmp_path / 'local.env'}) is not a Postbus "
        "setting and is ignored; did you mean POSTBUS_SENDERS?",
    ]
    assert "order.confirmation" in captured.out


def test_no_warning_when_every_variable_is_a_setting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTBUS_QUEUE", "orders")
    monkeypatch.setenv("POSTBUS_ALERT_EMAIL", "oncall@contoso.com")  # an azd deployment variable
    assert main(["templates", "list"]) == 0
    assert capsys.readouterr().err == ""


def test_a_broken_env_file_is_one_error_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text('POSTBUS_QUEUE="orders\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTBUS_ENV_FILE")
    assert main(["status", "--event-id", "order-1"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "postbus: error: POSTBUS_ENV_FILE: .env line 1 is not NAME=value (check its quotes; '#' starts a comment)\n"
    )


async def test_doctor_shows_unknown_variables_as_a_row_even_when_settings_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSTBUS_SERVICEBUS_CONECTION_STRING", "Endpoint=sb://x")
    checks = await run_doctor(SettingsError("POSTBUS_SERVICEBUS_CONNECTION_STRING or ... must be set"))
    assert [(check.name, check.status) for check in checks] == [("settings", "fail"), ("variables", "warn")]
    assert "did you mean POSTBUS_SERVICEBUS_CONNECTION_STRING?" in checks[1].detail
