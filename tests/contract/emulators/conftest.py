"""Running the emulator commands as a user does: a separate process, in a scratch directory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def run_cli(
    cwd: Path, *args: str, module: str = "postbus.cli", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` to completion, in ``cwd``, with our environment cleared."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTBUS_")}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def free_port() -> int:
    """A port nobody listens on right now (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a failed run (asserting the exit code and the absence of more)."""
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("postbus: error: ")
    assert done.returncode == code, done.stderr
    assert done.stdout == ""
    return lines[0].removeprefix("postbus: error: ")
