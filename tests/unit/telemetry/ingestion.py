"""A stand-in Application Insights ingestion endpoint on 127.0.0.1, and a child process that exports to it.

The Azure Monitor distro can be configured once per process, so each scenario runs in a fresh
interpreter whose connection string points here; its shutdown flushes. The server keeps every
envelope posted to the track endpoint, so a test reads exactly what Application Insights would store.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

__all__ = ["Ingestion", "run_child", "stand_in_ingestion"]

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Ingestion:
    """What the stand-in received: track envelopes, and the path of every request."""

    endpoint: str
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def by_type(self) -> dict[str, list[dict[str, Any]]]:
        """Envelopes grouped by ``data.baseType`` (``RequestData``, ``RemoteDependencyData``, ...)."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for item in self.envelopes:
            grouped.setdefault(item["data"]["baseType"], []).append(item)
        return grouped

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Metric name -> its dimensions (the last data point seen)."""
        return {
            metric["name"]: item["data"]["baseData"].get("properties", {})
            for item in self.by_type().get("MetricData", [])
            for metric in item["data"]["baseData"]["metrics"]
        }


def _handler(ingestion: Ingestion) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            ingestion.paths.append(self.path)
            items: list[dict[str, Any]] = []
            if "/track" in self.path:
                text = body.decode()
                items = (
                    json.loads(text)
                    if text.startswith("[")
                    else [json.loads(line) for line in text.splitlines() if line]
                )
                ingestion.envelopes.extend(items)
            answer = json.dumps(
                {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@contextmanager
def stand_in_ingestion() -> Iterator[Ingestion]:
    """Serve the stand-in on a free loopback port for the duration of the block."""
    server = HTTPServer(("127.0.0.1", 0), _handler(Ingestion("")))
    ingestion = Ingestion(f"http://127.0.0.1:{server.server_address[1]}/")
    server.RequestHandlerClass = _handler(ingestion)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ingestion
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_child(code: str, connection_string: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with only ``connection_string`` (and ``env``) configuring it."""
    child_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("POSTBUS_", "APPLICATIONINSIGHTS_", "OTEL_"))
    }
    child_env |= {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": connection_string,
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
        # The distro's default sampler admits ~5 new traces/s, measured from process start: a process
        # this short would keep almost none.
        "OTEL_TRACES_SAMPLER": "always_on",
        "PYTHONPATH": str(ROOT),
    } | env
    return subprocess.run(
        [sys.executable, "-c", code],
        env=child_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
