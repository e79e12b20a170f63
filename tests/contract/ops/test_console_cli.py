"""``postbus console``: it serves the pipeline view for the settings, and its mistakes are one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from postbus.cli import main
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.harness import free_ports

KEY = "c2VjcmV0LWtleS12YWx1ZQ=="


@pytest.fixture
def console_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    values = {
        "POSTBUS_SERVICEBUS_CONNECTION_STRING": (
            "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
        ),
        "POSTBUS_SENDERS": '{"orders": "orders@contoso.com"}',
        "POSTBUS_ACS_CONNECTION_STRING": f"endpoint=http://127.0.0.1:9/;accesskey={KEY}",
        "POSTBUS_RECORD_URL": f"sqlite:///{tmp_path}/records.db",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_a_worker_url_that_is_not_http_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], console_env: dict[str, str]
) -> None:
    assert main(["console", "--worker", "127.0.0.1:8080"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--worker" in err
    assert "expected an http(s) URL" in err


def test_a_taken_port_is_one_line_naming_the_option(
    capsys: pytest.CaptureFixture[str], console_env: dict[str, str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["console", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == f"postbus: error: console port {port} on 127.0.0.1 is already in use (--port); choose another port\n"
    )


@pytest.fixture
def servicebus_with_admin() -> Iterator[ServiceBusEmulator]:
    [admin_port] = free_ports(1)
    with ServiceBusEmulator(admin_port=admin_port) as emulator:
        yield emulator


@pytest.mark.parametrize(
    ("lanes", "queues"),
    [
        ("false", ["notifications"]),
        ("true", ["notifications-critical", "notifications", "notifications-bulk", "email-events"]),
    ],
    ids=["lanes off", "lanes on"],
)
def test_it_serves_the_queue_counts_and_stops_cleanly_on_ctrl_c(
    console_env: dict[str, str], servicebus_with_admin: ServiceBusEmulator, lanes: str, queues: list[str]
) -> None:
    sb = servicebus_with_admin
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("POSTBUS_")},
        **console_env,
        "POSTBUS_ENV_FILE": "",
        "POSTBUS_SERVICEBUS_CONNECTION_STRING": sb.connection_string,
        "POSTBUS_LANES": lanes,
    }
    [closed] = free_ports(1)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "postbus.cli",
            "console",
            "--port",
            "0",
            "--servicebus-admin",
            str(sb.admin_url),
            "--worker",
            f"http://127.0.0.1:{closed}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/snapshot", timeout=10) as response:
            snapshot = json.loads(response.read())
        # With lanes on: every lane's queue and the delivery reports' queue
        assert [q["name"] for q in snapshot["queues"]] == queues
        assert snapshot["workers"] == [
            {
                "name": "worker-0",
                "url": f"http://127.0.0.1:{closed}",
                "ready": False,
                "detail": snapshot["workers"][0]["detail"],
            }
        ]
        assert snapshot["quota_per_minute"] == 30  # the default for a verified custom domain
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert b"Traceback" not in err


def test_binding_beyond_loopback_warns_that_there_is_no_sign_in(console_env: dict[str, str]) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("POSTBUS_")},
        **console_env,
        "POSTBUS_ENV_FILE": "",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "postbus.cli", "console", "--port", "0", "--host", "0.0.0.0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"http://0.0.0.0:")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert err.decode().startswith("postbus: warning: serving the pipeline console (queue depths")
    assert "on 0.0.0.0: it has no sign-in" in err.decode()
