"""``/healthz`` (the process is alive) and ``/readyz`` (connected and the breaker is closed).

Container Apps restarts a replica whose liveness probe fails and stops routing to one whose
readiness probe fails; KEDA keeps scaling on queue depth either way.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from postbus.worker.errors import CannotStart

__all__ = ["HealthServer", "HealthStatus"]

#: Strict JSON: NaN and Infinity are not JSON, so a detail holding one fails loudly here, not in a probe.
_DUMPS: Final = functools.partial(json.dumps, allow_nan=False)


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """A snapshot for the probes; ``detail`` is returned as strict JSON (no NaN or Infinity)."""

    live: bool
    ready: bool
    detail: dict[str, Any] = field(default_factory=dict)


class HealthServer:
    """A tiny aiohttp server on its own port, running on the worker's event loop.

    Example::

        server = HealthServer(port=8080, status=lambda: HealthStatus(True, worker.ready))
        await server.start()
        ...
        await server.stop()
    """

    def __init__(self, *, port: int, status: Callable[[], HealthStatus], host: str = "0.0.0.0") -> None:  # noqa: S104 - probes come from outside the container
        self._host = host
        self._requested_port = port
        self._status = status
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        """Start listening (``port=0`` picks a free port, see :attr:`port`)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._requested_port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise CannotStart(
                f"cannot serve /healthz and /readyz on port {self._requested_port}: "
                f"{os.strerror(exc.errno).lower() if exc.errno else exc}; set POSTBUS_HEALTH_PORT (or --health-port) to a free port, "
                "or 0 to turn the endpoint off"
            ) from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        status = self._status()
        return web.json_response({"live": status.live}, status=200 if status.live else 503, dumps=_DUMPS)

    async def _readyz(self, _request: web.Request) -> web.Response:
        status = self._status()
        body = {"ready": status.ready, **status.detail}
        return web.json_response(body, status=200 if status.ready else 503, dumps=_DUMPS)
