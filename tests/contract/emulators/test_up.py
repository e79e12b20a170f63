"""``postbus emulator up``: both emulators in one process, and settings a worker can use as printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.communication.email import EmailClient
from azure.core.credentials import AzureKeyCredential
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from dotenv import dotenv_values

from postbus.emulators.up import SENDERS
from postbus.settings import Settings
from postbus.worker.mailer import parse_connection_string

from .conftest import REPO, free_port, one_line, port_is_free, run_cli

pytestmark = pytest.mark.timeout(120)

NAMES = [
    "POSTBUS_SERVICEBUS_CONNECTION_STRING",
    "POSTBUS_QUEUE",
    "POSTBUS_ACS_CONNECTION_STRING",
    "POSTBUS_SENDERS",
    "POSTBUS_QUOTA_PER_MINUTE",
    "POSTBUS_QUOTA_PER_HOUR",
]


class Up:
    """One ``postbus emulator up`` process; ``lines`` are the settings it printed."""

    def __init__(self, cwd: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTBUS_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "postbus.cli", "emulator", "up", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        self.lines = [self.proc.stdout.readline().rstrip("\n") for _ in NAMES]
        assert all(self.lines), f"up printed {self.lines}; stderr: {self._stderr()}"

    @property
    def values(self) -> dict[str, str]:
        return {line.split("=", 1)[0]: line.split("=", 1)[1].strip("'") for line in self.lines}

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        _, stderr = self.proc.communicate(timeout=30)
        return self.proc.returncode, stderr

    def _stderr(self) -> str:
        self.proc.kill()
        return self.proc.communicate(timeout=10)[1]


@pytest.fixture
def started() -> Iterator[list[Up]]:
    ups: list[Up] = []
    yield ups
    for up in ups:
        if up.proc.poll() is None:
            up.proc.kill()
            up.proc.communicate(timeout=10)


def _message() -> dict[str, Any]:
    return {
        "senderAddress": SENDERS["orders"],
        "recipients": {"to": [{"address": "ann@contoso.test"}]},
        "content": {"subject": "Order 42", "plainText": "Thanks."},
    }


def test_up_prints_settings_that_reach_both_emulators_and_writes_them_into_the_env_file(
    tmp_path: Path, started: list[Up]
) -> None:
    amqp, http = free_port(), free_port()
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# mine\nDATABASE_URL=postgres://db/app\nPOSTBUS_ACS_ENDPOINT=https://old\n", encoding="utf-8"
    )
    up = Up(
        tmp_path,
        "--servicebus-port", str(amqp),
        "--email-port", str(http),
        "--quota", "azure-default",
        "--env-file", ".env",
    )  # fmt: skip
    started.append(up)
    # stdout holds exactly the settings, in a fixed order
    assert [line.split("=", 1)[0] for line in up.lines] == NAMES
    values = up.values
    assert values["POSTBUS_SERVICEBUS_CONNECTION_STRING"].startswith(f"Endpoint=sb://127.0.0.1:{amqp};")
    assert values["POSTBUS_QUEUE"] == "notifications"
    assert (values["POSTBUS_QUOTA_PER_MINUTE"], values["POSTBUS_QUOTA_PER_HOUR"]) == ("30", "100")
    # the env file got the same settings, kept the user's lines and dropped the contradicting one
    assert dotenv_values(env_file) == {"DATABASE_URL": "postgres://db/app", **values}
    assert env_file.read_text(encoding="utf-8").startswith("# mine\nDATABASE_URL=postgres://db/app\n")
    # the settings a worker loads from it reach both emulators with the real SDKs
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]  # pydantic-settings' init option
    assert settings.senders == SENDERS
    assert settings.servicebus_connection_string is not None
    with (
        ServiceBusClient.from_connection_string(
            settings.servicebus_connection_string.get_secret_value()
        ) as sb,
        sb.get_queue_sender(settings.queue, keep_alive=0) as sender,
    ):
        sender.send_messages(ServiceBusMessage("hello"))
    assert settings.acs_connection_string is not None
    endpoint, key = parse_connection_string(settings.acs_connection_string.get_secret_value())
    with EmailClient(endpoint, AzureKeyCredential(key), retry_total=0) as client:
        assert client.begin_send(_message()).result()["status"] == "Succeeded"
    # SIGTERM stops both and exits 0
    code, stderr = up.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert port_is_free(amqp)
    assert port_is_free(http)


def test_the_access_key_survives_a_restart_and_new_key_rotates_it(tmp_path: Path, started: list[Up]) -> None:
    ports = ("--servicebus-port", "0", "--email-port", "0")
    first = Up(tmp_path, *ports)
    started.append(first)
    key = first.values["POSTBUS_ACS_CONNECTION_STRING"].rsplit("accesskey=", 1)[1]
    assert (first.values["POSTBUS_QUOTA_PER_MINUTE"], first.values["POSTBUS_QUOTA_PER_HOUR"]) == ("0", "0")
    assert first.stop(signal.SIGINT)[0] == 0  # Ctrl-C too
    again = Up(tmp_path, *ports)
    started.append(again)
    assert again.values["POSTBUS_ACS_CONNECTION_STRING"].endswith(f"accesskey={key}")
    assert again.stop()[0] == 0
    rotated = Up(tmp_path, *ports, "--new-key")
    started.append(rotated)
    assert not rotated.values["POSTBUS_ACS_CONNECTION_STRING"].endswith(f"accesskey={key}")
    assert rotated.stop()[0] == 0
    assert (tmp_path / ".postbus" / "acs-email-access-key").is_file()


def test_a_shell_sources_the_env_file_to_the_same_values(tmp_path: Path, started: list[Up]) -> None:
    up = Up(tmp_path, "--servicebus-port", "0", "--email-port", "0", "--env-file", "local.env")
    started.append(up)
    assert up.stop()[0] == 0
    script = 'set -a; . ./local.env; for n in "$@"; do eval "printf \'%s\\0\' \\"\\${$n}\\""; done'
    done = subprocess.run(
        ["sh", "-c", script, "sh", *NAMES], cwd=tmp_path, capture_output=True, check=True, env={}
    )
    assert dict(zip(NAMES, done.stdout.decode().split("\0")[:-1], strict=True)) == up.values


# ------------------------------------------------------------------ when it cannot start


def test_up_servicebus_port_in_use_starts_nothing(tmp_path: Path, busy_port: int) -> None:
    email = free_port()
    done = run_cli(
        tmp_path,
        "emulator",
        "up",
        "--servicebus-port",
        str(busy_port),
        "--email-port",
        str(email),
        "--env-file",
        ".env",
    )
    assert "(--servicebus-port)" in one_line(done, 1)
    assert not (tmp_path / ".env").exists()
    assert port_is_free(email)


def test_up_email_port_in_use_stops_the_servicebus_emulator(tmp_path: Path, busy_port: int) -> None:
    amqp = free_port()
    done = run_cli(
        tmp_path,
        "emulator",
        "up",
        "--servicebus-port",
        str(amqp),
        "--email-port",
        str(busy_port),
        "--env-file",
        ".env",
    )
    line = one_line(done, 1)
    assert line.startswith(f"ACS Email HTTP port {busy_port} on 127.0.0.1 is already in use (--email-port)")
    assert port_is_free(amqp)
    assert not (tmp_path / ".env").exists()


def test_up_env_file_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    done = run_cli(
        tmp_path, "emulator", "up", "--servicebus-port", "0", "--email-port", "0", "--env-file", "conf"
    )
    assert one_line(done, 2) == "--env-file conf: is a directory"


def test_up_env_file_in_a_missing_directory_stops_both(tmp_path: Path) -> None:
    amqp, email = free_port(), free_port()
    done = run_cli(
        tmp_path,
        "emulator",
        "up",
        "--servicebus-port",
        str(amqp),
        "--email-port",
        str(email),
        "--env-file",
        "no/such/dir/.env",
    )
    assert one_line(done, 2) == "--env-file no/such/dir/.env: cannot write it: No such file or directory"
    assert port_is_free(amqp)
    assert port_is_free(email)


def test_up_bad_quota(tmp_path: Path) -> None:
    assert "--quota" in one_line(run_cli(tmp_path, "emulator", "up", "--quota", "lots"), 2)


def test_make_emulators_fails_when_an_emulator_cannot_start(tmp_path: Path, busy_port: int) -> None:
    # -o: the venv stamp counts as current, so make does not reinstall anything here.
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(REPO),
            "-o",
            ".venv/.postbus-installed",
            "emulators",
            f"ENV_FILE={tmp_path / '.env'}",
            f"EMULATOR_ARGS=--state-dir {tmp_path / 'state'} --servicebus-port 0 --email-port {busy_port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("postbus: error: ")]
    assert len(errors) == 1
    assert "(--email-port)" in errors[0]
    assert not (tmp_path / ".env").exists()
