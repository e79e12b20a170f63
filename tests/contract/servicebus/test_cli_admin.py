"""The standalone CLI (subprocess) and the read-only HTTP admin endpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from postbus.emulators.servicebus import ServiceBusEmulator

from .conftest import CONFIG

pytestmark = pytest.mark.timeout(60)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"] == "application/json"
        return json.load(response)


def _cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "postbus.cli", "emulator", "servicebus", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_admin_endpoint_serves_health_counts_and_queues() -> None:
    with ServiceBusEmulator(CONFIG, admin_port=0) as sb:
        assert sb.admin_url is not None
        assert sb.admin_url.startswith("http://127.0.0.1:")
        with ServiceBusClient.from_connection_string(sb.connection_string) as client:
            with client.get_queue_sender("orders", keep_alive=0) as sender:
                sender.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
            with client.get_queue_receiver("orders") as receiver:
                (msg,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
                assert _get(f"{sb.admin_url}/health") == {"status": "healthy"}
                counts = _get(f"{sb.admin_url}/counts")
                assert counts["orders"] == {
                    "active": 1,
                    "scheduled": 0,
                    "locked": 1,
                    "dead_lettered": 0,
                    "deferred": 0,
                }
                receiver.complete_message(msg)
        queues = _get(f"{sb.admin_url}/queues")
        assert queues["orders"]["LockDuration"] == "PT2S"
        assert queues["orders"]["MaxDeliveryCount"] == 3
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(f"{sb.admin_url}/nope", timeout=5)
        assert excinfo.value.code == 404
        excinfo.value.close()


def test_cli_prints_the_connection_string_first_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc = _cli("--port", "0", "--admin-port", "0")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("Endpoint=sb://127.0.0.1:")
        assert first.endswith(
            ";SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;"
            "UseDevelopmentEmulator=true"
        )
        admin_url = proc.stdout.readline().strip()
        empty = {"active": 0, "scheduled": 0, "locked": 0, "dead_lettered": 0, "deferred": 0}
        # The built-in config has one queue per priority lane, and the delivery reports' queue.
        assert _get(f"{admin_url}/counts") == dict.fromkeys(
            ("notifications-critical", "notifications", "notifications-bulk", "email-events"), empty
        )
        with (
            ServiceBusClient.from_connection_string(first) as client,
            client.get_queue_sender("notifications", keep_alive=0) as sender,
        ):
            sender.send_messages(ServiceBusMessage("from another process"))
        assert _get(f"{admin_url}/counts")["notifications"]["active"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_cli_exits_on_sigint_too() -> None:
    proc = _cli("--port", "0")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("Endpoint=sb://")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_cli_rejects_a_bad_config_with_one_line_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "Config.json"
    config.write_text(
        json.dumps(
            {
                "UserConfig": {
                    "Namespaces": [
                        {"Name": "ns", "Queues": [{"Name": "q", "Properties": {"LockDuration": "soon"}}]}
                    ]
                }
            }
        )
    )
    proc = _cli("--port", "0", "--config", str(config))
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("postbus: error: ")
    assert "UserConfig.Namespaces[0].Queues[0].Properties.LockDuration" in lines[0]
