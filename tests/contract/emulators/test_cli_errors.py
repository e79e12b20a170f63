"""Every way the emulator commands can fail at start is one line that blames the right thing,
with a non-zero exit code and no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import free_port, one_line, port_is_free, run_cli

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a directory\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ Service Bus


def test_servicebus_port_in_use_names_the_amqp_port(tmp_path: Path, busy_port: int) -> None:
    line = one_line(run_cli(tmp_path, "emulator", "servicebus", "--port", str(busy_port)), 1)
    assert line == (
        f"Service Bus AMQP port {busy_port} on 127.0.0.1 is already in use (--port); "
        "stop what holds it or choose another port"
    )


def test_servicebus_admin_port_in_use_names_the_admin_port_not_the_amqp_port(
    tmp_path: Path, busy_port: int
) -> None:
    amqp = free_port()
    done = run_cli(tmp_path, "emulator", "servicebus", "--port", str(amqp), "--admin-port", str(busy_port))
    line = one_line(done, 1)
    assert line.startswith(
        f"Service Bus admin port {busy_port} on 127.0.0.1 is already in use (--admin-port)"
    )
    assert port_is_free(amqp)  # the AMQP listener it had opened is closed again


def test_servicebus_with_port_0_and_a_busy_admin_port_does_not_blame_port_0(
    tmp_path: Path, busy_port: int
) -> None:
    line = one_line(
        run_cli(tmp_path, "emulator", "servicebus", "--port", "0", "--admin-port", str(busy_port)), 1
    )
    assert ":0" not in line
    assert "(--admin-port)" in line


def test_servicebus_host_that_does_not_resolve_blames_the_host(tmp_path: Path) -> None:
    line = one_line(
        run_cli(tmp_path, "emulator", "servicebus", "--host", "nowhere.invalid", "--port", "0"), 1
    )
    assert line.startswith("cannot listen on host 'nowhere.invalid' (--host): ")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "missing.json: cannot read config: No such file or directory"),
        ("{not json", "missing.json: invalid JSON: "),
        (json.dumps({"UserConfig": {"Namespaces": []}}), "missing.json: UserConfig.Namespaces"),
    ],
)
def test_servicebus_bad_config_file_names_the_file(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    if content is not None:
        (tmp_path / "missing.json").write_text(content, encoding="utf-8")
    line = one_line(run_cli(tmp_path, "emulator", "servicebus", "--port", "0", "--config", "missing.json"), 2)
    assert line.startswith(expected)


def test_servicebus_config_that_is_a_directory(tmp_path: Path) -> None:
    line = one_line(run_cli(tmp_path, "emulator", "servicebus", "--port", "0", "--config", "."), 2)
    assert line.startswith(".: cannot read config: ")


def test_servicebus_out_of_range_port(tmp_path: Path) -> None:
    line = one_line(run_cli(tmp_path, "emulator", "servicebus", "--port", "70000"), 2)
    assert "--port" in line


def test_servicebus_module_entry_point_has_the_same_one_line_errors(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "--port", "0", "--config", "missing.json", module="postbus.emulators.servicebus")
    assert one_line(done, 2).startswith("missing.json: cannot read config")


# ------------------------------------------------------------------ ACS Email


def test_email_port_in_use_is_one_line_without_a_stopped_line(tmp_path: Path, busy_port: int) -> None:
    line = one_line(run_cli(tmp_path, "emulator", "email", "--port", str(busy_port)), 1)
    assert line == (
        f"ACS Email HTTP port {busy_port} on 127.0.0.1 is already in use (--port); "
        "stop what holds it or choose another port"
    )


@pytest.mark.parametrize("below", ["", "sub/dir"])
@pytest.mark.parametrize("tls", [False, True])
def test_email_mailbox_that_is_a_file_blames_the_mailbox(
    tmp_path: Path, a_file: Path, below: str, tls: bool
) -> None:
    mailbox = a_file / below if below else a_file
    args = ["emulator", "email", "--port", "0", "--mailbox", str(mailbox)] + (["--tls"] if tls else [])
    assert one_line(run_cli(tmp_path, *args), 2) == f"--mailbox {mailbox}: not a directory"


def test_email_state_dir_that_is_a_file(tmp_path: Path, a_file: Path) -> None:
    line = one_line(run_cli(tmp_path, "emulator", "email", "--port", "0", "--state-dir", str(a_file)), 2)
    assert line == f"--state-dir {a_file}: cannot keep the access key there: not a directory"


def test_email_damaged_key_file(tmp_path: Path) -> None:
    (tmp_path / ".postbus").mkdir()
    (tmp_path / ".postbus" / "acs-email-access-key").write_text("%%%\n", encoding="ascii")
    line = one_line(run_cli(tmp_path, "emulator", "email", "--port", "0"), 2)
    assert line.startswith("--state-dir .postbus: ")
    assert line.endswith("does not hold a base64 key; delete it or pass --new-key")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--quota", "lots"], "Invalid value for --quota: invalid quota 'lots'"),
        (["--access-key", "not base64!"], "Invalid value for --access-key: access key must be base64"),
        (
            ["--access-key", "a2V5", "--new-key"],
            "Invalid value for --new-key: give --access-key or --new-key",
        ),
        (["--fail-rate", "2"], "Invalid value for '--fail-rate'"),
    ],
)
def test_email_bad_option_values(tmp_path: Path, args: list[str], expected: str) -> None:
    assert one_line(run_cli(tmp_path, "emulator", "email", "--port", "0", *args), 2).startswith(expected)


def test_email_module_entry_point_has_the_same_one_line_errors(tmp_path: Path, busy_port: int) -> None:
    done = run_cli(tmp_path, "--port", str(busy_port), module="postbus.emulators.acs_email")
    assert "(--port)" in one_line(done, 1)
