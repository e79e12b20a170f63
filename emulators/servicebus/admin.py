"""Read-only HTTP admin endpoint: ``/health``, ``/counts``, ``/queues``, ``/dead-letters`` as JSON.

A stdlib server on its own thread; ``/dead-letters`` is each queue's dead-lettered messages counted
by reason, so a console can chart them without receiving any.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from postbus.emulators.servicebus.emulator import ServiceBusEmulator

__all__ = ["AdminServer"]


class AdminServer:
    """Serves the emulator's runtime counts so tools in other processes can watch queue depth."""

    def __init__(self, emulator: ServiceBusEmulator, *, host: str, port: int) -> None:
        self._emulator = emulator
        handler = type("_BoundAdminHandler", (_AdminHandler,), {"emulator": emulator})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="servicebus-admin", daemon=True
        )

    def start(self) -> str:
        self._thread.start()
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)


class _AdminHandler(BaseHTTPRequestHandler):
    emulator: ServiceBusEmulator
    server_version = "postbus-servicebus-admin"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        body: Any
        if path == "/health":
            body = {"status": "healthy"}
        elif path == "/counts":
            body = {name: asdict(counts) for name, counts in self.emulator.all_counts().items()}
        elif path == "/dead-letters":
            body = {name: self.emulator.dead_letter_reasons(name) for name in self.emulator.all_counts()}
        elif path == "/queues":
            body = {
                name: props.model_dump(mode="json") for name, props in self.emulator.config.queues.items()
            }
        else:
            self._send(
                404,
                {
                    "error": f"no such resource: {path}",
                    "resources": ["/health", "/counts", "/queues", "/dead-letters"],
                },
            )
            return
        self._send(200, body)

    def _send(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request logs would drown the emulator's own
