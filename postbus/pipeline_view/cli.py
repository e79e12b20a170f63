"""``postbus console``: the pipeline view for whatever the settings point at, in the browser.

Queue depths come from the Service Bus emulator's admin endpoint (``--servicebus-admin``) or the
Service Bus management API; workers are the health endpoints given with ``--worker``; latencies and
delivery outcomes from the delivery record (``POSTBUS_RECORD_URL``). It binds 127.0.0.1 unless
``--host`` says otherwise, and then warns: the console has no sign-in.
"""

from __future__ import annotations

import asyncio
import errno
import signal
from typing import Annotated

import typer

from postbus.errors import PostbusError

__all__ = ["app", "console"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


class ConsoleStartError(PostbusError):
    """The console could not listen where it was asked to."""


@app.command()
def console(
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0 = any free port).")] = 8030,
    host: Annotated[
        str,
        typer.Option(help="Interface to bind; anything but loopback needs this flag and prints a warning."),
    ] = "127.0.0.1",
    worker: Annotated[
        list[str] | None,
        typer.Option(
            "--worker",
            metavar="URL",
            help="A worker's health endpoint, e.g. http://127.0.0.1:8080 (repeatable).",
        ),
    ] = None,
    servicebus_admin: Annotated[
        str | None,
        typer.Option(
            "--servicebus-admin",
            metavar="URL",
            help="The Service Bus emulator's admin endpoint (for queue counts).",
        ),
    ] = None,
) -> None:
    """Serve the live pipeline view (queues, send rate, 429s, dead letters, latency, workers)."""
    from postbus.binding import exposure_warning
    from postbus.pipeline_view import ConsoleServer, SettingsSource
    from postbus.pipeline_view.sources import watched_queues
    from postbus.records import record_store
    from postbus.worker.ops.console import ops_settings

    if servicebus_admin is not None and not servicebus_admin.startswith(("http://", "https://")):
        raise typer.BadParameter("expected an http(s) URL", param_hint="--servicebus-admin")
    for url in worker or []:
        if not url.startswith(("http://", "https://")):
            raise typer.BadParameter(f"{url!r}: expected an http(s) URL", param_hint="--worker")
    settings = ops_settings()
    warning = exposure_warning(
        host, "the pipeline console (queue depths, dead-letter reasons, delivery numbers)"
    )
    if warning:
        typer.echo(warning, err=True)
    source = SettingsSource(
        settings,
        queues=watched_queues(settings),
        worker_urls=worker or [],
        servicebus_admin_url=servicebus_admin,
        records=record_store(settings),
    )

    async def serve() -> None:
        server = ConsoleServer(source, host=host, port=port)
        try:
            await server.start()
        except OSError as exc:
            await source.close()
            if exc.errno == errno.EADDRINUSE:
                raise ConsoleStartError(
                    f"console port {port} on {host} is already in use (--port); choose another port"
                ) from exc
            raise ConsoleStartError(
                f"cannot serve the console on {host}:{port} (--host/--port): {exc.strerror}"
            ) from exc
        # Ctrl-C or SIGTERM is how a console is meant to end: stop cleanly and exit 0. The
        # handlers go in before the URL is printed, so a caller that reads it may signal at once.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        typer.echo(server.url)
        try:
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(serve())
