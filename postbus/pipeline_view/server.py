"""The pipeline console's HTTP server: one page, a JSON snapshot, and a live stream.

``GET /`` is the page (static files, uPlot for the charts, no build step); ``GET /api/snapshot``
the latest sample; ``GET /api/history`` every kept sample, so a page opened late still draws the
whole spike; ``GET /api/stream`` a server-sent event per sample. The server samples its source
once a second whether or not anyone watches, so the history is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from importlib import resources
from typing import Final

from aiohttp import web

from postbus.logs import get_logger
from postbus.pipeline_view.snapshot import History, PipelineSnapshot
from postbus.pipeline_view.sources import PipelineSource

__all__ = ["ConsoleServer"]

log = get_logger(__name__)

_PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_STATIC: Final = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
    "vendor/uPlot.iife.min.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
}


class ConsoleServer:
    """Samples ``source`` every ``interval`` seconds and serves the console on ``host:port``.

    Example::

        async with ConsoleServer(EmbeddedSource(sb, acs, ...), port=0) as console:
            print(console.url)
    """

    def __init__(
        self, source: PipelineSource, *, host: str = "127.0.0.1", port: int = 0, interval: float = 1.0
    ) -> None:
        self.source = source
        self.history = History()
        self._host = host
        self._port = port
        self._interval = interval
        self._runner: web.AppRunner | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._subscribers: set[asyncio.Queue[PipelineSnapshot | None]] = set()
        self._sampled = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        """Bind (``OSError`` when the port is taken), take a first sample, start sampling."""
        app = web.Application()
        app.router.add_get("/", self._static)
        app.router.add_get("/static/{name:.+}", self._static)
        app.router.add_get("/api/snapshot", self._snapshot)
        app.router.add_get("/api/history", self._history)
        app.router.add_get("/api/stream", self._stream)
        sock = socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        await self.sample_once()
        self._sampler = asyncio.create_task(self._sample_forever(), name="console-sampler")

    async def sample_once(self) -> PipelineSnapshot:
        """Take one sample now, keep it and send it to every open stream."""
        snapshot = self.history.add(await self.source.sample())
        for queue in self._subscribers:
            queue.put_nowait(snapshot)
        return snapshot

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        for queue in self._subscribers:
            queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.source.close()

    async def __aenter__(self) -> ConsoleServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sample_once()
            except Exception as exc:  # one bad sample must not end the console
                log.warning("console sample failed", error=f"{type(exc).__name__}: {exc}")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name", "index.html")
        content_type = _STATIC.get(name)
        if content_type is None:
            raise web.HTTPNotFound()
        body = resources.files("postbus.pipeline_view").joinpath("static", *name.split("/")).read_bytes()
        return web.Response(
            body=body,
            content_type=content_type,
            charset="utf-8",
            headers={
                "Content-Security-Policy": _PAGE_CSP,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-cache",
            },
        )

    async def _snapshot(self, request: web.Request) -> web.Response:
        latest = self.history.latest
        return web.json_response(latest.to_json() if latest else None)

    async def _history(self, request: web.Request) -> web.Response:
        return web.json_response([s.to_json() for s in self.history])

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[PipelineSnapshot | None] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            await response.write(b": connected\n\n")
            while (snapshot := await queue.get()) is not None:
                await response.write(f"event: sample\ndata: {json.dumps(snapshot.to_json())}\n\n".encode())
        except ConnectionResetError:
            pass  # the page was closed
        finally:
            self._subscribers.discard(queue)
        return response
