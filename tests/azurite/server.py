"""Start and stop an Azurite service (Table or Blob) for the store tests and the benchmarks.

``make azurite`` installs the version pinned in ``package-lock.json`` beside this file into
``.tools/azurite``. :class:`Azurite` runs one service alone (``service="table"``, the default,
or ``"blob"`` for the claim-check attachment store): in-memory persistence,
loopback only, a port the OS picks (read back from the listening socket, so two runs never race
for one), no telemetry, and its own working folder. It is ready once it prints that it started,
which the launcher waits for on its output; nothing here sleeps.

    with Azurite(tmp_path) as azurite:
        store = TableRecordStore(parse_record_url(azurite.table_url("records")), account_key=KEY)

    with Azurite(tmp_path, service="blob") as azurite:
        url, connection_string = azurite.container_url("attachments"), azurite.connection_string
"""

from __future__ import annotations

import collections
import os
import selectors
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self

import psutil

__all__ = ["ACCOUNT", "BLOB_MAIN", "KEY", "TABLE_MAIN", "Azurite", "AzuriteMissing"]

ROOT: Final = Path(__file__).resolve().parents[2]
_DIST: Final = ROOT / ".tools" / "azurite" / "node_modules" / "azurite" / "dist" / "src"
TABLE_MAIN: Final = _DIST / "table" / "main.js"
BLOB_MAIN: Final = _DIST / "blob" / "main.js"
#: Azurite's built-in development account and its published key (not a secret).
ACCOUNT: Final = "devstoreaccount1"
KEY: Final = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: What Azurite prints once it listens: the Table service says "started", the Blob service "listens".
_READY: Final = ("successfully started", "successfully listens")


class AzuriteMissing(RuntimeError):
    """Node.js or the Azurite install is missing; the message says how to get it."""


class Azurite:
    """One Azurite service process, Table or Blob (a context manager)."""

    def __init__(
        self, workspace: Path, *, service: Literal["table", "blob"] = "table", startup_timeout: float = 60.0
    ) -> None:
        self.workspace = workspace
        self.service = service
        self.startup_timeout = startup_timeout
        self.port = 0
        self.output: collections.deque[str] = collections.deque(maxlen=200)
        self._process: subprocess.Popen[bytes] | None = None
        self._drainer: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """The path-style service endpoint, ``http://127.0.0.1:<port>/devstoreaccount1``."""
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def container_url(self, container: str) -> str:
        """A ``POSTBUS_ATTACHMENT_STORE_URL`` for ``container`` on this (Blob) Azurite."""
        return f"{self.endpoint}/{container}"

    @property
    def connection_string(self) -> str:
        """The development account's connection string for this (Blob) Azurite."""
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={self.endpoint};"

    def table_url(self, table: str) -> str:
        """A ``POSTBUS_RECORD_URL`` for ``table`` on this Azurite."""
        return f"{self.endpoint}/{table}"

    def start(self) -> None:
        """Launch Azurite and return once it listens."""
        node = shutil.which("node")
        if node is None:
            raise AzuriteMissing("the Azure Storage backend tests need Node.js 20+ (node is not on PATH)")
        main = TABLE_MAIN if self.service == "table" else BLOB_MAIN
        if not main.exists():
            raise AzuriteMissing(f"Azurite is not installed at {main.parent}: run `make azurite`")
        self.workspace.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                node,
                str(main),
                f"--{self.service}Host",
                "127.0.0.1",
                f"--{self.service}Port",
                "0",
                "--inMemoryPersistence",
                *(["--extentMemoryLimit", "512"] if self.service == "blob" else []),
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--silent",
            ],
            cwd=self.workspace,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            self._await_start()
            self.port = self._listening_port()
        except BaseException:
            self.stop()
            raise
        # Keep reading so a chatty Azurite never blocks on a full pipe; the tail helps diagnose.
        self._drainer = threading.Thread(target=self._drain, name="azurite-output", daemon=True)
        self._drainer.start()

    def _await_start(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        deadline = time.monotonic() + self.startup_timeout
        pending = b""
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"Azurite did not start within {self.startup_timeout} s: {self._tail()}"
                    )
                if not selector.select(remaining):
                    continue
                # Raw reads: a buffered readline could hold the ready line where select cannot see it.
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"Azurite exited with {self._process.wait()}: {self._tail()}")
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self.output.append(line.decode(errors="replace").rstrip())
                    if any(ready in self.output[-1] for ready in _READY):
                        return

    def _listening_port(self) -> int:
        assert self._process is not None
        for connection in psutil.Process(self._process.pid).net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr:
                return int(connection.laddr.port)
        raise RuntimeError(f"Azurite reported a start but listens on no port: {self._tail()}")

    def _drain(self) -> None:
        process = self._process
        if process is None or process.stdout is None:
            return
        for line in process.stdout:
            self.output.append(line.decode(errors="replace").rstrip())

    def _tail(self) -> str:
        return " | ".join(list(self.output)[-5:]) or "no output"

    def stop(self) -> None:
        """Terminate Azurite (kill it if it lingers)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        drainer, self._drainer = self._drainer, None
        if drainer is not None:
            drainer.join(timeout=10)  # it ends at the exited process's end of output
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Self:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
