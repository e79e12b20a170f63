"""The standalone process: endpoint and connection string on stdout, clean exit on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.communication.email import EmailClient
from azure.core.credentials import AzureKeyCredential

KEY = "ZW11bGF0b3ItdGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZg=="


def _start(cwd: Path, *args: str) -> subprocess.Popen[str]:
    # A scratch working directory: without --access-key the emulator keeps its key in ./.postbus.
    return subprocess.Popen(
        [sys.executable, "-m", "postbus.emulators.acs_email", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


@pytest.fixture
def proc() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=10)


def test_cli_prints_endpoint_and_connection_string_and_exits_0_on_sigterm(
    proc: list[subprocess.Popen[str]], message: dict[str, Any], tmp_path: Path
) -> None:
    p = _start(tmp_path, "--access-key", KEY, "--quota", "azure-default")
    proc.append(p)
    assert p.stdout is not None
    endpoint = p.stdout.readline().strip()
    connection_string = p.stdout.readline().strip()
    assert endpoint.startswith("http://127.0.0.1:")
    assert connection_string == f"endpoint={endpoint}/;accesskey={KEY}"
    with EmailClient(endpoint, AzureKeyCredential(KEY), retry_total=0) as client:
        assert client.begin_send(message).result()["status"] == "Succeeded"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 0


def test_cli_with_tls_prints_the_certificate_path(
    proc: list[subprocess.Popen[str]], message: dict[str, Any], tmp_path: Path
) -> None:
    p = _start(tmp_path, "--tls")
    proc.append(p)
    assert p.stdout is not None
    endpoint = p.stdout.readline().strip()
    connection_string = p.stdout.readline().strip()
    cert = p.stdout.readline().strip()
    assert endpoint.startswith("https://")
    with EmailClient.from_connection_string(
        connection_string, connection_verify=cert, retry_total=0
    ) as client:
        assert client.begin_send(message).result()["status"] == "Succeeded"
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=20) == 0


@pytest.mark.parametrize(
    "args",
    [("--quota", "lots"), ("--fail-rate", "2"), ("--access-key", "not base64!"), ("--latency-ms", "-1")],
)
def test_cli_rejects_bad_option_values(args: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "postbus.emulators.acs_email", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert done.stdout == ""
    assert "Invalid value" in done.stderr
